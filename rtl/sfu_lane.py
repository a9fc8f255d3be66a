"""Shared-operator SFU: one lane datapath of shared, pipelined FP16 operators, sequenced
by microcode to run softmax, layer norm, GELU and exp (bit-exact to
``models/fp16/functions.py``, the golden operation order unchanged).

Structure
---------
:class:`SharedSfuLane` is one lane's datapath: ONE instance of each operator kind of
:mod:`.fp16` (``Fp16AddSub``, ``Fp16Mul``, ``Fp16Div``, ``Fp16Compare``, and
``Fp16Sqrt`` in lane 0 only: the one square root of any function is layer norm's
``sqrt(var + eps)`` on the row scalar, which lane 0 holds) plus :class:`SelectUnit` (a
one-stage multiplexer / exponent-field unit: the bit-level selections of the golden
model and the ``2**j`` / ``2**kc`` scale factors of exp; exp itself runs on the shared
multiplier and adder), a register file of ``regs`` binary16 words (the row's scratch
buffer) with ``read_ports`` read ports and ``write_ports`` write ports, and one export
read port (the value other lanes see, and the output). It has no sequencer: it executes
one control word (:attr:`SharedSfuLane.ctrl`) per cycle.

:class:`SharedSfu` is ``lanes`` of those side by side, one shared microcode ROM and
sequencer, and the cross-lane wiring the golden reduction order needs:

* ``nb`` operand: lane ``l`` reads the export of lane ``l + 2**level`` (the pairwise
  tree over the lanes of a beat, ``functions.reduce_row``: pairs (0,1), (2,3), ... at
  level 0, (0,2), (4,6), ... at level 1);
* ``b0`` operand: every lane reads lane 0's export (the row scalar: max, sum, mean,
  ``sqrt(var + eps)``, broadcast).

The lanes are SIMD: every lane executes the same control word. Element ``b*lanes + l``
of a row lives in lane ``l``, word ``b`` (``b`` in ``0 .. n/lanes - 1``), exactly the
beat layout of ``reduce_row``. The beat tree runs on the lanes' own adders / comparators
(level ``s`` is computed in every lane; only the lanes ``l % 2**(s+1) == 0`` hold values
that are used later), the round-robin partials and the final pairwise fold of
``reduce_row`` run in lane 0 (again computed everywhere, used only in lane 0).

Microcode
---------
Each function is written once as a data-flow program over symbolic values whose
operations are those of the golden model in its order (``_build_*`` below, to be read
beside ``functions.exp``, ``softmax``, ``layernorm``, ``gelu``). At elaboration a list
scheduler places every operation on its operator at the earliest cycle at which its
operands are ready, the operator's issue slot is free (one issue per operator per
cycle; every operator is fully pipelined), at most ``read_ports`` distinct registers
are read in the cycle, at most ``write_ports`` results are written back in the result's
cycle, and the export port (one register address per cycle, shared
by all lanes) carries the value it reads from another lane. Registers are then
allocated (linear scan, inputs pinned). The result is a fixed schedule: a ROM word per
cycle giving every operator's issue (operation, operand sources) and the write-back
(operator, destination register) of the result leaving a pipeline in that cycle; there is
no scoreboard because every latency is fixed and the operators never stall
(``o.ready`` is held high).

Protocol (:class:`SharedSfu`)
-----------------------------
``i`` (stream, payload ``{fn: Fn, data: lanes x {x, gamma, beta}}``): a batch is
``rows`` rows (generator parameter, default 1) of ``n`` elements, ``rows * n / lanes``
consecutive beats; beat ``r * n/lanes + b`` carries elements ``b*lanes .. b*lanes +
lanes - 1`` of row ``r``. ``fn`` is taken from the batch's first beat (the field is
ignored on the others). ``gamma`` / ``beta`` are used by layer norm only. GELU and exp
treat every element independently.

``o`` (stream, payload ``lanes x 16``): the result rows, in the same beat order,
batches in input order.

The unit is batch-sequential: it loads a batch (one beat per cycle while ``i.valid``),
runs the function's program (a fixed number of cycles, :meth:`SharedSfu.run_cycles`),
then offers the result beats (one per cycle while ``o.ready``), then loads the next
batch. With the source always valid and the sink always ready a batch takes
:meth:`SharedSfu.cycles_per_batch` ``= 2 * rows * n / lanes + run_cycles(fn)`` cycles.
``o.valid`` never depends on ``o.ready``; ``i.ready`` never depends on ``i.valid``.
No exception flags are produced.
"""

import heapq
from collections import deque

from amaranth import Array, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..base import Block, check_int, check_pow2
from ..models.fp16 import functions as F
from .fp16 import MAX_LANES, CmpOp, Fp16AddSub, Fp16Compare, Fp16Div, Fp16Mul, Fp16Sqrt

__all__ = ["Fn", "SelOp", "SelectUnit", "SharedSfuLane", "SharedSfu", "Program",
           "compile_program", "MAX_WORDS", "MAX_SLOTS", "MAX_WRITE_PORTS", "MAX_READ_PORTS"]

_QNAN = 0x7E00
_POS_INF = 0x7C00
_NEG_INF = 0xFC00

#: Most words per lane of a batch (``rows * n / lanes``): the register file grows with it.
MAX_WORDS = 32
#: Most reduction partials (``slots`` of ``reduce_row``).
MAX_SLOTS = 16
#: Most register-file write ports (results written back per cycle).
MAX_WRITE_PORTS = 6
#: Most register-file read ports (distinct registers read per cycle; the 3-bit source
#: kind has 5 codes left after constant, ``nb`` and ``b0``). The least is 3: GELU's
#: final selection reads three registers.
MAX_READ_PORTS = 5


class Fn(enum.Enum, shape=2):
    """Function of a row (``fn`` field of the input's first beat)."""
    SOFTMAX = 0
    LAYERNORM = 1
    GELU = 2
    EXP = 3


class SelOp(enum.Enum, shape=3):
    """Operation of :class:`SelectUnit` (operands ``a``, ``b``, ``c``)."""
    MOV = 0          # a
    SEL_NAN = 1      # c is NaN ? 0x7E00 : a                      (exp's NaN rule)
    SEL_NEG = 2      # c has sign bit 1 ? a : b                    (GELU's numerator)
    GELU_FIN = 3     # c == +Inf ? +Inf : c == -Inf ? -0 : SEL_NEG (GELU's result)
    SEL_ZERO = 4     # c is +-0 ? +0 : a                           (softmax all -Inf row)
    NEGINF_0 = 5     # c == -Inf ? +0 : c                          (softmax's m')
    POW2J = 6        # 2**j, j = k - kc, k = (a & 0x3FF) - 512     (exp scaling)
    POW2KC = 7       # 2**kc, kc = clip(k, -24, 15)                (exp scaling)


def _pow2(n):
    """binary16 of ``2**n`` for a signed ``n`` in -24..15 (as ``functions.pow2``)."""
    return Mux(n >= -14, ((n + 15)[:5]) << 10, Const(1, 16) << (n + 24)[:4])


class SelectUnit(wiring.Component):
    """Bit-level selections of the golden model and exp's ``2**k`` factors, one pipeline
    stage (latency 1), the same stream conventions as the :mod:`.fp16` units (``lanes``
    fixed at 1; ``o.payload.r``). Operations: :class:`SelOp`."""

    LATENCY = 1

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(data.StructLayout(
                {"a": 16, "b": 16, "c": 16, "op": SelOp}))),
            "o": Out(stream.Signature(data.StructLayout({"r": 16}))),
        })

    @property
    def latency(self):
        return self.LATENCY

    def elaborate(self, platform):
        m = Module()
        a, b, c, op = (self.i.payload.a, self.i.payload.b, self.i.payload.c,
                       self.i.payload.op)
        en = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(en)
        c_nan = (c[10:15] == 0x1F) & c[0:10].any()
        neg = Mux(c[15], a, b)
        k = Signal(range(-512, 512))
        kc = Signal(range(-512, 512))
        j = Signal(range(-1024, 1024))
        m.d.comb += [k.eq(a[0:10] - 512),
                     kc.eq(Mux(k < -24, -24, Mux(k > 15, 15, k))),
                     j.eq(k - kc)]
        r = Signal(16)
        with m.Switch(op):
            with m.Case(SelOp.MOV):
                m.d.comb += r.eq(a)
            with m.Case(SelOp.SEL_NAN):
                m.d.comb += r.eq(Mux(c_nan, _QNAN, a))
            with m.Case(SelOp.SEL_NEG):
                m.d.comb += r.eq(neg)
            with m.Case(SelOp.GELU_FIN):
                m.d.comb += r.eq(Mux(c == _POS_INF, _POS_INF,
                                     Mux(c == _NEG_INF, 0x8000, neg)))
            with m.Case(SelOp.SEL_ZERO):
                m.d.comb += r.eq(Mux(c[0:15] == 0, 0, a))
            with m.Case(SelOp.NEGINF_0):
                m.d.comb += r.eq(Mux(c == _NEG_INF, 0, c))
            with m.Case(SelOp.POW2J):
                m.d.comb += r.eq(_pow2(j))
            with m.Case(SelOp.POW2KC):
                m.d.comb += r.eq(_pow2(kc))
        with m.If(en):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.r.eq(r)]
        return m


# ----------------------------------------------------------------------------- program

#: operator kinds of a lane, their operand names
_UNITS = ("add", "mul", "div", "sqrt", "cmp", "sel")
_OPERANDS = {"add": "ab", "mul": "ab", "div": "ab", "sqrt": "a", "cmp": "ab", "sel": "abc"}
#: operand source kinds
#: (read port k of the register file is source kind ``_PORT + k``)
_IMM, _NB, _B0, _PORT = 0, 1, 2, 3


def _latencies(steps_per_stage):
    return {"add": Fp16AddSub.LATENCY, "mul": Fp16Mul.LATENCY,
            "div": Fp16Div.latency_of(steps_per_stage),
            "sqrt": Fp16Sqrt.latency_of(steps_per_stage),
            "cmp": Fp16Compare.LATENCY, "sel": SelectUnit.LATENCY}


class _Builder:
    """Symbolic program: ``emit`` appends an operation and returns its value id.

    A source is ``("r", v)`` (this lane's value ``v``), ``("i", bits)`` (a constant),
    ``("nb", v, level)`` (value ``v`` of lane ``l + 2**level``) or ``("b0", v)`` (value
    ``v`` of lane 0)."""

    def __init__(self):
        self.ops = []            # (unit, op code, sources, dst value)
        self.nvals = 0
        self.inputs = {}         # value -> pinned register

    def value(self):
        self.nvals += 1
        return self.nvals - 1

    def emit(self, unit, op, *srcs):
        assert len(srcs) == len(_OPERANDS[unit]), (unit, srcs)
        v = self.value()
        self.ops.append((unit, op, srcs, v))
        return v

    # conveniences, argument order = the golden model's
    def add(self, a, b):
        return self.emit("add", 0, a, b)

    def sub(self, a, b):
        return self.emit("add", 1, a, b)

    def mul(self, a, b):
        return self.emit("mul", 0, a, b)

    def div(self, a, b):
        return self.emit("div", 0, a, b)

    def sqrt(self, a):
        return self.emit("sqrt", 0, a)

    def max(self, a, b):
        return self.emit("cmp", CmpOp.MAX.value, a, b)

    def min(self, a, b):
        return self.emit("cmp", CmpOp.MIN.value, a, b)

    def sel(self, op, a=("i", 0), b=("i", 0), c=("i", 0)):
        return self.emit("sel", op.value, a, b, c)


def _r(v):
    return ("r", v)


def _i(bits):
    return ("i", int(bits))


def _exp(p, args, degree):
    """``functions.exp`` on each source in ``args`` (step-major over the elements)."""
    c = F.taylor_coefficients(degree)
    xc = [p.min(_r(p.max(a, _i(F.X_MIN))), _i(F.X_MAX)) for a in args]
    y = [p.mul(_r(v), _i(F.INV_LN2)) for v in xc]
    s = [p.add(_r(v), _i(F.ROUNDER)) for v in y]
    kf = [p.sub(_r(v), _i(F.ROUNDER)) for v in s]
    t = [p.sub(_r(xc[e]), _r(p.mul(_r(kf[e]), _i(F.LN2_HI)))) for e in range(len(args))]
    f = [p.sub(_r(t[e]), _r(p.mul(_r(kf[e]), _i(F.LN2_LO)))) for e in range(len(args))]
    q = [_i(c[degree])] * len(args)
    for i in range(degree - 1, -1, -1):
        q = [_r(p.add(_i(c[i]), _r(p.mul(_r(f[e]), q[e])))) for e in range(len(args))]
    pj = [p.sel(SelOp.POW2J, a=_r(v)) for v in s]
    pk = [p.sel(SelOp.POW2KC, a=_r(v)) for v in s]
    r = [p.mul(_r(p.mul(q[e], _r(pj[e]))), _r(pk[e])) for e in range(len(args))]
    return [p.sel(SelOp.SEL_NAN, a=_r(r[e]), c=args[e]) for e in range(len(args))]


def _reduce(p, op, vals, identity, lanes, slots):
    """``functions.reduce_row`` of the row whose word ``b`` (all lanes) is ``vals[b]``;
    returns the value (meaningful in lane 0)."""
    fn = p.add if op == "add" else p.max
    v = list(vals)
    for level in range((lanes - 1).bit_length()):
        v = [fn(_r(x), ("nb", x, level)) for x in v]
    queue = deque()
    for b, x in enumerate(v):
        part = _i(identity) if b < slots else _r(queue.popleft())
        queue.append(fn(part, _r(x)))
    while len(queue) > 1:
        a = queue.popleft()
        queue.append(fn(_r(a), _r(queue.popleft())))
    return queue[0]


def _inputs(p, words):
    x = [p.value() for _ in range(words)]
    g = [p.value() for _ in range(words)]
    be = [p.value() for _ in range(words)]
    for k, v in enumerate(x + g + be):
        p.inputs[v] = k
    return x, g, be


def _build_row(p, fn, x, g, be, n, lanes, slots, degree, eps):
    """Append one row's program (inputs ``x``, ``g``, ``be``: its words' values) to
    ``p``; returns the result values."""
    words = len(x)
    if fn == Fn.EXP:
        y = _exp(p, [_r(v) for v in x], degree)
    elif fn == Fn.SOFTMAX:
        mx = _reduce(p, "max", x, F.ops.NEG_INF, lanes, slots)
        mp = p.sel(SelOp.NEGINF_0, c=_r(mx))
        d = [p.sub(_r(v), ("b0", mp)) for v in x]
        e = _exp(p, [_r(v) for v in d], degree)
        s = _reduce(p, "add", e, F.POS_ZERO, lanes, slots)
        q = [p.div(_r(v), ("b0", s)) for v in e]
        y = [p.sel(SelOp.SEL_ZERO, a=_r(v), c=("b0", s)) for v in q]
    elif fn == Fn.LAYERNORM:
        s_in, n_s = F.mean_scales(n)
        rs = F._h(1.0 / n ** 0.5)
        xs = [p.mul(_r(v), _i(s_in)) for v in x]
        mean = p.div(_r(_reduce(p, "add", xs, F.POS_ZERO, lanes, slots)), _i(n_s))
        d = [p.sub(_r(v), ("b0", mean)) for v in x]
        u = [p.mul(_r(v), _i(rs)) for v in d]
        sq = [p.mul(_r(v), _r(v)) for v in u]
        var = _reduce(p, "add", sq, F.POS_ZERO, lanes, slots)
        r = p.sqrt(_r(p.add(_r(var), _i(eps))))
        q = [p.div(_r(v), ("b0", r)) for v in d]
        qg = [p.mul(_r(q[b]), _r(g[b])) for b in range(words)]
        y = [p.add(_r(qg[b]), _r(be[b])) for b in range(words)]
    elif fn == Fn.GELU:
        w = [p.mul(_r(v), _r(p.add(_i(F.GELU_A), _r(p.mul(_i(F.GELU_B), _r(p.mul(_r(v), _r(v))))))))
             for v in x]
        e = _exp(p, [_r(v) for v in w], degree)
        xe = [p.mul(_r(x[b]), _r(e[b])) for b in range(words)]
        den = [p.add(_i(F.ONE), _r(v)) for v in e]
        num = [p.sel(SelOp.SEL_NEG, a=_r(x[b]), b=_r(xe[b]), c=_r(x[b])) for b in range(words)]
        q = [p.div(_r(num[b]), _r(den[b])) for b in range(words)]
        yy = [p.sub(_r(x[b]), _r(q[b])) for b in range(words)]
        y = [p.sel(SelOp.GELU_FIN, a=_r(q[b]), b=_r(yy[b]), c=_r(x[b])) for b in range(words)]
    else:
        raise ValueError(f"fn must be a Fn, not {fn!r}")
    return y


def _build(fn, n, lanes, slots, degree, eps, rows=1):
    """The program of a batch of ``rows`` independent rows (word ``r * n/lanes + b`` is
    word ``b`` of row ``r``)."""
    p = _Builder()
    B = n // lanes
    x, g, be = _inputs(p, rows * B)
    y = []
    for r in range(rows):
        s = slice(r * B, (r + 1) * B)
        y += _build_row(p, fn, x[s], g[s], be[s], n, lanes, slots, degree, eps)
    return p, y


class Program:
    """One function's fixed schedule: ``issues[t]`` (``unit -> (op, sources)``),
    ``writebacks[t]`` (``(unit, register)``), ``export[t]`` (``(register, level)``),
    ``outputs`` (register of result word ``b``), ``cycles`` (run length), ``regs``
    (registers used), ``ops`` (operations per unit)."""

    def __init__(self, fn, cycles, issues, writebacks, export, outputs, regs, ops, ports):
        self.fn, self.cycles, self.issues, self.writebacks = fn, cycles, issues, writebacks
        self.export, self.outputs, self.regs, self.ops = export, outputs, regs, ops
        self.ports = ports


def _priority_order(ops, lat):
    """``ops`` in a topological order that takes, among the operations whose operands
    are all produced, the one with the longest latency path to the end first (ties:
    program order); the scheduler places them in this order, each at its earliest
    feasible cycle."""
    producer = {dst: k for k, (_, _, _, dst) in enumerate(ops)}
    users = [[] for _ in ops]
    deps = [0] * len(ops)
    for k, (_, _, srcs, _) in enumerate(ops):
        for s in {s[1] for s in srcs if s[0] != "i" and s[1] in producer}:
            users[producer[s]].append(k)
            deps[k] += 1
    height = [0] * len(ops)
    for k in range(len(ops) - 1, -1, -1):
        height[k] = lat[ops[k][0]] + 1 + max((height[u] for u in users[k]), default=0)
    heap = [(-height[k], k) for k in range(len(ops)) if deps[k] == 0]
    heapq.heapify(heap)
    while heap:
        _, k = heapq.heappop(heap)
        yield ops[k]
        for u in users[k]:
            deps[u] -= 1
            if deps[u] == 0:
                heapq.heappush(heap, (-height[u], u))


def compile_program(fn, *, n, lanes, slots, degree, eps, steps_per_stage, write_ports=1,
                    read_ports=3, rows=1):
    """Schedule and register-allocate function ``fn`` (see the module doc);
    ``write_ports``: results the register file takes per cycle, ``read_ports``: distinct
    registers it gives the operators per cycle. Two placement orders
    are tried (program order; longest path first, :func:`_priority_order`) and the
    shorter schedule kept (fewer registers on a tie)."""
    lat = _latencies(steps_per_stage)
    p, outs = _build(fn, n, lanes, slots, degree, eps, rows)
    best = None
    for order in (p.ops, list(_priority_order(p.ops, lat))):
        prog = _schedule(fn, p, outs, order, lat, write_ports, read_ports)
        if best is None or (prog.cycles, prog.regs) < (best.cycles, best.regs):
            best = prog
    return best


def _schedule(fn, p, outs, order, lat, write_ports, read_ports):
    ready = {v: 0 for v in p.inputs}        # first cycle a value can be read
    written = {v: -1 for v in p.inputs}     # cycle at whose end it is written
    busy = {u: set() for u in _UNITS}
    wport = {}                              # cycle -> results written
    export = {}                             # cycle -> (value, level or None)
    reads = {}                              # cycle -> values read through the ports
    placed = []
    for unit, op, srcs, dst in order:
        t = max([ready[s[1]] for s in srcs if s[0] != "i"] + [0])
        ex = [(s[1], s[2] if s[0] == "nb" else None) for s in srcs if s[0] in ("nb", "b0")]
        assert len({e[0] for e in ex}) <= 1
        rd = {s[1] for s in srcs if s[0] == "r"}
        assert len(rd) <= read_ports, (unit, srcs)
        L = lat[unit]
        while True:
            ok = t not in busy[unit] and wport.get(t + L, 0) < write_ports \
                and len(reads.get(t, set()) | rd) <= read_ports
            if ok and ex:
                cur = export.get(t)
                levels = {e[1] for e in ex if e[1] is not None}
                if len(levels) > 1:
                    raise AssertionError("two nb levels in one operation")
                if cur is not None:
                    ok = cur[0] == ex[0][0] and (not levels or cur[1] in (None, *levels))
            if ok:
                break
            t += 1
        busy[unit].add(t)
        reads.setdefault(t, set()).update(rd)
        wport[t + L] = wport.get(t + L, 0) + 1
        if ex:
            lv = next((e[1] for e in ex if e[1] is not None), None)
            cur = export.get(t)
            export[t] = (ex[0][0], lv if lv is not None else (cur[1] if cur else None))
        written[dst] = t + L
        ready[dst] = t + L + 1
        placed.append((t, unit, op, srcs, dst))
    cycles = max(written.values()) + 1
    # last read of every value
    last = {}
    for t, unit, op, srcs, dst in placed:
        for s in srcs:
            if s[0] != "i":
                last[s[1]] = max(last.get(s[1], -1), t)
    for v in outs:
        last[v] = float("inf")
    # linear scan, inputs pinned to registers 0 .. 3 * words - 1
    reg = dict(p.inputs)
    free_at = {}                            # register -> end of its current occupant
    for v, r in p.inputs.items():
        free_at[r] = last.get(v, -1)
    for v in sorted((v for v in written if v not in p.inputs), key=lambda v: written[v]):
        w = written[v]
        cand = [r for r, e in free_at.items() if e <= w]
        r = min(cand) if cand else len(free_at)
        reg[v] = r
        free_at[r] = last.get(v, w + 1)
    issues = [dict() for _ in range(cycles)]
    writebacks = [[] for _ in range(cycles)]
    ports = [sorted(reads.get(t, ())) for t in range(cycles)]
    for t, unit, op, srcs, dst in placed:
        enc = []
        for s in srcs:
            if s[0] == "i":
                enc.append((_IMM, s[1]))
            elif s[0] == "r":
                enc.append((_PORT + ports[t].index(s[1]), 0))
            else:
                enc.append(({"nb": _NB, "b0": _B0}[s[0]], 0))
        issues[t][unit] = (op, enc)
        writebacks[t + lat[unit]].append((unit, reg[dst]))
    exp_regs = {t: (reg[v], lv or 0) for t, (v, lv) in export.items()}
    counts = {u: len(busy[u]) for u in _UNITS}
    return Program(fn, cycles, issues, writebacks, exp_regs, [reg[v] for v in outs],
                   len(free_at), counts, [[reg[v] for v in pt] for pt in ports])


# ----------------------------------------------------------------------------- control word

class _Ctrl:
    """Bit layout of a control word for ``regs`` registers and ``levels`` tree levels."""

    def __init__(self, regs, levels, write_ports=1, read_ports=3):
        self.write_ports, self.read_ports = write_ports, read_ports
        self.rb = max(1, (regs - 1).bit_length())
        self.lb = max(1, (max(levels, 1) - 1).bit_length())
        fields = []
        for u in _UNITS:
            fields += [(f"{u}_v", 1), (f"{u}_op", 3)]
            for k in _OPERANDS[u]:
                fields += [(f"{u}_{k}_kind", 3), (f"{u}_{k}_val", 16)]
        fields += [("ex_reg", self.rb), ("ex_lvl", self.lb)]
        fields += [(f"rp{k}", self.rb) for k in range(read_ports)]
        for k in range(write_ports):
            fields += [(f"wb{k}_v", 1), (f"wb{k}_u", 3), (f"wb{k}_dst", self.rb)]
        self.offsets, pos = {}, 0
        for name, w in fields:
            self.offsets[name] = (pos, w)
            pos += w
        self.width = pos

    def field(self, word, name):
        pos, w = self.offsets[name]
        return word[pos:pos + w]

    def pack(self, **values):
        out = 0
        for name, v in values.items():
            pos, w = self.offsets[name]
            assert 0 <= v < (1 << w), (name, v)
            out |= v << pos
        return out

    def encode(self, prog, t):
        vals = {}
        for u, (op, enc) in prog.issues[t].items():
            vals[f"{u}_v"], vals[f"{u}_op"] = 1, op
            for k, (kind, val) in zip(_OPERANDS[u], enc):
                vals[f"{u}_{k}_kind"], vals[f"{u}_{k}_val"] = kind, val
        if t in prog.export:
            vals["ex_reg"], vals["ex_lvl"] = prog.export[t]
        assert len(prog.ports[t]) <= self.read_ports
        for k, r in enumerate(prog.ports[t]):
            vals[f"rp{k}"] = r
        assert len(prog.writebacks[t]) <= self.write_ports
        for k, (u, r) in enumerate(prog.writebacks[t]):
            vals[f"wb{k}_v"], vals[f"wb{k}_u"], vals[f"wb{k}_dst"] = 1, _UNITS.index(u), r
        return self.pack(**vals)


# ----------------------------------------------------------------------------- lane

class SharedSfuLane(wiring.Component):
    """One lane of :class:`SharedSfu`: one operator of each kind, ``regs`` registers,
    one write port, one export port; executes :attr:`ctrl` (a control word of the
    shared ROM, all zero when idle) every cycle.

    Ports (all ``In`` unless stated): ``ctrl`` (control word), ``nb`` (export of lane
    ``l + 2**level``), ``b0`` (export of lane 0), ``rd_addr`` (register the export port
    reads), ``export`` (``Out``, 16), ``ld_en``, ``ld_word`` (word ``b`` of the row),
    ``ld_x`` / ``ld_gamma`` / ``ld_beta``: a load writes registers ``b``, ``words + b``,
    ``2 * words + b``. ``words`` = ``n / lanes``.
    """

    def __init__(self, *, regs, words, levels, steps_per_stage=2, write_ports=1,
                 read_ports=3, sqrt=True):
        check_int("regs", regs, 3, 4096)
        check_int("words", words, 1, MAX_WORDS)
        check_int("levels", levels, 0, 8)
        check_int("steps_per_stage", steps_per_stage, 1, 14)
        check_int("write_ports", write_ports, 1, MAX_WRITE_PORTS)
        check_int("read_ports", read_ports, 3, MAX_READ_PORTS)
        if not isinstance(sqrt, bool):
            raise TypeError(f"sqrt must be True or False, not {sqrt!r}")
        self._sqrt = sqrt
        self._regs, self._words, self._steps = regs, words, steps_per_stage
        self.ctrl_layout = _Ctrl(regs, levels, write_ports, read_ports)
        c = self.ctrl_layout
        super().__init__({
            "ctrl": In(c.width), "nb": In(16), "b0": In(16),
            "rd_addr": In(c.rb), "export": Out(16),
            "ld_en": In(1), "ld_word": In(range(words)),
            "ld_x": In(16), "ld_gamma": In(16), "ld_beta": In(16),
        })

    regs = property(lambda self: self._regs)
    #: whether the lane has a square-root operator (lane 0 only in :class:`SharedSfu`)
    has_sqrt = property(lambda self: self._sqrt)

    def elaborate(self, platform):
        m = Module()
        c, w = self.ctrl_layout, self.ctrl
        R, B = self._regs, self._words
        rf = [Signal(16, name=f"r{k}") for k in range(R)]
        rfa = Array(rf)
        units = {"add": Fp16AddSub(), "mul": Fp16Mul(),
                 "div": Fp16Div(steps_per_stage=self._steps),
                 "cmp": Fp16Compare(), "sel": SelectUnit()}
        if self._sqrt:
            units["sqrt"] = Fp16Sqrt(steps_per_stage=self._steps)
        port = [Signal(16, name=f"rp{k}_data") for k in range(c.read_ports)]
        for k in range(c.read_ports):
            m.d.comb += port[k].eq(rfa[c.field(w, f"rp{k}")])
        results = []
        for u in _UNITS:
            if u == "sqrt" and not self._sqrt:
                results.append(Const(0, 16))       # never used outside lane 0
                continue
            unit = units[u]
            m.submodules[u] = unit
            payload = unit.i.payload if u == "sel" else unit.i.payload[0]
            for k in _OPERANDS[u]:
                kind, val = c.field(w, f"{u}_{k}_kind"), c.field(w, f"{u}_{k}_val")
                src = Signal(16, name=f"{u}_{k}")
                with m.Switch(kind):
                    for q in range(c.read_ports):
                        with m.Case(_PORT + q):
                            m.d.comb += src.eq(port[q])
                    with m.Case(_IMM):
                        m.d.comb += src.eq(val)
                    with m.Case(_NB):
                        m.d.comb += src.eq(self.nb)
                    with m.Case(_B0):
                        m.d.comb += src.eq(self.b0)
                m.d.comb += payload[k].eq(src)
            op = c.field(w, f"{u}_op")
            if u == "add":
                m.d.comb += payload.sub.eq(op[0])
            elif u in ("cmp", "sel"):
                m.d.comb += payload.op.eq(op)
            m.d.comb += [unit.i.valid.eq(c.field(w, f"{u}_v")), unit.o.ready.eq(1)]
            results.append(unit.o.payload.r if u == "sel" else unit.o.payload[0].r)
        ports = []
        for p in range(c.write_ports):
            wb_data = Signal(16, name=f"wb{p}_data")
            m.d.comb += wb_data.eq(Array(results)[c.field(w, f"wb{p}_u")])
            ports.append((c.field(w, f"wb{p}_v"), c.field(w, f"wb{p}_dst"), wb_data))
        m.d.comb += self.export.eq(rfa[self.rd_addr])
        for k in range(R):
            for wb_v, wb_dst, wb_data in ports:       # distinct registers (schedule)
                with m.If(wb_v & (wb_dst == k)):
                    m.d.sync += rf[k].eq(wb_data)
            if k < 3 * B:
                src = (self.ld_x, self.ld_gamma, self.ld_beta)[k // B]
                with m.If(self.ld_en & (self.ld_word == k % B)):
                    m.d.sync += rf[k].eq(src)
        return m


# ----------------------------------------------------------------------------- SFU

LANE_IN = data.StructLayout({"x": 16, "gamma": 16, "beta": 16})


class SharedSfu(wiring.Component):
    """``lanes`` :class:`SharedSfuLane` s, one microcode ROM and sequencer (module doc).

    Parameters: ``lanes`` (a power of two, 1..256; the published SFU has 256), ``n``
    (row length, a multiple of ``lanes``, exactly representable in binary16), ``rows``
    (rows per batch; ``rows * n / lanes`` in 1..``MAX_WORDS``), ``slots`` (reduction
    partials, 1..``MAX_SLOTS``), ``degree`` (exp's Taylor degree, 1..8), ``eps`` (layer
    norm's epsilon, a positive finite binary16 pattern), ``steps_per_stage`` (divider /
    square root, 1..14), ``write_ports`` (1..``MAX_WRITE_PORTS``), ``read_ports``
    (3..``MAX_READ_PORTS``). Bad values raise ValueError (TypeError for a non-integer)
    naming the parameter and its range.

    Ports: ``i``: stream of ``{fn: Fn, data: lanes x {x, gamma, beta}}``; ``o``: stream
    of ``lanes x 16``. Protocol in the module doc.
    """

    def __init__(self, *, lanes=2, n=16, slots=4, degree=F.EXP_DEGREE, eps=F._h(1e-5),
                 steps_per_stage=2, write_ports=2, read_ports=3, rows=1):
        check_pow2("lanes", lanes, 1, MAX_LANES)
        check_int("rows", rows, 1, MAX_WORDS)
        hi = lanes * (MAX_WORDS // rows)
        if isinstance(n, bool) or not isinstance(n, int) or n % lanes \
                or not lanes <= n <= hi:
            raise ValueError(f"n must be a multiple of lanes ({lanes}) in {lanes}..{hi} "
                             f"(rows * n / lanes at most {MAX_WORDS}), not {n!r}")
        F._fp16_of_int(n, "n")
        check_int("slots", slots, 1, MAX_SLOTS)
        check_int("degree", degree, 1, 8)
        check_int("eps", eps, 0, 0xFFFF, what="a binary16 bit pattern")
        F.check_eps(eps)
        check_int("steps_per_stage", steps_per_stage, 1, 14)
        check_int("write_ports", write_ports, 1, MAX_WRITE_PORTS)
        check_int("read_ports", read_ports, 3, MAX_READ_PORTS)
        self._write_ports, self._read_ports = write_ports, read_ports
        self._lanes, self._n, self._slots, self._degree = lanes, n, slots, degree
        self._eps, self._steps = eps, steps_per_stage
        self._rows = rows
        self._words = rows * n // lanes
        self.programs = {fn: compile_program(fn, n=n, lanes=lanes, slots=slots,
                                             degree=degree, eps=eps,
                                             steps_per_stage=steps_per_stage,
                                             write_ports=write_ports,
                                             read_ports=read_ports, rows=rows)
                         for fn in Fn}
        self._regs = max(3 * self._words, max(p.regs for p in self.programs.values()))
        self._levels = (lanes - 1).bit_length()
        super().__init__({
            "i": In(stream.Signature(data.StructLayout(
                {"fn": Fn, "data": data.ArrayLayout(LANE_IN, lanes)}))),
            "o": Out(stream.Signature(data.ArrayLayout(16, lanes))),
        })

    lanes = property(lambda self: self._lanes)
    n = property(lambda self: self._n)
    rows = property(lambda self: self._rows)
    #: beats of a batch (``rows * n / lanes``), the words of a lane's register file
    #: that hold a batch's inputs
    words = property(lambda self: self._words)
    regs = property(lambda self: self._regs)

    def run_cycles(self, fn):
        """Cycles of ``fn``'s program (the RUN phase)."""
        return self.programs[Fn(fn)].cycles

    def cycles_per_batch(self, fn):
        """Cycles per batch of ``rows`` rows with the source always valid and the sink
        always ready: ``words`` load beats + the program + ``words`` output beats."""
        return 2 * self._words + self.run_cycles(fn)

    def results_per_cycle_per_lane(self, fn):
        """Results per cycle per lane, source always valid, sink always ready."""
        return self._words / self.cycles_per_batch(fn)

    def make_lane(self, sqrt=True):
        """A lane of this SFU (``sqrt``: with the square-root operator, as lane 0)."""
        return SharedSfuLane(regs=self._regs, words=self._words, levels=self._levels,
                             steps_per_stage=self._steps, write_ports=self._write_ports,
                             read_ports=self._read_ports, sqrt=sqrt)

    def elaborate(self, platform):
        m = Module()
        L, B = self._lanes, self._words
        lanes = [self.make_lane(sqrt=l == 0) for l in range(L)]
        c = lanes[0].ctrl_layout
        # ROM: programs back to back
        words, start, outs = [], {}, {}
        for fn in Fn:
            prog = self.programs[fn]
            start[fn] = len(words)
            words += [c.encode(prog, t) for t in range(prog.cycles)]
            outs[fn] = prog.outputs
        words.append(0)         # read (and gated off) in the cycle after the last program
        m.submodules.rom = rom = Memory(shape=c.width, depth=len(words), init=words)
        rp = rom.read_port(domain="sync")     # registered control word

        # sequencer
        fn_row = Signal(Fn)
        pc = Signal(range(len(words) + 1))
        end = Signal(range(len(words) + 1))
        beat = Signal(range(B))
        load, run, out = Signal(init=1), Signal(), Signal()
        # the ROM is addressed with the next pc, so that its registered output in a
        # cycle is the word of that cycle's pc
        pc_next = Signal.like(pc)
        m.d.comb += [pc_next.eq(pc), rp.addr.eq(pc_next)]
        m.d.sync += pc.eq(pc_next)
        ctrl = Signal(c.width)
        m.d.comb += ctrl.eq(Mux(run, rp.data, 0))
        fn_now = Mux(beat == 0, self.i.payload.fn, fn_row)
        starts = Array(Const(start[fn], len(pc)) for fn in Fn)
        ends = Array(Const(start[fn] + self.programs[fn].cycles, len(pc)) for fn in Fn)
        m.d.comb += self.i.ready.eq(load)
        fire_in = self.i.valid & load
        with m.If(fire_in):
            m.d.sync += beat.eq(Mux(beat == B - 1, 0, beat + 1))
            with m.If(beat == 0):
                m.d.sync += fn_row.eq(self.i.payload.fn)
            with m.If(beat == B - 1):
                m.d.sync += [load.eq(0), run.eq(1), end.eq(ends[fn_now])]
                m.d.comb += pc_next.eq(starts[fn_now])
        with m.If(run):
            m.d.comb += pc_next.eq(pc + 1)
            with m.If(pc == end - 1):
                m.d.sync += [run.eq(0), out.eq(1)]
        m.d.comb += self.o.valid.eq(out)
        with m.If(out & self.o.ready):
            m.d.sync += beat.eq(Mux(beat == B - 1, 0, beat + 1))
            with m.If(beat == B - 1):
                m.d.sync += [out.eq(0), load.eq(1)]
        # output register of word `beat` of the current function
        out_addr = Signal(c.rb)
        table = Array(Array(Const(r, c.rb) for r in outs[fn]) for fn in Fn)
        m.d.comb += out_addr.eq(table[fn_row][beat])
        rd = Mux(run, c.field(ctrl, "ex_reg"), out_addr)
        level = c.field(ctrl, "ex_lvl")
        for l, lane in enumerate(lanes):
            m.submodules[f"lane{l}"] = lane
            d = self.i.payload.data[l]
            m.d.comb += [lane.ctrl.eq(ctrl), lane.rd_addr.eq(rd),
                         lane.ld_en.eq(fire_in), lane.ld_word.eq(beat),
                         lane.ld_x.eq(d.x), lane.ld_gamma.eq(d.gamma),
                         lane.ld_beta.eq(d.beta),
                         lane.b0.eq(lanes[0].export),
                         self.o.payload[l].eq(lane.export)]
            nbs = [lanes[l + (1 << s)].export if l + (1 << s) < L else Const(0, 16)
                   for s in range(self._levels)]
            m.d.comb += lane.nb.eq(Array(nbs)[level] if nbs else 0)
        return m


BLOCKS = [
    Block("sfu_shared",
          lambda lanes, n, slots, degree: SharedSfu(lanes=lanes, n=n, slots=slots, degree=degree),
          {"lanes": 2, "n": 16, "slots": 4, "degree": F.EXP_DEGREE},
          "shared-operator FP16 SFU: per lane one add/sub, mul, div and compare (sqrt in "
          "lane 0), softmax, layer norm, GELU and exp by microcode (published: 256 lanes)",
          small={"lanes": 1, "n": 4}),
]
