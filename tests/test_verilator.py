# amaranth: UnusedElaboratable=no
"""The representative subset of the cocotb regressions on Verilator (the default suite
runs them all on Icarus; ``HYFLEXPIM_SIM=verilator`` runs the whole suite on
Verilator): the runner's counter with both clocks and waves, the small analog array's
regression, the S&H model's results equal to Icarus' per-cycle Python bank, the digital
PIM controller and the small PU layer. Each Verilator build takes tens of seconds on
2 cores (less with ccache, which ./dev setup installs)."""

import importlib.util
from pathlib import Path

import pytest

from hyflexpim.sim import cocotb_runner as R

pytestmark = pytest.mark.skipif("verilator" not in R.available_simulators(),
                                reason="Verilator not installed (./dev setup)")


def _sibling(name):
    """A test module of this folder, for its helpers (pytest imports by path)."""
    spec = importlib.util.spec_from_file_location(f"_hyflexpim_{name}",
                                                  Path(__file__).with_name(f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


runner_tests = _sibling("test_cocotb_runner")
sh_tests = _sibling("test_sim_sh_model")


def test_counter_clocks_waves_and_failures(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / f"{runner_tests.TB_MODULE}.py").write_text(runner_tests.TB_SOURCE)
    runner_tests.check_counter_runs(tmp_path, "verilator", monkeypatch)
    assert R.last_run()["visibility"] == "top"
    # an unchanged build is reused
    assert runner_tests.counter_run(tmp_path / "gpi", "verilator", "cocotb") == (1, 0)
    assert R.last_run()["built"] is False


def test_analog_array_small_regression_and_sh_model_vs_icarus(tmp_path):
    """All cases of the small array's regression on Verilator (HDL S&H model, HDL clock),
    then, on the same build, the stream of tb/analog_speed_tb.py (read noise, gaps,
    backpressure): the words and cycles of Icarus with the per-cycle Python bank."""
    bdir = R.build_dir_for("analog_array", {"verilator-subset": 1}, simulator="verilator")
    passed, _ = R.run_block("analog_array", test_module="hyflexpim.tb.analog_tb",
                            params=sh_tests.SMALL, simulator="verilator", build_dir=bdir,
                            extra_env={"HYFLEXPIM_SEED": 1}, quiet=True)
    assert passed == 5 and R.last_run()["visibility"] == "top"
    p = dict(mode="mlc", read_noise=0.05, idle=0.3, ready_prob=0.5)
    fast = sh_tests.speed_run(tmp_path, simulator="verilator", build_dir=bdir, **p)
    assert R.last_run()["built"] is False
    ref = sh_tests.speed_run(tmp_path, simulator="icarus", sh_model="python", clock="cocotb",
                             **p)
    assert fast["results"] == ref["results"] and fast["cycles"] == ref["cycles"]


def test_digital_pim_small():
    from hyflexpim.sim.cocotb_runner import run_block
    passed, _ = run_block("digital_pim", test_module="hyflexpim.tb.digital_pim_tb",
                          params=dict(arrays=2, rows=32, cols=32, head_dim=4, max_seq=16,
                                      heads=1, lanes=4),
                          tb_params={"quick": True}, simulator="verilator", quiet=True,
                          extra_env={"HYFLEXPIM_SEED": 1})
    assert passed == 8
