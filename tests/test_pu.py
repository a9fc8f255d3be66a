# amaranth: UnusedElaboratable=no
"""Processing unit: parameter checks and the end-to-end cocotb layer test (tb/pu_tb.py)."""

import os

import pytest
from amaranth.hdl import Fragment

from hyflexpim.rtl.digital import DigitalModule
from hyflexpim.rtl.pu import AnalogModule, ProcessingUnit, route_value
from hyflexpim.sim.blocks import get_block
from hyflexpim.sim.cocotb_runner import run_block

#: On top of a configuration: quicker crossbar reads, at most 4 row chunks per output and
#: the 2-bit global addresses of a two-PU chip.
QUICK = dict(read_cycles=2, max_parts=4, ext_addr_width=2)
#: The registry's small PU (2 modules x 2 arrays of 16 x 32, tag_width 6), quick.
SMALL = get_block("pu").resolve(small=True, **QUICK)
# 128 inputs x 64 outputs on 64 x 128 arrays: 16 SLC + 48 MLC outputs per 64-row chunk
# = 1 SLC + 2 MLC arrays, two chunks: 6 arrays.
FULL = get_block("pu").resolve(n_modules=3, read_cycles=4, max_parts=4, ext_addr_width=2)


def _run(pu_params, layer, testcase=None, seed=None, report=None):
    seed = seed if seed is not None else int(os.environ.get("HYFLEXPIM_SEED", "1"))
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    env = {"HYFLEXPIM_SEED": seed}
    if report:
        env["HYFLEXPIM_PU_REPORT"] = report
    return run_block("pu", test_module="hyflexpim.tb.pu_tb", params=pu_params, small=False,
                     tb_params=layer, extra_env=env, testcase=testcase)


@pytest.mark.parametrize("kw, msg", [
    (dict(n_modules=0), r"^n_modules must be an integer in 1\.\.64, not 0$"),
    (dict(arrays_per_module=0), r"^arrays_per_module must be an integer in 1\.\.4096, not 0$"),
    (dict(tag_width=1), r"^tag_width must be an integer in 2\.\.16, not 1$"),
    (dict(tag_width=4, arrays_per_module=2), r"^tag_width must be an integer in 5\.\.32 to address "
                                             r"2 arrays of 16 input words, not 4$"),
    (dict(fifo_depth=1), r"^fifo_depth must be an integer in 2\.\.1024, not 1$"),
    (dict(data_width=20), r"^data_width must be an integer in 32\.\.1024, not 20$"),
    (dict(rows=0), r"^rows must be an integer in 1\.\.1024, not 0$"),
    (dict(max_parts=0), r"^max_parts must be an integer in 1\.\.65535, not 0$"),
    (dict(n_digital=9), r"^n_digital must be an integer in 0\.\.8, not 9$"),
    (dict(ext_addr_width=13), r"^ext_addr_width must be an integer in 1\.\.12, not 13$"),
    (dict(rows=24), r"^rows must be data_width/8 \(4\) times a power of two, not 24$"),
    (dict(data_width=48, rows=12), r"^data_width must be a power of two in 32\.\.1024, not 48$"),
])
def test_pu_parameter_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ProcessingUnit(**kw)


def test_module_parameter_errors():
    with pytest.raises(ValueError, match=r"^n_arrays must be an integer in 1\.\.4096, not 0$"):
        AnalogModule(0)
    with pytest.raises(ValueError, match=r"^port must be an integer in 0\.\.3, not 4$"):
        AnalogModule(2, port=4, addr_width=2)


@pytest.mark.parametrize("kw, msg", [
    (dict(port=4, addr_width=2), r"^port must be an integer in 0\.\.3, not 4$"),
    (dict(tag_width=1), r"^tag_width must be an integer in 2\.\.16, not 1$"),
    (dict(data_width=96), r"^data_width must be a power of two in 32\.\.1024, not 96$"),
    (dict(data_width=30), r"^data_width must be an integer in 32\.\.1024, not 30$"),
    (dict(addr_width=0), r"^addr_width must be an integer in 1\.\.16, not 0$"),
])
def test_digital_module_parameter_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        DigitalModule(**kw)


def test_route_value():
    assert route_value(5, 1) == (1 << 12) | 5
    with pytest.raises(ValueError, match=r"^dest must be an integer in 0\.\.4095, not 4096$"):
        route_value(4096, 0)


def test_blocks_build():
    for name in ("pu", "analog_module", "digital_module"):
        get_block(name).build(small=True)


def test_pu_ports_and_addresses():
    pu = ProcessingUnit(**SMALL)
    assert pu.n_ports == 5 and pu.agg_port == 3 and pu.digital_port(0) == 4
    assert [pu.array_location(t) for t in range(4)] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert pu.n_chunks == 16 and pu.addr_width == 3 and pu.ext_addr_width == 2
    assert pu.words == 4 and pu.word_bits == 2
    with pytest.raises(ValueError, match=r"^t must be an integer in 0\.\.3, not 4$"):
        pu.array_location(4)


def test_pu_layer_small_noise_off_and_on():
    """32 inputs x 12 outputs (4 SLC + 8 MLC) on 16 x 32 arrays: 4 arrays, 2 row chunks;
    INT32 results (noise off / on), then through the digital module to INT8 (GELU on with
    noise off / on, GELU off)."""
    passed, _ = _run(SMALL, dict(m=32, n=12, n_slc=4, vectors=2))
    assert passed == 5


@pytest.mark.slow
def test_pu_layer_128x64_published_arrays():
    """The issue's layer: 128 inputs x 64 outputs, mixed SLC/MLC, 64 x 128 arrays,
    INT32 and through the SFU path."""
    passed, _ = _run(FULL, dict(m=128, n=64, n_slc=16, vectors=2))
    assert passed == 5


def test_check_parameters_without_building():
    """Class-level checks and latencies: no component is built to validate or to ask."""
    kw = ProcessingUnit.check_parameters(rows=16, cols=32, tag_width=6)
    assert kw == dict(get_block("pu").resolve(small=True))
    assert ProcessingUnit(**kw).mask_regs == 1
    with pytest.raises(ValueError, match=r"^n_modules must be an integer in 1\.\.64, not 0$"):
        ProcessingUnit.check_parameters(n_modules=0)
    assert DigitalModule.latency_of(4) == DigitalModule().latency == 97
    with pytest.raises(ValueError, match=r"^degree must be an integer in 1\.\.8, not 0$"):
        DigitalModule.check_parameters(degree=0)
