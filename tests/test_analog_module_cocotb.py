# amaranth: UnusedElaboratable=no
"""Launch the cocotb unit regression of the analog module (tb/analog_module_tb.py) on its
generated Verilog (Icarus)."""

import os

import pytest

from hyflexpim.sim.cocotb_runner import run_block

ALL = ["random_slc_mlc_noise_off_and_on", "long_stall_then_full_rate",
       "reconfiguration_narrower_layer", "reset_in_every_state", "boundaries_tags_and_kinds"]
# the registry's small module (2 arrays of 16 x 32) with a lower ADC resolution and quicker reads
SMALL = dict(slc_bits=4, mlc_bits=5, read_cycles=2)
# 3 arrays (array index 3 exists in the tag but not in the module), 64-bit words (2 per
# array vector, sign-extended partial sums), 6-bit tags (output indices up to 31), the
# highest port and aggregator port 0 on 3 address bits
EDGES = dict(n_arrays=3, slc_bits=4, mlc_bits=5, read_cycles=1, addr_width=3, port=7,
             agg_port=0, data_width=64, tag_width=6)


def _run(params, testcase=None, seed=None):
    seed = seed if seed is not None else int(os.environ.get("HYFLEXPIM_SEED", "1"))
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    return run_block("analog_module", test_module="hyflexpim.tb.analog_module_tb",
                     params=params, extra_env={"HYFLEXPIM_SEED": seed}, testcase=testcase)


def test_small_module_all_cases():
    passed, _ = _run(SMALL)
    assert passed == len(ALL)


def test_module_at_its_edges():
    passed, _ = _run(EDGES, testcase=["random_slc_mlc_noise_off_and_on",
                                      "boundaries_tags_and_kinds"])
    assert passed == 2


@pytest.mark.slow
def test_module_at_its_edges_all_cases():
    passed, _ = _run(EDGES)
    assert passed == len(ALL)
