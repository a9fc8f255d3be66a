"""The fast FP16 engine of the transformer model is bit-identical to models/fp16
(models/transformer_fp16.py)."""

import numpy as np
import pytest

from hyflexpim.models import fp16
from hyflexpim.models import transformer_fp16 as t16

R, F = t16.REFERENCE, t16.FAST
ALL = np.arange(1 << 16, dtype=np.uint16)
SPECIAL = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF,
                    0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE00, 0x3555, 0x57F0],
                   dtype=np.uint16)


def _pairs(seed, n=200_000):
    g = np.random.default_rng(seed)
    print("seed", seed)
    a = g.integers(0, 1 << 16, n).astype(np.uint16)
    b = g.integers(0, 1 << 16, n).astype(np.uint16)
    # every special value against every other one, and operands of close magnitude
    sa, sb = np.meshgrid(SPECIAL, SPECIAL)
    close = (a ^ g.integers(0, 8, n).astype(np.uint16)).astype(np.uint16)
    return np.concatenate([a, sa.ravel(), a]), np.concatenate([b, sb.ravel(), close])


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "max", "min"])
def test_binary_operators_bit_identical(name):
    a, b = _pairs(1)
    assert np.array_equal(getattr(F, name)(a, b), getattr(R, name)(a, b))
    if hasattr(t16.NUMPY_OPS, name):            # the operators used without torch
        assert np.array_equal(getattr(t16.NUMPY_OPS, name)(a, b), getattr(R, name)(a, b))


def test_broadcast_operands():
    a, b = _pairs(6, 300)
    grid = F.add(a[:, None], b[None, :50])
    assert np.array_equal(grid, R.add(a[:, None], b[None, :50]))
    assert np.array_equal(F.mul(np.broadcast_to(a[:5, None], (5, 7)), 0x3C00),
                          np.broadcast_to(a[:5, None], (5, 7)))


def test_unary_and_elementwise_functions_exhaustive():
    assert np.array_equal(F.sqrt(ALL), R.sqrt(ALL))
    assert np.array_equal(t16.NUMPY_OPS.sqrt(ALL), R.sqrt(ALL))
    assert np.array_equal(F.is_nan(ALL), R.is_nan(ALL))
    assert np.array_equal(F.exp(ALL), R.exp(ALL))
    assert np.array_equal(F.gelu(ALL), R.gelu(ALL))
    assert np.array_equal(F.exp(ALL, degree=2), R.exp(ALL, degree=2))


def test_conversions_bit_identical():
    g = np.random.default_rng(2)
    print("seed", 2)
    scale = np.concatenate([g.integers(0, 1 << 16, 50_000), SPECIAL]).astype(np.uint16)
    for hi in (1 << 31, 5000):
        acc = g.integers(-hi, hi, scale.size)
        assert np.array_equal(F.from_int32(acc, scale), R.from_int32(acc, scale))
    a, b = _pairs(3)
    assert np.array_equal(F.to_int8(a, b), R.to_int8(a, b))
    e = np.random.default_rng(4).integers(-t16.LDEXP_MAX, t16.LDEXP_MAX + 1, a.size)
    assert np.array_equal(F.ldexp(a, e), R.ldexp(a, e))


def test_ldexp_is_one_rounding():
    x = fp16.from_float(np.array([1.5, -3.0, 2.0 ** -14, 1.0, 65504.0, 1.0]))
    e = np.array([2, -1, -10, -25, 1, -24])
    got = fp16.to_float(F.ldexp(x, e))
    assert got.tolist() == [6.0, -1.5, 2.0 ** -24, 0.0, np.inf, 2.0 ** -24]
    with pytest.raises(ValueError, match="e must be in"):
        F.ldexp(x, np.full(6, 81))
    with pytest.raises(TypeError, match="integer"):
        F.ldexp(x, np.full(6, 1.0))


def test_rows_bit_identical():
    g = np.random.default_rng(5)
    print("seed", 5)
    x = fp16.from_float(g.standard_normal((6, 3, 64)) * g.choice([0.01, 1, 30], (6, 3, 1)))
    x[0, 0, :8] = fp16.NEG_INF
    x[1, 1, :] = fp16.NEG_INF
    for lanes, slots in ((4, 4), (2, 3), (8, 1)):
        kw = dict(lanes=lanes, slots=slots)
        assert np.array_equal(F.softmax(x, **kw), R.softmax(x, **kw))
        gam, bet = x[2, 2], x[3, 2]
        assert np.array_equal(F.layernorm(x, gam, bet, **kw), R.layernorm(x, gam, bet, **kw))


def test_exponent_and_engine_choice():
    x = fp16.from_float(np.array([1.0, 1.99, 0.5, 2.0 ** -24, 2.0 ** -15, 65504.0, 0.0]))
    assert t16.exponent(x).tolist() == [0, 0, -1, -24, -15, 15, 0]
    assert t16.engine("fast") is F and t16.engine("reference") is R
    with pytest.raises(ValueError, match=r"^fp16 engine must be one of 'fast', 'reference', not 'x'$"):
        t16.engine("x")
