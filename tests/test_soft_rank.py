"""Soft-threshold per-layer rank (models/soft_rank.py) and its flow to the architecture mapper."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch (the 'algo' extra) is not installed")

from hyflexpim.models import soft_rank as sr, svd, redistribute as rd  # noqa: E402
from hyflexpim.models.rank import svd_rank  # noqa: E402
from hyflexpim.sim.cli import main as cli  # noqa: E402


def _soft_model(seed, shapes, variant="ab"):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(m, n) for m, n in shapes]
    return torch.nn.Sequential(*(sr.SoftRankSVDLinear.from_linear(l, variant) for l in layers))


@pytest.mark.parametrize("variant", ["ab", "usv"])
def test_initial_threshold_is_fixed_rank(variant):
    """At start every layer holds all min(m, n) ranks, and the ranks above the mask's 0.5
    point are exactly the fixed r = floor(mn/(m+n)) largest singular values."""
    seed = 4
    print("seed", seed)
    shapes = [(12, 20), (20, 7), (9, 9)]
    model = _soft_model(seed, shapes, variant)
    for layer, (m, n) in zip(model, shapes):
        assert layer.rank == min(m, n)
        g = layer.mask().detach().numpy()
        assert (g > 0.5).sum() == svd_rank(m, n)
        assert np.all(np.diff(g) <= 1e-6)                      # ordered like the singular values
        # forward == masked factors, with the mask folded in factors()
        x = torch.randn(3, m)
        f1, f2 = layer.factors()
        np.testing.assert_allclose(layer(x).detach().numpy(),
                                   (x @ f1 @ f2 + layer.bias).detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fraction", [None, 1.0, 0.3])
def test_harden_respects_budget(seed, fraction):
    """Whatever the thresholds, the hardened model's parameters (= MACs per input vector)
    never exceed the budget, which never exceeds the original matrices' parameters; each
    kept rank keeps its masked contribution."""
    print("seed", seed)
    shapes = [(16, 40), (40, 16), (16, 16), (8, 30)]
    model = _soft_model(seed, shapes)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model:                      # thresholds anywhere: keep many or few ranks
            layer.theta.sub_(3 * torch.rand((), generator=g) - 0.5)
    layers = sr.soft_layers(model)
    dense = sum(m * n for m, n in shapes)
    budget = sr.budget_for(layers, fraction)
    assert budget == (sum(svd_rank(m, n) * (m + n) for m, n in shapes) if fraction is None
                      else int(fraction * dense))
    assert budget <= dense
    expect = {}
    for name, layer in layers.items():
        f1, f2 = layer.factors()
        expect[name] = (f1.detach().double(), f2.detach().double())
    keep = sr.harden(model, budget)
    params = 0
    for (name, idx), layer, (m, n) in zip(keep.items(), model, shapes):
        assert type(layer) is svd.SVDLinear and layer.rank == len(idx) >= 1
        params += layer.rank * (m + n)
        f1, f2 = expect[name]
        ref = f1[:, idx] @ f2[idx]
        np.testing.assert_allclose(layer.dense_weight().detach().double().numpy(),
                                   ref.numpy(), atol=1e-5)
    assert params <= budget <= dense


def test_harden_errors():
    model = _soft_model(0, [(8, 8), (8, 8)])
    with pytest.raises(ValueError, match=r"^budget must allow one rank per layer \(32 parameters\), not 31$"):
        sr.harden(model, 31)
    with pytest.raises(ValueError, match=r"^the model has no soft-threshold layers to harden$"):
        sr.harden(torch.nn.Sequential(torch.nn.Linear(2, 2)), 10)


@pytest.mark.parametrize("kw, msg", [
    (dict(temperature=0), r"^temperature must be a finite number > 0, not 0$"),
    (dict(penalty=-1), r"^penalty must be a finite number >= 0, not -1$"),
    (dict(threshold_lr=float("nan")), r"^threshold_lr must be a finite number > 0, not nan$"),
    (dict(budget=1.5), r"^budget must be a fraction in \(0, 1\] or None, not 1\.5$"),
])
def test_config_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        sr.SoftRankConfig(**kw)
    with pytest.raises(ValueError, match=r"^rank selection must be one of fixed, soft-threshold, not 'x'$"):
        sr.check_rank_select("x")


def test_ranks_follow_the_layers():
    """Two layers of the same shape: the teacher's first matrix has rank 2, its second is
    full rank. Trained under the fixed-rank budget, the learned thresholds give the first
    layer fewer ranks than the fixed r and the second more; the budget holds."""
    seed = 7
    print("seed", seed)
    torch.manual_seed(seed)
    m = 24
    W1 = torch.randn(m, 2) @ torch.randn(2, m) / 2             # rank 2
    W2 = torch.linalg.qr(torch.randn(m, m))[0] * 2             # flat spectrum
    student = _soft_model(seed, [(m, m), (m, m)])
    with torch.no_grad():                                      # start from a perturbed teacher
        for layer, W in zip(student, (W1, W2)):
            lin = torch.nn.Linear(m, m)
            lin.weight.copy_((W + 0.3 * torch.randn(m, m)).t())
            lin.bias.zero_()
            layer.load_state_dict(sr.SoftRankSVDLinear.from_linear(lin).state_dict())
    layers = sr.soft_layers(student)
    budget = sr.budget_for(layers)
    cfg = sr.SoftRankConfig(temperature=0.1, penalty=10.0, threshold_lr=0.05)
    xs = [torch.randn(64, m) for _ in range(8)]
    data = [(x, x @ W1 @ W2) for x in xs]
    loss = lambda mod, a, b: ((mod(a) - b) ** 2).mean()  # noqa: E731
    svd.finetune(student, lambda: iter(data), loss, epochs=25, lr=1e-2, quiet=True,
                 penalty=lambda: sr.budget_penalty(layers, budget, cfg.penalty),
                 param_groups=sr.threshold_groups(student, cfg, 1e-2, 0.0))
    sr.harden(student, budget)
    r1, r2 = student[0].rank, student[1].rank
    print("ranks", r1, r2, "fixed", svd_rank(m, m))
    assert r1 < svd_rank(m, m) < r2
    assert (r1 + r2) * 2 * m <= budget


def test_soft_flow_to_architecture_mapper(tmp_path, capsys):
    """redistribute --rank-select soft-threshold -> mapping with per-matrix ranks ->
    accuracy and ``hyflexpim perf --slc-map`` read it; the budget holds in the file."""
    out = tmp_path / "m.json"
    assert cli(["redistribute", "--task", "tiny", "--slc", "25", "--epochs", "2",
                "--rank-select", "soft-threshold", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "soft-threshold ranks:" in err
    mp = rd.load_mapping(out)
    assert mp["rank_select"] == "soft-threshold" and mp["soft_threshold"]["temperature"] == 0.1
    mats = mp["matrices"]
    assert len(mats) == 6
    params = sum(e["rank"] * sum(e["shape"]) for e in mats.values())
    assert params <= sum(svd_rank(*e["shape"]) * sum(e["shape"]) for e in mats.values())
    for e in mats.values():
        assert len(e["slc_ranks"]) == rd.slc_count(25, e["rank"]) and len(e["scores"]) == e["rank"]
    for be in ("fast", "faithful"):
        assert cli(["accuracy", "--task", "tiny", "--mapping", str(out), "--seeds", "1",
                    "--epochs", "2", "--backend", be]) == 0
        assert "accuracy" in capsys.readouterr().out
    # the architecture mapper: a model config of the tiny task's shapes
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(dict(layers=1, hidden=16, heads=2, ffn=64, kind="encoder")))
    from hyflexpim.sim.arch import plan
    pl = plan(str(cfg), 16, 0.0, slc_map=str(out))
    roles = {"attn.q": "q", "attn.k": "k", "attn.v": "v", "attn.proj": "o",
             "ffn.fc1": "ffn1", "ffn.fc2": "ffn2"}
    for name, e in mats.items():
        mm = pl.layers[0].matrices[roles[name.split(".", 2)[2]]]
        assert (mm.rank, mm.k_slc) == (e["rank"], len(e["slc_ranks"]))
    assert cli(["perf", "--model", str(cfg), "--seq", "16", "--slc-map", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["tokens_per_s"] > 0


def test_cli_rank_errors(capsys):
    assert cli(["redistribute", "--task", "tiny", "--rank-select", "learned", "--out", "x"]) == 2
    assert "rank-select must be one of fixed, soft-threshold, not 'learned'" in capsys.readouterr().err
    assert cli(["accuracy", "--task", "tiny", "--sweep", "--rank-select", "soft-threshold",
                "--rank-budget", "2"]) == 2
    assert "rank-budget must be a fraction in (0, 1] or None, not 2.0" in capsys.readouterr().err


def test_soft_flow_paper_mode():
    """Paper mode (variant usv, head factored, last-batch |dL/dS| score) with learned ranks:
    scores sliced to the kept ranks, mapping and paper noise run."""
    from hyflexpim.models.algo_tasks import get_task
    from hyflexpim.models import accuracy as acc
    task = get_task("tiny")
    prep = acc.prepare(task, "paper", ft_epochs=1, quiet=True, rank_select="soft-threshold")
    f = prep.figures
    assert f["params_hard"] <= f["params_budget"] == f["params_fixed"] <= f["params_dense"]
    assert "head" in f["ranks"]
    mp = acc.mapping_for(prep, "gradient", 20)
    for name, e in mp["matrices"].items():
        assert e["rank"] == f["ranks"][name] == len(e["scores"])
    v = acc.evaluate_mapping(prep, mp, seed=0)
    assert 0 <= v <= 1
