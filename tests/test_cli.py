"""The ``hyflexpim`` command: sub-command discovery, Verilog generation, demo, errors."""

import json
import re
import subprocess
import sys

import pytest

from hyflexpim.sim.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "hyflexpim", *args], capture_output=True,
                          text=True, timeout=600)


def test_verilog_list_names_the_array_blocks(capsys):
    assert main(["verilog", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("wl_driver", "sar_adc", "shift_add", "analog_array"):
        assert name in out


def test_verilog_with_parameters_writes_a_module(tmp_path):
    out = tmp_path / "a.v"
    assert main(["verilog", "analog_array", "-p", "rows=16", "-p", "cols=32", "-o", str(out)]) == 0
    text = out.read_text()
    assert "module hyflexpim_analog_array" in text
    assert "input [128:0] i__payload" in text      # 16 x INT8 + the mode bit


@pytest.mark.parametrize("args,msg", [
    (["verilog", "analog_array", "-p", "rows=0"], "rows must be an integer in 1..1024, not 0"),
    (["verilog", "nope"], "unknown block 'nope'"),
    (["verilog", "analog_array", "-p", "rows"], "parameter must be written NAME=VALUE, not 'rows'"),
    (["demo", "--vectors", "0"], "--vectors must be in 1..1000, not 0"),
    (["demo", "--ber", "0.7"], "ber must be in (0, 0.5), not 0.7"),
    (["demo", "--causal"], "--causal needs --layer"),
    (["demo", "--layer", "--rows", "16"], "--rows applies to the array demo, not to --layer"),
    (["demo", "--layer", "--ber", "0.7"], "ber must be in (0, 0.5), not 0.7"),
])
def test_bad_input_gives_one_line_and_exit_2(args, msg):
    r = run_cli(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0], r.stderr


def test_demo_small_array_is_bit_exact(tmp_path):
    r = run_cli("demo", "--rows", "16", "--cols", "32", "--vectors", "2", "--ber", "0.0404",
                "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "(bit-exact)" in r.stdout
    rep = json.loads((tmp_path / "demo_report.json").read_text())
    assert rep["rtl"] == rep["golden"]
    assert rep["steady_cycles_per_vector"] == rep["ideal_cycles_per_vector"] == 8 * 32 * 7
    assert_speed_line(r.stdout)


#: The demo's line on the simulator run (``cocotb_runner.last_run_summary``).
SPEED_LINE = re.compile(r"^RTL simulation: (icarus|verilator) \([^)]*\), "
                        r"([\d,]+) cycles in ([\d.]+) s of tests = ([\d,]+) cycles/s", re.M)


def assert_speed_line(stdout):
    """The demo printed which simulator ran and a positive cycles/s; returns the cycles."""
    m = SPEED_LINE.search(stdout)
    assert m, stdout
    cycles, secs, rate = (float(g.replace(",", "")) for g in m.groups()[1:])
    assert cycles > 0 and secs > 0 and rate > 0, m.group(0)
    return int(cycles)


def test_demo_layer_is_bit_exact(tmp_path):
    """``demo --layer``: the encoder layer of tb/layer_tb.py (noise off) on the digital
    module's Verilog, every output word equal to ChipLayer.forward (the testbench
    asserts each; this run is the suite's noise-off layer run)."""
    r = run_cli("demo", "--layer", "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "RTL vs golden: 72/72 output words identical (bit-exact;" in r.stdout, r.stdout
    rtl = re.search(r"^token 0, RTL: +(.*)$", r.stdout, re.M).group(1)
    gold = re.search(r"^token 0, golden: +(.*)$", r.stdout, re.M).group(1)
    assert rtl == gold and len(rtl.split()) == 9
    rep = json.loads((tmp_path / "layer_report.jsonl").read_text().splitlines()[-1])
    assert rep["test"] == "layer_noise_off" and rep["words"] == 72 and rep["cycles"] > 0
    assert f"cycles: {rep['cycles']:,} from START" in r.stdout
    assert_speed_line(r.stdout)
