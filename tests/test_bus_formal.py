# amaranth: UnusedElaboratable=no
"""Bounded model check of the shared bus (sim/formal_props.py) with yowasp-sby + yices."""

from pathlib import Path

import pytest

from hyflexpim.sim import formal
from hyflexpim.sim.formal import run_bmc
from hyflexpim.sim.formal_props import BusOrderHarness

WORK = Path("build") / "formal"

needs_sby = pytest.mark.skipif(formal._bin("yowasp-sby") is None,
                               reason="yowasp-sby not installed (extra 'synth')")


def _bmc(name, harness, depth):
    ok, log = run_bmc(harness, WORK / name, depth=depth)
    print(log[-1500:])
    return ok, log


@needs_sby
def test_bus_no_loss_duplication_reorder_bmc():
    """2 ports, FIFO depth 2, every valid/ready pattern up to 12 cycles."""
    ok, log = _bmc("bus_order_n2", BusOrderHarness(2, 2), 12)
    assert ok, "BMC found a counterexample (see the log above)"


@needs_sby
def test_bus_formal_harness_catches_a_tighter_wait_bound():
    """The harness is not vacuous: claiming a wait bound of 0 with 2 contending ports fails."""
    ok, log = _bmc("bus_order_n2_neg", BusOrderHarness(2, 2, wait_bound=0), 12)
    assert not ok and "Assert failed" in log


@pytest.mark.slow
@needs_sby
def test_bus_bmc_deeper():
    ok, _ = _bmc("bus_order_n2_d20", BusOrderHarness(2, 2), 20)
    assert ok


@needs_sby
def test_a_timeout_is_a_result_and_stops_the_solvers():
    """3 ports at depth 20 do not finish in 5 s: TIMEOUT with the step reached, and no
    process of that run (SymbiYosys, smtbmc, the solver) is left running."""
    import os
    from hyflexpim.sim.formal import run_sby
    wd = (WORK / "bus_order_n3_timeout").resolve()
    res = run_sby(BusOrderHarness(3, 2), wd.name, mode="bmc", depth=20, workdir=wd,
                  timeout=5, script=formal.BUS_SCRIPT)
    assert res.status == "TIMEOUT" and not res.passed
    assert res.summary.startswith("no result within 5 s")
    import time

    def running():          # the run's processes, zombies (killed, not yet reaped) aside
        out = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
                if state != "Z" and os.readlink(f"/proc/{pid}/cwd").startswith(str(wd)):
                    out.append(pid)
            except OSError:
                pass
        return out
    for _ in range(50):
        if not running():
            break
        time.sleep(0.1)
    assert not running(), f"processes of the timed-out run still running: {running()}"
    with pytest.raises(ValueError, match=r"^timeout must be a positive number of seconds"):
        run_sby(BusOrderHarness(2, 2), "x", timeout=0)
