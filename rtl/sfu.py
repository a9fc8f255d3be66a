"""FP16 special-function unit: exp, GELU, softmax and layer norm (bit-exact to
``models/fp16/functions.py``), built from the pipelined operators of :mod:`.fp16`.

Every unit has one input stream ``i`` and one output stream ``o``; a transfer carries
``lanes`` binary16 bit patterns (``data.ArrayLayout(16, lanes)``; layer norm's input
lanes are ``{x, gamma, beta}`` structs). The functions produce no exception flags.

Composition (:class:`_Chain`): the operators of an element-wise function are chained
stream to stream, each operator feeding the next through a little multiplexing logic.
Values that a later step needs (the clamped argument, the integer ``k``, NaN marks)
travel beside the operators in side registers: ``latency`` registers per operator, with
the operator's own pipeline enable (``i.ready`` of a :mod:`.fp16` unit IS its enable),
so they stay aligned with its pipeline under any backpressure. The ready path is
therefore combinational through the whole chain (a stall freezes every stage holding a
valid result, bubbles are squeezed out), which keeps one result per cycle per lane.

Size: ``lanes`` is a parameter; the published SFU (DESIGN.md) has 256 lanes, the
defaults here (constructors and the block registry) are small: 2 lanes, rows of 16.

Element-wise units (:class:`ExpUnit`, :class:`GeluUnit`): one result per cycle per lane,
latency = sum of the operator latencies (``latency`` property).

Row units (:class:`SoftmaxUnit`, :class:`LayerNormUnit`) take a row of ``n`` elements as
``n / lanes`` consecutive transfers and give the result row the same way. They store
the row in a memory and make three passes over it (see each class); rows are processed
one after the other, so a row of ``B = n / lanes`` beats occupies the unit for about
``3 B`` cycles plus the pipeline latencies (measured figures in ``docs/sfu.md``).
Reductions use :class:`RowReduce`, whose order is the golden model's ``reduce_row``.
"""

from amaranth import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..models.fp16 import functions as F
from ..sim.blocks import Block
from .fp16 import CmpOp, Fp16AddSub, Fp16Compare, Fp16Div, Fp16Mul, Fp16Sqrt

__all__ = ["ExpUnit", "GeluUnit", "RowReduce", "SoftmaxUnit", "LayerNormUnit", "BLOCKS"]

_QNAN = 0x7E00
_NEG_INF = 0xFC00
_POS_INF = 0x7C00


def _check_pos_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


def _check_lanes_pow2(lanes):
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1 or lanes & (lanes - 1):
        raise ValueError(f"lanes must be a power of two, not {lanes!r}")


def _check_degree(degree):
    if isinstance(degree, bool) or not isinstance(degree, int) or not 1 <= degree <= 8:
        raise ValueError(f"degree must be an integer in 1..8, not {degree!r}")


def _is_nan(x):
    return (x[10:15] == 0x1F) & x[0:10].any()


def _pow2(n):
    """binary16 of ``2**n`` for a signed ``n`` in -24..15 (as :func:`functions.pow2`)."""
    return Mux(n >= -14, ((n + 15)[:5]) << 10, Const(1, 16) << (n + 24)[:4])


class _Chain:
    """A chain of :mod:`.fp16` operators with per-lane side registers (see module doc).

    ``valid``/``results``/``side`` describe the current end of the chain; ``step()``
    appends an operator, ``close(ready)`` connects the final consumer's ready.
    """

    def __init__(self, m, prefix, valid, side):
        self._m, self._prefix, self._n = m, prefix, 0
        self.ready = Signal(name=f"{prefix}_in_ready")
        self._ready_sink = self.ready
        self.valid = valid
        self.side = side
        self.results = []
        self.latency = 0

    def step(self, unit, payload, side):
        """Feed ``unit`` (payload: list over its lanes of field dicts); ``side`` is the
        list over chain lanes of dicts of values to carry to the unit's output."""
        m = self._m
        name = f"{self._prefix}_{self._n}_{type(unit).__name__.lower()}"
        self._n += 1
        m.submodules[name] = unit
        m.d.comb += [self._ready_sink.eq(unit.i.ready), unit.i.valid.eq(self.valid)]
        for k, fields in enumerate(payload):
            for f, v in fields.items():
                m.d.comb += unit.i.payload[k][f].eq(v)
        en = unit.i.ready
        out = []
        for lane, sd in enumerate(side):
            cur = {}
            for key, v in sd.items():
                v = Value.cast(v)
                for s in range(unit.latency):
                    r = Signal(v.shape(), name=f"{name}_l{lane}_{key}_d{s}")
                    with m.If(en):
                        m.d.sync += r.eq(v)
                    v = r
                cur[key] = v
            out.append(cur)
        self._ready_sink = unit.o.ready
        self.valid = unit.o.valid
        self.results = [unit.o.payload[k].r for k in range(len(payload))]
        self.side = out
        self.latency += unit.latency
        return self.results

    def close(self, ready):
        self._m.d.comb += self._ready_sink.eq(ready)


def _exp_steps(ch, args, keep, degree):
    """Append the exp datapath (``functions.exp``) to ``ch``; ``args[l]`` is lane l's
    argument, ``keep[l]`` a dict of side values carried through. Returns the results
    (with the NaN selection applied) and the carried side dicts."""
    lanes = len(args)
    coeffs = F.taylor_coefficients(degree)
    x = ch.step(Fp16Compare(lanes=lanes),
                [dict(a=a, b=F.X_MIN, op=CmpOp.MAX) for a in args],
                [dict(keep[l], nan=_is_nan(args[l])) for l in range(lanes)])
    xc = ch.step(Fp16Compare(lanes=lanes), [dict(a=v, b=F.X_MAX, op=CmpOp.MIN) for v in x],
                 ch.side)
    y = ch.step(Fp16Mul(lanes=lanes), [dict(a=v, b=F.INV_LN2) for v in xc],
                [dict(sd, xc=xc[l]) for l, sd in enumerate(ch.side)])
    s = ch.step(Fp16AddSub(lanes=lanes), [dict(a=v, b=F.ROUNDER, sub=0) for v in y], ch.side)
    kf = ch.step(Fp16AddSub(lanes=lanes), [dict(a=v, b=F.ROUNDER, sub=1) for v in s],
                 [dict(sd, kfrac=s[l][0:10]) for l, sd in enumerate(ch.side)])
    # one two-lane-per-lane multiplier: kf * LN2_HI (even lanes), kf * LN2_LO (odd lanes)
    prods = ch.step(Fp16Mul(lanes=2 * lanes),
                    [dict(a=kf[l // 2], b=(F.LN2_HI, F.LN2_LO)[l % 2]) for l in range(2 * lanes)],
                    ch.side)
    t = ch.step(Fp16AddSub(lanes=lanes),
                [dict(a=ch.side[l]["xc"], b=prods[2 * l], sub=1) for l in range(lanes)],
                [dict(sd, lo=prods[2 * l + 1]) for l, sd in enumerate(ch.side)])
    drop = ("xc", "lo")
    f = ch.step(Fp16AddSub(lanes=lanes),
                [dict(a=t[l], b=ch.side[l]["lo"], sub=1) for l in range(lanes)],
                [{k: v for k, v in sd.items() if k not in drop} for sd in ch.side])
    q = [Const(coeffs[degree], 16)] * lanes
    fs = f
    for i in range(degree - 1, -1, -1):
        side = [dict(sd, f=fs[l]) for l, sd in enumerate(ch.side)]
        fq = ch.step(Fp16Mul(lanes=lanes), [dict(a=fs[l], b=q[l]) for l in range(lanes)], side)
        fs = [sd["f"] for sd in ch.side]
        q = ch.step(Fp16AddSub(lanes=lanes), [dict(a=coeffs[i], b=v, sub=0) for v in fq],
                    ch.side)
        fs = [sd["f"] for sd in ch.side]
    # plain expressions (no comb Signals): Icarus only evaluates an always-block when an
    # input changes, which left kc/j X when k kept its initial value
    k = [sd["kfrac"] - 512 for sd in ch.side]
    kc = [Mux(kk < -24, -24, Mux(kk > 15, 15, kk)) for kk in k]
    j = [k[l] - kc[l] for l in range(lanes)]
    side = [dict({n: v for n, v in sd.items() if n not in ("f", "kfrac")}, kc=kc[l])
            for l, sd in enumerate(ch.side)]
    p = ch.step(Fp16Mul(lanes=lanes), [dict(a=q[l], b=_pow2(j[l])) for l in range(lanes)], side)
    r = ch.step(Fp16Mul(lanes=lanes),
                [dict(a=p[l], b=_pow2(ch.side[l]["kc"])) for l in range(lanes)],
                [{n: v for n, v in sd.items() if n != "kc"} for sd in ch.side])
    res = [Mux(ch.side[l]["nan"], _QNAN, r[l]) for l in range(lanes)]
    carried = [{n: v for n, v in sd.items() if n != "nan"} for sd in ch.side]
    return res, carried


class ExpUnit(wiring.Component):
    """``o = exp(i)`` per lane, one result per cycle per lane (``functions.exp``).

    Parameters: ``lanes`` (positive integer, default 2; the published SFU has 256),
    ``degree`` (Taylor degree, 1..8, default 4).
    ``latency``: cycles from an accepted input to its result with ``o.ready`` high.
    """

    def __init__(self, *, lanes=2, degree=F.EXP_DEGREE):
        _check_pos_int("lanes", lanes)
        _check_degree(degree)
        self._lanes, self._degree = lanes, degree
        self._latency = None
        super().__init__({"i": In(stream.Signature(data.ArrayLayout(16, lanes))),
                          "o": Out(stream.Signature(data.ArrayLayout(16, lanes)))})

    lanes = property(lambda self: self._lanes)
    degree = property(lambda self: self._degree)

    @property
    def latency(self):
        return _exp_latency(self._degree)

    def elaborate(self, platform):
        m = Module()
        ch = _Chain(m, "exp", self.i.valid, None)
        m.d.comb += self.i.ready.eq(ch.ready)
        res, _ = _exp_steps(ch, [self.i.payload[l] for l in range(self._lanes)],
                            [{} for _ in range(self._lanes)], self._degree)
        m.d.comb += self.o.valid.eq(ch.valid)
        for l in range(self._lanes):
            m.d.comb += self.o.payload[l].eq(res[l])
        ch.close(self.o.ready)
        return m


def _lat(cls):
    """Latency of an :mod:`.fp16` unit class (an instance made only to ask it)."""
    unit = cls()
    unit._MustUse__silence = True
    return unit.latency


def _exp_latency(degree):
    add, mul, cmp = _lat(Fp16AddSub), _lat(Fp16Mul), _lat(Fp16Compare)
    return 2 * cmp + 4 * mul + 4 * add + degree * (mul + add)


class GeluUnit(wiring.Component):
    """``o = gelu(i)`` per lane, one result per cycle per lane (``functions.gelu``).

    ``w = x (A + B x^2)``, ``e = exp(w)``; sign bit 0: ``x - (x e) / (1 + e)``, sign
    bit 1: ``x / (1 + e)``; +Inf -> +Inf, -Inf -> -0. Parameters as :class:`ExpUnit`.
    """

    def __init__(self, *, lanes=2, degree=F.EXP_DEGREE):
        _check_pos_int("lanes", lanes)
        _check_degree(degree)
        self._lanes, self._degree = lanes, degree
        super().__init__({"i": In(stream.Signature(data.ArrayLayout(16, lanes))),
                          "o": Out(stream.Signature(data.ArrayLayout(16, lanes)))})

    lanes = property(lambda self: self._lanes)
    degree = property(lambda self: self._degree)

    @property
    def latency(self):
        add, mul, div = _lat(Fp16AddSub), _lat(Fp16Mul), _lat(Fp16Div)
        return 3 * mul + add + _exp_latency(self._degree) + mul + add + div + add

    def elaborate(self, platform):
        m = Module()
        L = self._lanes
        x = [self.i.payload[l] for l in range(L)]
        ch = _Chain(m, "gelu", self.i.valid, None)
        m.d.comb += self.i.ready.eq(ch.ready)
        keep = lambda: [dict(x=sd["x"]) for sd in ch.side]     # noqa: E731
        x2 = ch.step(Fp16Mul(lanes=L), [dict(a=v, b=v) for v in x], [dict(x=v) for v in x])
        bx2 = ch.step(Fp16Mul(lanes=L), [dict(a=F.GELU_B, b=v) for v in x2], keep())
        a = ch.step(Fp16AddSub(lanes=L), [dict(a=F.GELU_A, b=v, sub=0) for v in bx2], keep())
        w = ch.step(Fp16Mul(lanes=L), [dict(a=ch.side[l]["x"], b=a[l]) for l in range(L)],
                    keep())
        e, carried = _exp_steps(ch, w, keep(), self._degree)
        xs = [sd["x"] for sd in carried]
        xe = ch.step(Fp16Mul(lanes=L), [dict(a=xs[l], b=e[l]) for l in range(L)],
                     [dict(x=xs[l], e=e[l]) for l in range(L)])
        den = ch.step(Fp16AddSub(lanes=L),
                      [dict(a=F.ONE, b=ch.side[l]["e"], sub=0) for l in range(L)],
                      [dict(x=ch.side[l]["x"], xe=xe[l]) for l in range(L)])
        num = [Mux(sd["x"][15], sd["x"], sd["xe"]) for sd in ch.side]
        q = ch.step(Fp16Div(lanes=L), [dict(a=num[l], b=den[l]) for l in range(L)], keep())
        y = ch.step(Fp16AddSub(lanes=L),
                    [dict(a=ch.side[l]["x"], b=q[l], sub=1) for l in range(L)],
                    [dict(x=ch.side[l]["x"], q=q[l]) for l in range(L)])
        m.d.comb += self.o.valid.eq(ch.valid)
        for l in range(L):
            xv, qv = ch.side[l]["x"], ch.side[l]["q"]
            r = Mux(xv[15], qv, y[l])
            r = Mux(xv == _POS_INF, _POS_INF, Mux(xv == _NEG_INF, 0x8000, r))
            m.d.comb += self.o.payload[l].eq(r)
        ch.close(self.o.ready)
        return m


# ----------------------------------------------------------------------------- rows

def _op_unit(op, lanes):
    return Fp16AddSub(lanes=lanes) if op == "add" else Fp16Compare(lanes=lanes)


def _op_fields(op, a, b):
    return dict(a=a, b=b, sub=0) if op == "add" else dict(a=a, b=b, op=CmpOp.MAX)


class RowReduce(wiring.Component):
    """Reduce rows with ``op`` (``"add"`` or ``"max"``) in ``functions.reduce_row``'s order.

    ``i``: beats ``{x: lanes x 16, last}`` (``last`` marks a row's final beat); ``o``: one
    binary16 per row. A pairwise tree of operators reduces each beat; one more operator,
    looped through a FIFO of ``slots`` partials, folds the beat values round-robin
    (identity = +0 for add, -Inf for max, for the first ``slots`` beats); after the last
    beat it folds the partials pairwise through the same FIFO. While folding, the next
    row's beats wait. With ``slots`` >= the loop latency (operator + 1) the beats flow at
    one per cycle.
    """

    def __init__(self, *, op="add", lanes=2, slots=4):
        if op not in ("add", "max"):
            raise ValueError(f"op must be 'add' or 'max', not {op!r}")
        _check_lanes_pow2(lanes)
        _check_pos_int("slots", slots)
        self._op, self._lanes, self._slots = op, lanes, slots
        super().__init__({
            "i": In(stream.Signature(data.StructLayout(
                {"x": data.ArrayLayout(16, lanes), "last": 1}))),
            "o": Out(stream.Signature(16)),
        })

    def elaborate(self, platform):
        m = Module()
        op, L, P = self._op, self._lanes, self._slots
        ident = 0 if op == "add" else _NEG_INF
        ch = _Chain(m, "tree", self.i.valid, None)
        m.d.comb += self.i.ready.eq(ch.ready)
        vals = [self.i.payload.x[l] for l in range(L)]
        last = self.i.payload.last
        if L > 1:
            side = [dict(last=last)]
            while len(vals) > 1:
                vals = ch.step(_op_unit(op, len(vals) // 2),
                               [_op_fields(op, vals[2 * k], vals[2 * k + 1])
                                for k in range(len(vals) // 2)], side)
                side = ch.side
            last = ch.side[0]["last"]
        v, v_valid = vals[0], ch.valid

        m.submodules.fifo = fifo = SyncFIFOBuffered(width=16, depth=P)
        m.submodules.acc = acc = _op_unit(op, 1)
        m.d.comb += [fifo.w_data.eq(acc.o.payload[0].r), fifo.w_en.eq(acc.o.valid),
                     acc.o.ready.eq(fifo.w_rdy)]
        nb = Signal(range(P + 1))          # beats issued in this row, saturating at P
        left = Signal(range(P + 1))        # partials still to fold
        hold = Signal(16)
        tree_ready = Signal()
        ch.close(tree_ready)
        with m.FSM(init="ACCUM"):
            with m.State("ACCUM"):
                fresh = nb < P
                m.d.comb += acc.i.valid.eq(v_valid & (fresh | fifo.r_rdy))
                for f, val in _op_fields(op, Mux(fresh, ident, fifo.r_data), v).items():
                    m.d.comb += acc.i.payload[0][f].eq(val)
                m.d.comb += tree_ready.eq(acc.i.ready & (fresh | fifo.r_rdy))
                with m.If(acc.i.valid & acc.i.ready):
                    m.d.comb += fifo.r_en.eq(~fresh)
                    m.d.sync += nb.eq(Mux(fresh, nb + 1, nb))
                    with m.If(last):
                        m.d.sync += [left.eq(Mux(fresh, nb + 1, nb)), nb.eq(0)]
                        m.next = "FOLD1"
            with m.State("FOLD1"):
                with m.If(left == 1):
                    m.next = "OUT"
                with m.Elif(fifo.r_rdy):
                    m.d.comb += fifo.r_en.eq(1)
                    m.d.sync += hold.eq(fifo.r_data)
                    m.next = "FOLD2"
            with m.State("FOLD2"):
                for f, val in _op_fields(op, hold, fifo.r_data).items():
                    m.d.comb += acc.i.payload[0][f].eq(val)
                m.d.comb += acc.i.valid.eq(fifo.r_rdy)
                with m.If(fifo.r_rdy & acc.i.ready):
                    m.d.comb += fifo.r_en.eq(1)
                    m.d.sync += left.eq(left - 1)
                    m.next = "FOLD1"
            with m.State("OUT"):
                m.d.comb += [self.o.valid.eq(fifo.r_rdy), self.o.payload.eq(fifo.r_data),
                             fifo.r_en.eq(self.o.ready)]
                with m.If(self.o.valid & self.o.ready):
                    m.next = "ACCUM"
        return m


def _check_row(n, lanes, slots):
    _check_lanes_pow2(lanes)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n % lanes:
        raise ValueError(f"n must be a positive multiple of lanes ({lanes}), not {n!r}")
    _check_pos_int("slots", slots)


class _RowUnit(wiring.Component):
    """Common part of the row units: parameters, row memory, read/write addresses."""

    def __init__(self, n, lanes, slots, in_lane):
        _check_row(n, lanes, slots)
        self._n, self._lanes, self._slots = n, lanes, slots
        self._beats = n // lanes
        super().__init__({"i": In(stream.Signature(data.ArrayLayout(in_lane, lanes))),
                          "o": Out(stream.Signature(data.ArrayLayout(16, lanes)))})

    n = property(lambda self: self._n)
    lanes = property(lambda self: self._lanes)
    slots = property(lambda self: self._slots)

    def _memory(self, m, shape):
        B = self._beats
        m.submodules.row = mem = Memory(shape=shape, depth=B, init=[])
        return mem.read_port(domain="comb"), mem.write_port()

    def _issue(self, m, name):
        """A read-address counter ``0..B-1`` for one pass; returns (addr, last, done)."""
        B = self._beats
        addr = Signal(range(B + 1), name=f"{name}_addr")
        return addr, addr == B - 1, addr == B


class SoftmaxUnit(_RowUnit):
    """Softmax of rows of ``n`` elements (``functions.softmax``, divide form).

    Pass 1 (LOAD): the row is written to the row memory while a max :class:`RowReduce`
    reads it. Pass 2 (EXP): each element goes through ``x - m'`` and the exp datapath;
    ``e`` is written back and summed by an add :class:`RowReduce`. Pass 3 (DIV): ``e / s``
    per lane, 0 for every element when ``s`` is zero (all -Inf row). Parameters: ``n``
    (a positive multiple of ``lanes``), ``lanes`` (a power of two), ``slots`` (reduction
    partials), ``degree`` (Taylor degree of exp).
    """

    def __init__(self, *, n=16, lanes=2, slots=4, degree=F.EXP_DEGREE):
        _check_degree(degree)
        self._degree = degree
        super().__init__(n, lanes, slots, 16)

    def elaborate(self, platform):
        m = Module()
        L, B = self._lanes, self._beats
        rd, wr = self._memory(m, data.ArrayLayout(16, L))
        m.submodules.rmax = rmax = RowReduce(op="max", lanes=L, slots=self._slots)
        m.submodules.rsum = rsum = RowReduce(op="add", lanes=L, slots=self._slots)
        addr, is_last, done = self._issue(m, "sm")
        mx = Signal(16)
        s = Signal(16)
        outs = Signal(range(B + 1))
        state = Signal(range(4))              # 0 LOAD, 3 wait for the max, 1 EXP, 2 DIV
        # pass 2 chain: x - m, exp
        ch = _Chain(m, "smx", (state == 1) & ~done, None)
        xs = [rd.data[l] for l in range(L)]
        d = ch.step(Fp16AddSub(lanes=L), [dict(a=xs[l], b=mx, sub=1) for l in range(L)],
                    [dict(addr=addr, last=is_last) for _ in range(L)])
        e, carried = _exp_steps(ch, d, ch.side, self._degree)
        m.d.comb += [rsum.i.valid.eq(ch.valid), rsum.i.payload.last.eq(carried[0]["last"])]
        for l in range(L):
            m.d.comb += rsum.i.payload.x[l].eq(e[l])
        ch.close(rsum.i.ready)
        # pass 3 chain: e / s
        dv = _Chain(m, "smd", (state == 2) & ~done, None)
        q = dv.step(Fp16Div(lanes=L), [dict(a=xs[l], b=s) for l in range(L)],
                    [{} for _ in range(L)])
        m.d.comb += self.o.valid.eq(dv.valid)
        for l in range(L):
            m.d.comb += self.o.payload[l].eq(Mux(s[0:15] == 0, 0, q[l]))
        dv.close(self.o.ready)
        # memory writes: the input row (LOAD), or the exp results coming out of pass 2
        load = self.i.valid & self.i.ready
        m.d.comb += [wr.en.eq(load | (rsum.i.valid & rsum.i.ready)),
                     wr.addr.eq(Mux(load, addr, carried[0]["addr"])),
                     wr.data.eq(Mux(load, self.i.payload.as_value(), Cat(*e))),
                     rd.addr.eq(addr)]
        # pass 1: load + max
        m.d.comb += [rmax.i.valid.eq(self.i.valid & (state == 0)),
                     self.i.ready.eq(rmax.i.ready & (state == 0)),
                     rmax.i.payload.x.eq(self.i.payload), rmax.i.payload.last.eq(is_last)]
        with m.If(state == 0):
            with m.If(load):
                m.d.sync += addr.eq(Mux(is_last, 0, addr + 1))
                with m.If(is_last):
                    m.d.sync += state.eq(3)
        with m.If(state == 3):
            m.d.comb += rmax.o.ready.eq(1)
            with m.If(rmax.o.valid):
                m.d.sync += [mx.eq(Mux(rmax.o.payload == _NEG_INF, 0, rmax.o.payload)),
                             state.eq(1), addr.eq(0)]
        with m.If(state == 1):
            with m.If(ch.ready & ~done):
                m.d.sync += addr.eq(addr + 1)
            m.d.comb += rsum.o.ready.eq(1)
            with m.If(rsum.o.valid):
                m.d.sync += [s.eq(rsum.o.payload), state.eq(2), addr.eq(0)]
        with m.If(state == 2):
            with m.If(dv.ready & ~done):
                m.d.sync += addr.eq(addr + 1)
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += outs.eq(outs + 1)
                with m.If(outs == B - 1):
                    m.d.sync += [outs.eq(0), state.eq(0), addr.eq(0)]
        return m


LN_LANE = data.StructLayout({"x": 16, "gamma": 16, "beta": 16})


class LayerNormUnit(_RowUnit):
    """Layer norm of rows of ``n`` elements (``functions.layernorm``).

    Input lanes are ``{x, gamma, beta}``. Pass 1 (LOAD): store the row, sum ``x``;
    ``mean = sum / n``. Pass 2 (VAR): ``u = (x - mean) * R``, sum ``u * u`` (``R =
    fp16(1/sqrt(n))``); ``r = sqrt(var + eps)``. Pass 3 (OUT): ``((x - mean) / r) *
    gamma + beta``. One add :class:`RowReduce` serves both sums. ``eps`` is a binary16
    bit pattern (generator parameter, default fp16(1e-5)); ``n`` must be exactly
    representable in binary16.
    """

    def __init__(self, *, n=16, lanes=2, slots=4, eps=F._h(1e-5)):
        _check_row(n, lanes, slots)
        if isinstance(eps, bool) or not isinstance(eps, int) or not 0 <= eps <= 0xFFFF:
            raise ValueError(f"eps must be a binary16 bit pattern in 0..65535, not {eps!r}")
        self._n16 = F._fp16_of_int(n, "n")
        self._eps = eps
        super().__init__(n, lanes, slots, LN_LANE)

    eps = property(lambda self: self._eps)

    def elaborate(self, platform):
        m = Module()
        L, B = self._lanes, self._beats
        rd, wr = self._memory(m, data.ArrayLayout(LN_LANE, L))
        m.submodules.rsum = rsum = RowReduce(op="add", lanes=L, slots=self._slots)
        addr, is_last, done = self._issue(m, "ln")
        mean, r = Signal(16), Signal(16)
        outs = Signal(range(B + 1))
        state = Signal(range(8))   # 0 LOAD, 1 SUM->mean, 2 VAR pass, 3 var->r, 4 OUT pass
        # pass 2 chain: (x - mean) * R, squared
        vc = _Chain(m, "lnv", (state == 2) & ~done, None)
        xs = [rd.data[l].x for l in range(L)]
        d = vc.step(Fp16AddSub(lanes=L), [dict(a=xs[l], b=mean, sub=1) for l in range(L)],
                    [dict(last=is_last)] + [{} for _ in range(L - 1)])
        u = vc.step(Fp16Mul(lanes=L), [dict(a=v, b=F._h(1.0 / self._n ** 0.5)) for v in d],
                    vc.side)
        sq = vc.step(Fp16Mul(lanes=L), [dict(a=v, b=v) for v in u], vc.side)
        vlast = vc.side[0]["last"]
        # scalar chains: sum / n, and sqrt(var + eps)
        mc = _Chain(m, "lnm", rsum.o.valid & (state == 1), None)
        mres = mc.step(Fp16Div(lanes=1), [dict(a=rsum.o.payload, b=self._n16)], [{}])
        mc.close(1)
        rc = _Chain(m, "lnr", rsum.o.valid & (state == 3), None)
        ve = rc.step(Fp16AddSub(lanes=1), [dict(a=rsum.o.payload, b=self._eps, sub=0)], [{}])
        rres = rc.step(Fp16Sqrt(lanes=1), [dict(a=ve[0])], [{}])
        rc.close(1)
        m.d.comb += rsum.o.ready.eq(Mux(state == 1, mc.ready, Mux(state == 3, rc.ready, 0)))
        # pass 3 chain
        oc = _Chain(m, "lno", (state == 4) & ~done, None)
        gb = [dict(g=rd.data[l].gamma, b=rd.data[l].beta) for l in range(L)]
        d3 = oc.step(Fp16AddSub(lanes=L), [dict(a=xs[l], b=mean, sub=1) for l in range(L)], gb)
        q = oc.step(Fp16Div(lanes=L), [dict(a=v, b=r) for v in d3], oc.side)
        qg = oc.step(Fp16Mul(lanes=L), [dict(a=q[l], b=oc.side[l]["g"]) for l in range(L)],
                     [dict(b=sd["b"]) for sd in oc.side])
        y = oc.step(Fp16AddSub(lanes=L), [dict(a=qg[l], b=oc.side[l]["b"], sub=0)
                                           for l in range(L)], [{} for _ in range(L)])
        m.d.comb += self.o.valid.eq(oc.valid)
        for l in range(L):
            m.d.comb += self.o.payload[l].eq(y[l])
        oc.close(self.o.ready)
        # the sum reducer: input row in LOAD, squares in the VAR pass
        load = self.i.valid & self.i.ready
        loading = state == 0
        m.d.comb += [rsum.i.valid.eq(Mux(loading, self.i.valid, vc.valid)),
                     self.i.ready.eq(rsum.i.ready & loading),
                     rsum.i.payload.last.eq(Mux(loading, is_last, vlast))]
        for l in range(L):
            m.d.comb += rsum.i.payload.x[l].eq(Mux(loading, self.i.payload[l].x, sq[l]))
        vc.close(rsum.i.ready & ~loading)
        m.d.comb += [wr.en.eq(load), wr.addr.eq(addr), wr.data.eq(self.i.payload),
                     rd.addr.eq(addr)]
        with m.Switch(state):
            with m.Case(0):
                with m.If(load):
                    m.d.sync += addr.eq(Mux(is_last, 0, addr + 1))
                    with m.If(is_last):
                        m.d.sync += state.eq(1)
            with m.Case(1):
                with m.If(mc.valid):
                    m.d.sync += [mean.eq(mres[0]), state.eq(2)]
            with m.Case(2):
                with m.If(vc.ready & ~done):
                    m.d.sync += addr.eq(addr + 1)
                with m.If(done):
                    m.d.sync += state.eq(3)
            with m.Case(3):
                with m.If(rc.valid):
                    m.d.sync += [r.eq(rres[0]), state.eq(4), addr.eq(0)]
            with m.Case(4):
                with m.If(oc.ready & ~done):
                    m.d.sync += addr.eq(addr + 1)
                with m.If(self.o.valid & self.o.ready):
                    m.d.sync += outs.eq(outs + 1)
                    with m.If(outs == B - 1):
                        m.d.sync += [outs.eq(0), state.eq(0), addr.eq(0)]
        return m


#: The published SFU (DESIGN.md) has 256 lanes and rows of up to 512 (softmax) or 768
#: (layer norm) elements; that size is reached with ``-p lanes=256 -p n=...``. The
#: registry defaults are small (the constructors' defaults) so that ``hyflexpim verilog``
#: and ``hyflexpim synth --all`` stay quick; area grows linearly with ``lanes``
#: (docs/sfu.md).
BLOCKS = [
    Block("sfu_exp", lambda lanes, degree: ExpUnit(lanes=lanes, degree=degree),
          {"lanes": 2, "degree": F.EXP_DEGREE},
          "FP16 exp (Cody-Waite reduction, Taylor degree), one result per cycle per lane "
          "(published: 256 lanes)",
          small={"lanes": 2}),
    Block("sfu_gelu", lambda lanes, degree: GeluUnit(lanes=lanes, degree=degree),
          {"lanes": 2, "degree": F.EXP_DEGREE},
          "FP16 GELU (tanh form through exp), one result per cycle per lane "
          "(published: 256 lanes)",
          small={"lanes": 2}),
    Block("sfu_softmax",
          lambda n, lanes, slots, degree: SoftmaxUnit(n=n, lanes=lanes, slots=slots, degree=degree),
          {"n": 16, "lanes": 2, "slots": 4, "degree": F.EXP_DEGREE},
          "FP16 softmax over rows of n (max, exp, sum, divide) (published: 256 lanes, n 512)",
          small={"n": 16, "lanes": 2}),
    Block("sfu_layernorm",
          lambda n, lanes, slots, eps: LayerNormUnit(n=n, lanes=lanes, slots=slots, eps=eps),
          {"n": 16, "lanes": 2, "slots": 4, "eps": F._h(1e-5)},
          "FP16 layer norm over rows of n (mean, variance, sqrt, divide, gamma, beta) "
          "(published: 256 lanes, n 768)",
          small={"n": 16, "lanes": 2}),
]
