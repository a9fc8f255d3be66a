"""SVD rank, factorisation, rank scores and fine-tuning (models/svd.py)."""

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch (the 'algo' extra) is not installed")

from hyflexpim.models import svd  # noqa: E402
from hyflexpim.models.tiny_models import TinyTransformer  # noqa: E402


@pytest.mark.parametrize("m", [1, 2, 3, 7, 64, 100, 384, 768, 1536, 4096])
@pytest.mark.parametrize("n", [1, 5, 64, 127, 384, 1536, 3072])
def test_rank_never_exceeds_params_or_macs(m, n):
    r = svd.svd_rank(m, n)
    assert r * (m + n) <= m * n                  # parameters, and MACs per input vector
    assert (r + 1) * (m + n) > m * n             # and it is the largest such rank
    assert r <= min(m, n)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_rank_bad_input(bad):
    with pytest.raises(ValueError, match=r"^m must be a positive integer, not "):
        svd.svd_rank(bad, 4)


@pytest.mark.parametrize("variant", ["ab", "usv"])
def test_factorisation_is_best_rank_r(variant):
    seed = 11
    print("seed", seed)
    torch.manual_seed(seed)
    lin = torch.nn.Linear(24, 40)
    W = lin.weight.detach().double().numpy().T        # (24, 40) hardware layout
    full = svd.SVDLinear.from_linear(lin, variant, rank=24)
    np.testing.assert_allclose(full.dense_weight().detach().double().numpy(), W, atol=1e-5)
    f = svd.SVDLinear.from_linear(lin, variant)
    r = svd.svd_rank(24, 40)
    assert f.rank == r == 15
    s = np.linalg.svd(W, compute_uv=False)
    err = np.linalg.norm(f.dense_weight().detach().double().numpy() - W)
    assert err == pytest.approx(np.sqrt((s[r:] ** 2).sum()), rel=1e-4)
    np.testing.assert_allclose(f.sv_scores().numpy(), s[:r], rtol=1e-4)
    x = torch.randn(5, 24)
    np.testing.assert_allclose(f(x).detach().numpy(),
                               (x.double().numpy() @ f.dense_weight().detach().double().numpy()
                                + lin.bias.detach().numpy()), atol=1e-4)


def test_factorize_model_selects_static_linears():
    m = TinyTransformer("image", image=8, patch=4, dim=16, depth=2, heads=2, classes=3)
    done = svd.factorize_model(m)
    expect = [f"blocks.{i}.{p}" for i in range(2) for p in
              ("attn.q", "attn.k", "attn.v", "attn.proj", "ffn.fc1", "ffn.fc2")]
    assert done == expect
    assert isinstance(m.head, torch.nn.Linear) and isinstance(m.embed, torch.nn.Linear)
    m2 = TinyTransformer("image", image=8, patch=4, dim=16, depth=1, heads=2, classes=3)
    assert "head" in svd.factorize_model(m2, "usv", include_head=True)
    assert isinstance(m2.head, svd.SVDLinear) and m2.head.variant == "usv"


def test_rank_scores_formula():
    """score[i] = sum_j |dL/dA[j,i]| + sum_k |dL/dB[i,k]|, accumulated over batches."""
    seed = 3
    print("seed", seed)
    torch.manual_seed(seed)
    lin = torch.nn.Linear(6, 10)
    layer = svd.SVDLinear.from_linear(lin)
    model = torch.nn.Sequential(layer)
    sc = svd.RankScores(model)
    A0, B0 = layer.A.detach().clone(), layer.B.detach().clone()
    expect = torch.zeros(layer.rank, dtype=torch.float64)
    for _ in range(3):
        x, t = torch.randn(4, 6), torch.randn(4, 10)
        model.zero_grad()
        ((model(x) - t) ** 2).mean().backward()
        sc.accumulate()
        # independent gradient: y = x A B + b, L = mean((y - t)^2)
        g = 2 * ((x @ A0 @ B0 + lin.bias.detach()) - t) / t.numel()
        dA = x.t() @ g @ B0.t()
        dB = (x @ A0).t() @ g
        expect += dA.abs().sum(0).double() + dB.abs().sum(1).double()
    np.testing.assert_allclose(sc.grad["0"].numpy(), expect.numpy(), rtol=1e-5)
    assert sc.batches == 3


def test_last_batch_s_score_and_finetune():
    torch.manual_seed(0)
    model = torch.nn.Sequential(svd.SVDLinear.from_linear(torch.nn.Linear(8, 8), "usv"))
    data = [(torch.randn(4, 8), torch.randn(4, 8)) for _ in range(3)]
    sc = svd.RankScores(model)
    loss = lambda m, x, y: ((m(x) - y) ** 2).mean()  # noqa: E731
    hist = svd.finetune(model, lambda: iter(data), loss, epochs=2, lr=1e-2, scores=sc, quiet=True)
    assert len(hist) == 2 and hist[1] < hist[0]
    last = sc.as_numpy("grad_last_s")["0"]
    model.zero_grad()
    assert sc.batches == 6 and last.shape == (4,) and (last > 0).all()
    with pytest.raises(ValueError, match=r"^epochs must be a non-negative integer, not -1$"):
        svd.finetune(model, lambda: iter(data), loss, epochs=-1)
    with pytest.raises(ValueError, match=r"^score kind must be 'grad' or 'grad_last_s', not 'x'$"):
        sc.as_numpy("x")


def test_top_share():
    assert svd.top_share([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 0.1) == pytest.approx(0.1)
    assert svd.top_share([9, 1, 0, 0], 0.05) == pytest.approx(0.9)     # at least one rank
    assert svd.top_share([0, 0], 0.5) == 0.0


def test_bad_variant():
    with pytest.raises(ValueError, match=re.escape("variant must be one of ('ab', 'usv'), not 'x'")):
        svd.SVDLinear(2, 2, 1, "x")
