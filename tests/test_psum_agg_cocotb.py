# amaranth: UnusedElaboratable=no
"""Launch the cocotb regression of the partial-sum aggregator (tb/psum_agg_tb.py) on its
generated Verilog (Icarus)."""

import os

from hyflexpim.sim.cocotb_runner import run_block

ALL = ["random_layers_gaps_backpressure", "boundaries_tags_parts_dest",
       "reconfiguration_narrower_layer", "long_stall_then_full_rate", "reset_in_every_state"]


def _run(params, testcase=None, seed=None):
    seed = seed if seed is not None else int(os.environ.get("HYFLEXPIM_SEED", "1"))
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    return run_block("psum_agg", test_module="hyflexpim.tb.psum_agg_tb", params=params,
                     extra_env={"HYFLEXPIM_SEED": seed}, testcase=testcase)


def test_small_aggregator_all_cases():
    """The registry's small aggregator (16 slots, max_parts 4, 8-bit tags: tags 16..255
    alias slots), with non-zero register values after reset and the highest port."""
    passed, _ = _run(dict(port=31, init_parts=3, init_dest=6))
    assert passed == len(ALL)


def test_odd_widths_all_cases():
    """8 slots, max_parts 7 (a full 3-bit count), 20-bit results in 64-bit data, 5-bit
    tags, 3-bit addresses."""
    passed, _ = _run(dict(slots=8, max_parts=7, result_width=20, data_width=64, tag_width=5,
                          addr_width=3, port=7, init_parts=1, init_dest=0))
    assert passed == len(ALL)
