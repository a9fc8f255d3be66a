"""Device models (models/device.py), their use by the crossbar and golden models, read
noise, the fast backend's per-cell statistics, and the ``hyflexpim device`` command."""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from hyflexpim.models import DEVICE_NAMES, Device, load_device, program_matrix, SaturationWarning
from hyflexpim.models import encoding as enc
from hyflexpim.models.crossbar import Crossbar, ONE_LSB, counter_normal, sigma_from_ber
from hyflexpim.models.device import DeviceFileError, G_OFF_DG, neurram_k
from hyflexpim.models.noise import effective_weights, read_noise_outputs
from hyflexpim.sim.cli import main as cli

EXAMPLE = Path(__file__).resolve().parents[1] / "constraints" / "devices" / "example.json"
SEED = 20261201


def rng_for(name):
    seed = SEED + sum(map(ord, name))
    print(f"{name}: seed {seed}")
    return np.random.default_rng(seed)


# ---- the table ------------------------------------------------------------------------

def test_default_device_is_neurram_one_day_calibrated_to_4_04_percent():
    d = load_device()
    assert d.name == "neurram-1d" and load_device("neurram") == d
    assert d.ber("mlc") == pytest.approx(0.0404, rel=1e-9)
    assert neurram_k() == pytest.approx(1.09, abs=0.005)
    # DESIGN.md 4: sigma in units of each mode's own level spacing
    assert np.allclose(d.sigmas_in_spacing("mlc"), [0.057, 0.324, 0.291, 0.217], atol=1.5e-3)
    assert np.allclose(d.sigmas_in_spacing("slc"), [0.019, 0.072], atol=1e-3)
    assert np.allclose(d.levels("mlc"), [0, 1 / 3, 2 / 3, 1]) and list(d.levels("slc")) == [0, 1]
    assert d.ber("slc") < 1e-10 and not d.has_read_noise
    # the polynomial itself, at x = 1/3
    x = 1 / 3
    p = 0.701 + 22.086 * x - 50.773 * x ** 2 + 47.095 * x ** 3 - 16.458 * x ** 4
    assert d.sigmas("mlc")[1] == pytest.approx(neurram_k() * p / 40)


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_every_named_device_loads_and_recalibrates(name):
    d = load_device(name)
    assert d.name == name
    for md in ("slc", "mlc"):
        assert len(d.levels(md)) == enc.levels_per_cell(md) == len(d.sigmas(md))
        assert np.all(np.diff(d.levels(md)) > 0) and np.all(d.sigmas(md) >= 0)
    if name == "ideal":
        assert d.is_ideal and d.ber("mlc") == 0
        with pytest.raises(ValueError, match="no MLC programming noise"):
            load_device(name, ber=0.01)
        return
    for b in (0.001, 0.0404):
        c = load_device(name, ber=b)
        assert c.ber("mlc") == pytest.approx(b, rel=1e-9)
        # one factor on every programming sigma, SLC and MLC alike
        f = c.sigmas("mlc") / np.where(d.sigmas("mlc") > 0, d.sigmas("mlc"), 1)
        assert np.allclose(f[d.sigmas("mlc") > 0], f[d.sigmas("mlc") > 0][0])


def test_time_after_programming_and_legacy_models():
    assert load_device("neurram-1s").ber() < load_device("neurram-1d").ber()
    assert load_device("neurram-1s").scale == load_device("neurram-2d").scale == neurram_k()
    prop = load_device("proportional")
    assert prop.scale == pytest.approx(sigma_from_ber(0.0404))
    assert np.allclose(prop.sigmas("mlc"), prop.scale * (G_OFF_DG + np.arange(4) / 3))
    add = load_device("additive")
    assert np.allclose(add.sigmas("slc"), add.sigmas("slc")[0])
    cmo = load_device("ibm-cmo")
    assert np.all(cmo.levels("mlc") < np.arange(4) / 3)      # relaxation lowers every level
    assert load_device("ibm-cmo-0.2").sigmas("mlc")[3] < cmo.sigmas("mlc")[3]


def test_read_noise_option():
    d = load_device(read_noise=0.01)
    assert d.has_read_noise and not load_device().has_read_noise
    assert np.allclose(d.read_sigmas("mlc"), 0.01 * 150 / 149)
    assert not load_device(read_noise=0).has_read_noise
    assert load_device(d, ber=0.01).has_read_noise          # ber scales programming only
    assert np.array_equal(load_device(d, ber=0.01).read_sigmas("slc"), d.read_sigmas("slc"))


# ---- user tables ------------------------------------------------------------------------

def test_user_table_example_and_roundtrip(tmp_path):
    d = load_device(str(EXAMPLE))
    assert d.name == "example" and d.levels("mlc")[1] == pytest.approx(1 / 3 + 0.01)
    assert d.g_off == pytest.approx(0.00671) and d.sigmas("slc")[1] == 0.072
    p = load_device("neurram-2d", read_noise=0.02).save(tmp_path / "x.json")
    again = load_device(p)
    assert again == load_device("neurram-2d", read_noise=0.02)
    assert load_device(Path(p)) == again


def _table(**kw):
    t = {"format": "hyflexpim-device",
         "slc": [{"mean": 0.0, "sigma": 0.02}, {"mean": 1.0, "sigma": 0.07}],
         "mlc": [{"mean": 0.0, "sigma": 0.02}, {"mean": 0.34, "sigma": 0.1},
                 {"mean": 0.66, "sigma": 0.1}, {"mean": 1.0, "sigma": 0.07}]}
    t.update(kw)
    return t


@pytest.mark.parametrize("change,msg", [
    (dict(mlc=None), "missing 'mlc': a list of 4 levels"),
    (dict(slc=[{"mean": 0.0, "sigma": 0.02}]), "'slc' must list 2 levels, lowest first, not 1"),
    (dict(slc=[{"mean": 0.0, "sigma": -0.1}, {"mean": 1.0, "sigma": 0.1}]),
     "slc level 0: 'sigma' must be in [0, 1000], not -0.1"),
    (dict(slc=[{"mean": 0.0, "sigma": float("nan")}, {"mean": 1.0, "sigma": 0.1}]),
     "slc level 0: 'sigma' must be a finite number, not nan"),
    (dict(slc=[{"mean": 1.0, "sigma": 0.1}, {"mean": 0.5, "sigma": 0.1}]),
     "slc level means must increase strictly"),
    (dict(slc=[{"mean": 0.0}, {"mean": 1.0, "sigma": 0.1}]), "slc level 0: missing 'sigma'"),
    (dict(slc=[{"mean": 0.0, "offset": 0, "sigma": 0.1}, {"mean": 1.0, "sigma": 0.1}]),
     "slc level 0: give exactly one of 'mean' and 'offset'"),
    (dict(slc=[{"mean": 0.0, "sigma": 0.1, "sd": 1}, {"mean": 1.0, "sigma": 0.1}]),
     "slc level 0: unknown key 'sd'"),
    (dict(format="x"), "'format' must be 'hyflexpim-device', not 'x'"),
    (dict(colour=1), "unknown key 'colour'"),
    (dict(g_off=-1), "'g_off' must be a number in [0, 10], not -1"),
])
def test_user_table_errors_name_file_and_entry(tmp_path, change, msg):
    t = _table(**change)
    t = {k: v for k, v in t.items() if v is not None}
    p = tmp_path / "cells.json"
    p.write_text(json.dumps(t))
    with pytest.raises(DeviceFileError) as e:
        load_device(str(p))
    assert str(e.value).startswith(f"device file {p}: ") and msg in str(e.value)


def test_user_file_os_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="device file .*nope.json not found"):
        load_device(str(tmp_path / "nope.json"))
    with pytest.raises(ValueError, match="is a directory"):
        load_device(tmp_path)
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(ValueError, match=r"bin.json is not UTF-8 text"):
        load_device(str(tmp_path / "bin.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match=r"bad.json is not valid JSON"):
        load_device(str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match=r"^device must be one of neurram-1d, .* or a JSON file, "
                                         r"not 'pcm'$"):
        load_device("pcm")
    with pytest.raises(TypeError, match="device must be a name"):
        load_device(3)
    with pytest.raises(ValueError, match=r"^ber must be in \(0, 0.5\), not 0.7$"):
        load_device(ber=0.7)


# ---- program_matrix and the crossbar -----------------------------------------------------

def test_program_matrix_device_arguments():
    rng = rng_for("pm-device")
    W = rng.integers(-128, 128, (64, 32))
    x = rng.integers(-128, 128, (4, 64))
    assert program_matrix(W, "mlc").device is None                 # ideal by default
    a = program_matrix(W, "mlc", ber=0.0404, seed=2)                # default device
    b = program_matrix(W, "mlc", device="neurram-1d", seed=2)
    c = program_matrix(W, "mlc", device=load_device(), seed=2)
    assert a.device == load_device() and np.array_equal(a.run(x), b.run(x))   # no re-scaling
    assert np.array_equal(a.run(x), c.run(x))
    d = program_matrix(W, "mlc", device="neurram-1s", ber=0.0404, seed=2)
    assert d.device.ber() == pytest.approx(0.0404)
    assert program_matrix(W, "mlc", device="ideal").device is None
    assert np.array_equal(program_matrix(W, "mlc", device="ideal").run(x), x @ W)
    # the legacy models keep their meaning
    e = program_matrix(W, "mlc", sigma=0.1, seed=2)
    assert e.device.name == "proportional" and e.sigma == 0.1 and e.noise == "multiplicative"
    f = program_matrix(W, "mlc", ber=0.0404, noise="additive", seed=2)
    assert f.device.name == "additive" and f.sigma == pytest.approx(sigma_from_ber(0.0404, noise="additive"))
    with pytest.raises(ValueError, match="^give either device or sigma"):
        program_matrix(W, "mlc", sigma=0.1, device="neurram")
    with pytest.raises(ValueError, match="^give either device or noise"):
        program_matrix(W, "mlc", noise="additive", device="neurram")
    with pytest.raises(ValueError, match="^offset must be one of 'reference', 'nominal', not 'none'$"):
        program_matrix(W, "mlc", offset="none")


@pytest.mark.parametrize("offset", ["reference", "nominal"])
@pytest.mark.parametrize("mode", ["slc", "mlc"])
def test_ideal_offsets_are_exact(mode, offset):
    rng = rng_for(f"offset-{mode}-{offset}")
    W = rng.integers(-128, 128, (100, 40))
    x = rng.integers(-128, 128, (5, 100))
    assert np.array_equal(program_matrix(W, mode, offset=offset).run(x), x @ W)


@pytest.mark.parametrize("name", ["neurram-1d", "crosssim-milo", "ibm-cmo"])
@pytest.mark.parametrize("mode", ["slc", "mlc"])
def test_crossbar_cells_follow_the_device_table(name, mode):
    """Held value per cell (nominal offset: no reference) vs the device's mean and sigma."""
    dev = load_device(name)
    L = enc.levels_per_cell(mode)
    lv = np.tile(np.arange(L), (400, 50))
    xb = Crossbar(lv, mode, device=dev, rng=rng_for(f"cells-{name}-{mode}"), offset="nominal")
    cell = xb.held / ONE_LSB / (L - 1)          # back to dG above the floor
    for level in range(L):
        v = cell[lv == level]
        mu, sg = dev.levels(mode)[level], dev.sigmas(mode)[level]
        if mu - 4 * sg > -dev.g_off:             # clipping negligible: Gaussian moments
            assert v.mean() == pytest.approx(mu, abs=4 * sg / math.sqrt(v.size) + 1e-3)
            assert v.std() == pytest.approx(sg, rel=0.05)
        else:                                    # clipped at G = 0
            assert v.min() >= -dev.g_off - 1e-3


# ---- read noise -----------------------------------------------------------------------

def test_counter_normal_is_standard_and_shape_independent():
    z = counter_normal(7, np.arange(200)[:, None], 3, np.arange(500)[None, :])
    assert abs(z.mean()) < 0.01 and z.std() == pytest.approx(1.0, rel=0.01)
    assert np.array_equal(z[17], counter_normal(7, 17, 3, np.arange(500)))
    assert z[17, 42] == counter_normal(7, 17, 3, 42)
    assert not np.array_equal(z[0], counter_normal(8, 0, 3, np.arange(500)))


def test_read_noise_alone_on_an_ideal_device():
    W = np.zeros((64, 16), dtype=int)
    pm = program_matrix(W, "slc", device="ideal", read_noise=0.05, seed=1)
    x = np.full((200, 64), -1)                   # all 64 rows active in every plane
    assert pm.read_noise
    held = pm.tiles[0].crossbar.read_noise(np.ones((200, 64)), np.arange(200), 0)
    # 64 cells at 0.05 G_on plus the reference column's 64: sqrt(128) * 0.05 * 150/149 LSB
    assert held.std() / ONE_LSB == pytest.approx(math.sqrt(128) * 0.05 * 150 / 149, rel=0.05)
    assert not np.array_equal(pm.run(x), x @ W)


# ---- the fast backend: same per-cell statistics -----------------------------------------

def _crossbar_weights(q, mode, dev, seed, offset):
    S = enc.slices_per_weight(mode)
    cw = np.array([enc.column_weight(mode, k) for k in range(S)])
    xb = Crossbar(enc.encode_weights(q, mode), mode, device=dev,
                  rng=np.random.default_rng(seed), offset=offset)
    return (xb.held / ONE_LSB).reshape(q.shape[0], -1, S) @ cw - 128


@pytest.mark.parametrize("offset", ["reference", "nominal"])
@pytest.mark.parametrize("name", [n for n in DEVICE_NAMES if n != "ideal"])
def test_fast_weights_match_crossbar_for_every_device(name, offset):
    dev = load_device(name)
    rng = rng_for(f"fast-{name}-{offset}")
    for mode in ("slc", "mlc"):
        q = rng.integers(-128, 128, size=(64, enc.neurons_per_array(mode, 128)))
        dx = np.stack([_crossbar_weights(q, mode, dev, 100 + t, offset) - q for t in range(30)])
        df = np.stack([effective_weights(q, dev, np.random.default_rng(t), col_modes=[mode] * q.shape[1],
                                         offset=offset) - q for t in range(30)])
        print(name, offset, mode, "crossbar", dx.mean(), dx.std(), "fast", df.mean(), df.std())
        assert df.std() == pytest.approx(dx.std(), rel=0.05)
        assert abs(df.mean() - dx.mean()) < 0.1 * dx.std() + 0.02


def test_fast_read_noise_matches_crossbar_reads():
    dev = load_device("ideal", read_noise=0.02)
    rng = rng_for("fast-read")
    q = rng.integers(-128, 128, size=(64, 32))
    x = rng.integers(-128, 128, size=(300, 64))
    # crossbar reads through an ideal shift-and-add (no ADC rounding)
    xb = Crossbar(enc.encode_weights(q, "mlc"), "mlc", device=dev, read_key=5)
    planes = enc.bit_planes(x)
    cw = np.array([1, 4, 16, 64])
    noise = sum(enc.plane_weight(b) * (xb.read_noise(planes[b], np.arange(300), b)
                                       / ONE_LSB).reshape(300, -1, 4) @ cw for b in range(8))
    fast = read_noise_outputs(x, q, dev, np.random.default_rng(1), col_modes=["mlc"] * 32)
    assert fast.std() == pytest.approx(noise.std(), rel=0.05)


# ---- issue 17: no silent wrong answers ------------------------------------------------

def test_int32_overflow_is_refused_or_widened():
    W = np.full((131073, 1), -128)
    x = np.full((1, 131073), -128)
    pm = program_matrix(W, "slc")
    with pytest.raises(ValueError, match=r"overflows INT32 .* m = 131073 rows: split it "
                                         r"\(every result fits for m <= \d+\)"):
        pm.run(x)
    assert pm.run(x, wide=True)[0, 0] == 131073 * 128 * 128
    assert pm.max_exact_rows() >= 40000


def test_saturating_geometry_warns_or_refuses():
    W = np.zeros((1024, 8), dtype=int)
    with pytest.warns(SaturationWarning, match=r"MLC arrays of 1024 rows with a 7-bit ADC "
                                               r"saturate on most inputs"):
        program_matrix(W, "mlc", rows=1024)
    with pytest.raises(ValueError, match="saturate on most inputs"):
        program_matrix(W, "mlc", rows=1024, saturation="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        program_matrix(W, "mlc", rows=1024, saturation="allow")
        program_matrix(W, "mlc")                       # the published array: fine
        program_matrix(W, "slc", rows=128)              # typical 32 levels < 63


def test_saturated_ignores_padding_slots():
    W = np.full((64, 1), -128)
    x = np.full((1, 64), -1)
    pm = program_matrix(W, "mlc")
    assert pm.saturated(x) == 0 and np.array_equal(pm.run(x), x @ W)
    W2 = np.full((64, 1), 85)          # slice levels 1,1,1,3 of 213: the top slice clips
    assert program_matrix(W2, "mlc").saturated(x) == 8


def test_empty_batch_and_argument_messages():
    pm = program_matrix(np.zeros((8, 3), dtype=int), "mlc")
    assert pm.run(np.zeros((0, 8), dtype=int)).shape == (0, 3)
    assert pm.saturated(np.zeros((0, 8), dtype=int)) == 0
    for bad in (None, 5):
        with pytest.raises(ValueError, match=r"^mode must be 'slc', 'mlc' or a sequence of 3"):
            program_matrix(np.zeros((8, 3), dtype=int), bad)
    with pytest.raises(ValueError, match=r"^seed must be an integer in 0\.\."):
        program_matrix(np.zeros((8, 3), dtype=int), "mlc", seed=-1)
    with pytest.raises(TypeError, match=r"^seed must be an integer"):
        program_matrix(np.zeros((8, 3), dtype=int), "mlc", seed="x")


# ---- the command ------------------------------------------------------------------------

def test_cli_device(tmp_path, capsys):
    png = tmp_path / "levels.png"
    assert cli(["device", "--png", str(png), "--layer-seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "device neurram-1d" in out and "MLC  BER 0.0404" in out
    assert "0.3238" in out and "MLC/SLC" in out
    assert png.stat().st_size > 10000
    assert cli(["device", str(EXAMPLE), "--ber", "0.01", "--layer-seeds", "0",
                "--save", str(tmp_path / "t.json")]) == 0
    assert load_device(str(tmp_path / "t.json")).ber() == pytest.approx(0.01)
    assert cli(["device", "--list"]) == 0
    assert "crosssim-milo" in capsys.readouterr().out
    for argv, msg in ((["device", "pcm"], "device must be one of"),
                      (["device", "--ber", "0.6"], "ber must be in (0, 0.5), not 0.6"),
                      (["device", "--png", str(tmp_path)], "is a directory"),
                      (["device", "--png", str(tmp_path / "no" / "x.png")], "does not exist")):
        assert cli(argv) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1
