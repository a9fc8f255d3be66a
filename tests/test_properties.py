"""Property-based tests (Hypothesis) of the golden models.

* ``program_matrix`` (models/array.py) against exact integer math: shapes, per-array,
  per-column and per-row modes, array geometries, noise-free devices and both offset
  removals. Without possible saturation (``saturation_possible`` false) the outputs are
  ``x @ W`` exactly; with it they equal the integer pipeline with clipped codes
  (``integer_reference``, per mode).
* The binary16 operators (models/fp16/ops.py) against Berkeley SoftFloat
  (``softfloatpy``): results and exception flags, plus algebraic identities that need no
  reference; layer norm's ``eps`` range.
* The encoding (models/encoding.py): weight slices and input bit-planes round trip.
* The architecture mapper (sim/arch/mapper.py): every weight has a cell, every rank or
  neuron is in exactly one group, arrays placed <= arrays available, every matrix of
  every layer mapped, placed chunks inside their PU and not overlapping.

Bounded: each test has its own ``max_examples``; ``derandomize=True`` makes every run
draw the same examples (set ``HYFLEXPIM_HYPOTHESIS_SEED`` to draw others: the seed is
printed); a failure prints its example (``HYFLEXPIM_HYPOTHESIS_SHRINK=1``: the minimal one).
"""

import math
import os
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings, strategies as st

from hyflexpim.models import encoding as enc
from hyflexpim.models import fp16
from hyflexpim.models.array import (ArrayParams, integer_reference, program_matrix,
                                    saturation_possible)
from hyflexpim.models.fp16 import functions as F

_SEED = os.environ.get("HYFLEXPIM_HYPOTHESIS_SEED")
if _SEED is not None:
    print(f"Hypothesis seed {_SEED} (HYFLEXPIM_HYPOTHESIS_SEED)")


#: Shrinking a failure to its minimal example can take minutes; off unless asked for.
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target] + (
    [Phase.shrink] if os.environ.get("HYFLEXPIM_HYPOTHESIS_SHRINK") else [])


def bounded(n):
    """Settings of one property: ``n`` examples, no deadline, reproducible, no shrinking
    (``HYFLEXPIM_HYPOTHESIS_SHRINK=1`` turns it on)."""
    s = settings(max_examples=n, deadline=None, derandomize=_SEED is None, database=None,
                 phases=_PHASES,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

    def wrap(fn):
        fn = s(fn)
        return seed(int(_SEED))(fn) if _SEED is not None else fn
    return wrap


# ======================================================================================
# program_matrix against exact integer math

ROWS = st.sampled_from([1, 3, 8, 16, 32, 64, 128])
COLS = st.sampled_from([8, 16, 32, 64, 128])


def _bits_for(levels_max):
    return max(1, math.ceil(math.log2(levels_max + 1)))


@st.composite
def exact_geometry(draw):
    """(rows, cols, slc_bits, mlc_bits) whose ADC never saturates in either mode."""
    rows = draw(ROWS)
    need_mlc = _bits_for(rows * (enc.levels_per_cell("mlc") - 1))
    need_slc = _bits_for(rows)
    mlc = draw(st.integers(max(need_mlc, need_slc), 16))
    slc = draw(st.integers(need_slc, mlc))
    return rows, draw(COLS), slc, mlc


@st.composite
def geometry(draw):
    """Any valid geometry (saturation possible)."""
    rows = draw(ROWS)
    mlc = draw(st.integers(1, 10))
    return rows, draw(COLS), draw(st.integers(1, mlc)), mlc


def int8(draw, shape, extreme=0.3):
    """An INT8 array, often at the range ends (the overflow and saturation cases)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    a = rng.integers(-128, 128, shape)
    if draw(st.floats(0, 1)) < extreme:
        a = np.where(rng.random(shape) < 0.5, rng.choice([-128, 127], shape), a)
    return a.astype(np.int64)


@st.composite
def problem(draw, geom=exact_geometry()):
    rows, cols, slc_bits, mlc_bits = draw(geom)
    m = draw(st.integers(1, 3 * rows if rows >= 16 else 70))
    n = draw(st.integers(1, 70))
    batch = draw(st.integers(0, 5))
    kind = draw(st.sampled_from(["slc", "mlc", "columns", "rows"]))
    W = int8(draw, (m, n))
    x = int8(draw, (batch, m))
    if kind == "columns":
        modes = draw(st.lists(st.sampled_from(enc.MODES), min_size=n, max_size=n))
    elif kind == "rows":
        modes = draw(st.lists(st.sampled_from(enc.MODES), min_size=m, max_size=m))
    else:
        modes = kind
    noise_off = draw(st.sampled_from([{}, {"device": "ideal"}, {"sigma": 0.0},
                                      {"sigma": 0.0, "noise": "additive"}]))
    offset = draw(st.sampled_from(["reference", "nominal"]))
    return dict(rows=rows, cols=cols, slc_bits=slc_bits, mlc_bits=mlc_bits, W=W, x=x,
                kind=kind, modes=modes, noise_off=noise_off, offset=offset)


def _program(p):
    kw = dict(rows=p["rows"], cols=p["cols"], slc_bits=p["slc_bits"], mlc_bits=p["mlc_bits"],
              offset=p["offset"], saturation="allow", **p["noise_off"])
    if p["kind"] == "rows":
        return program_matrix(p["W"], "slc", row_modes=p["modes"], **kw)
    return program_matrix(p["W"], p["modes"], **kw)


def _reference(p):
    """The integer pipeline (clipped codes) of ``integer_reference``, mode by mode."""
    W, x = p["W"], p["x"]
    params = ArrayParams(p["rows"], p["cols"], p["slc_bits"], p["mlc_bits"])
    y = np.zeros((x.shape[0], W.shape[1]), np.int64)
    if x.shape[0] == 0:
        return y
    if p["kind"] in ("slc", "mlc"):
        return integer_reference(x, W, p["kind"], params)
    modes = np.array(p["modes"])
    for md in enc.MODES:
        sel = np.flatnonzero(modes == md)
        if not len(sel):
            continue
        if p["kind"] == "columns":
            y[:, sel] = integer_reference(x, W[:, sel], md, params)
        else:
            y += integer_reference(x[:, sel], W[sel], md, params)
    return y


def _modes_used(p):
    return set(enc.MODES) & set([p["modes"]] if isinstance(p["modes"], str) else p["modes"])


@bounded(60)
@given(problem())
def test_program_matrix_is_exact_without_saturation(p):
    params = ArrayParams(p["rows"], p["cols"], p["slc_bits"], p["mlc_bits"])
    assert not any(saturation_possible(params, md) for md in enc.MODES)
    pm = _program(p)
    y = pm.run(p["x"])
    assert y.shape == (p["x"].shape[0], p["W"].shape[1]) and y.dtype == np.int32
    assert np.array_equal(y.astype(np.int64), p["x"] @ p["W"])
    assert pm.saturated(p["x"]) == 0
    assert np.array_equal(pm.run(p["x"], wide=True), p["x"] @ p["W"])


@bounded(60)
@given(problem(geometry()))
def test_program_matrix_equals_the_clipped_integer_pipeline(p):
    pm = _program(p)
    ref = _reference(p)
    assert np.array_equal(pm.run(p["x"], wide=True), ref)
    params = ArrayParams(p["rows"], p["cols"], p["slc_bits"], p["mlc_bits"])
    if not any(saturation_possible(params, md) for md in _modes_used(p)):
        assert np.array_equal(ref, p["x"] @ p["W"])


@bounded(40)
@given(problem(geometry()))
def test_program_matrix_tiles_and_single_vectors(p):
    pm = _program(p)
    m, n = p["W"].shape
    params = ArrayParams(p["rows"], p["cols"], p["slc_bits"], p["mlc_bits"])
    if p["kind"] in ("slc", "mlc"):          # one mode: the plain tiling count
        assert pm.arrays == math.ceil(m / p["rows"]) * math.ceil(n / params.neurons(p["kind"]))
    assert all(len(t.rows_idx) <= p["rows"] for t in pm.tiles)
    assert all(len(t.out_idx) <= params.neurons(t.mode) for t in pm.tiles)
    if p["x"].shape[0]:
        whole = pm.run(p["x"], wide=True)
        assert np.array_equal(pm.run(p["x"][0], wide=True), whole[0])


# ======================================================================================
# encoding round trips


@bounded(80)
@given(st.data(), st.sampled_from(enc.MODES), st.integers(1, 20), st.integers(1, 20))
def test_weight_slices_round_trip(data, mode, m, n):
    w = int8(data.draw, (m, n), extreme=0.5)
    lv = enc.encode_weights(w, mode).astype(np.int64)
    s = enc.slices_per_weight(mode)
    assert lv.shape == (m, n * s)
    assert lv.min() >= 0 and lv.max() <= enc.levels_per_cell(mode) - 1
    cw = np.array([enc.column_weight(mode, k) for k in range(s)])
    back = (lv.reshape(m, n, s) * cw).sum(-1) - enc.WEIGHT_OFFSET
    assert np.array_equal(back, w)


@bounded(80)
@given(st.data(), st.integers(0, 6), st.integers(1, 40))
def test_bit_planes_round_trip_and_offset(data, batch, m):
    x = int8(data.draw, (batch, m), extreme=0.5)
    planes = enc.bit_planes(x).astype(np.int64)
    assert planes.shape == (enc.INPUT_BITS, batch, m) and set(np.unique(planes)) <= {0, 1}
    back = sum(enc.plane_weight(b) * planes[b] for b in range(enc.INPUT_BITS))
    assert np.array_equal(back, x)
    assert np.array_equal(enc.offset_correction(x), -128 * x.sum(-1))


@bounded(40)
@given(st.data(), st.sampled_from(enc.MODES), st.integers(1, 40), st.integers(1, 12))
def test_encoded_dot_product_is_exact(data, mode, m, n):
    """sum_b pw(b) sum_k cw(k) (plane_b @ level_k) - 128 sum(x) == x @ w."""
    w = int8(data.draw, (m, n), extreme=0.5)
    x = int8(data.draw, (3, m), extreme=0.5)
    s = enc.slices_per_weight(mode)
    lv = enc.encode_weights(w, mode).astype(np.int64).reshape(m, n, s)
    planes = enc.bit_planes(x).astype(np.int64)
    cw = np.array([enc.column_weight(mode, k) for k in range(s)])
    y = sum(enc.plane_weight(b) * np.einsum("bm,mnk,k->bn", planes[b], lv, cw)
            for b in range(enc.INPUT_BITS)) + enc.offset_correction(x)[:, None]
    assert np.array_equal(y, x @ w)


@bounded(30)
@given(st.one_of(st.none(), st.integers(), st.just("tlc"), st.just(""), st.floats()))
def test_bad_modes_are_named(mode):
    with pytest.raises(ValueError, match=r"^mode must be 'slc' or 'mlc', not "):
        enc.check_mode(mode)
    with pytest.raises(ValueError, match=r"^mode must be 'slc'"):
        program_matrix(np.zeros((2, 2), np.int64), mode)


# ======================================================================================
# binary16 operators against SoftFloat

sf = pytest.importorskip("softfloatpy")

SPECIAL = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3BFF, 0x3C00, 0x3C01, 0xBC00,
           0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0x7D00, 0xFD00, 0x7FFF]
HALF = st.one_of(st.integers(0, 0xFFFF), st.sampled_from(SPECIAL),
                 st.floats(width=16, allow_nan=False).map(
                     lambda v: int(np.float16(v).view(np.uint16))))
HALVES = st.lists(HALF, min_size=1, max_size=64)


def _f16(x):
    return sf.Float16.from_bytes(int(x).to_bytes(2, "big"))


def _b(f):
    return int.from_bytes(f.to_bytes(), "big")


def _sf(fn, *cols):
    res, flags = [], []
    for args in zip(*cols):
        sf.set_exception_flags(0)
        r = fn(*(_f16(a) for a in args))
        res.append(int(r) if isinstance(r, bool) else _b(r))
        flags.append(sf.get_exception_flags())
    return np.array(res, np.int64), np.array(flags, np.int64)


def _same(got, want, what, *cols):
    (gr, gf), (wr, wf) = got, want
    bad = np.flatnonzero((gr.astype(np.int64) != wr) | (gf.astype(np.int64) != wf))
    assert not len(bad), (f"{what}({', '.join(f'{int(c[bad[0]]):#06x}' for c in cols)}) = "
                          f"{int(gr[bad[0]]):#06x}/{int(gf[bad[0]]):#x}, SoftFloat "
                          f"{int(wr[bad[0]]):#06x}/{int(wf[bad[0]]):#x}")


BINARY = [("add", "f16_add"), ("sub", "f16_sub"), ("mul", "f16_mul"), ("div", "f16_div"),
          ("lt", "f16_lt"), ("le", "f16_le"), ("eq", "f16_eq")]


@pytest.mark.parametrize("name,ref", BINARY)
@bounded(60)
@given(data=st.data())
def test_fp16_binary_ops_vs_softfloat(name, ref, data):
    a = np.array(data.draw(HALVES), np.uint16)
    b = np.array(data.draw(st.lists(HALF, min_size=len(a), max_size=len(a))), np.uint16)
    _same(getattr(fp16, name)(a, b, flags=True), _sf(getattr(sf, ref), a, b), name, a, b)


@bounded(80)
@given(HALVES)
def test_fp16_sqrt_vs_softfloat(a):
    a = np.array(a, np.uint16)
    _same(fp16.sqrt(a, flags=True), _sf(sf.f16_sqrt, a), "sqrt", a)


@bounded(60)
@given(st.lists(st.integers(-(1 << 31), (1 << 31) - 1), min_size=1, max_size=32), HALF)
def test_fp16_from_int32_vs_softfloat(acc, scale):
    """One rounding of acc * scale: SoftFloat's exact f64 product rounded to binary16."""
    acc = np.array(acc, np.int64)
    sv = float(fp16.to_float(np.uint16(scale)))
    res, flags = [], []
    for x in acc.tolist():
        sf.set_exception_flags(0)
        prod = sf.f64_mul(sf.Float64.from_float(float(x)), sf.Float64.from_float(sv))
        res.append(_b(sf.f64_to_f16(prod)))
        flags.append(sf.get_exception_flags())
    _same(fp16.from_int32(acc, np.uint16(scale), flags=True),
          (np.array(res), np.array(flags)), "from_int32", acc)


@bounded(60)
@given(HALVES, HALVES)
def test_fp16_identities(a, b):
    """Identities every IEEE implementation keeps (NaN results are canonical)."""
    n = min(len(a), len(b))
    a, b = np.array(a[:n], np.uint16), np.array(b[:n], np.uint16)
    assert np.array_equal(fp16.add(a, b), fp16.add(b, a))
    assert np.array_equal(fp16.mul(a, b), fp16.mul(b, a))
    assert np.array_equal(fp16.sub(a, b), fp16.add(a, b ^ np.uint16(0x8000)))
    assert np.array_equal(fp16.max(a, b), fp16.max(b, a))
    assert not np.any(fp16.lt(a, b) & fp16.lt(b, a))
    assert np.array_equal(fp16.le(a, b), fp16.lt(a, b) | fp16.eq(a, b))
    nan = fp16.is_nan(a)
    back = fp16.from_float(fp16.to_float(a))
    assert np.array_equal(back[~nan], a[~nan])
    assert np.all(fp16.le(a, a) == ~nan) and np.all(fp16.eq(a, a) == ~nan)


# ---- layer norm eps ------------------------------------------------------------------

BAD_EPS = st.one_of(st.just(0x0000), st.integers(0x7C00, 0xFFFF))   # +0, Inf, NaN, negatives


@bounded(60)
@given(BAD_EPS)
def test_layernorm_refuses_eps_that_is_not_positive_finite(eps):
    x = np.array([[0x3C00, 0x4000, 0x4200, 0x4400]], np.uint16)
    with pytest.raises(ValueError, match=r"^eps must be a positive finite binary16 pattern in "
                                         r"0x0001\.\.0x7BFF \(2\*\*-24\.\.65504\), not 0x"):
        F.layernorm(x, 0x3C00, 0, eps)


@bounded(40)
@given(st.integers(F.EPS_MIN, F.EPS_MAX), st.lists(st.integers(-1000, 1000), min_size=4,
                                                   max_size=4))
def test_layernorm_eps_in_range_gives_finite_results(eps, row):
    """Any positive finite eps: finite outputs, also for a constant row (var = 0)."""
    x = fp16.from_float(np.array([row, [row[0]] * 4], np.float64))
    y = F.layernorm(x, fp16.from_float(1.0), fp16.from_float(0.0), eps)
    assert not fp16.is_nan(y).any()
    assert np.all(np.isfinite(fp16.to_float(y)))


def test_layernorm_eps_negative_one_is_refused():
    """The case of the issue: eps = -1.0 used to give [-3, -1, 1, 3] for [1, 2, 3, 4]."""
    x = fp16.from_float(np.array([[1.0, 2.0, 3.0, 4.0]]))
    with pytest.raises(ValueError, match=r"not 0xBC00 \(-1\.0\)$"):
        F.layernorm(x, fp16.from_float(1.0), fp16.from_float(0.0), fp16.from_float(-1.0))


# ======================================================================================
# architecture mapper invariants

from hyflexpim.sim.arch import mapper as M          # noqa: E402
from hyflexpim.sim.arch.models import Transformer  # noqa: E402


@bounded(100)
@given(st.integers(2, 3000), st.integers(2, 3000), st.booleans(), st.data(),
       st.sampled_from([(64, 128), (32, 64), (128, 256), (16, 8)]), st.sampled_from([4, 8]))
def test_map_matrix_gives_every_weight_a_cell(m, n, svd, data, geom, wbits):
    rows, cols = geom
    r = M.kept_rank(m, n) if svd else n
    k = data.draw(st.integers(0, r))
    idx = None
    if data.draw(st.booleans()):
        idx = sorted(data.draw(st.sets(st.integers(0, r - 1), min_size=k, max_size=k)))
    mm = M.map_matrix("q", m, n, svd=svd, k_slc=k, slc_indices=idx, rows=rows, cols=cols,
                      weight_bits=wbits)
    assert mm.rank == r and mm.arrays == sum(g.arrays for g in mm.groups)
    assert sum(mm.arrays_by_mode().values()) == mm.arrays
    for g in mm.groups:
        assert g.arrays * g.array_rows * g.npa >= g.rows * g.neurons    # a cell per weight
        assert (g.row_chunks - 1) * rows < g.rows <= g.row_chunks * rows
        assert (g.col_chunks - 1) * g.npa < g.neurons <= g.col_chunks * g.npa
    by_factor = defaultdict(list)
    for g in mm.groups:
        by_factor[g.factor].append(g)
    if svd:
        assert sum(g.neurons for g in by_factor["A"]) == r and all(g.rows == m for g in by_factor["A"])
        assert sum(g.rows for g in by_factor["B"]) == r and all(g.neurons == n for g in by_factor["B"])
    else:
        assert sum(g.neurons for g in by_factor["W"]) == n and all(g.rows == m for g in by_factor["W"])
    for fac, gs in by_factor.items():          # SLC and MLC indices partition the ranks
        if idx is not None:
            got = sorted(i for g in gs for i in g.indices)
            assert got == list(range(r)), fac
            slc = [i for g in gs if g.mode == "slc" for i in g.indices]
            assert sorted(slc) == idx
        assert sum(g.neurons if fac != "B" else g.rows for g in gs if g.mode == "slc") == k


def test_one_wide_matrix_maps():
    assert M.map_matrix("q", 128, 1).arrays >= 1
    assert M.plan(Transformer("thin", 1, 8, 1, 1), 4, 0.1).layers


@st.composite
def small_model(draw):
    heads = draw(st.sampled_from([1, 2, 4, 8, 16]))
    head_dim = draw(st.sampled_from([8, 16, 32, 64]))
    kind = draw(st.sampled_from(["encoder", "decoder"]))
    act = draw(st.sampled_from(["gelu", "swiglu"]))
    kv = draw(st.sampled_from([h for h in (1, 2, 4, 8, 16) if h <= heads and heads % h == 0]))
    return Transformer("prop", draw(st.integers(1, 30)), heads * head_dim, heads,
                       draw(st.integers(2, 4096)), kind, kv_heads=kv, ffn_act=act)


def _spans_disjoint(spans):
    spans = sorted(spans)
    return all(a1 <= b0 for (_, a1), (b0, _) in zip(spans, spans[1:]))


@bounded(40)
@given(st.one_of(small_model(), st.sampled_from(["bert-base", "gpt2", "llama-3.2-1b"])),
       st.integers(1, 512), st.floats(0, 1), st.sampled_from(list(M.PIM_DESIGNS)),
       st.sampled_from(["sequence", "overlap"]), st.booleans())
def test_plan_maps_every_matrix_within_the_arrays(model, seq, slc, design, schedule, svd):
    try:
        pl = M.plan(model, seq, slc, design, schedule=schedule, svd=svd)
    except M.FitError:
        return                                   # too big for a chip: a stated error
    p = pl.params
    s = pl.summary()
    mdl = pl.model
    assert len(pl.layers) == mdl.layers
    for lm in pl.layers:                         # every matrix of every layer mapped
        assert set(lm.matrices) == set(mdl.matrices())
        for role, (m, n) in mdl.matrices().items():
            mm = lm.matrices[role]
            assert (mm.m, mm.n) == (m, n) and mm.arrays > 0
    assert s["arrays_slc"] + s["arrays_mlc"] <= s["arrays_available"]
    assert 0 < s["array_utilisation"] <= 1
    assert s["pus_used"] <= s["pus_total"] and pl.pipelines >= 1
    assert pl.chips >= pl.chips_per_pipeline * pl.pipelines
    for i, c in enumerate(pl.copies):
        assert c["qkv"] >= 1 and c["post"] >= 1
        assert pl.arrays_used(i) <= pl.pus_per_layer * p.arrays_per_pu
    # each layer's packing into its PUs: inside a PU, no overlaps, every column tile placed
    C = p.arrays_per_pu
    for lm, c in zip(pl.layers, pl.copies):
        chunks = M.pack(lm, c, pl.pus_per_layer, C, listing=True)
        assert chunks is not None
        per_pu = defaultdict(list)
        placed = defaultdict(int)
        for phase, g, copy, start, k, pu, first in chunks:
            assert 0 <= pu < pl.pus_per_layer and k >= 1
            assert 0 <= first and first + k * g.row_chunks <= C
            per_pu[pu].append((first, first + k * g.row_chunks))
            placed[(phase, copy, id(g))] += k
        for spans in per_pu.values():
            assert _spans_disjoint(spans)
        for ph in ("qkv", "post"):
            for g in lm.phase_groups(ph):
                for copy in range(c[ph]):
                    assert placed[(ph, copy, id(g))] == g.col_chunks
