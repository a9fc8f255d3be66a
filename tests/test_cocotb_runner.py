# amaranth: UnusedElaboratable=no
"""The cocotb runner (sim/cocotb_runner.py) on a tiny counter, on Icarus: both clocks,
waves on request (one file per test), failing tests counted by name, the figures of
:func:`last_run`, and the errors of its options. Verilator: tests/test_verilator.py,
which reuses :func:`counter_run`."""

import shutil
import textwrap

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hyflexpim.sim import cocotb_runner as R

TB_MODULE = "hyflexpim_runner_selftest_tb"
TB_SOURCE = textwrap.dedent('''
    """cocotb module of tests/test_cocotb_runner.py: a counter counts enabled cycles."""
    import cocotb
    from cocotb.triggers import FallingEdge

    from hyflexpim.tb import lib


    @cocotb.test()
    async def counts_enabled_cycles(dut):
        clock = lib.TbClock(dut)
        dut.en.value = 0
        await clock.start()
        dut.en.value = 1
        await clock.cycles(25)
        dut.en.value = 0
        await FallingEdge(dut.clk)
        assert dut.count.value.to_unsigned() == 25
        await clock.cycles(100)
        assert dut.count.value.to_unsigned() == 25


    @cocotb.test()
    async def fails_on_purpose(dut):
        clock = lib.TbClock(dut)
        await clock.start()
        assert False, "on purpose"
''')


class Counter(wiring.Component):
    en: In(1)
    count: Out(16)

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + 1)
        return m


@pytest.fixture
def tb_module(tmp_path, monkeypatch):
    """The cocotb module, importable by the simulator (the runner passes sys.path on)."""
    (tmp_path / f"{TB_MODULE}.py").write_text(TB_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return TB_MODULE


def counter_run(build_dir, simulator, clock, testcase=("counts_enabled_cycles",)):
    return R.run_cocotb(Counter(), toplevel="counter", test_module=TB_MODULE,
                        build_dir=build_dir, simulator=simulator, clock=clock, quiet=True,
                        testcase=list(testcase))


def check_counter_runs(tmp_path, simulator, monkeypatch):
    """Both clocks, waves for the first; a failing test: the checks both simulators share."""
    monkeypatch.setenv("HYFLEXPIM_WAVES", "1")
    assert counter_run(tmp_path / "hdl", simulator, "hdl") == (1, 0)
    run = R.last_run()
    assert (run["simulator"], run["clock"], run["sh_model"]) == (simulator, "hdl", "python")
    assert run["tests"] == 1 and run["failed"] == 0 and run["failed_tests"] == []
    # 2 reset cycles, 1, 25 counting, 1, 100: cycles from the start of the clock
    assert 125 <= run["cycles"] <= 131
    assert run["cycles_per_s"] > 0 and run["tests_s"] > 0
    waves = run["waves"]
    assert waves and waves.endswith("waves-" + _test_name() + (".fst" if simulator == "icarus"
                                                               else ".vcd"))
    assert (tmp_path / "hdl" / waves.rsplit("/", 1)[1]).stat().st_size > 100
    assert "RTL simulation: " + simulator in R.last_run_summary()
    monkeypatch.delenv("HYFLEXPIM_WAVES")
    assert counter_run(tmp_path / "gpi", simulator, "cocotb") == (1, 0)
    assert R.last_run()["clock"] == "cocotb" and R.last_run()["waves"] is None
    assert 125 <= R.last_run()["cycles"] <= 131
    with pytest.raises(R.CocotbFailure, match=r"^1 of 2 cocotb tests failed in "
                                              rf"{TB_MODULE} \({simulator}; see "):
        counter_run(tmp_path / "gpi", simulator, "cocotb",
                    testcase=("counts_enabled_cycles", "fails_on_purpose"))
    assert R.last_run()["failed_tests"] == ["fails_on_purpose"]


def _test_name():
    import os
    return os.environ["PYTEST_CURRENT_TEST"].split(":")[-1].split(" ")[0]


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="no iverilog")
def test_counter_on_icarus(tmp_path, tb_module, monkeypatch):
    check_counter_runs(tmp_path, "icarus", monkeypatch)
    # the HDL clock's top has no clk port: cocotb's clock cannot be mixed in by mistake
    top = (tmp_path / "hdl" / "counter_sim.v").read_text()
    assert "module counter_sim(" in top and "reg clk = 1'b0;" in top


def test_option_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"^simulator must be one of icarus, verilator, "
                                         r"not 'vcs' \(HYFLEXPIM_SIM\)$"):
        R.simulator_name("vcs")
    monkeypatch.setenv("HYFLEXPIM_SIM", "nope")
    with pytest.raises(ValueError, match=r"not 'nope' \(HYFLEXPIM_SIM\)$"):
        R.simulator_name()
    monkeypatch.delenv("HYFLEXPIM_SIM")
    with pytest.raises(ValueError, match=r"^S&H model must be one of hdl, python, not 'c' "
                                         r"\(HYFLEXPIM_SH_MODEL\)$"):
        R.run_cocotb(Counter(), toplevel="counter", test_module="x", sh_model="c",
                     build_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^clock must be one of hdl, cocotb, not 'gpi' "
                                         r"\(HYFLEXPIM_CLOCK\)$"):
        R.run_cocotb(Counter(), toplevel="counter", test_module="x", clock="gpi",
                     build_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^Verilator visibility must be one of auto, top, "
                                         r"all, not 'some'"):
        R.verilator_visibility("hyflexpim.tb.analog_tb", "some")


def test_build_dirs_and_visibility():
    base = R.build_dir_for("x", {"a": 1})
    assert base.name.startswith("x-") and base.parent == R.BUILD_ROOT / "cocotb"
    assert R.build_dir_for("x", {"a": 1}, simulator="verilator", sh_model="python",
                           clock="cocotb").name == base.name + "-verilator-python-cocotbclock"
    assert R.build_dir_for("x", {"a": 2}) != base
    # the chip's testbench watches the bus inside the design; the array's only its ports
    assert R.verilator_visibility("hyflexpim.tb.chip_tb") == "all"
    assert R.verilator_visibility("hyflexpim.tb.analog_tb") == "top"
    assert R.verilator_visibility("hyflexpim.tb.analog_tb", "all") == "all"


def test_last_run_before_and_summary_format(monkeypatch):
    monkeypatch.setattr(R, "_last", {})
    assert R.last_run() == {} and R.last_run_summary() == ""
    monkeypatch.setattr(R, "_last", dict(simulator="verilator", sh_model="hdl", clock="hdl",
                                         cycles=1_234_567, tests_s=2.0, test_s=3.5,
                                         cycles_per_s=617_283.5, built=False, build_s=0.1))
    assert R.last_run_summary() == ("RTL simulation: verilator (S&H model: hdl, clock: hdl), "
                                    "1,234,567 cycles in 2.00 s of tests = 617,284 cycles/s "
                                    "(build reused)")
    r = R.last_run()
    r["cycles"] = 0
    assert R.last_run()["cycles"] == 1_234_567            # a copy
