# amaranth: UnusedElaboratable=no
"""Launch the cocotb bus regression (tb/bus_tb.py) on the generated Verilog (Icarus)."""

import os

import pytest

from hyflexpim.rtl.bus import InnerBus, GlobalBus
from hyflexpim.sim.cocotb_runner import run_cocotb


def _run(cls, params, testcase=None, seed=None, report=None):
    seed = seed if seed is not None else int(os.environ.get("HYFLEXPIM_SEED", "1"))
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    env = {"HYFLEXPIM_SEED": seed}
    if report:
        env["HYFLEXPIM_BUS_REPORT"] = report
    kw = dict(params)
    if cls is GlobalBus:
        kw["n_pus"] = kw.pop("n_ports") - 1
    return run_cocotb(cls(**kw), toplevel="shared_bus", test_module="hyflexpim.tb.bus_tb",
                      params=params, extra_env=env, testcase=testcase)


def test_inner_bus_4_ports_all_cases():
    # addr_width 3 with 4 ports leaves unknown destinations to test the drop path
    passed, _ = _run(InnerBus, dict(n_ports=4, data_width=32, fifo_depth=4, addr_width=3,
                                    tag_width=8))
    assert passed == 3


def test_global_bus_3_ports_shallow_fifos():
    passed, _ = _run(GlobalBus, dict(n_ports=3, data_width=64, fifo_depth=2, tag_width=5),
                     testcase=["random_traffic_random_backpressure", "uncontended_latency"])
    assert passed == 2


@pytest.mark.slow
def test_inner_bus_34_ports():
    """The published PU: 24 analog + 8 digital modules, aggregator and bridge."""
    passed, _ = _run(InnerBus, dict(n_ports=34, data_width=32, fifo_depth=4, tag_width=8))
    assert passed == 3
