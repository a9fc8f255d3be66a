# amaranth: UnusedElaboratable=no
"""Chip top: parameter checks, addresses, two layers on two PUs, and one layer split
over two PUs (tb/chip_tb.py)."""

import os

import pytest

from hyflexpim.rtl.chip import Chip
from hyflexpim.sim.blocks import get_block
from hyflexpim.sim.cocotb_runner import run_block

#: The registry's small chip (two PUs of 2 modules x 2 arrays of 16 x 32, tag_width 6)
#: with quicker crossbar reads and at most 4 row chunks per output.
QUICK = dict(read_cycles=2, max_parts=4)
SMALL = get_block("chip").resolve(small=True, **QUICK)
PU = {k: v for k, v in SMALL.items() if k != "n_pus"}      # the PU keywords of the chip


def _run(chip_params, layers, testcase=None, seed=None, report=None):
    seed = seed if seed is not None else int(os.environ.get("HYFLEXPIM_SEED", "1"))
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    env = {"HYFLEXPIM_SEED": seed}
    if report:
        env["HYFLEXPIM_CHIP_REPORT"] = report
    return run_block("chip", test_module="hyflexpim.tb.chip_tb", params=chip_params,
                     small=False, tb_params=layers, extra_env=env, testcase=testcase)


@pytest.mark.parametrize("kw, msg", [
    (dict(n_pus=0), r"^n_pus must be an integer in 1\.\.64, not 0$"),
    (dict(global_fifo_depth=1), r"^global_fifo_depth must be an integer in 2\.\.1024, not 1$"),
    (dict(ext_addr_width=3), r"^ext_addr_width is set by the chip \(global bus address bits\)$"),
    (dict(n_modules=0), r"^n_modules must be an integer in 1\.\.64, not 0$"),
])
def test_chip_parameter_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Chip(**kw)


def test_chip_addresses_and_block():
    chip = Chip(3, **PU)
    assert chip.addr_width == 2 and chip.arrays_per_pu == 4
    assert [chip.pu_port(p) for p in range(3)] == [1, 2, 3]
    with pytest.raises(ValueError, match=r"^p must be an integer in 0\.\.2, not 3$"):
        chip.pu_port(3)
    get_block("chip").build(small=True)


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


def test_chip_pu_params():
    chip = Chip(3, **PU)
    kw = chip.pu_params
    assert kw["ext_addr_width"] == chip.addr_width == 2 and kw["read_cycles"] == 2
    assert {k: v for k, v in kw.items() if k != "ext_addr_width"} == \
        {k: v for k, v in PU.items() if k != "global_fifo_depth"}
