"""``hyflexpim accuracy`` noise options: --device, --ber, --offset, --read-noise, --split /
--paper-split; bad values one line, exit 2, before any training; --out checked before a
sweep."""

import json

import pytest

torch = pytest.importorskip("torch", reason="PyTorch (the 'algo' extra) is not installed")

from hyflexpim.sim.cli import main as cli  # noqa: E402
from hyflexpim.models import accuracy as acc, quant  # noqa: E402
from hyflexpim.models.algo_tasks import get_task  # noqa: E402
from hyflexpim.models.device import load_device  # noqa: E402


def _one_line(capsys, argv, text):
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and text in err, err


@pytest.mark.parametrize("extra, text", [
    (["--device", "nope"], "device must be one of neurram-1d"),
    (["--offset", "middle"], "offset must be one of reference, nominal, not 'middle'"),
    (["--read-noise", "-0.1"], "read-noise must be in [0, 1]"),
    (["--read-noise", "2"], "read-noise must be in [0, 1]"),
    (["--split", "ones"], "split must be one of two-complement, sign-magnitude, not 'ones'"),
    (["--split", "sign-magnitude", "--paper-split"], "--paper-split is the two-complement"),
    (["--ber", "0.6"], "ber must be in (0, 0.5)"),
    (["--device", "ideal", "--ber", "0.01"], "has no MLC programming noise"),
    (["--out", "/proc/nope/x"], "--out /proc/nope/x.csv"),
])
def test_bad_noise_options_one_line(capsys, extra, text):
    _one_line(capsys, ["accuracy", "--task", "tiny", "--sweep", *extra], text)


def test_bad_device_files(capsys, tmp_path):
    f = tmp_path / "dev.json"
    f.write_text("{}")
    _one_line(capsys, ["accuracy", "--task", "tiny", "--sweep", "--device", str(f)],
              "'format' must be 'hyflexpim-device'")
    f.write_text("not json")
    _one_line(capsys, ["accuracy", "--task", "tiny", "--sweep", "--device", str(f)],
              f"--device {f}")
    _one_line(capsys, ["accuracy", "--task", "tiny", "--sweep", "--device",
                       str(tmp_path / "missing.json")], "missing.json")
    d = tmp_path / "adir"
    d.mkdir()
    _one_line(capsys, ["accuracy", "--task", "tiny", "--sweep", "--out", str(d) + "/"],
              "is a folder; give a file prefix")


@pytest.mark.slow
def test_device_options_reach_the_arrays(tmp_path, capsys):
    """A single run with --device / --offset / --read-noise, and a sweep: the rows record
    the device and the BER it has; a user table (the default device saved) gives the same
    metric as the name."""
    from hyflexpim.models.redistribute import save_mapping
    task = get_task("tiny", eval_limit=32)
    prep = acc.prepare(task, "hardware", ft_epochs=1, quiet=True)
    mp = acc.mapping_for(prep, "gradient", 20)
    out = tmp_path / "m.json"
    save_mapping(mp, out)
    dev = tmp_path / "dev.json"
    load_device("neurram-1d").save(dev)
    lines = {}
    for name, extra in (("named", ["--device", "neurram-1d"]), ("file", ["--device", str(dev)]),
                        ("nominal", ["--offset", "nominal", "--read-noise", "0.01"])):
        assert cli(["accuracy", "--task", "tiny", "--eval-limit", "32", "--mapping", str(out),
                    "--seeds", "1", "--epochs", "1", "--backend", "fast", *extra]) == 0
        lines[name] = capsys.readouterr().out.strip()
    assert lines["named"].split(":")[-1] == lines["file"].split(":")[-1]
    pre = tmp_path / "sw"
    assert cli(["accuracy", "--task", "tiny", "--eval-limit", "32", "--sweep", "--ks", "0",
                "--policies", "rank", "--seeds", "1", "--epochs", "1", "--backend", "fast",
                "--modes", "hardware,paper", "--device", "neurram-2d", "--ber", "0.01",
                "--split", "sign-magnitude", "--out", str(pre)]) == 0
    summ = json.loads((tmp_path / "sw.json").read_text())
    assert summ["hardware"]["device"] == "neurram-2d"
    assert summ["hardware"]["ber"] == pytest.approx(0.01, rel=1e-6)
    assert summ["paper"]["paper_split"] == "sign-magnitude"


def test_set_noise_offset_and_device_change_the_weights():
    """The fast backend's effective weights depend on the device and the offset removal."""
    task = get_task("tiny", eval_limit=8)
    prep = acc.prepare(task, "hardware", ft_epochs=1, quiet=True)
    mp = acc.mapping_for(prep, "rank", 0)
    hw = quant.to_hardware(prep.factored, mp, "fast")
    x = torch.cat([b[0] for b in task.eval()])[:4]
    outs = []
    for kw in (dict(device="neurram-1d"), dict(device="neurram-1d", offset="nominal"),
               dict(device="neurram-1s"), dict(device="neurram-1d")):
        quant.set_noise(hw, seed=0, **kw)
        with torch.no_grad():
            outs.append(hw(x))
    assert torch.equal(outs[0], outs[3])
    assert not torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_sweep_on_a_dask_cluster_equals_the_serial_sweep(tmp_path, monkeypatch):
    """``--scheduler local --workers 2``: the same rows as the sweep in this process (each
    worker prepares the tiny task again from its spec; every noise draw from the point's
    seed); with ``--points`` a second run loads every point and runs none."""
    pytest.importorskip("distributed")
    import csv
    base = ["accuracy", "--task", "tiny", "--eval-limit", "32", "--sweep", "--ks", "0,50",
            "--policies", "gradient,random", "--seeds", "2", "--epochs", "1", "--backend",
            "fast", "--modes", "hardware,paper"]
    pts = tmp_path / "points"
    assert cli(base + ["--out", str(tmp_path / "serial")]) == 0
    assert cli(base + ["--out", str(tmp_path / "dask"), "--scheduler", "local", "--workers",
                       "2", "--points", str(pts)]) == 0

    def rows(name):
        with open(tmp_path / f"{name}.csv") as f:
            return list(csv.DictReader(f))
    assert len(rows("serial")) == 16 and rows("dask") == rows("serial")
    assert len(list(pts.glob("*.pkl"))) == 16
    # resumed: every point stored, so no point is evaluated (preparing one would raise)
    def no_point(*a):
        raise AssertionError("a stored point was evaluated again")
    monkeypatch.setattr(acc, "_prepared", no_point)
    assert cli(base + ["--out", str(tmp_path / "again"), "--scheduler", "serial", "--points",
                       str(pts)]) == 0
    assert rows("again") == rows("serial")


@pytest.mark.parametrize("extra, text", [
    (["--scheduler", "nowhere"], "--scheduler must be 'local', 'serial' or a Dask scheduler"),
    (["--workers", "2"], "--workers and --points need --scheduler"),
    (["--scheduler", "serial", "--workers", "2"], "--workers must be a positive integer, "
                                                 "with --scheduler local"),
])
def test_bad_scheduler_options(capsys, extra, text):
    _one_line(capsys, ["accuracy", "--task", "tiny", "--sweep", *extra], text)
    _one_line(capsys, ["accuracy", "--task", "tiny", "--mapping", "m.json",
                       "--scheduler", "local"], "are for a --sweep")
