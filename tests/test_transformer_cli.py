"""``hyflexpim accuracy --backend chip`` and the accuracy command's argument checks
(sim/commands/accuracy.py; issue 17: --eval-limit < 1, empty sweep lists)."""

import subprocess
import sys

import pytest

from hyflexpim.sim.cli import main as cli
from hyflexpim.sim.commands import accuracy as cmd


def _stderr_line(argv):
    r = subprocess.run([sys.executable, "-m", "hyflexpim", *argv], capture_output=True,
                       text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    return r.returncode, lines


@pytest.mark.parametrize("argv, want", [
    (["--eval-limit", "0", "--mapping", "m.json"], "eval-limit must be a positive integer, not 0"),
    (["--eval-limit", "-5", "--mapping", "m.json"], "eval-limit must be a positive integer, not -5"),
    (["--backend", "gpu", "--mapping", "m.json"], "backend must be one of faithful, fast, chip"),
    (["--backend", "chip", "--sweep"], "--backend chip evaluates one mapping"),
    (["--backend", "chip", "--mode", "paper", "--mapping", "m.json"], "hardware mode"),
    (["--float-ops", "exp", "--backend", "chip", "--mapping", "m.json"],
     "float-ops must name operations of linear, attention"),
    (["--float-ops", "softmax", "--mapping", "m.json"], "--float-ops needs --backend chip"),
    (["--no-noise", "--sweep"], "--no-noise is for a single run"),
    (["--sweep", "--ks", ","], "ks must list at least one value"),
    (["--sweep", "--policies", ""], "policies must list at least one value"),
    (["--sweep", "--modes", " , "], "modes must list at least one value"),
])
def test_bad_arguments_one_line_exit_2(argv, want):
    status, lines = _stderr_line(["accuracy", "--task", "tiny", *argv])
    assert status == 2 and len(lines) == 1, lines
    assert want in lines[0] and lines[0].startswith("hyflexpim accuracy: error: ")


def test_chip_ops_are_the_models():
    torch = pytest.importorskip("torch")  # noqa: F841
    from hyflexpim.models.transformer import OPS
    assert cmd.CHIP_OPS == OPS


def test_chip_backend_on_tiny(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "m.json"
    assert cli(["redistribute", "--task", "tiny", "--slc", "25", "--epochs", "1",
                "--out", str(out)]) == 0
    capsys.readouterr()
    base = ["accuracy", "--task", "tiny", "--mapping", str(out), "--epochs", "1",
            "--backend", "chip"]
    assert cli(base + ["--no-noise", "--eval-limit", "16"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("tiny chip policy=gradient k=25 noise off: accuracy ")
    assert line.endswith("(16 samples)")
    assert cli(base + ["--seeds", "1", "--eval-limit", "8", "--float-ops",
                       "softmax,gelu"]) == 0
    line = capsys.readouterr().out.strip()
    assert "float-ops=softmax,gelu seed=0: accuracy" in line and line.endswith("(8 samples)")
