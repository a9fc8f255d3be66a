# amaranth: UnusedElaboratable=no
"""Processing unit (rtl/pu.py): parameter checks of the PU, its analog and digital
modules and addresses; the bridge in the Amaranth simulator: CONFIG forwarding and
registers, the ACTIVATION scatter, PARTIAL_SUM / RESULT delivery, and the outgoing routes
(including RESULT leaving as PARTIAL_SUM for a layer split over PUs), under random
backpressure. The end-to-end cocotb layer test is tests/test_pu_cocotb.py."""

import random

import pytest
from amaranth.sim import Simulator

from hyflexpim.rtl.bus import Kind, pack_packet, unpack_packet, config_word
from hyflexpim.rtl.digital import DigitalModule
from hyflexpim.rtl.pu import (AnalogModule, Bridge, ProcessingUnit, BR_REG_ROUTE,
                              BR_REG_RESULT_IN, route_value)
from hyflexpim.sim.blocks import get_block

#: The registry's small PU, quick (as tests/test_pu_cocotb.py runs it).
SMALL = get_block("pu").resolve(small=True, read_cycles=2, max_parts=4, ext_addr_width=2)

KW = dict(n_modules=3, arrays_per_module=2, word_bits=2, agg_port=4, result_in=5, n_ports=6,
          addr_width=3, ext_addr_width=2, data_width=32, tag_width=6)


def cfg(target, tag, reg, value):
    return (1, Kind.CONFIG, tag, (target << 24) | config_word(reg, value))


def run_bridge(inbound, outbound, seed, cycles=400):
    """Drive ``inbound`` (dest, kind, tag, data) on ext_i and ``outbound`` on bus_i with
    random gaps and backpressure; return the packets seen on bus_o and ext_o."""
    dut = Bridge(**KW)
    rng = random.Random(seed)
    got_bus, got_ext = [], []

    async def tb(ctx):
        ins = [pack_packet(dut.ext_i.payload.shape(), 0, *p) for p in inbound]
        outs = [pack_packet(dut.bus_i.payload.shape(), *p) for p in outbound]
        cur_i = cur_o = None
        for _ in range(cycles):
            if cur_i is None and ins and rng.random() < 0.7:
                cur_i = ins.pop(0)
            if cur_o is None and outs and rng.random() < 0.7 and not ins and cur_i is None:
                cur_o = outs.pop(0)
            ctx.set(dut.ext_i.valid, cur_i is not None)
            ctx.set(dut.ext_i.payload.as_value(), cur_i or 0)
            ctx.set(dut.bus_i.valid, cur_o is not None)
            ctx.set(dut.bus_i.payload.as_value(), cur_o or 0)
            ctx.set(dut.bus_o.ready, rng.random() < 0.6)
            ctx.set(dut.ext_o.ready, rng.random() < 0.6)
            await ctx.delay(1e-9)
            if cur_i is not None and ctx.get(dut.ext_i.ready):
                cur_i = None
            if cur_o is not None and ctx.get(dut.bus_i.ready):
                cur_o = None
            if ctx.get(dut.bus_o.valid) and ctx.get(dut.bus_o.ready):
                got_bus.append(unpack_packet(dut.bus_o.payload.shape(),
                                             ctx.get(dut.bus_o.payload.as_value())))
            if ctx.get(dut.ext_o.valid) and ctx.get(dut.ext_o.ready):
                got_ext.append(unpack_packet(dut.ext_o.payload.shape(),
                                             ctx.get(dut.ext_o.payload.as_value())))
            await ctx.tick()
        assert not ins and not outs and cur_i is None and cur_o is None, "not all sent"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return got_bus, got_ext


@pytest.mark.parametrize("seed", [1, 2])
def test_bridge_in_and_out(seed):
    print(f"seed {seed}")
    masks = {0: 0b000101, 1: 0b111010}                 # arrays of row chunks 0 and 1
    inbound = [cfg(0, c, 0, m) for c, m in masks.items()]
    inbound += [cfg(0, 0, BR_REG_ROUTE + Kind.RESULT.value, route_value(3, Kind.PARTIAL_SUM)),
                cfg(0, 0, BR_REG_RESULT_IN, 4),
                cfg(2, 1, 7, 0x1234),                 # to module port 2, array 1
                cfg(9, 0, 1, 1)]                      # no such inner port: dropped
    words = [((c << 2) | w, 0x1000 * c + w) for c in (0, 1) for w in (3, 0)]
    inbound += [(1, Kind.ACTIVATION, tag, d) for tag, d in words]
    inbound += [(1, Kind.PARTIAL_SUM, 33, 0xFFFFFFF0), (1, Kind.RESULT, 2, 77)]
    outbound = [(4, 0, Kind.RESULT, 5, 1000), (5, 0, Kind.ACTIVATION, 1, 0xAABBCCDD)]
    got_bus, got_ext = run_bridge(inbound, outbound, seed)

    exp_bus = [(0, 2, Kind.CONFIG, 1, config_word(7, 0x1234))]
    for tag, d in words:
        c, w = tag >> 2, tag & 3
        for t in range(6):
            if masks[c] >> t & 1:
                exp_bus.append((0, 1 + t // 2, Kind.ACTIVATION, ((t % 2) << 2) | w, d))
    exp_bus += [(0, 4, Kind.PARTIAL_SUM, 33, 0xFFFFFFF0), (0, 4, Kind.RESULT, 2, 77)]
    assert got_bus == exp_bus
    # RESULT re-routed as a partial sum to global port 3; ACTIVATION to the reset route (0)
    assert got_ext == [(4 & 3, 3, Kind.PARTIAL_SUM, 5, 1000), (5 & 3, 0, Kind.ACTIVATION, 1, 0xAABBCCDD)]


def test_bridge_parameter_error():
    with pytest.raises(ValueError, match=r"^n_modules \* arrays_per_module must be an integer "
                                         r"in 1\.\.3840 \(bridge scatter masks\), not 4096$"):
        Bridge(**dict(KW, n_modules=2, arrays_per_module=2048, tag_width=16))


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
