# amaranth: UnusedElaboratable=no
"""Formal checks of the shared bus (sim/formal_props.py) with yowasp-sby + yices: bounded
model checks, and unbounded proofs by k-induction with the harness's inductive invariants."""

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


#: k-induction depth of the bus proofs: with the invariants (``invariants=True``) every
#: assertion at step k follows from all of them at step k - 1, so depth 1 closes.
PROVE_DEPTH = 1


def _prove(name, harness, depth=PROVE_DEPTH, timeout=120):
    """k-induction of ``harness`` in a fresh work folder; returns the FormalResult and log."""
    import shutil
    wd = (WORK / name).resolve()
    shutil.rmtree(wd, ignore_errors=True)
    res = formal.run_sby(harness, name, mode="prove", depth=depth, workdir=wd,
                         timeout=timeout, script=formal.BUS_SCRIPT)
    log = (wd / "sby.log").read_text()
    print(res)
    print(log[-1500:])
    return res, log


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


@needs_sby
@pytest.mark.parametrize("n_ports", [3, 4])
def test_bus_order_proven_by_induction(n_ports):
    """Unbounded: n_ports ports, FIFO depth 2, any valid/ready/payload pattern for any
    number of cycles (k-induction, depth 1; 3 ports about 6 s, 4 ports about 10 s)."""
    res, log = _prove(f"bus_order_n{n_ports}_prove",
                      BusOrderHarness(n_ports, 2, invariants=True))
    assert res.status == "PASS", res.summary
    assert "returned pass for induction" in log and "successful proof by k-induction" in log


@needs_sby
def test_bus_induction_needs_the_invariants():
    """Without the FIFO / arbiter invariants the base case passes but the induction step
    fails (an unreachable start state): the proof above rests on the invariants."""
    res, log = _prove("bus_order_n3_prove_noinv", BusOrderHarness(3, 2), depth=2)
    assert res.status == "UNKNOWN"
    assert "returned pass for basecase" in log and "returned FAIL for induction" in log


@needs_sby
@pytest.mark.parametrize("mutant", [dict(expect_skew=1), dict(wait_bound=1)],
                         ids=["sequence_off_by_one", "wait_bound_n_minus_2"])
def test_bus_induction_catches_a_wrong_expectation(mutant):
    """The harness with its invariants is not vacuous: expecting the sequence number after
    the right one, or a wait bound of n_ports - 2, fails with a real trace from reset
    (base case, depth 8)."""
    res, log = _prove(f"bus_order_n3_prove_neg_{next(iter(mutant))}",
                      BusOrderHarness(3, 2, invariants=True, **mutant), depth=8)
    assert res.status == "FAIL" and "returned FAIL for basecase" in log
    assert "Assert failed" in log


def test_bus_invariants_need_a_power_of_two_fifo_depth():
    with pytest.raises(ValueError, match="power-of-two fifo_depth"):
        BusOrderHarness(3, 3, invariants=True)


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
