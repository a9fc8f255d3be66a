"""Golden model of the analog arrays: encoding, SAR, tiling, noise, errors."""

import math
import re

import numpy as np
import pytest

from hyflexpim.models import program_matrix, ArrayParams, saturation_possible
from hyflexpim.models import encoding as enc
from hyflexpim.models.array import sar_search, sar_codes, integer_reference, max_bitline
from hyflexpim.models.crossbar import (Crossbar, ONE_LSB, ber_from_sigma, sigma_from_ber,
                                       dac_level, G_ON, G_OFF, conductance_levels)

SEED = 20261122


def rng_for(name):
    seed = SEED + sum(map(ord, name))
    print(f"{name}: seed {seed}")
    return np.random.default_rng(seed)


ALL_INT8 = np.arange(-128, 128)


@pytest.mark.parametrize("mode", ["slc", "mlc"])
def test_weight_slices_rebuild_every_int8_weight(mode):
    lv = enc.encode_weights(ALL_INT8[None, :], mode)
    s = enc.slices_per_weight(mode)
    assert lv.shape == (1, 256 * s)
    assert lv.max() == enc.levels_per_cell(mode) - 1
    rebuilt = sum(lv[0, k::s].astype(int) * enc.column_weight(mode, k) for k in range(s))
    assert np.array_equal(rebuilt - 128, ALL_INT8)


def test_bit_planes_rebuild_every_int8_input():
    planes = enc.bit_planes(ALL_INT8)
    rebuilt = sum(enc.plane_weight(b) * planes[b].astype(int) for b in range(8))
    assert np.array_equal(rebuilt, ALL_INT8)


@pytest.mark.parametrize("mode", ["slc", "mlc"])
def test_every_int8_product_is_exact_on_one_row(mode):
    # one row: bitlines never exceed the ADC range, so x * w must come out exactly
    pm = program_matrix(ALL_INT8[None, :], mode)
    y = pm.run(ALL_INT8[:, None])
    assert np.array_equal(y, np.outer(ALL_INT8, ALL_INT8))


@pytest.mark.parametrize("bits,hw_bits", [(6, 7), (7, 7), (4, 5), (1, 3), (10, 10)])
def test_sar_closed_form_equals_step_by_step_search(bits, hw_bits):
    mc = (1 << bits) - 1
    held = np.arange(-3 * ONE_LSB, (mc + 4) * ONE_LSB)
    codes, trials = sar_search(held, bits, hw_bits)
    assert len(trials) == bits            # exactly `bits` comparisons
    assert codes.max() == mc              # never above the mode's range (top bits skipped)
    assert np.array_equal(codes, sar_codes(held, mc))
    # the search is round-to-nearest with halves rounded up, saturating at both ends
    expect = np.clip(np.floor(held / ONE_LSB + 0.5), 0, mc)
    assert np.array_equal(codes, expect)


def test_dac_levels_sit_half_an_lsb_below_each_code():
    assert dac_level(1) == ONE_LSB // 2
    assert dac_level(5) - dac_level(4) == ONE_LSB
    assert Crossbar.compare(ONE_LSB // 2, 1) and not Crossbar.compare(ONE_LSB // 2 - 1, 1)


@pytest.mark.parametrize("mode", ["slc", "mlc"])
@pytest.mark.parametrize("shape", [(64, 16), (100, 70), (130, 33), (7, 5)])
def test_ideal_model_equals_integer_pipeline_and_exact_product(mode, shape):
    rng = rng_for(f"ideal-{mode}-{shape}")
    W = rng.integers(-128, 128, shape)
    x = rng.integers(-128, 128, (9, shape[0]))
    pm = program_matrix(W, mode)
    y = pm.run(x)
    assert y.dtype == np.int32 and y.shape == (9, shape[1])
    assert np.array_equal(y, integer_reference(x, W, mode))
    assert pm.saturated(x) == 0
    assert np.array_equal(y, x @ W)


@pytest.mark.parametrize("mode", ["slc", "mlc"])
def test_saturation_reproduced_exactly(mode):
    # x = -1 turns every wordline on in every plane: bitlines reach rows * level
    W = np.full((64, 40), 127 if mode == "slc" else 85)
    x = np.full((2, 64), -1)
    pm = program_matrix(W, mode)
    y = pm.run(x)
    assert pm.saturated(x) > 0
    assert not np.array_equal(y, x @ W)
    assert np.array_equal(y, integer_reference(x, W, mode))


def test_saturation_possible_for_published_array():
    p = ArrayParams()
    assert max_bitline(64, "slc") == 64 and max_bitline(64, "mlc") == 192
    assert saturation_possible(p, "slc") and saturation_possible(p, "mlc")
    assert not saturation_possible(ArrayParams(rows=63), "slc")
    assert not saturation_possible(ArrayParams(rows=42), "mlc")
    assert saturation_possible(ArrayParams(rows=43), "mlc")


def test_array_counts_follow_tiling():
    W = np.zeros((130, 70), dtype=np.int64)
    assert program_matrix(W, "slc").arrays == 3 * 5     # 3 row chunks x ceil(70/16)
    assert program_matrix(W, "mlc").arrays == 3 * 3     # 3 row chunks x ceil(70/32)


def test_per_column_and_per_row_modes():
    rng = rng_for("mixed")
    W = rng.integers(-128, 128, (90, 50))
    x = rng.integers(-128, 128, (4, 90))
    cmodes = rng.choice(["slc", "mlc"], 50)
    y = program_matrix(W, list(cmodes)).run(x)
    assert np.array_equal(y, x @ W)
    rmodes = rng.choice(["slc", "mlc"], 90)
    pm = program_matrix(W, "slc", row_modes=list(rmodes))
    # the rows of each mode form their own chunks; partial sums add up
    expect = sum(integer_reference(x[:, rmodes == md], W[rmodes == md], md) for md in ("slc", "mlc"))
    assert np.array_equal(pm.run(x), expect)
    assert {t.mode for t in pm.tiles} == {"slc", "mlc"}


def _explicit_run(pm, x, first_vector=0):
    """Slow, independent path: per tile, per vector, per plane, step-by-step SAR, integer
    S&A; each read asks the crossbar for its held values (read noise keyed by vector and
    plane, when on)."""
    y = np.zeros((x.shape[0], pm.shape[1]), dtype=np.int64)
    for t in pm.tiles:
        s = enc.slices_per_weight(t.mode)
        bits = pm.params.adc_bits(t.mode)
        cw = np.array([enc.column_weight(t.mode, k) for k in range(s)])
        for v in range(x.shape[0]):
            xt = np.zeros(pm.params.rows, dtype=np.int64)
            xt[:len(t.rows_idx)] = x[v, t.rows_idx]
            part = -128 * xt.sum()
            for b in range(8):
                held = t.crossbar.held_values((xt.astype(np.uint8) >> b) & 1,
                                              vector=first_vector + v, plane=b)
                codes, _ = sar_search(held, bits, pm.params.mlc_bits)
                part = part + enc.plane_weight(b) * (codes.reshape(-1, s) * cw).sum(-1)
            y[v, t.out_idx] += part[:len(t.out_idx)]
    return y


@pytest.mark.parametrize("offset", ["reference", "nominal"])
def test_read_noise_golden_equals_per_read_path(offset):
    rng = rng_for(f"read-{offset}")
    W = rng.integers(-128, 128, (90, 40))
    x = rng.integers(-128, 128, (5, 90))
    modes = list(rng.choice(["slc", "mlc"], 40))
    pm = program_matrix(W, modes, ber=0.0404, read_noise=0.01, seed=4, offset=offset)
    assert pm.read_noise
    y = pm.run(x, first_vector=10)
    assert np.array_equal(y, _explicit_run(pm, x, first_vector=10))
    # vector by vector with the counter gives the same words; reads are not repeatable
    one = np.stack([pm.run(x[v], first_vector=10 + v) for v in range(5)])
    assert np.array_equal(y, one)
    assert not np.array_equal(pm.run(x, first_vector=0), y)
    quiet = program_matrix(W, modes, ber=0.0404, seed=4, offset=offset)
    assert not np.array_equal(quiet.run(x), y)
    with pytest.raises(ValueError, match="needs vector= and plane="):
        pm.tiles[0].crossbar.held_values(np.ones(64, dtype=int))


@pytest.mark.parametrize("mode", ["slc", "mlc"])
def test_noisy_fast_path_equals_explicit_per_tile_path(mode):
    rng = rng_for(f"noisy-{mode}")
    W = rng.integers(-128, 128, (150, 45))
    x = rng.integers(-128, 128, (6, 150))
    pm = program_matrix(W, mode, ber=0.0404, seed=11)
    y = pm.run(x)
    assert np.array_equal(y, _explicit_run(pm, x))
    assert not np.array_equal(y, x @ W)       # the noise does show


def test_noise_drawn_once_per_programming_with_seed():
    rng = rng_for("seeds")
    W = rng.integers(-128, 128, (64, 32))
    x = rng.integers(-128, 128, (3, 64))
    a = program_matrix(W, "mlc", ber=0.0404, seed=5)
    b = program_matrix(W, "mlc", ber=0.0404, seed=5)
    c = program_matrix(W, "mlc", ber=0.0404, seed=6)
    assert np.array_equal(a.run(x), a.run(x))       # reads do not redraw noise
    assert np.array_equal(a.run(x), b.run(x))
    assert not np.array_equal(a.run(x), c.run(x))


def _mac_error(noise):
    rng = rng_for(f"slc-vs-mlc-{noise}")
    W = rng.integers(-128, 128, (256, 64))
    x = rng.integers(-128, 128, (32, 256))
    exact = x @ W
    return {md: np.abs(program_matrix(W, md, ber=0.0404, seed=3, noise=noise).run(x) - exact).mean()
            for md in ("slc", "mlc")}


def test_additive_noise_makes_mlc_macs_noisier_than_slc():
    # same absolute error per cell, MLC levels 3x closer: about 1.3x the value-domain std
    err = _mac_error("additive")
    assert err["mlc"] > 1.05 * err["slc"]


def test_multiplicative_noise_gives_slc_and_mlc_similar_mac_error():
    # conductance error proportional to the stored value: the same value-domain error
    err = _mac_error("multiplicative")
    assert 0.8 < err["mlc"] / err["slc"] < 1.25


def test_ber_sigma_roundtrip_and_published_calibration():
    s = sigma_from_ber(0.0404)
    assert math.isclose(ber_from_sigma(s, "mlc"), 0.0404, rel_tol=1e-9)
    assert 0.1 < s < 0.25
    # the same device in SLC mode: two widely spaced levels, far fewer errors
    assert ber_from_sigma(s, "slc") < 0.0404 / 20
    for b in (1e-4, 0.01, 0.2):
        assert math.isclose(ber_from_sigma(sigma_from_ber(b)), b, rel_tol=1e-9)
        sa = sigma_from_ber(b, noise="additive")
        assert math.isclose(ber_from_sigma(sa, noise="additive"), b, rel_tol=1e-9)
    sa = sigma_from_ber(0.0404, noise="additive")
    assert ber_from_sigma(sa, "slc", noise="additive") < 1e-6
    assert ber_from_sigma(0.0) == 0.0


def test_conductance_levels_from_device_constants():
    assert math.isclose(G_ON, 1 / 6e3) and math.isclose(G_OFF, G_ON / 150)
    g = conductance_levels("mlc")
    assert len(g) == 4 and math.isclose(g[0], G_OFF) and math.isclose(g[-1], G_ON)
    assert np.allclose(np.diff(g), (G_ON - G_OFF) / 3)


def test_goff_floor_cancelled_by_reference_column_in_ideal_mode():
    lv = np.array([[0, 1, 2, 3]] * 8)
    xb = Crossbar(lv, "mlc")
    held = xb.held_values(np.ones(8, dtype=int))
    assert np.array_equal(held, np.array([0, 8, 16, 24]) * ONE_LSB)


def test_result_width_bound_is_tight_enough():
    p = ArrayParams()
    lo, hi = p.result_range()
    assert p.min_result_width() == 23
    assert -(1 << 22) <= lo and hi < (1 << 22)


# ---- bad input -------------------------------------------------------------------

def test_bad_mode():
    with pytest.raises(ValueError, match=r"^mode must be 'slc' or 'mlc', not 'tlc'$"):
        program_matrix(np.zeros((4, 4), dtype=int), "tlc")


def test_bad_weight_values_and_types():
    with pytest.raises(ValueError, match=r"^weights must hold INT8 values in \[-128, 127\], found \[0, 128\]$"):
        program_matrix(np.array([[0, 128]]), "slc")
    with pytest.raises(TypeError, match=r"^weights must be an integer array \(INT8 values\), not dtype float64$"):
        program_matrix(np.zeros((2, 2)), "slc")
    with pytest.raises(ValueError, match=r"^weights must have 2 dimension\(s\), not shape \(4,\)$"):
        program_matrix(np.zeros(4, dtype=int), "slc")


def test_bad_inputs():
    pm = program_matrix(np.zeros((8, 4), dtype=int), "mlc")
    with pytest.raises(ValueError, match=r"^x must have 8 columns \(one per matrix row\), not shape \(2, 7\)$"):
        pm.run(np.zeros((2, 7), dtype=int))
    with pytest.raises(ValueError, match=r"^x must hold INT8 values in \[-128, 127\], found \[-129, 0\]$"):
        pm.run(np.array([[-129] + [0] * 7]))
    with pytest.raises(TypeError, match=r"^x must be an integer array"):
        pm.run(np.zeros((1, 8), dtype=np.float32))
    with pytest.raises(TypeError, match=r"^x must be an integer array"):
        pm.run(np.zeros((1, 8), dtype=bool))


@pytest.mark.parametrize("ber", [0.0, 0.5, -0.1, float("nan"), "x"])
def test_bad_ber(ber):
    with pytest.raises(ValueError, match=r"^ber must be (in|a number in) \(0, 0\.5\), not "):
        program_matrix(np.zeros((4, 4), dtype=int), "slc", ber=ber)


@pytest.mark.parametrize("sigma", [-0.1, float("nan"), float("inf"), 1e15, 1001])
def test_bad_sigma(sigma):
    # a huge sigma would overflow the conductance grid: refused, the bound stated
    with pytest.raises(ValueError, match=r"^sigma must be a number in \[0, 1000\], not "):
        program_matrix(np.zeros((4, 4), dtype=int), "slc", sigma=sigma)


@pytest.mark.parametrize("kw,msg", [
    (dict(rows=0), "rows must be an integer in 1..1024, not 0"),
    (dict(cols=12), "cols must be a multiple of 8 in 8..1024, not 12"),
    (dict(mlc_bits=17), "mlc_bits must be an integer in 1..16, not 17"),
    (dict(slc_bits=8), "slc_bits must be an integer in 1..7, not 8"),
    (dict(rows=2.5), "rows must be an integer in 1..1024, not 2.5"),
])
def test_bad_geometry(kw, msg):
    with pytest.raises(ValueError, match="^" + re.escape(msg) + "$"):
        program_matrix(np.zeros((4, 4), dtype=int), "slc", **kw)


def test_bad_noise_model():
    with pytest.raises(ValueError, match=r"^noise must be one of 'multiplicative', 'additive', not 'pink'$"):
        program_matrix(np.zeros((4, 4), dtype=int), "slc", ber=0.01, noise="pink")


def test_ber_and_sigma_together_rejected():
    with pytest.raises(ValueError, match=r"^give either ber or sigma, not both$"):
        program_matrix(np.zeros((4, 4), dtype=int), "slc", ber=0.01, sigma=0.1)


def test_mode_list_length_checked():
    with pytest.raises(ValueError, match=r"^mode must have 4 entries, not 3$"):
        program_matrix(np.zeros((4, 4), dtype=int), ["slc"] * 3)
