# amaranth: UnusedElaboratable=no
"""FP16 operator units (rtl/fp16.py): parameter checks, latencies and the
Amaranth-simulator checks (the cocotb regression is ``tests/test_fp16_cocotb.py``).

Every comparison is word by word (result and flags) against the golden model
``hyflexpim.models.fp16.ops``; seeds are printed.
"""

import random
import re

import numpy as np
import pytest
from amaranth.sim import Simulator

from hyflexpim.rtl import fp16 as rtl
from hyflexpim.sim.blocks import all_blocks
from hyflexpim.sim.verilog import to_verilog
from hyflexpim.tb import fp16_tb as tb

OPS = sorted(tb.OPS)
SEED = 20261122


# ----------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("cls", [rtl.Fp16AddSub, rtl.Fp16Mul, rtl.Fp16Div, rtl.Fp16Sqrt,
                                 rtl.Fp16Compare, rtl.Fp16FromInt32, rtl.Fp16ToInt8])
@pytest.mark.parametrize("lanes", [0, -1, 257, 100000, 1.5, True, "2"])
def test_bad_lanes(cls, lanes):
    # 1..256: the published SFU's 256 inputs per cycle bound the generator.
    with pytest.raises(ValueError, match=rf"^lanes must be an integer in 1\.\.256, not {re.escape(repr(lanes))}$"):
        cls(lanes=lanes)


def test_max_lanes_is_the_published_sfu_width():
    assert rtl.MAX_LANES == 256
    assert rtl.Fp16Compare(lanes=256).lanes == 256


@pytest.mark.parametrize("cls", [rtl.Fp16Div, rtl.Fp16Sqrt])
@pytest.mark.parametrize("steps", [0, 15, 2.0])
def test_bad_steps_per_stage(cls, steps):
    with pytest.raises(ValueError, match=rf"^steps_per_stage must be an integer in 1\.\.14, "
                                         rf"not {re.escape(repr(steps))}$"):
        cls(steps_per_stage=steps)


@pytest.mark.parametrize("steps,latency", [(1, 16), (2, 9), (3, 7), (7, 4), (14, 3)])
def test_recurrence_latency(steps, latency):
    assert rtl.Fp16Div(steps_per_stage=steps).latency == latency
    assert rtl.Fp16Sqrt(steps_per_stage=steps).latency == latency


def test_blocks_generate():
    blocks = all_blocks()
    names = ["fp16_add", "fp16_mul", "fp16_div", "fp16_sqrt", "fp16_cmp", "fp16_from_int32",
             "fp16_to_int8"]
    for name in names:
        text = to_verilog(blocks[name].build(**blocks[name].small), f"t_{name}")
        assert f"module t_{name}" in text and "i__payload" in text and "o__payload" in text


# ----------------------------------------------------------------------------- Amaranth sim

def _simulate(dut, words, seed, p_ready=0.7, p_valid=0.9):
    """Stream ``words`` through ``dut``; returns (outputs, cycles, first output cycle)."""
    rnd = random.Random(seed)
    out = []
    first = []

    async def bench(ctx):
        idx, cycle = 0, 0
        offering = False
        while len(out) < len(words):
            if not offering and idx < len(words) and rnd.random() < p_valid:
                offering = True
                ctx.set(dut.i.payload.as_value(), words[idx])
            ctx.set(dut.i.valid, offering)
            ctx.set(dut.o.ready, rnd.random() < p_ready)
            # sample the handshakes as the coming clock edge will see them
            i_fire = offering and ctx.get(dut.i.ready)
            o_fire = ctx.get(dut.o.valid) and ctx.get(dut.o.ready)
            if o_fire:
                out.append(ctx.get(dut.o.payload.as_value()))
                if not first:
                    first.append(cycle)
            if i_fire:
                offering = False
                idx += 1
            await ctx.tick()
            cycle += 1
            assert cycle < 100 + 20 * len(words), "timeout"

    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.mark.parametrize("op", OPS)
def test_amaranth_sim_quick(op):
    seed = SEED + sum(map(ord, op))
    print(f"seed {seed}")
    v = tb.vectors(op, seed)
    # a slice of the quick set: every special pair is covered by the cocotb run
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(next(iter(v.values()))), 300, replace=False)
    v = {k: np.asarray(a)[idx] for k, a in v.items()}
    dut = tb.make_unit(op)
    outs = _simulate(dut, tb.pack(op, v), seed)
    r, f = tb.unpack(op, outs, len(idx))
    bad = tb.mismatches(op, v, r, f)
    assert not bad, "\n".join(bad)


def test_amaranth_sim_lanes_and_stall():
    """Three lanes under heavy backpressure: every lane bit-exact, nothing lost."""
    op = "mul"
    seed = SEED + 3
    print(f"seed {seed}")
    v = tb.vectors(op, seed)
    v = {k: np.asarray(a)[:600] for k, a in v.items()}
    dut = tb.make_unit(op, lanes=3)
    outs = _simulate(dut, tb.pack(op, v, lanes=3), seed, p_ready=0.3, p_valid=0.8)
    r, f = tb.unpack(op, outs, 600, lanes=3)
    bad = tb.mismatches(op, v, r, f)
    assert not bad, "\n".join(bad)


def _first_result_cycle(dut, word):
    """Cycle at which the result of one input accepted at cycle 0 appears (o.ready high)."""
    seen = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.payload.as_value(), word)
        ctx.set(dut.i.valid, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for cycle in range(1, 40):
            if ctx.get(dut.o.valid):
                seen.append(cycle)
                return
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    return seen[0] if seen else None


@pytest.mark.parametrize("op,params", [("add", {}), ("mul", {}), ("div", {}),
                                       ("div", {"steps_per_stage": 5}), ("sqrt", {}),
                                       ("cmp", {}), ("from_int32", {}), ("to_int8", {})])
def test_latency_matches_property(op, params):
    dut = tb.make_unit(op, **params)
    v = {k: a[:1] for k, a in tb.vectors(op, 1).items()}
    assert _first_result_cycle(dut, tb.pack(op, v)[0]) == dut.latency


@pytest.mark.parametrize("cls", [rtl.Fp16AddSub, rtl.Fp16Mul, rtl.Fp16Compare, rtl.Fp16FromInt32,
                                 rtl.Fp16ToInt8, rtl.Fp16Div, rtl.Fp16Sqrt])
def test_class_latency_constant(cls):
    assert cls.LATENCY == cls().latency
