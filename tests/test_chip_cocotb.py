# amaranth: UnusedElaboratable=no
"""Chip top in cocotb (tb/chip_tb.py): two layers on two PUs, and one layer split over
two PUs. Parameter checks and addresses are tests/test_chip_amaranth.py."""

import os

import pytest

from hyflexpim.sim.blocks import get_block
from hyflexpim.sim.cocotb_runner import run_block

#: The registry's small chip (two PUs of 2 modules x 2 arrays of 16 x 32, tag_width 6)
#: with quicker crossbar reads and at most 4 row chunks per output.
QUICK = dict(read_cycles=2, max_parts=4)
SMALL = get_block("chip").resolve(small=True, **QUICK)


def _run(chip_params, layers, testcase=None, seed=None, report=None):
    seed = seed if seed is not None else int(os.environ.get("HYFLEXPIM_SEED", "1"))
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    env = {"HYFLEXPIM_SEED": seed}
    if report:
        env["HYFLEXPIM_CHIP_REPORT"] = report
    return run_block("chip", test_module="hyflexpim.tb.chip_tb", params=chip_params,
                     small=False, tb_params=layers, extra_env=env, testcase=testcase)


def test_chip_two_layers_two_pus():
    """32 x 12 (GELU) on PU 0 -> global bus -> 12 x 12 on PU 1 -> IO, INT8 bit-exact."""
    passed, _ = _run(SMALL, dict(m1=32, n1=12, n2=12, n_slc1=4, n_slc2=4,
                                                    vectors=2),
                     testcase=["two_layers_noise_off", "two_layers_noise_on"])
    assert passed == 2


def test_chip_split_layer():
    """64 x 12 split by row chunks: PU 0's sums -> PARTIAL_SUM -> PU 1 -> IO, INT32 exact."""
    passed, _ = _run(SMALL, dict(m=64, n=12, n_slc=4, vectors=2),
                     testcase=["split_layer_noise_off", "split_layer_noise_on"])
    assert passed == 2


@pytest.mark.slow
def test_chip_narrower_layers_after_wider_ones():
    """32 x 12 -> 12 x 12 on two PUs, then 16 x 6 -> 6 x 4 on other arrays of the same
    PUs in the other cell modes: no stale TABLE, MASK, PARTS or OUTPUTS entry."""
    passed, _ = _run(SMALL, {}, testcase=["narrower_layers_after_wider_ones"])
    assert passed == 1
