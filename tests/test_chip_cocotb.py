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


@pytest.mark.slow
def test_chip_long_stall_then_full_rate():
    """The IO output held 5 vector times with two vectors in flight (INT8, then INT32
    out after reconfiguring PU 1), released: every word exact, then back to back."""
    passed, _ = _run(SMALL, {}, testcase=["long_stall_then_full_rate"])
    assert passed == 1


@pytest.mark.slow
def test_chip_reset_in_every_state():
    """Reset idle, mid-input, PU 0 converting, PU 1 converting, output waiting; after
    each the masks are 0 and a reconfigured two-layer run is exact."""
    passed, _ = _run(SMALL, {}, testcase=["reset_in_every_state"])
    assert passed == 1


@pytest.mark.slow
def test_chip_three_pus():
    """A chip of three PUs: three layers on PUs 0 -> 1 -> 2 -> IO (INT8), and one layer
    split over the three (PARTIAL_SUM from PUs 0 and 1 into PU 2's aggregator)."""
    passed, _ = _run(dict(SMALL, n_pus=3), {},
                     testcase=["three_layers_three_pus", "split_layer_three_pus"])
    assert passed == 2
