# amaranth: UnusedElaboratable=no
"""Chip top (rtl/chip.py): parameter checks, addresses, the PU keywords and the registry
entry. The cocotb runs are tests/test_chip_cocotb.py."""

import pytest

from hyflexpim.rtl.chip import Chip
from hyflexpim.sim.blocks import get_block

#: The PU keywords of the registry's small chip, quick (as tests/test_chip_cocotb.py
#: runs it).
PU = {k: v for k, v in get_block("chip").resolve(small=True, read_cycles=2, max_parts=4).items()
      if k != "n_pus"}


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

def test_chip_pu_params():
    chip = Chip(3, **PU)
    kw = chip.pu_params
    assert kw["ext_addr_width"] == chip.addr_width == 2 and kw["read_cycles"] == 2
    assert {k: v for k, v in kw.items() if k != "ext_addr_width"} == \
        {k: v for k, v in PU.items() if k != "global_fifo_depth"}
