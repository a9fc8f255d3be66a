"""The golden model's fast paths against its straightforward reference path.

``ProgrammedMatrix.run`` (batched GEMM per row group for noisy arrays; ``x @ W`` plus the
saturating conversions only for ideal arrays; batch chunks) must give exactly the
integers of ``_run_reference`` (per tile, every read's held values from its crossbar,
SAR closed form, integer shift-and-add) and of the read-by-read SAR path of
test_models_array, over modes, devices, read noise, offsets, saturating data, odd shapes
and chunk boundaries. Every test prints its seed.
"""

import itertools

import numpy as np
import pytest

from hyflexpim.models import program_matrix
from hyflexpim.models import encoding as enc
from hyflexpim.models.array import DEFAULT_CHUNK, _thresholds, integer_reference
from hyflexpim.models.crossbar import Crossbar, ONE_LSB
from hyflexpim.models.device import DEVICE_NAMES

SEED = 20261202


def rng_for(name):
    seed = SEED + sum(map(ord, name))
    print(f"{name}: seed {seed}")
    return np.random.default_rng(seed)


def saturating_data(rng, m, n, batch):
    """Weights and inputs that drive many bitlines above the ADC range: positive
    weights (top slices at 1 / high levels) and inputs with most bits set (-1, -2, ...)."""
    W = rng.integers(60, 128, (m, n))
    W[:, ::3] = rng.integers(-128, 128, (m, len(range(0, n, 3))))
    x = -rng.integers(1, 4, (batch, m))
    x[::2] = rng.integers(-128, 128, (len(range(0, batch, 2)), m))
    return W, x


def reference_saturated(pm, x, first_vector=0):
    """Conversions of used slots above the top code, read by read from the crossbars."""
    planes = enc.bit_planes(x)
    total = 0
    for t in pm.tiles:
        S = enc.slices_per_weight(t.mode)
        wl = np.zeros((8, x.shape[0], pm.params.rows), dtype=np.int64)
        wl[:, :, :len(t.rows_idx)] = planes[:, :, t.rows_idx]
        kw = {}
        if t.crossbar.has_read_noise:
            kw = dict(vector=first_vector + np.arange(x.shape[0])[None, :],
                      plane=np.arange(8)[:, None])
        held = t.crossbar.held_values(wl, **kw)
        codes = np.floor_divide(held + ONE_LSB // 2, ONE_LSB)
        total += int((codes[..., :len(t.out_idx) * S] > pm.params.max_code(t.mode)).sum())
    return total


def check(pm, x, first_vector=0, chunks=(DEFAULT_CHUNK, 1, 3)):
    ref = pm._run_reference(x, first_vector)
    for c in chunks:
        y = pm.run(x, first_vector=first_vector, chunk=c, wide=True)
        assert np.array_equal(y, ref), f"chunk {c}"
    assert pm.saturated(x, first_vector=first_vector, chunk=chunks[-1]) == \
        reference_saturated(pm, x, first_vector)
    return ref


MODES = ["slc", "mlc", "mixed", "rows"]


def program(W, kind, rng, **kw):
    if kind == "mixed":
        return program_matrix(W, list(rng.choice(["slc", "mlc"], W.shape[1])), **kw)
    if kind == "rows":
        return program_matrix(W, "slc", row_modes=list(rng.choice(["slc", "mlc"], W.shape[0])),
                              **kw)
    return program_matrix(W, kind, **kw)


@pytest.mark.parametrize("kind", MODES)
@pytest.mark.parametrize("shape", [(64, 16), (100, 70), (130, 33), (7, 5)])
@pytest.mark.parametrize("saturate", [False, True, "all"])
def test_ideal_fast_path_is_exact(kind, shape, saturate):
    # "all": every vector saturates, so most conversions are flagged and whole groups
    # take the bit-serial path
    rng = rng_for(f"ideal-{kind}-{shape}-{saturate}")
    m, n = shape
    if saturate:
        W, x = saturating_data(rng, m, n, 9)
        if saturate == "all":
            x = -rng.integers(1, 3, x.shape)
    else:
        W, x = rng.integers(-128, 128, (m, n)), rng.integers(-128, 128, (9, m))
    pm = program(W, kind, rng)
    assert pm._ideal
    ref = check(pm, x)
    if kind in ("slc", "mlc"):
        assert np.array_equal(ref, integer_reference(x, W, kind))
    if saturate and m >= 64 and kind != "rows":
        assert pm.saturated(x) > 0 and not np.array_equal(ref, x @ W)


@pytest.mark.parametrize("device", DEVICE_NAMES)
@pytest.mark.parametrize("kind", ["slc", "mlc", "mixed"])
def test_noisy_fast_path_is_exact_for_every_device(device, kind):
    rng = rng_for(f"device-{device}-{kind}")
    W, x = rng.integers(-128, 128, (100, 40)), rng.integers(-128, 128, (7, 100))
    pm = program(W, kind, rng, device=device, seed=3)
    check(pm, x)


@pytest.mark.parametrize("kind", MODES)
@pytest.mark.parametrize("offset", ["reference", "nominal"])
@pytest.mark.parametrize("saturate", [False, True])
def test_read_noise_fast_path_is_exact(kind, offset, saturate):
    rng = rng_for(f"read-{kind}-{offset}-{saturate}")
    m, n = 90, 45
    if saturate:
        W, x = saturating_data(rng, m, n, 6)
    else:
        W, x = rng.integers(-128, 128, (m, n)), rng.integers(-128, 128, (6, m))
    pm = program(W, kind, rng, ber=0.0404, read_noise=0.01, seed=5, offset=offset)
    assert pm.read_noise
    check(pm, x, first_vector=17)


def test_read_noise_per_level_sigmas_are_exact():
    # a table whose read sigma differs per level takes the GEMM of the variances
    rng = rng_for("read-per-level")
    dev = {md: np.linspace(0.002, 0.01, enc.levels_per_cell(md)) for md in enc.MODES}
    from hyflexpim.models import load_device
    pm = program_matrix(rng.integers(-128, 128, (70, 20)), ["slc", "mlc"] * 10,
                        device=load_device().with_read_noise(dev), seed=2)
    check(pm, rng.integers(-128, 128, (5, 70)), first_vector=3)


@pytest.mark.parametrize("kind", MODES)
@pytest.mark.parametrize("saturate", [False, True])
def test_noisy_saturating_and_odd_shapes(kind, saturate):
    rng = rng_for(f"noisy-{kind}-{saturate}")
    for m, n in [(65, 17), (129, 31), (3, 100)]:
        if saturate:
            W, x = saturating_data(rng, m, n, 5)
        else:
            W, x = rng.integers(-128, 128, (m, n)), rng.integers(-128, 128, (5, m))
        pm = program(W, kind, rng, ber=0.0404, seed=9)
        check(pm, x)
        if saturate and m >= 64 and kind != "rows":
            assert pm.saturated(x) > 0


@pytest.mark.parametrize("ideal", [True, False])
def test_chunk_boundaries(ideal):
    # chunks that split the batch unevenly, a chunk larger than the batch, vectors one by one
    rng = rng_for(f"chunks-{ideal}")
    W, x = saturating_data(rng, 96, 50, 19)
    kw = {} if ideal else dict(ber=0.0404, read_noise=0.005, seed=1)
    pm = program_matrix(W, ["mlc", "slc"] * 25, **kw)
    ref = pm._run_reference(x, 4)
    for c in (1, 2, 5, 18, 19, 20, 1000):
        assert np.array_equal(pm.run(x, chunk=c, first_vector=4, wide=True), ref), c
    one = np.stack([pm.run(x[v], first_vector=4 + v) for v in range(len(x))])
    assert np.array_equal(one, ref)
    with pytest.raises(ValueError, match="chunk must be"):
        pm.run(x, chunk=0)


def test_float64_group_when_float32_is_not_exact():
    # a huge sigma makes the held values exceed the float32 grid: the group falls back
    rng = rng_for("float64")
    W, x = rng.integers(-128, 128, (64, 16)), rng.integers(-128, 128, (4, 64))
    pm = program_matrix(W, "mlc", sigma=300.0, seed=1)
    assert pm._groups[0].dtype == np.float64
    assert pm.tiles[0].crossbar._word.dtype != np.int16
    check(pm, x)


def test_bytes_per_cell():
    rng = rng_for("bytes")
    W = rng.integers(-128, 128, (256, 192))
    for mode in ("slc", "mlc"):
        ideal = program_matrix(W, mode)
        noisy = program_matrix(W, mode, ber=0.0404, seed=1)
        per_ideal, per_noisy = ideal.nbytes / ideal.cells, noisy.nbytes / noisy.cells
        print(mode, "bytes per cell: ideal", per_ideal, "noisy", per_noisy)
        assert per_ideal <= 1 + 1 / enc.slices_per_weight(mode)
        assert per_noisy <= 2.0
    mixed = program_matrix(W, list(rng.choice(["slc", "mlc"], 192)), ber=0.0404, seed=1)
    assert mixed.nbytes / mixed.cells <= 2.01       # + the index arrays of a mixed tiling


@pytest.mark.parametrize("mode", ["slc", "mlc"])
def test_crossbar_storage_roundtrip(mode):
    rng = rng_for(f"storage-{mode}")
    L = enc.levels_per_cell(mode)
    lv = rng.integers(0, L, (64, 128))
    ideal = Crossbar(lv, mode)
    assert ideal.nbytes == lv.size and ideal.is_ideal
    assert np.array_equal(ideal.levels, lv) and np.array_equal(ideal.held, lv * ONE_LSB)
    noisy = Crossbar(lv, mode, device="neurram-1d", rng=np.random.default_rng(1))
    assert noisy.nbytes == 2 * lv.size and not noisy.is_ideal
    assert np.array_equal(noisy.levels, lv)
    # the held values are those of the device law, decoded from the 16-bit words
    dev = noisy.device
    g = np.random.default_rng(1)
    mu, sg = dev.levels(mode), dev.sigmas(mode)
    G = np.maximum(mu[lv] + sg[lv] * g.standard_normal(lv.shape), -dev.g_off)
    ref = np.maximum(mu[0] + sg[0] * g.standard_normal(64), -dev.g_off)
    scale = (L - 1) * ONE_LSB
    expect = np.rint(G * scale).astype(np.int64) - np.rint(ref * scale).astype(np.int64)[:, None]
    assert np.array_equal(noisy.held, expect)
    wl = rng.integers(0, 2, (5, 64))
    assert np.array_equal(noisy.held_values(wl), wl @ expect)


def test_thresholds_match_brute_force():
    # the counts of active rows with which some read clips, against every subset of rows
    rng = rng_for("thresholds")
    for _ in range(30):
        held = rng.integers(-900, 2600, (7, 5))
        mc = int(rng.integers(1, 6))
        p_hi, q_hi, p_lo, q_lo = _thresholds(held, mc)
        for c in range(5):
            for p in range(0, 8):
                sums = [held[list(s), c].sum() for s in itertools.combinations(range(7), p)]
                codes = [(v + ONE_LSB // 2) // ONE_LSB for v in sums]
                assert (max(codes) > mc) == (p_hi[c] <= p <= q_hi[c]), (c, p)
                assert (min(codes) < 0) == (p_lo[c] <= p <= q_lo[c]), (c, p)


def test_counter_normal_grid_equals_counter_normal():
    from hyflexpim.models.crossbar import counter_normal, counter_normal_grid
    rng = rng_for("grid")
    keys = [int(k) for k in rng.integers(0, 2 ** 63, 3)] + [2 ** 64 - 1]
    v, b = rng.integers(0, 2 ** 40, 11), rng.integers(0, 8, 11)
    z = counter_normal_grid(keys, v, b, np.arange(9))
    for t, k in enumerate(keys):
        assert np.array_equal(z[:, t], counter_normal(k, v[:, None], b[:, None], np.arange(9)))


@pytest.mark.parametrize("mode", ["slc", "mlc"])
def test_noisy_codes_below_zero_are_clipped(mode):
    # weights near 0 leave whole columns at level 0: their held values are noise only, and
    # reads with a few active rows convert below code 0 (clipped to 0 by the ADC)
    rng = rng_for(f"low-{mode}")
    W = rng.integers(-2, 3, (64, 32))
    x = rng.integers(-128, 128, (40, 64))
    x[::3] = rng.choice([0, 1, 2, 4], (len(range(0, 40, 3)), 64))
    pm = program_matrix(W, mode, sigma=0.5, noise="additive", seed=2)
    planes = enc.bit_planes(x)
    held = pm.tiles[0].crossbar.held_values(planes.astype(np.int64))
    assert ((held + ONE_LSB // 2) // ONE_LSB < 0).sum() > 0
    check(pm, x)
