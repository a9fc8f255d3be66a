# amaranth: UnusedElaboratable=no
"""The layer engine of the digital module (rtl/digital.py: LayerEngine; rtl/fp16.py: Fp16Ldexp) in the
Amaranth simulator: every instruction against the engine's reference model
(tb/layer_tb.py: EngineModel) on random data and corner values, parameter errors,
instruction encoding. The digital PIM instructions run in cocotb (tests/test_pu_cocotb.py),
where the array model answers the array port."""

import os
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hyflexpim.models import transformer_fp16 as t16
from hyflexpim.rtl.bus import Kind, pack_packet, unpack_packet
from hyflexpim.rtl.digital import (Alu, DigReg, DIG_REGISTERS, ENGINE_DEFAULTS, Fp16Ldexp,
                                   LayerEngine, Op, Reduce, Wait, check_engine)
from hyflexpim.tb.layer_tb import EngineModel

SEED = int(os.environ.get("HYFLEXPIM_SEED", "1"))
#: A small engine: SFU rows of 8 on 2 lanes, a small digital PIM, 1024 words of memory.
SMALL = dict(mem_depth=1024, prog_depth=64, pim_arrays=2, pim_rows=20, pim_cols=64,
             head_dim=4, max_seq=4, heads=1, pim_lanes=2, sfu_lanes=2, sfu_slots=4,
             softmax_n=8, ln_n=8)
PORT, AW, TW = 3, 3, 6
DUMP = 7                        # port the dumped words go to


def make_engine(**kw):
    e = LayerEngine(port=PORT, addr_width=AW, data_width=32, tag_width=TW, degree=4,
                    n_arrays=kw.pop("n_arrays", 4), arrays_per_module=2, word_bits=2,
                    engine=dict(SMALL, **kw))
    return e


def run(engine, mem, program, *, max_cycles=20000, pauses=0.0, seed=SEED, inputs=(),
        late=(), after=0):
    """Load ``mem`` ({addr: words}) and ``program`` through CONFIG packets, then the packets
    ``inputs``, START it, send the packets ``late`` once ``after`` packets came out, and
    collect every output packet until the engine stops (``o.ready`` low with probability
    ``pauses``). Returns (packets, cycles)."""
    lay = engine._layout
    writes = []
    for addr, words in mem.items():
        writes += engine.memory_writes(addr, words)
    writes += engine.program_writes(program)
    pkts = [pack_packet(lay, 0, PORT, Kind.CONFIG, 0, DIG_REGISTERS.word(r, v))
            for r, v in writes]
    pkts += list(inputs)
    pkts.append(pack_packet(lay, 0, PORT, Kind.CONFIG, 0, DIG_REGISTERS.word(DigReg.START, 0)))
    out, info = [], {}
    rng = random.Random(seed)
    sim = Simulator(engine)
    sim.add_clock(1e-6)

    async def tb(ctx):
        ctx.set(engine.o.ready, 1)
        for p in pkts:
            ctx.set(engine.i.payload.as_value(), p)
            ctx.set(engine.i.valid, 1)
            await ctx.tick()
        ctx.set(engine.i.valid, 0)
        await ctx.tick()
        start = None
        pend = list(late)
        for cyc in range(max_cycles):
            ctx.set(engine.o.ready, int(rng.random() >= pauses))
            if pend and len(out) >= after:
                ctx.set(engine.i.payload.as_value(), pend.pop(0))
                ctx.set(engine.i.valid, 1)
            else:
                ctx.set(engine.i.valid, 0)
            if ctx.get(engine.o.valid) and ctx.get(engine.o.ready):
                out.append(unpack_packet(lay, ctx.get(engine.o.payload.as_value())))
            running = ctx.get(engine.running)
            if running and start is None:
                start = cyc
            if start is not None and not running:
                info["cycles"] = cyc - start
                return
            await ctx.tick()
        raise AssertionError("the engine did not stop")

    sim.add_testbench(tb)
    sim.run()
    return out, info["cycles"]


def model_run(engine, mem, program, analog=None):
    em = EngineModel(engine, analog)
    for addr, words in mem.items():
        em.write(addr, words)
    em.run(program)
    return em


def dump(engine, addr, n):
    """Instruction sending ``n`` words from ``addr`` as CONFIG packets to port DUMP."""
    return engine.instruction(Op.CFG, aux=DUMP, a=addr, a_o=1, n_i=1, n_o=n, imm=0)


def compare(engine, mem, program, **kw):
    got, cycles = run(engine, mem, program, **kw)
    em = model_run(engine, mem, program)
    exp = [(PORT, d, k, t, v) for d, k, t, v in em.out]
    got = [(s, d, k, t, v) for s, d, k, t, v in got]
    assert len(got) == len(exp), f"{len(got)} packets, model {len(exp)}"
    for n, (g, x) in enumerate(zip(got, exp)):
        assert g == x, f"packet {n}: RTL {g}, model {x}"
    return got, cycles


def fp16_values(rng, n, specials=True):
    """Random binary16 patterns: normal values of moderate range, and some specials."""
    v = t16.FAST.mul(np.array(rng.normal(0, 2, n), dtype=np.float16).view(np.uint16),
                     np.uint16(0x3C00))
    if specials:
        sp = [0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0x0001, 0x03FF, 0x7BFF, 0xFBFF, 0x3C00]
        v[:len(sp)] = sp
    return [int(x) for x in v]


# ------------------------------------------------------------------------------- tests

def test_engine_parameter_errors():
    with pytest.raises(ValueError, match=r"^engine has no parameter 'bogus'"):
        check_engine({"bogus": 1})
    with pytest.raises(ValueError, match=r"^mem_depth must be a power of two"):
        check_engine({"mem_depth": 1000})
    with pytest.raises(ValueError, match=r"^softmax_n must be a multiple of sfu_lanes \(4\), "
                                         r"not 6$"):
        check_engine({"softmax_n": 6})
    with pytest.raises(ValueError, match=r"^rows must be an integer in"):
        check_engine({"pim_rows": 2})
    assert check_engine(None) is None
    assert check_engine({}) == ENGINE_DEFAULTS


def test_instruction_encoding():
    e = make_engine()
    bits = e.instruction(Op.ALU, aux=Alu.ADD, dst=-1, a=5, imm=-3, n_i=7, n_o=2,
                         flags=("use_b", "neg_b"))
    ins = e.instr.from_bits(bits)
    assert Op(ins.op) == Op.ALU and int(ins.dst) == 1023 and int(ins.imm) == -3
    assert int(ins.n_w) == 7 and ins.flags.use_b and ins.flags.neg_b and not ins.flags.tail
    with pytest.raises(ValueError, match=r"^an instruction has no field 'c'$"):
        e.instruction(Op.ALU, c=1)
    with pytest.raises(ValueError, match=r"^n_i must be an integer in 0\.\.4095, not 4096$"):
        e.instruction(Op.ALU, n_i=4096)
    assert len(e.program_writes([bits])) == 1 + e.prog_chunks


def test_ldexp_unit_every_class():
    rng = np.random.default_rng(SEED)
    xs = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0x7C00,
          0xFC00, 0x7E00, 0x7D01] + [int(v) for v in rng.integers(0, 1 << 16, 60)]
    es = [0, 1, -1, 5, -5, 14, -14, 24, -24, 25, -25, 40, -40, 80, -80] + \
        [int(v) for v in rng.integers(-80, 81, 20)]
    pairs = [(x, e) for x in xs for e in es]
    dut = Fp16Ldexp()
    got = []
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        pending = list(pairs)
        while len(got) < len(pairs):
            if pending:
                x, e = pending[0]
                ctx.set(dut.i.payload[0].x, x)
                ctx.set(dut.i.payload[0].e, e)
                ctx.set(dut.i.valid, 1)
            else:
                ctx.set(dut.i.valid, 0)
            took = pending and ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload[0].r))
            await ctx.tick()
            if took:
                pending.pop(0)

    sim.add_testbench(tb)
    sim.run()
    x = np.array([p[0] for p in pairs], dtype=np.uint16)
    e = np.array([p[1] for p in pairs], dtype=np.int64)
    exp = t16.ldexp_reference(x, e)
    bad = [(hex(int(a)), int(b), hex(g), hex(int(r))) for a, b, g, r in zip(x, e, got, exp)
           if g != r]
    assert not bad, f"{len(bad)} wrong, e.g. {bad[:5]}"


def test_alu_and_reduce_ops():
    rng = np.random.default_rng(SEED)
    e = make_engine()
    n = 12
    A, B, D = 0, 64, 256
    ints = [int(v) for v in rng.integers(-(1 << 31), 1 << 31, n)]
    ints[:4] = [0, -1, (1 << 31) - 1, -(1 << 31)]
    small = [int(v) for v in rng.integers(-100, 100, n)]
    prog = []
    outs = 0
    for k, alu in enumerate(Alu):
        for flags in ((), ("use_b",), ("use_b", "neg_b")):
            dst = D + outs
            prog.append(e.instruction(Op.ALU, aux=alu, dst=dst, a=A, b=B, a_i=1, b_i=1, d_i=1,
                                      n_i=n, imm=-7 + k, flags=("a_bytes",) if alu == Alu.BYTE
                                      else flags))
            outs += n
    fp = fp16_values(rng, n)
    prog += [e.instruction(Op.REDUCE, aux=Reduce.QMAX, dst=D + outs, a=B + 32, a_i=1, n_i=n),
             e.instruction(Op.REDUCE, aux=Reduce.IMAX, dst=D + outs + 1, a=A, a_i=3, a_o=1,
                           n_i=4, n_o=3, d_o=1),
             e.instruction(Op.ALU, aux=Alu.EXPO, dst=D + outs + 4, a=B + 32, a_i=1, d_i=1, n_i=n)]
    outs += 4 + n
    prog += [dump(e, D, outs), e.instruction(Op.END)]
    mem = {A: ints, B: small, B + 32: fp}
    compare(e, mem, prog)


FP_OPS = (Op.FMUL, Op.FADD, Op.FDIV, Op.FROMI32, Op.TOI8, Op.LDEXP, Op.GELU)


def test_fp_ops():
    """Every FP16 operator, element-wise and with a broadcast operand, row strides, fewer
    results written than computed, backpressure-free (one simulation)."""
    rng = np.random.default_rng(SEED)
    e = make_engine()
    n = 16
    mem, prog, D, outs = {}, [], 512, 0
    for k, op in enumerate(FP_OPS):
        A, B = 64 * k, 64 * k + 32
        a = fp16_values(rng, n)
        b = fp16_values(rng, n)[::-1]
        if op == Op.FROMI32:
            a = [int(v) for v in rng.integers(-(1 << 31), 1 << 31, n)]
            a[:3] = [0, -(1 << 31), (1 << 31) - 1]
        if op == Op.LDEXP:
            b = [int(v) for v in rng.integers(-90, 90, n)]
        mem[A], mem[B] = a, b
        prog += [e.instruction(op, dst=D + outs, a=A, b=B, a_i=1, b_i=1, d_i=1, n_i=n, imm=3,
                               flags=("use_b",)),
                 # b broadcast (stride 0), two rows of 6, a row stride, 4 results per row
                 e.instruction(op, dst=D + outs + n, d_i=1, d_o=4, a=A, a_i=1, a_o=7, b=B + 5,
                               b_i=0, b_o=1, n_i=6, n_o=2, n_w=4,
                               flags=("use_b", "neg_b", "sub"))]
        outs += n + 8
    prog += [dump(e, D, outs), e.instruction(Op.END)]
    compare(e, mem, prog)


def test_row_units_and_packets():
    """SOFTMAX (rows shorter than the unit, -Inf padding, fewer results kept), LNORM
    (gamma and beta packed in b), OUT with and without a tail word, CFG, under random
    output backpressure."""
    rng = np.random.default_rng(SEED + 1)
    e = make_engine()
    x = fp16_values(rng, 24, specials=False)
    x[3] = 0xFC00
    gb = [int(g) | int(b) << 16 for g, b in zip(fp16_values(rng, 8, False),
                                                 fp16_values(rng, 8, False))]
    q = [int(v) for v in rng.integers(-128, 128, 12)]
    prog = [e.instruction(Op.SOFTMAX, dst=300, d_i=1, d_o=5, a=0, a_i=1, a_o=8, n_i=5,
                          n_o=3, n_w=5),
            e.instruction(Op.LNORM, dst=340, d_i=1, d_o=8, a=0, a_i=1, a_o=8, b=100, b_i=1,
                          n_i=8, n_o=3),
            dump(e, 300, 15), dump(e, 340, 24),
            e.instruction(Op.OUT, aux=2, a=200, a_i=1, a_o=6, n_i=6, n_o=2, imm=3),
            e.instruction(Op.OUT, aux=1, a=200, a_i=1, a_o=6, b=100, b_o=1, n_i=5, n_o=2,
                          flags=("tail",)),
            e.instruction(Op.END)]
    compare(e, {0: x, 100: gb, 200: q}, prog, pauses=0.4)


def test_send_scatter_results_and_inputs():
    """SEND: the words of a vector to every array of its chunk's mask (two chunks), result
    slots bound by parity and filled by RESULT packets, WAIT for them; ACTIVATION rows
    into the input region, WAIT for them; the data back by CFG."""
    e = make_engine(n_arrays=5)
    lay = e._layout
    cfg = lambda reg, v, tag=0, idx=0: pack_packet(          # noqa: E731
        lay, 0, PORT, Kind.CONFIG, tag, DIG_REGISTERS.word(reg, v, index=idx))
    masks = {1: 0b00110, 2: 0b10001}
    inputs = [cfg(DigReg.MASK, m, tag=c) for c, m in masks.items()]
    inputs += [cfg(DigReg.IN_BASE, 600), cfg(DigReg.IN_WORDS, 3)]
    vec = list(range(-8, 24))                  # two chunks of 16 INT8 (4 words each)
    prog = [e.instruction(Op.SEND, a=0, a_i=1, a_o=16, n_i=16, n_o=2, imm=1, dst=500, n_w=3,
                          flags=("parity",)),
            e.instruction(Op.WAIT, aux=Wait.SLOT, flags=("parity",)),
            e.instruction(Op.WAIT, aux=Wait.RESULTS),
            e.instruction(Op.WAIT, aux=Wait.INPUT, imm=2),
            dump(e, 500, 3), dump(e, 600, 6), e.instruction(Op.END)]
    late = [pack_packet(lay, 4, PORT, Kind.RESULT, (1 << (TW - 1)) | j, 1000 * j + 7)
            for j in (2, 0, 1)]
    late += [pack_packet(lay, 0, PORT, Kind.ACTIVATION, w, 0x100 * r + w)
             for r in range(2) for w in (2, 0, 1)]
    got, _ = run(e, {0: vec}, prog, inputs=inputs, late=late, after=1, pauses=0.3)
    exp = []
    for c, o in ((1, 0), (2, 1)):
        for w in range(4):
            word = sum((vec[16 * o + 4 * w + k] & 0xFF) << (8 * k) for k in range(4))
            for t in range(5):
                if masks[c] >> t & 1:
                    exp.append((PORT, 1 + t // 2, Kind.ACTIVATION, (t % 2) << 2 | w, word))
    exp += [(PORT, DUMP, Kind.CONFIG, 0, 1000 * j + 7) for j in range(3)]
    exp += [(PORT, DUMP, Kind.CONFIG, 0, 0x100 * r + w) for r in range(2) for w in range(3)]
    assert got == exp
