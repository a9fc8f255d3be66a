"""Golden FP16 exp and vector functions (models/fp16/functions.py) against independent references."""

import math

import numpy as np
import pytest

from hyflexpim.models import fp16
from hyflexpim.models.fp16 import functions as F

ALL = np.arange(1 << 16, dtype=np.uint16)
NAN_MASK = fp16.is_nan(ALL)


def mpfr_exp_all():
    """Correctly rounded binary16 exp of every bit pattern, by MPFR (gmpy2)."""
    gmpy2 = pytest.importorskip("gmpy2")
    ctx = gmpy2.ieee(16)
    ctx.subnormalize = True
    out = np.zeros(1 << 16, np.uint16)
    vals = fp16.to_float(ALL)
    with gmpy2.context(ctx):
        for b in range(1 << 16):
            if NAN_MASK[b]:
                out[b] = fp16.CANONICAL_NAN
                continue
            r = gmpy2.exp(gmpy2.mpfr(float(vals[b])))
            out[b] = fp16.from_float(float(r))
    return out


def ulp_distance(a, b):
    """Distance in units in the last place, counting along the ordered binary16 grid
    (+0 and -0 are the same point)."""
    def key(u):
        u = u.astype(np.int64)
        return np.where(u >> 15 == 1, -(u & 0x7FFF), u & 0x7FFF)
    return np.abs(key(a) - key(b))


@pytest.fixture(scope="module")
def exp_ref():
    return mpfr_exp_all()


def test_exp_exhaustive_within_one_ulp(exp_ref):
    got = F.exp(ALL)
    d = ulp_distance(got[~NAN_MASK], exp_ref[~NAN_MASK])
    hist = np.bincount(d)
    print("exp degree 4, ULP histogram over all non-NaN inputs:", hist.tolist())
    assert d.max() <= 1
    assert np.all(got[NAN_MASK] == fp16.CANONICAL_NAN)


def test_exp_degree_two_is_worse(exp_ref):
    # the ULP check is able to fail: a quadratic polynomial misses the target
    d = ulp_distance(F.exp(ALL, degree=2)[~NAN_MASK], exp_ref[~NAN_MASK])
    assert d.max() > 1


def test_exp_special_values():
    x = fp16.from_float([0.0, -0.0, np.inf, -np.inf, 11.0859375, 11.09375, -17.0, -17.4, 1.0])
    got = F.exp(x)
    assert got[0] == 0x3C00 and got[1] == 0x3C00
    assert got[2] == fp16.POS_INF and got[3] == 0
    assert fp16.to_float(got[4]) == float(np.float16(math.exp(11.0859375)))  # 65247 -> 65248
    assert got[5] == fp16.POS_INF                      # exp(11.09375) = 65823 > 65520 overflows
    assert got[6] == 0x0001                            # exp(-17) = 4.1e-8 -> 2**-24
    assert got[7] == 0                                 # exp(-17.406) < 2**-25 -> +0
    assert fp16.to_float(got[8]) == pytest.approx(math.e, rel=1e-3)


@pytest.mark.parametrize("bad", [0, 9, -1, 2.0, True])
def test_exp_degree_checked(bad):
    with pytest.raises(ValueError, match=r"^degree must be an integer in 1\.\.8, not .+$"):
        F.exp(np.array([0], np.uint16), degree=bad)


# ----------------------------------------------------------------------------- order

def scalar_reduce(op, row, identity, lanes, slots):
    """Independent scalar re-implementation of the documented reduction order."""
    beats = [list(row[i:i + lanes]) for i in range(0, len(row), lanes)]
    vals = []
    for beat in beats:
        while len(beat) > 1:
            beat = [op(beat[i], beat[i + 1]) for i in range(0, len(beat), 2)]
        vals.append(beat[0])
    parts = [identity] * slots
    for b, v in enumerate(vals):
        parts[b % slots] = op(parts[b % slots], v)
    used = parts[:min(slots, len(vals))]
    # the final queue fold: rotate so that the oldest partial comes first
    start = len(vals) % slots if len(vals) > slots else 0
    queue = used[start:] + used[:start]
    while len(queue) > 1:
        queue = queue[2:] + [op(queue[0], queue[1])]
    return queue[0]


@pytest.mark.parametrize("n,lanes,slots", [(4, 4, 4), (32, 4, 4), (40, 2, 3), (64, 8, 2), (12, 4, 8)])
def test_reduce_row_order(n, lanes, slots):
    seed = 1234 + n + lanes + slots
    print("seed", seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((5, n)) * rng.choice([1e-3, 1, 100], size=(5, n))
    xb = fp16.from_float(x)
    got = F.reduce_row(fp16.add, xb, 0, lanes=lanes, slots=slots)
    h = xb.view(np.float16)
    for r in range(5):
        want = scalar_reduce(lambda a, b: np.float16(a + b), list(h[r]), np.float16(0), lanes, slots)
        assert got[r] == np.float16(want).view(np.uint16)


@pytest.mark.parametrize("n,lanes,slots,msg", [
    (8, 3, 4, r"^lanes must be a power of two, not 3$"),
    (8, 0, 4, r"^lanes must be a power of two, not 0$"),
    (6, 4, 4, r"^row length must be a positive multiple of lanes \(4\), not 6$"),
    (8, 4, 0, r"^slots must be a positive integer, not 0$"),
])
def test_row_params_checked(n, lanes, slots, msg):
    with pytest.raises(ValueError, match=msg):
        F.softmax(np.zeros((1, n), np.uint16), lanes=lanes, slots=slots)


# ----------------------------------------------------------------------------- functions

def softmax64(x):
    x = np.asarray(x, np.float64)
    m = np.max(x, axis=-1, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(axis=-1, keepdims=True)


def test_softmax_close_to_float64():
    seed = 7
    print("seed", seed)
    rng = np.random.default_rng(seed)
    x = fp16.from_float(rng.standard_normal((64, 32)) * 4)
    got = fp16.to_float(F.softmax(x))
    want = softmax64(fp16.to_float(x))
    assert np.abs(got - want).max() < 2e-3
    assert np.abs(got.sum(axis=-1) - 1).max() < 2e-2


def test_softmax_masks_and_special_rows():
    ninf, nan = fp16.NEG_INF, fp16.CANONICAL_NAN
    one = fp16.from_float(1.0)
    rows = np.array([
        [ninf] * 8,                                      # fully masked: all +0
        [one, ninf, ninf, ninf, one, ninf, ninf, ninf],  # two equal survivors: 0.5 each
        [one] * 8,                                       # all equal: 1/8
        [one, nan, one, one, one, one, one, one],        # NaN entry: all NaN
        [fp16.from_float(60000.0)] + [one] * 7,          # one huge value: 1, 0, ...
    ], np.uint16)
    got = F.softmax(rows)
    assert np.all(got[0] == 0)
    assert np.all(fp16.to_float(got[1]) == [0.5, 0, 0, 0, 0.5, 0, 0, 0])
    assert np.all(fp16.to_float(got[2]) == 0.125)
    assert np.all(got[3] == nan)
    assert fp16.to_float(got[4][0]) == 1.0 and np.all(got[4][1:] == 0)


def test_layernorm_close_to_float64():
    seed = 11
    print("seed", seed)
    rng = np.random.default_rng(seed)
    n = 64
    x = rng.standard_normal((32, n)) * 3 + 1
    g = rng.uniform(0.5, 1.5, n)
    b = rng.standard_normal(n) * 0.1
    xb, gb, bb = fp16.from_float(x), fp16.from_float(g), fp16.from_float(b)
    got = fp16.to_float(F.layernorm(xb, gb, bb))
    xf = fp16.to_float(xb)
    mu = xf.mean(-1, keepdims=True)
    want = (xf - mu) / np.sqrt(xf.var(-1, keepdims=True) + 1e-5) * fp16.to_float(gb) + fp16.to_float(bb)
    assert np.abs(got - want).max() < 2e-2


def test_layernorm_large_rms_does_not_overflow():
    n = 256
    x = fp16.from_float(np.linspace(-300, 300, n))
    got = fp16.to_float(F.layernorm(x[None], fp16.from_float(1.0), fp16.from_float(0.0)))
    assert np.all(np.isfinite(got))
    xf = fp16.to_float(x)
    want = (xf - xf.mean()) / xf.std()
    assert np.abs(got[0] - want).max() < 2e-2


def test_layernorm_large_mean_does_not_overflow():
    """Rows whose plain FP16 sum overflows (|mean| x n > 65504) but whose values and
    variance are finite: all 1000 at n = 128 gives beta exactly; 200 + N(0, 50) at n =
    384 (MiniLM's width) and 4600 + N(0, 100) at n = 16 are finite and follow float64
    within what an FP16 sum of n terms allows (5e-2)."""
    seed = 12
    print("seed", seed)
    rng = np.random.default_rng(seed)
    beta = fp16.from_float(0.25)
    got = F.layernorm(np.full((1, 128), fp16.from_float(1000.0), np.uint16),
                      fp16.from_float(1.0), beta)
    assert np.all(got == beta)
    for n, x in ((384, 200 + 50 * rng.standard_normal((4, 384))),
                 (16, 4600 + 100 * rng.standard_normal((4, 16)))):
        xb = fp16.from_float(x)
        got = fp16.to_float(F.layernorm(xb, fp16.from_float(1.0), fp16.from_float(0.0)))
        xf = fp16.to_float(xb)
        assert np.all(np.sum(xf, -1) > 65504) and np.all(np.isfinite(got))
        want = (xf - xf.mean(-1, keepdims=True)) / np.sqrt(xf.var(-1, keepdims=True) + 1e-5)
        assert np.abs(got - want).max() < 5e-2, (n, np.abs(got - want).max())


def test_layernorm_mean_is_the_plain_mean_where_that_is_finite():
    """Where the plain FP16 sum does not overflow and no scaled term is subnormal, the
    scaled mean is bit-identical to ``sum(x) / n`` (FP16 addition commutes with an exact
    power-of-two scaling)."""
    seed = 13
    print("seed", seed)
    rng = np.random.default_rng(seed)
    for n in (16, 100, 384):
        x = fp16.from_float(rng.uniform(1, 8, (16, n)) * rng.choice([-1, 1], (16, n)))
        s_in, n_s = F.mean_scales(n)
        kw = dict(lanes=4, slots=4)
        plain = fp16.div(F.reduce_row(fp16.add, x, 0, **kw), F._fp16_of_int(n))
        scaled = fp16.div(F.reduce_row(fp16.add, fp16.mul(x, s_in), 0, **kw), n_s)
        assert np.array_equal(plain, scaled)


def test_layernorm_mean_scales_are_exact():
    for n in (1, 2, 3, 16, 100, 384, 768, 1024, 2048, 4096):
        s_in, n_s = F.mean_scales(n)
        k = (n - 1).bit_length()
        assert fp16.to_float(np.uint16(s_in)) == 2.0 ** -k
        assert fp16.to_float(np.uint16(n_s)) == n / 2.0 ** k


def test_layernorm_checks_length_and_eps():
    with pytest.raises(ValueError, match=r"^row length must be exactly representable in binary16, not 2049$"):
        F.layernorm(np.zeros((1, 2049), np.uint16), 0x3C00, 0, lanes=1)
    with pytest.raises(ValueError, match=r"^eps must be one binary16 pattern, not an array of shape \(2,\)$"):
        F.layernorm(np.zeros((1, 4), np.uint16), 0x3C00, 0, np.zeros(2, np.uint16))


def erf_gelu(x):
    return np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])


def test_gelu_error_vs_erf_gelu():
    x = fp16.to_float(ALL)
    fin = np.isfinite(x) & (np.abs(x) <= 8)
    got = fp16.to_float(F.gelu(ALL))[fin]
    exact = erf_gelu(x[fin])
    err = np.abs(got - exact)
    half_ulp = np.spacing(np.abs(exact).astype(np.float16)).astype(np.float64) / 2
    print(f"gelu |x|<=8: max abs error {err.max():.3e}, "
          f"max error beyond the output's half ULP {(err - half_ulp).max():.3e}")
    assert (err - half_ulp).max() <= 1e-3
    assert err.max() <= 1.5e-3


def test_gelu_special_values():
    got = F.gelu(np.array([fp16.POS_INF, fp16.NEG_INF, 0x7C01, 0xFE00, 0, 0x8000], np.uint16))
    assert got.tolist() == [fp16.POS_INF, 0x8000, 0x7E00, 0x7E00, 0, 0x8000]
