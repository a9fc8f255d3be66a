"""cocotb testbench of the FP16 operator units (``rtl/fp16.py``) on their generated Verilog.

One test, :func:`fp16_stream`, for every unit: a :class:`~hyflexpim.tb.lib.StreamSource`
feeds the operand vectors (one transfer per cycle when the random input gaps allow), a
:class:`~hyflexpim.tb.lib.StreamSink` takes results under random backpressure, and a
:class:`~hyflexpim.tb.lib.Scoreboard` compares every output word (result and flags,
every lane) in order with the golden model :mod:`hyflexpim.models.fp16.ops`. The unit
is rebuilt from the registry (block ``fp16_<op>``, :func:`hyflexpim.tb.lib.design`); its
name gives the operator and its port layouts pack the transfers.

Two more tests on any unit: :func:`long_stall_then_full_rate` (output held for 10 x the
pipeline depth while operands keep coming, then one result per cycle) and
:func:`reset_in_every_state` (idle, mid-pipeline, output waiting, input stalled; then a
fresh batch exact).

The vector sets and the golden reference of each unit are plain functions here
(:func:`vectors`, :func:`expected`, :func:`pack`, :func:`unpack`), shared by the
Amaranth-simulator tests and the benchmark (they work without cocotb).

Environment: ``HYFLEXPIM_FP16_SET`` (``quick``: special pairs + rounding cases + a few
thousand random; ``full``: >= 100k random pairs, unary ops exhaustive),
``HYFLEXPIM_SEED``, ``HYFLEXPIM_READY`` (probability that the sink is ready in a cycle,
default 0.7), ``HYFLEXPIM_VALID`` (probability that the source offers data, default
0.9). The seed is printed.
"""

import os

import numpy as np
from amaranth.lib import data

from hyflexpim.models.fp16 import ops
from hyflexpim.rtl import fp16 as rtl
from hyflexpim.sim.blocks import get_block
from hyflexpim.tb import lib

# ----------------------------------------------------------------------------- vectors

SPECIALS = np.array([
    0x0000, 0x8000, 0x0001, 0x8001, 0x0002, 0x01FF, 0x0200, 0x03FF, 0x83FF, 0x0400, 0x8400,
    0x0401, 0x07FF, 0x0800, 0x1400, 0x2400, 0x3555, 0x3800, 0x3BFF, 0xBBFF, 0x3C00, 0xBC00,
    0x3C01, 0x3E00, 0x4000, 0xC000, 0x4200, 0x5BFF, 0x7800, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
    0x7E00, 0xFE00, 0x7C01, 0x7D00, 0xFD00, 0x7FFF,
], dtype=np.uint16)


def _rng(seed):
    return np.random.default_rng(seed)


def _pairs(values):
    a, b = np.meshgrid(values, values, indexing="ij")
    return a.ravel().astype(np.uint16), b.ravel().astype(np.uint16)


def _fp(rng, n, exp_lo=0, exp_hi=30, sign=None):
    """Random finite binary16 patterns with exponent fields in exp_lo..exp_hi."""
    e = rng.integers(exp_lo, exp_hi + 1, n)
    f = rng.integers(0, 1024, n)
    s = rng.integers(0, 2, n) if sign is None else np.full(n, sign)
    return ((s << 15) | (e << 10) | f).astype(np.uint16)


def _sparse_frac(rng, n, exp_lo, exp_hi):
    """Significands with few bits set: their products and sums hit exact ties often."""
    f = np.zeros(n, np.int64)
    for _ in range(2):
        f |= np.where(rng.random(n) < 0.7, 1 << rng.integers(0, 10, n), 0)
    f |= np.where(rng.random(n) < 0.3, 0x3FF, 0)
    e = rng.integers(exp_lo, exp_hi + 1, n)
    s = rng.integers(0, 2, n)
    return ((s << 15) | (e << 10) | (f & 0x3FF)).astype(np.uint16)


def _rounding_cases(op, rng, n):
    """Operand pairs aimed at ties, near-ties, the subnormal boundary and overflow."""
    if op == "add":
        a = _fp(rng, n, 1, 30)
        ea = (a.astype(np.int64) >> 10) & 0x1F
        d = rng.integers(10, 14, n)              # b just below / at half an ulp of a
        eb = np.clip(ea - d, 0, 30)
        b = ((rng.integers(0, 2, n) << 15) | (eb << 10)
             | np.where(rng.random(n) < 0.5, 0, rng.integers(0, 1024, n))).astype(np.uint16)
        c = _fp(rng, n, 0, 2)                    # cancellation into subnormals
        c2 = (c ^ 0x8000) + rng.integers(-3, 4, n).astype(np.int64)
        c2 = np.clip(c2 & 0xFFFF, 0, 0xFFFF).astype(np.uint16)
        top = np.full(n, 0x7BFF, np.uint16)      # 65504 + x: overflow at 65520
        x = _fp(rng, n, 17, 20, sign=0)
        return (np.concatenate([a, c, top]), np.concatenate([b, c2, x]))
    if op in ("mul", "div"):
        a = _sparse_frac(rng, 2 * n, 0, 30)
        b = _sparse_frac(rng, 2 * n, 0, 30)
        # exponent sums (mul) / differences (div) around the subnormal and overflow edges
        lo = _fp(rng, n, 1, 14) if op == "mul" else _fp(rng, n, 0, 6)
        hi = _fp(rng, n, 0, 16) if op == "mul" else _fp(rng, n, 20, 30)
        big_a = _fp(rng, n, 22, 30) if op == "mul" else _fp(rng, n, 26, 30)
        big_b = _fp(rng, n, 22, 30) if op == "mul" else _fp(rng, n, 0, 8)
        return (np.concatenate([a, lo, big_a]), np.concatenate([b, hi, big_b]))
    raise KeyError(op)


def _bin_vectors(op, rng, n_random, full):
    sa, sb = _pairs(SPECIALS)
    ra, rb = rng.integers(0, 1 << 16, (2, n_random)).astype(np.uint16)
    parts_a, parts_b = [sa, ra], [sb, rb]
    if op in ("add", "mul", "div"):
        ca, cb = _rounding_cases(op, rng, 300 if not full else 10000)
        parts_a.append(ca)
        parts_b.append(cb)
    return np.concatenate(parts_a), np.concatenate(parts_b)


def vectors(op, seed, full=False):
    """Operand vectors of unit ``op``: ``{field: array}``."""
    rng = _rng(seed)
    n_random = 100_000 if full else 2_000
    if op == "sqrt":
        if full:
            return {"a": np.arange(1 << 16, dtype=np.uint16)}
        a = np.concatenate([SPECIALS, rng.integers(0, 1 << 16, n_random),
                            _fp(rng, 500, 0, 30, sign=0)]).astype(np.uint16)
        return {"a": a}
    if op == "to_int8":
        if full:
            x = np.arange(1 << 16, dtype=np.uint16)
            s = np.full(x.shape, 0x3C00, np.uint16)       # scale 1.0: x itself
            s[1::4] = 0x5000                              # 32.0
            s[2::4] = rng.integers(0, 1 << 16, s[2::4].shape)
            s[3::4] = _fp(rng, s[3::4].size, 10, 20)
        else:
            x1, s1 = _pairs(SPECIALS)
            x2 = rng.integers(0, 1 << 16, n_random).astype(np.uint16)
            s2 = _fp(rng, n_random, 10, 20)
            # ties: x = k + 0.5 with scale 1, and the saturation edges
            k = rng.integers(-130, 130, 300)
            x3 = ops.from_float(k + 0.5)
            s3 = np.full(300, 0x3C00, np.uint16)
            x4 = ops.from_float(np.array([126.5, 127.0, 127.5, -127.5, -128.0, -128.5, -129.0,
                                          0.5, -0.5, 1.5, 2.5, -2.5, 127.49]))
            s4 = np.full(x4.shape, 0x3C00, np.uint16)
            x = np.concatenate([x1, x2, x3, x4])
            s = np.concatenate([s1, s2, s3, s4])
        return {"x": x.astype(np.uint16), "scale": s.astype(np.uint16)}
    if op == "from_int32":
        n = 100_000 if full else n_random
        mag = np.exp2(rng.uniform(0, 31, n)).astype(np.int64)
        acc = np.clip(np.where(rng.random(n) < 0.5, -mag, mag), -(1 << 31), (1 << 31) - 1)
        scale = rng.integers(0, 1 << 16, n).astype(np.uint16)
        edge_acc = np.array([0, 1, -1, 2047, 2049, 4097, -4097, (1 << 31) - 1, -(1 << 31),
                             65519, 65520, -65520, 65504, 3, -3, 12345678])
        ea, es = np.meshgrid(edge_acc, SPECIALS, indexing="ij")
        acc = np.concatenate([ea.ravel(), acc])
        scale = np.concatenate([es.ravel().astype(np.uint16), scale])
        return {"acc": acc.astype(np.int64), "scale": scale.astype(np.uint16)}
    a, b = _bin_vectors("add" if op == "add" else op if op in ("mul", "div") else "cmp",
                        rng, n_random, full)
    out = {"a": a, "b": b}
    if op == "add":
        out["sub"] = rng.integers(0, 2, a.shape).astype(np.uint16)
    if op == "cmp":
        out["op"] = rng.integers(0, 5, a.shape).astype(np.uint16)
    return out


# ----------------------------------------------------------------------------- golden

def _expected_add(v):
    r1, f1 = ops.add(v["a"], v["b"], flags=True)
    r2, f2 = ops.sub(v["a"], v["b"], flags=True)
    s = v["sub"] == 1
    return np.where(s, r2, r1), np.where(s, f2, f1)


def _expected_cmp(v):
    a, b, op = v["a"], v["b"], v["op"]
    rs, fs = [], []
    for fn in (ops.min, ops.max, ops.lt, ops.le, ops.eq):
        r, f = fn(a, b, flags=True)
        rs.append(r.astype(np.int64))
        fs.append(f)
    idx = op.astype(np.int64)
    return np.choose(idx, rs), np.choose(idx, fs)


OPS = {
    "add": dict(unit=rtl.Fp16AddSub, golden=_expected_add),
    "mul": dict(unit=rtl.Fp16Mul, golden=lambda v: ops.mul(v["a"], v["b"], flags=True)),
    "div": dict(unit=rtl.Fp16Div, golden=lambda v: ops.div(v["a"], v["b"], flags=True)),
    "sqrt": dict(unit=rtl.Fp16Sqrt, golden=lambda v: ops.sqrt(v["a"], flags=True)),
    "cmp": dict(unit=rtl.Fp16Compare, golden=_expected_cmp),
    "from_int32": dict(unit=rtl.Fp16FromInt32,
                       golden=lambda v: ops.from_int32(v["acc"], v["scale"], flags=True)),
    "to_int8": dict(unit=rtl.Fp16ToInt8,
                    golden=lambda v: ops.to_int8(v["x"], v["scale"], flags=True)),
}


def make_unit(op, **params):
    """Unit ``op`` from the registry (block ``fp16_<op>``), its defaults updated by ``params``."""
    return get_block(f"fp16_{op}").build(**params)


def expected(op, v):
    """Golden ``(result bits as int64, flags)`` arrays of unit ``op`` for vectors ``v``."""
    r, f = OPS[op]["golden"](v)
    r = np.asarray(r).astype(np.int64)
    if op == "to_int8":
        r &= 0xFF
    return r, np.asarray(f).astype(np.int64)


def result_width(op):
    return 8 if op == "to_int8" else 16


def in_layout(op, lanes=1):
    """Input payload layout of unit ``op`` with ``lanes`` lanes."""
    return data.ArrayLayout(OPS[op]["unit"].lane_layout(), lanes)


def out_layout(op, lanes=1):
    """Output payload layout: ``lanes`` x ``{r, flags}``."""
    return data.ArrayLayout(data.StructLayout(
        {"r": OPS[op]["unit"]._result_shape, "flags": rtl.FLAGS}), lanes)


def pack(op, v, lanes=1):
    """Input payload integers: one per transfer of ``lanes`` operand sets (zero-padded)."""
    n = len(next(iter(v.values())))
    cols = {name: np.asarray(col).astype(np.int64) for name, col in v.items()}
    layout = in_layout(op, lanes)
    out = []
    for t in range(0, n, lanes):
        sets = [{name: int(col[j]) for name, col in cols.items()} for j in range(t, min(n, t + lanes))]
        out.append(lib.pack(layout, sets + [{}] * (lanes - len(sets))))
    return out


def unpack(op, words, n, lanes=1):
    """Split output payload integers into ``(results, flags)`` arrays of length ``n``
    (results as unsigned bit patterns)."""
    layout, mask = out_layout(op, lanes), (1 << result_width(op)) - 1
    r, f = [], []
    for word in words:
        for lane in lib.unpack(layout, word):
            r.append(lane["r"] & mask)
            f.append(lib.pack(rtl.FLAGS, lane["flags"]))
    return np.array(r[:n], np.int64), np.array(f[:n], np.int64)


def mismatches(op, v, got_r, got_f, limit=5):
    """Descriptions of the first mismatching words (empty list if bit-exact)."""
    exp_r, exp_f = expected(op, v)
    bad = np.nonzero((got_r != exp_r) | (got_f != exp_f))[0]
    lines = []
    for j in bad[:limit]:
        operands = ", ".join(f"{k}={int(v[k][j]):#x}" for k in v)
        lines.append(f"#{j} {operands}: got r={int(got_r[j]):#x} flags={int(got_f[j]):#04x}, "
                     f"expected r={int(exp_r[j]):#x} flags={int(exp_f[j]):#04x}")
    if len(bad):
        lines.insert(0, f"{len(bad)} of {len(exp_r)} words differ")
    return lines


# ----------------------------------------------------------------------------- cocotb

if lib.cocotb is not None:
    cocotb = lib.cocotb

    @cocotb.test()
    async def fp16_stream(dut):
        unit = lib.design()
        op = os.environ["HYFLEXPIM_BLOCK"].removeprefix("fp16_")
        full = os.environ.get("HYFLEXPIM_FP16_SET", "quick") == "full"
        lanes = unit.lanes
        seed = lib.seed(op)
        p_ready = float(os.environ.get("HYFLEXPIM_READY", "0.7"))
        p_valid = float(os.environ.get("HYFLEXPIM_VALID", "0.9"))
        cocotb.log.info(f"fp16 {op} ({'full' if full else 'quick'} set, lanes={lanes})")
        v = vectors(op, seed, full)
        n = len(next(iter(v.values())))
        words = pack(op, v, lanes)
        rng = lib.rng(seed)
        clock = lib.TbClock(dut)
        source = lib.StreamSource(dut, "i", clock, idle=lib.random_pauses(1 - p_valid, rng))
        sink = lib.StreamSink(dut, "o", clock, backpressure=lib.random_pauses(1 - p_ready, rng),
                              keep=True)
        await clock.start()
        for w in words:
            source.send(w)
        max_cycles = 100 + 20 * len(words)
        await clock.wait(lambda: sink.count >= len(words), max_cycles,
                         f"{len(words)} results (timeout: {sink.count} arrived)")
        got_r, got_f = unpack(op, [w for w, _ in sink.received], n, lanes)
        bad = mismatches(op, v, got_r, got_f)
        cycles = sink.last - source.first + 1
        cocotb.log.info(f"fp16 {op}: {n} results in {cycles} cycles, "
                        f"{'bit-exact' if not bad else 'MISMATCH'}")
        assert not bad, "\n".join(bad)


# ----------------------------------------------------------------------------- long stalls, reset

if lib.cocotb is not None:

    def _unit_and_vectors(name, n):
        unit = lib.design()
        op = os.environ["HYFLEXPIM_BLOCK"].removeprefix("fp16_")
        seed = lib.seed(name)
        v = vectors(op, seed)
        # the first n operand sets (specials x specials first, then the random ones)
        rng = np.random.default_rng(seed)
        pick = np.concatenate([np.arange(min(n // 2, len(next(iter(v.values()))))),
                               rng.integers(0, len(next(iter(v.values()))), n - n // 2)])
        v = {k: col[pick] for k, col in v.items()}
        return unit, op, v

    class _HeldIO:
        def __init__(self, dut):
            self.clock = lib.TbClock(dut)
            self.hold = lib.Hold(False)
            self.source = lib.StreamSource(dut, "i", self.clock)
            self.sink = lib.StreamSink(dut, "o", self.clock, backpressure=self.hold, keep=True)

        def results(self, op, v, lanes):
            n = len(next(iter(v.values())))
            return unpack(op, [w for w, _ in self.sink.received], n, lanes)

    @cocotb.test()
    async def long_stall_then_full_rate(dut):
        """Output held not ready for 10 x the pipeline depth while the input keeps
        offering operands (it must be held back once the pipeline is full), then
        released: every result and flag exact and in order, and from the release on
        one result per cycle (the input keeps up); three rounds."""
        unit, op, v = _unit_and_vectors("long_stall_then_full_rate", 600)
        lanes, depth = unit.lanes, unit.latency
        words = pack(op, v, lanes)
        io = _HeldIO(dut)
        await io.clock.start()
        third = len(words) // 3
        stall = 10 * depth + 20
        for rnd in range(3):
            chunk = words[rnd * third:(rnd + 1) * third if rnd < 2 else len(words)]
            io.hold.held = True
            base = io.sink.count
            taken = io.source.sent
            for w in chunk:
                io.source.send(w)
            await io.clock.cycles(stall)
            assert io.sink.count == base, "a result left while the output was held"
            inside = io.source.sent - taken
            assert io.source.busy and inside <= depth + 2, \
                f"{inside} operand sets entered a pipeline of depth {depth} with its output held"
            io.hold.held = False
            await io.clock.wait(lambda: io.sink.count == base + len(chunk), 100 * len(chunk),
                                "the results", events=True)
            out = [c for _, c in io.sink.received[base:]]
            assert lib.back_to_back(out), \
                (f"round {rnd}: {len(out)} results after the release took "
                 f"{out[-1] - out[0] + 1} cycles")
            cocotb.log.info(f"fp16 {op}: round {rnd}: {inside} operand sets inside during "
                            f"a {stall}-cycle stall, {len(out)} results back to back after")
        got_r, got_f = io.results(op, v, lanes)
        bad = mismatches(op, v, got_r, got_f)
        assert not bad, "\n".join(bad)

    @cocotb.test()
    async def reset_in_every_state(dut):
        """Reset while idle, mid-pipeline (operands in, no result out yet), with results
        waiting for a held output and with the input held back behind a full pipeline;
        after each, a fresh batch comes out exact (nothing of the traffic before the
        reset, nothing twice)."""
        unit, op, v = _unit_and_vectors("reset_in_every_state", 200)
        lanes, depth = unit.lanes, unit.latency
        words = pack(op, v, lanes)
        io = _HeldIO(dut)
        await io.clock.start()
        for state in ("idle", "mid-pipeline", "output waiting", "input stalled"):
            if state == "mid-pipeline":
                for w in words[:max(1, depth - 1)]:
                    io.source.send(w)
                await io.clock.wait(lambda: not io.source.busy, 1000, "operands", events=True)
                assert io.sink.count == 0
            elif state == "output waiting":
                io.hold.held = True
                for w in words[:depth // 2 + 1]:
                    io.source.send(w)
                await io.clock.cycles(3 * depth + 10)
                assert io.sink.count == 0 and not io.source.busy
            elif state == "input stalled":
                io.hold.held = True
                for w in words[:3 * depth + 8]:
                    io.source.send(w)
                await io.clock.cycles(3 * depth + 10)
                assert io.sink.count == 0 and io.source.busy
            cocotb.log.info(f"fp16 {op}: reset {state}")
            await io.clock.reset()
            lib.withdraw(io.source)
            io.sink.received.clear()
            io.sink.count = 0
            io.hold.held = False
            for w in words:
                io.source.send(w)
            await io.clock.wait(lambda: io.sink.count >= len(words), 20 * len(words) + 100,
                                "the results after the reset", events=True)
            await io.clock.cycles(depth + 10)
            assert io.sink.count == len(words), f"{io.sink.count} results, {len(words)} sent"
            got_r, got_f = io.results(op, v, lanes)
            bad = mismatches(op, v, got_r, got_f)
            assert not bad, f"after reset {state}: " + "\n".join(bad)
            io.sink.received.clear()
            io.sink.count = 0
