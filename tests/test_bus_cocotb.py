# amaranth: UnusedElaboratable=no
"""Launch the cocotb bus regression (tb/bus_tb.py) on the generated Verilog (Icarus)."""

import os

import pytest

from hyflexpim.sim.cocotb_runner import run_block


def _run(block, params, testcase=None, seed=None, report=None, small=True):
    seed = seed if seed is not None else int(os.environ.get("HYFLEXPIM_SEED", "1"))
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    env = {"HYFLEXPIM_SEED": seed}
    if report:
        env["HYFLEXPIM_BUS_REPORT"] = report
    return run_block(block, toplevel="shared_bus", test_module="hyflexpim.tb.bus_tb",
                     params=params, small=small, extra_env=env, testcase=testcase)


def test_inner_bus_4_ports_all_cases():
    # the registry's small inner bus (4 ports); addr_width 3 with 4 ports leaves unknown
    # destinations to test the drop path
    passed, _ = _run("inner_bus", dict(addr_width=3))
    assert passed == 6


def test_global_bus_3_ports_shallow_fifos():
    # the registry's small global bus (2 PUs + IO: 3 ports), wider words, shallow FIFOs
    passed, _ = _run("global_bus", dict(data_width=64, fifo_depth=2, tag_width=5),
                     testcase=["random_traffic_random_backpressure", "uncontended_latency",
                               "long_stall_then_full_rate", "reset_in_every_state",
                               "address_and_field_limits"])
    assert passed == 5


def test_inner_bus_every_address_is_a_port():
    """4 ports on 2 address bits: destinations 0..3 are all ports (no drop path built),
    3-bit tags: the address and field limits on it."""
    passed, _ = _run("inner_bus", dict(addr_width=2, tag_width=3),
                     testcase=["address_and_field_limits"])
    assert passed == 1


@pytest.mark.slow
def test_inner_bus_34_ports():
    """The published PU: 24 analog + 8 digital modules, aggregator and bridge."""
    passed, _ = _run("inner_bus", {}, small=False)
    assert passed == 6
