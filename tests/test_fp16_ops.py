"""Golden binary16 operators (``models/fp16/ops.py``) against independent references.

Arithmetic and flags: Berkeley SoftFloat 3 (``softfloatpy``, RISC-V conventions:
canonical NaN 0x7E00, tininess after rounding). Results also against MPFR (``gmpy2``,
``ieee(16)`` context) in the slow set. Conversions against exact float64 / Python
integer arithmetic (every product involved is exact in float64). Seeds are printed.
"""

import math
import re

import gmpy2
import numpy as np
import pytest
import softfloatpy as sf

from hyflexpim.models import fp16
from hyflexpim.tb.fp16_tb import SPECIALS, _rounding_cases

SEED = 1122


def _f16(x):
    return sf.Float16.from_bytes(int(x).to_bytes(2, "big"))


def _bits(f):
    return int.from_bytes(f.to_bytes(), "big")


def _sf_binary(fn, a, b):
    r = np.empty(len(a), np.int64)
    fl = np.empty(len(a), np.int64)
    for j, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
        sf.set_exception_flags(0)
        r[j] = _bits(fn(_f16(x), _f16(y)))
        fl[j] = sf.get_exception_flags()
    return r, fl


def _pairs(n_random, seed, op=None):
    rng = np.random.default_rng(seed)
    sa, sb = np.meshgrid(SPECIALS, SPECIALS, indexing="ij")
    parts_a = [sa.ravel(), rng.integers(0, 1 << 16, n_random)]
    parts_b = [sb.ravel(), rng.integers(0, 1 << 16, n_random)]
    if op is not None:
        ca, cb = _rounding_cases(op, rng, 3000)
        parts_a.append(ca)
        parts_b.append(cb)
    return (np.concatenate(parts_a).astype(np.uint16), np.concatenate(parts_b).astype(np.uint16))


def _check(got, exp, a, b=None, what=""):
    (gr, gf), (er, ef) = got, exp
    bad = np.nonzero((gr.astype(np.int64) != er) | (gf.astype(np.int64) != ef))[0]
    if len(bad):
        j = bad[0]
        ops = f"a={int(a[j]):#06x}" + ("" if b is None else f" b={int(b[j]):#06x}")
        pytest.fail(f"{what}: {len(bad)} of {len(er)} differ; first {ops}: got "
                    f"{int(gr[j]):#06x}/{int(gf[j]):#04x}, reference {int(er[j]):#06x}/{int(ef[j]):#04x}")


# ----------------------------------------------------------------------------- arithmetic

ARITH = [("add", sf.f16_add), ("sub", sf.f16_sub), ("mul", sf.f16_mul), ("div", sf.f16_div)]


@pytest.mark.parametrize("name,ref", ARITH)
def test_arith_vs_softfloat(name, ref):
    """Every special pair, 100k random pairs, 9k rounding cases: results and flags."""
    seed = SEED + sum(map(ord, name))
    print(f"seed {seed}")
    rounding = {"add": "add", "sub": "add", "mul": "mul", "div": "div"}[name]
    a, b = _pairs(100_000, seed, rounding)
    _check(getattr(fp16, name)(a, b, flags=True), _sf_binary(ref, a, b), a, b, name)


def test_sqrt_exhaustive_vs_softfloat():
    a = np.arange(1 << 16, dtype=np.uint16)
    r = np.empty(len(a), np.int64)
    fl = np.empty(len(a), np.int64)
    for j in range(len(a)):
        sf.set_exception_flags(0)
        r[j] = _bits(sf.f16_sqrt(_f16(j)))
        fl[j] = sf.get_exception_flags()
    _check(fp16.sqrt(a, flags=True), (r, fl), a, what="sqrt")


def test_rounding_cases_hit_ties_and_edges():
    """The rounding-case generator does reach ties, underflow and overflow."""
    rng = np.random.default_rng(SEED)
    a, b = _rounding_cases("mul", rng, 3000)
    _, fl = fp16.mul(a, b, flags=True)
    assert np.any(fl & fp16.UF) and np.any(fl & fp16.OF)
    ex = fp16.to_float(a) * fp16.to_float(b)          # exact in float64
    r = fp16.to_float(fp16.mul(a, b))
    finite = np.isfinite(ex) & np.isfinite(r) & (r != 0)
    ulp = np.exp2(np.maximum(np.floor(np.log2(np.abs(r[finite]))), -14) - 10)
    assert np.sum(np.abs(np.abs(ex[finite] - r[finite]) - ulp / 2) == 0) > 50   # exact ties


def test_signed_zeros_and_nan():
    pz, nz, one = 0x0000, 0x8000, 0x3C00
    assert fp16.add(pz, nz) == pz and fp16.add(nz, nz) == nz and fp16.sub(nz, pz) == nz
    assert fp16.sub(one, one) == pz
    assert fp16.mul(nz, one) == nz and fp16.div(one, nz) == fp16.NEG_INF
    assert fp16.sqrt(nz) == nz
    r, f = fp16.add(0xFC01, one, flags=True)          # signalling NaN (sign set)
    assert r == fp16.CANONICAL_NAN and f == fp16.NV


# ----------------------------------------------------------------------------- ordering

def _ref_key(x):
    v = fp16.to_float(np.uint16(x))
    return (v, 1 if (x & 0x8000) == 0 else 0)           # -0 below +0


def _ref_minmax(a, b, want_max):
    out, fl = [], []
    for x, y in zip(a.tolist(), b.tolist()):
        nx, ny = math.isnan(fp16.to_float(np.uint16(x))), math.isnan(fp16.to_float(np.uint16(y)))
        snan = (nx and not x & 0x200) or (ny and not y & 0x200)
        if nx and ny:
            r = 0x7E00
        elif nx or ny:
            r = y if nx else x
        else:
            kx, ky = _ref_key(x), _ref_key(y)
            r = x if (kx >= ky if want_max else kx <= ky) else y
        out.append(r)
        fl.append(16 if snan else 0)
    return np.array(out), np.array(fl)


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_rules(name):
    seed = SEED + 7
    print(f"seed {seed}")
    a, b = _pairs(20_000, seed)
    _check(getattr(fp16, name)(a, b, flags=True), _ref_minmax(a, b, name == "max"), a, b, name)
    assert fp16.max(0x8000, 0x0000) == 0x0000 and fp16.min(0x0000, 0x8000) == 0x8000


@pytest.mark.parametrize("name,ref", [("lt", sf.f16_lt), ("le", sf.f16_le), ("eq", sf.f16_eq)])
def test_compare_vs_softfloat(name, ref):
    seed = SEED + 11
    print(f"seed {seed}")
    a, b = _pairs(20_000, seed)
    r = np.empty(len(a), np.int64)
    fl = np.empty(len(a), np.int64)
    for j, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
        sf.set_exception_flags(0)
        r[j] = int(ref(_f16(x), _f16(y)))
        fl[j] = sf.get_exception_flags()
    _check(getattr(fp16, name)(a, b, flags=True), (r, fl), a, b, name)


# ----------------------------------------------------------------------------- conversions

def _ref_from_int32(acc, scale):
    r = np.empty(len(acc), np.int64)
    fl = np.empty(len(acc), np.int64)
    for j, (x, s) in enumerate(zip(acc.tolist(), scale.tolist())):
        sv = float(fp16.to_float(np.uint16(s)))
        sf.set_exception_flags(0)
        prod = sf.f64_mul(sf.Float64.from_float(float(x)), sf.Float64.from_float(sv))
        r[j] = _bits(sf.f64_to_f16(prod))               # the f64 product is exact
        fl[j] = sf.get_exception_flags()
    return r, fl


def test_from_int32_vs_softfloat():
    seed = SEED + 13
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    n = 50_000
    mag = np.exp2(rng.uniform(0, 31, n)).astype(np.int64)
    acc = np.clip(np.where(rng.random(n) < 0.5, -mag, mag), -(1 << 31), (1 << 31) - 1)
    scale = rng.integers(0, 1 << 16, n).astype(np.uint16)
    ea, es = np.meshgrid([0, 1, -1, 2049, -4097, (1 << 31) - 1, -(1 << 31), 65520, -65519],
                         SPECIALS, indexing="ij")
    acc = np.concatenate([ea.ravel(), acc])
    scale = np.concatenate([es.ravel().astype(np.uint16), scale])
    _check(fp16.from_int32(acc, scale, flags=True), _ref_from_int32(acc, scale), acc, scale,
           "from_int32")


def test_from_int32_single_rounding():
    """One rounding of acc * scale, where rounding acc to binary16 first would differ."""
    acc = np.arange(2048, 60000, dtype=np.int64)
    scale = 0x3C01                                      # 1 + 2**-10
    exact = acc * (1 + 2 ** -10)                        # exact in float64
    once = np.float16(exact).view(np.uint16)            # numpy: one correct rounding
    twice = fp16.mul(fp16.from_float(acc.astype(np.float64)), scale)
    differ = once != twice
    assert differ.sum() > 100                           # the check below can fail
    assert np.array_equal(fp16.from_int32(acc, scale), once)


def _ref_to_int8(x, s):
    r, fl = [], []
    for xv, sv in zip(x.tolist(), s.tolist()):
        p = float(fp16.to_float(np.uint16(xv))) * float(fp16.to_float(np.uint16(sv)))  # exact
        if math.isnan(p):
            r.append(0)
            fl.append(16)
            continue
        if math.isinf(p):
            r.append(127 if p > 0 else -128)
            fl.append(16)
            continue
        q = round(p)                                    # Python rounds half to even
        if q > 127 or q < -128:
            r.append(127 if q > 127 else -128)
            fl.append(16)
        else:
            r.append(q)
            fl.append(1 if q != p else 0)
    return np.array(r), np.array(fl)


def test_to_int8_vs_reference():
    seed = SEED + 17
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    x = np.arange(1 << 16, dtype=np.uint16)             # every input, several scales
    s = np.where(rng.random(x.size) < 0.5, 0x3C00, rng.integers(0, 1 << 16, x.size))
    s = s.astype(np.uint16)
    xa, sa = np.meshgrid(SPECIALS, SPECIALS, indexing="ij")
    x = np.concatenate([x, xa.ravel()])
    s = np.concatenate([s, sa.ravel().astype(np.uint16)])
    r, f = fp16.to_int8(x, s, flags=True)
    _check((r.astype(np.int64), f), _ref_to_int8(x, s), x, s, "to_int8")
    assert list(fp16.to_int8(fp16.from_float([0.5, 1.5, 2.5, -0.5, -2.5, 127.5, -128.5]),
                             0x3C00)) == [0, 2, 2, 0, -2, 127, -128]


# ----------------------------------------------------------------------------- API

def test_api_shapes_and_broadcast():
    a = np.array([[0x3C00, 0x4000]], np.uint16)
    r, f = fp16.add(a, 0x3C00, flags=True)
    assert r.shape == (1, 2) and r.dtype == np.uint16 and f.dtype == np.uint8
    assert list(r[0]) == [0x4000, 0x4200] and list(f[0]) == [0, 0]
    assert fp16.lt([0x3C00], [0x4000]).dtype == np.bool_


@pytest.mark.parametrize("bad", [-1, 65536, 70000])
def test_bad_bit_pattern(bad):
    with pytest.raises(ValueError, match=rf"^a must hold 16-bit patterns in 0\.\.65535, not {bad}$"):
        fp16.add([bad], [0])


def test_float_input_rejected():
    with pytest.raises(TypeError, match=r"^b must be an integer array of binary16 bit patterns, "
                                        r"not dtype float64$"):
        fp16.mul([1], [1.0])


def test_bad_int32():
    with pytest.raises(ValueError, match=r"^acc must hold INT32 values in "
                                         r"-2147483648\.\.2147483647, not 2147483648$"):
        fp16.from_int32([1 << 31], 0x3C00)


# ----------------------------------------------------------------------------- slow

def _mpfr_bits(v):
    if gmpy2.is_nan(v):
        return 0x7E00
    return int(np.float16(float(v)).view(np.uint16)) if not gmpy2.is_zero(v) else \
        (0x8000 if gmpy2.is_signed(v) else 0)


@pytest.mark.slow
@pytest.mark.parametrize("name,ref", ARITH)
def test_arith_vs_softfloat_1m(name, ref):
    seed = SEED + 100 + sum(map(ord, name))
    print(f"seed {seed}")
    a, b = _pairs(1_000_000, seed, {"sub": "add"}.get(name, name))
    _check(getattr(fp16, name)(a, b, flags=True), _sf_binary(ref, a, b), a, b, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "sqrt"])
def test_results_vs_mpfr(name):
    seed = SEED + 200 + sum(map(ord, name))
    print(f"seed {seed}")
    a, b = _pairs(200_000, seed)
    ctx = gmpy2.ieee(16)
    fn = {"add": gmpy2.add, "sub": gmpy2.sub, "mul": gmpy2.mul, "div": gmpy2.div}.get(name)
    ref = np.empty(len(a), np.int64)
    with gmpy2.context(ctx):
        for j, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
            mx = gmpy2.mpfr(float(fp16.to_float(np.uint16(x))))
            my = gmpy2.mpfr(float(fp16.to_float(np.uint16(y))))
            v = gmpy2.sqrt(mx) if name == "sqrt" else fn(mx, my)
            ref[j] = _mpfr_bits(gmpy2.check_range(v))
    got = (fp16.sqrt(a) if name == "sqrt" else getattr(fp16, name)(a, b)).astype(np.int64)
    bad = np.nonzero(got != ref)[0]
    assert not len(bad), (f"{len(bad)} differ; first a={int(a[bad[0]]):#06x} "
                          f"b={int(b[bad[0]]):#06x}: {int(got[bad[0]]):#06x} vs {int(ref[bad[0]]):#06x}")
