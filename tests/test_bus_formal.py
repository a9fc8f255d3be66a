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
