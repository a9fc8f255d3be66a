# amaranth: UnusedElaboratable=no
"""Quick Amaranth-simulator checks of the analog array's sub-blocks, and their parameters."""

import re

import numpy as np
import pytest
from amaranth.sim import Simulator

from hyflexpim.models import encoding as enc
from hyflexpim.models.array import sar_search
from hyflexpim.models.crossbar import Crossbar, ONE_LSB
from hyflexpim.rtl.analog import (AnalogArray, Mode, SarAdcController, ShiftAdd, WordlineDriver,
                                  CrossbarSignature)
from hyflexpim.sim.blocks import get_block, parse_params, all_blocks
from hyflexpim.sim.verilog import to_verilog

SEED = 7


def _sim(dut, tb):
    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("slc_bits,mlc_bits", [(6, 7), (4, 4), (3, 5)])
def test_sar_controller_steps_trials_and_codes(slc_bits, mlc_bits):
    cols = 8
    dut = SarAdcController(cols=cols, slc_bits=slc_bits, mlc_bits=mlc_bits, rows=16)
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    jobs = []
    for mode in ("slc", "mlc", "mlc", "slc"):
        mc = (1 << (slc_bits if mode == "slc" else mlc_bits)) - 1
        held = rng.integers(-ONE_LSB, (mc + 3) * ONE_LSB, cols)
        held[0], held[1] = mc * ONE_LSB * 4, -5 * ONE_LSB      # saturate at both ends
        jobs.append((mode, held))
    got = []

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        job = 0
        held = None
        trials = []
        last_code_cycle, steps = None, []
        cycle = 0
        while len(got) < len(jobs) * cols:
            if job < len(jobs):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, {"plane": 0, "xsum": 0,
                                        "mode": Mode.MLC if jobs[job][0] == "mlc" else Mode.SLC})
            else:
                ctx.set(dut.i.valid, 0)
            if held is not None:
                sel, trial = ctx.get(dut.sel), ctx.get(dut.trial)
                trials.append((sel, trial))
                ctx.set(dut.cmp, int(Crossbar.compare(held[sel], trial)))
            if ctx.get(dut.o.valid):
                got.append((ctx.get(dut.o.p.col), ctx.get(dut.o.p.code)))
                if last_code_cycle is not None:
                    steps.append(cycle - last_code_cycle)
                last_code_cycle = cycle
            if ctx.get(dut.sample):
                held = jobs[job][1]
                job += 1
            await ctx.tick()
            cycle += 1
        tb.trials, tb.steps = trials, steps

    _sim(dut, tb)
    k = 0
    for mode, held in jobs:
        bits = slc_bits if mode == "slc" else mlc_bits
        codes, _ = sar_search(held, bits, mlc_bits)
        for c in range(cols):
            assert got[k] == (c, codes[c]), f"{mode} col {c}"
            k += 1
    # one comparison per cycle: codes come out every `bits` cycles, mode switches included
    expect_steps = []
    for mode, _ in jobs:
        expect_steps += [slc_bits if mode == "slc" else mlc_bits] * cols
    assert tb.steps == expect_steps[1:]
    # trial sequence of the first column of every job equals the search's trials
    pos = 0
    for mode, held in jobs:
        bits = slc_bits if mode == "slc" else mlc_bits
        _, trial_list = sar_search(held, bits, mlc_bits)
        for c in range(cols):
            seq = [t for s, t in tb.trials[pos:pos + bits]]
            assert all(s == c for s, _ in tb.trials[pos:pos + bits])
            assert seq == [int(t[c]) for t in trial_list]
            pos += bits


@pytest.mark.parametrize("variant", ["slc_mlc", "slc_only", "mlc_only"])
def test_shift_add_against_encoding_formula(variant):
    rows, cols = 16, 32
    dut = ShiftAdd(rows=rows, cols=cols, slc_bits=6, mlc_bits=7, result_width=32, variant=variant)
    rng = np.random.default_rng(SEED + 1)
    print(f"seed {SEED + 1}")
    vecs = []
    modes = {"slc_mlc": ("slc", "mlc", "slc"), "slc_only": ("slc", "slc"),
             "mlc_only": ("mlc", "mlc")}[variant]
    for mode in modes:
        mc = 63 if mode == "slc" else 127
        codes = rng.integers(0, mc + 1, (8, cols))
        codes[7, :4] = mc
        xsum = int(rng.integers(-128 * rows, 127 * rows + 1))
        vecs.append((mode, codes, xsum))
    outs = []

    async def tb(ctx):
        for mode, codes, xsum in vecs:
            for b in range(8):
                for c in range(cols):
                    ctx.set(dut.i.valid, 1)
                    ctx.set(dut.i.payload, {"code": int(codes[b, c]), "col": c, "plane": b,
                                            "mode": Mode.MLC if mode == "mlc" else Mode.SLC,
                                            "xsum": xsum})
                    ctx.set(dut.o.ready, int(rng.random() < 0.5))
                    while not ctx.get(dut.i.ready):
                        await ctx.tick()
                    if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                        outs.append([int(v) for v in ctx.get(dut.o.p.y)])
                    await ctx.tick()
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        while len(outs) < len(vecs):
            if ctx.get(dut.o.valid):
                outs.append([int(v) for v in ctx.get(dut.o.p.y)])
            await ctx.tick()

    _sim(dut, tb)
    for (mode, codes, xsum), y in zip(vecs, outs):
        s = enc.slices_per_weight(mode)
        cw = np.array([enc.column_weight(mode, k) for k in range(s)])
        pw = np.array([enc.plane_weight(b) for b in range(8)])
        expect = (pw[:, None] * (codes.reshape(8, -1, s) * cw).sum(-1)).sum(0) - 128 * xsum
        n = len(expect)
        assert y[:n] == expect.tolist()
        assert all(v == 0 for v in y[n:])


# The sum(x) tree is pipelined over the first plane's read_cycles (1 to 5 register stages):
# its result is there when the first plane is sampled, whatever read_cycles.
@pytest.mark.parametrize("rows,rc", [(16, 3), (64, 1), (64, 4), (100, 2), (512, 3)])
def test_wordline_driver_planes_timing_and_xsum(rows, rc):
    dut = WordlineDriver(rows=rows, read_cycles=rc)
    assert 1 <= dut.xsum_stages <= rc
    rng = np.random.default_rng(SEED + 2)
    xs = [rng.integers(-128, 128, rows) for _ in range(2)]
    seen = []

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        stable = 0
        prev_wl = None
        for x in xs:
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, {"x": [int(v) for v in x], "mode": Mode.MLC})
            while not ctx.get(dut.i.ready):
                await ctx.tick()
            await ctx.tick()
            ctx.set(dut.i.valid, 0)
            for b in range(8):
                cycles = 0
                while not ctx.get(dut.o.valid):
                    wl = ctx.get(dut.wl)
                    assert wl == prev_wl or cycles == 0
                    prev_wl = wl
                    cycles += 1
                    await ctx.tick()
                wl = ctx.get(dut.wl)
                seen.append((b, wl, ctx.get(dut.o.p.plane), ctx.get(dut.o.p.xsum), cycles))
                await ctx.tick()
                prev_wl = None

    _sim(dut, tb)
    for i, x in enumerate(xs):
        planes = enc.bit_planes(x)
        for b in range(8):
            plane, wl, p, xsum, cycles = seen[i * 8 + b]
            assert p == b and xsum == int(x.sum())
            assert wl == sum(int(planes[b][r]) << r for r in range(rows))
            assert cycles == rc          # wordlines held read_cycles cycles before the token


def test_wordline_driver_elaborates_at_1024_rows():
    # The sum(x) tree is built level by level (a chain of 1024 additions recursed too deep).
    dut = WordlineDriver(rows=1024, read_cycles=4)
    assert dut.xsum_stages == 4
    assert "xsum_l9_0" in to_verilog(dut, "wl1024")     # registers after levels 3, 6, 9


# ---- parameters --------------------------------------------------------------------

@pytest.mark.parametrize("cls,kw,msg", [
    (AnalogArray, dict(rows=0), "rows must be an integer in 1..1024, not 0"),
    (AnalogArray, dict(cols=100), "cols must be a multiple of 8 in 8..1024, not 100"),
    (AnalogArray, dict(mlc_bits=0), "mlc_bits must be an integer in 1..16, not 0"),
    (AnalogArray, dict(slc_bits=8), "slc_bits must be an integer in 1..7, not 8"),
    (AnalogArray, dict(result_width=16), "result_width must be an integer in 23..64, not 16"),
    (AnalogArray, dict(read_cycles=0), "read_cycles must be an integer in 1..1024, not 0"),
    (WordlineDriver, dict(rows=2000), "rows must be an integer in 1..1024, not 2000"),
    (WordlineDriver, dict(read_cycles="4"), "read_cycles must be an integer in 1..1024, not '4'"),
    (SarAdcController, dict(slc_bits=0), "slc_bits must be an integer in 1..7, not 0"),
    (SarAdcController, dict(cols=0), "cols must be an integer in 1..1024, not 0"),
    (ShiftAdd, dict(variant="mlc"), "variant must be one of 'slc_mlc', 'slc_only', 'mlc_only', not 'mlc'"),
    (ShiftAdd, dict(result_width=65), "result_width must be an integer in 23..64, not 65"),
])
def test_bad_generator_parameters(cls, kw, msg):
    with pytest.raises(ValueError, match="^" + re.escape(msg) + "$"):
        cls(**kw)


def test_crossbar_signature_equality_and_ports():
    a, b = CrossbarSignature(64, 128, 7), CrossbarSignature(64, 128, 7)
    assert a == b and a != CrossbarSignature(64, 128, 6)
    assert set(a.members.keys()) == {"wl", "sample", "sel", "trial", "cmp"}


def test_every_registered_block_converts_in_its_small_configuration():
    blocks = all_blocks()
    for name in ("wl_driver", "sar_adc", "shift_add", "analog_array"):
        blk = blocks[name]
        text = to_verilog(blk.build(**blk.small), f"t_{name}")
        assert f"module t_{name}" in text


def test_verilog_ports_of_array_top():
    text = to_verilog(AnalogArray(rows=8, cols=16), "arr")
    for port in ("i__payload", "i__valid", "i__ready", "o__payload", "o__valid", "o__ready",
                 "xbar__wl", "xbar__sample", "xbar__sel", "xbar__trial", "xbar__cmp", "clk", "rst"):
        assert re.search(rf"\b{port}\b", text), port


def test_block_parameter_parsing_errors():
    blk = get_block("analog_array")
    assert parse_params(blk, ["rows=32", "read_cycles=0x8"]) == {"rows": 32, "read_cycles": 8}
    with pytest.raises(ValueError, match=r"^block 'analog_array' has no parameter 'depth'; "):
        parse_params(blk, ["depth=3"])
    with pytest.raises(ValueError, match=r"^parameter rows must be an integer .*, not 'many'$"):
        parse_params(blk, ["rows=many"])
    with pytest.raises(ValueError, match=r"^unknown block 'dram'; known blocks: "):
        get_block("dram")
