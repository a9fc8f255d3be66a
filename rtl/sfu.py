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

Size: ``lanes`` is a parameter; the published SFU has 256 lanes, the
defaults here (constructors and the block registry) are small: 2 lanes, rows of 16.

Element-wise units (:class:`ExpUnit`, :class:`GeluUnit`): one result per cycle per lane,
latency = sum of the operator latencies (``latency`` property).

Row units (:class:`SoftmaxUnit`, :class:`LayerNormUnit`) take a row of ``n`` elements as
``n / lanes`` consecutive transfers and give the result row the same way. Their three
passes over a row (one needs the row's max or mean, the next its sum or variance) are
three stages connected by row buffers (FIFOs of beats) and once-per-row scalar queues
(:class:`~hyflexpim.rtl.stream.Queue`; a stream that feeds a row buffer and a reducer
goes through a :class:`~hyflexpim.rtl.stream.Fork`), each stage working on a different
row: in steady state a row enters and a row leaves
every ``n / lanes`` cycles, one result per cycle per lane; a row's own latency is
about one row plus the pipelines (measured figures in ``docs/sfu.md``). Reductions use
:class:`RowReduce` (rows back to back, one beat per cycle), whose order is the golden
model's ``reduce_row``.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from ..models.fp16 import functions as F
from ..base import Block, check_int, check_pow2
from .fp16 import MAX_LANES, CmpOp, Fp16AddSub, Fp16Compare, Fp16Div, Fp16Mul, Fp16Sqrt, \
    check_lanes
from .stream import Fork, Queue

__all__ = ["ExpUnit", "GeluUnit", "RowReduce", "SoftmaxUnit", "LayerNormUnit", "BLOCKS"]

_QNAN = 0x7E00
_NEG_INF = 0xFC00
_POS_INF = 0x7C00


def _check_degree(degree):
    return check_int("degree", degree, 1, 8)


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

    @property
    def m(self):
        """The module the chain adds to."""
        return self._m

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
    # k = round(x / ln 2), kc = k clamped to the exponents _pow2 takes, j = k - kc
    k, kc, j = ([Signal(signed(11), name=f"exp_{n}{l}") for l in range(lanes)]
                for n in ("k", "kc", "j"))
    for l, sd in enumerate(ch.side):
        ch.m.d.comb += [k[l].eq(sd["kfrac"] - 512),
                        kc[l].eq(Mux(k[l] < -24, -24, Mux(k[l] > 15, 15, k[l]))),
                        j[l].eq(k[l] - kc[l])]
    side = [dict({n: v for n, v in sd.items() if n not in ("f", "kfrac")}, kc=kc[l])
            for l, sd in enumerate(ch.side)]
    p = ch.step(Fp16Mul(lanes=lanes), [dict(a=q[l], b=_pow2(j[l])) for l in range(lanes)], side)
    r = ch.step(Fp16Mul(lanes=lanes),
                [dict(a=p[l], b=_pow2(ch.side[l]["kc"])) for l in range(lanes)],
                [{n: v for n, v in sd.items() if n != "kc"} for sd in ch.side])
    res = [Mux(ch.side[l]["nan"], _QNAN, r[l]) for l in range(lanes)]
    carried = [{n: v for n, v in sd.items() if n != "nan"} for sd in ch.side]
    return res, carried


class _ElementwiseUnit(wiring.Component):
    """Common ports and parameters of the element-wise exp-based units.

    Parameters: ``lanes`` (1..256, default 2; the published SFU has 256),
    ``degree`` (Taylor degree of exp, 1..8, default 4). Ports ``i`` / ``o``: one FP16
    bit pattern per lane.
    """

    def __init__(self, *, lanes=2, degree=F.EXP_DEGREE):
        self.check_parameters(lanes=lanes, degree=degree)
        self._lanes, self._degree = lanes, degree
        super().__init__({"i": In(stream.Signature(data.ArrayLayout(16, lanes))),
                          "o": Out(stream.Signature(data.ArrayLayout(16, lanes)))})

    lanes = property(lambda self: self._lanes)
    degree = property(lambda self: self._degree)

    @classmethod
    def check_parameters(cls, *, lanes=2, degree=F.EXP_DEGREE):
        """Raises: ParameterTypeError / ValueError for a bad ``lanes`` or ``degree``."""
        check_lanes(lanes)
        _check_degree(degree)

    @classmethod
    def latency_of(cls, degree=F.EXP_DEGREE):
        """Cycles from an accepted input to its result, ``o.ready`` high (no instance)."""
        raise NotImplementedError

    @property
    def latency(self):
        return self.latency_of(self._degree)


class ExpUnit(_ElementwiseUnit):
    """``o = exp(i)`` per lane, one result per cycle per lane (``functions.exp``).

    Parameters as :class:`_ElementwiseUnit`.
    ``latency``: cycles from an accepted input to its result with ``o.ready`` high.
    """

    @classmethod
    def latency_of(cls, degree=F.EXP_DEGREE):
        return _exp_latency(_check_degree(degree))

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


def _exp_latency(degree):
    add, mul, cmp = Fp16AddSub.LATENCY, Fp16Mul.LATENCY, Fp16Compare.LATENCY
    return 2 * cmp + 4 * mul + 4 * add + degree * (mul + add)


class GeluUnit(_ElementwiseUnit):
    """``o = gelu(i)`` per lane, one result per cycle per lane (``functions.gelu``).

    ``w = x (A + B x^2)``, ``e = exp(w)``; sign bit 0: ``x - (x e) / (1 + e)``, sign
    bit 1: ``x / (1 + e)``; +Inf -> +Inf, -Inf -> -0. Parameters as :class:`ExpUnit`.
    """

    @classmethod
    def latency_of(cls, degree=F.EXP_DEGREE):
        add, mul, div = Fp16AddSub.LATENCY, Fp16Mul.LATENCY, Fp16Div.LATENCY
        return 3 * mul + add + _exp_latency(_check_degree(degree)) + mul + add + div + add

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


#: Longest row of a row unit: the longest sequence of the architecture model's workloads
#: (softmax over 8192 keys; layer norm rows are at most 2048 wide in them).
MAX_ROW = 8192
#: Most reduction partials of a row unit (4 already give one beat per cycle: the adder's
#: latency); the final fold is a tree of ``slots - 1`` operators.
MAX_SLOTS = 64


def _check_row(n, lanes, slots):
    """Raises: ParameterTypeError / ValueError unless ``lanes`` is a power of two in
    ``1..MAX_LANES``, ``n`` a multiple of it in ``1..MAX_ROW`` and ``slots`` in
    ``1..MAX_SLOTS``."""
    check_pow2("lanes", lanes, 1, MAX_LANES)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_ROW or n % lanes:
        raise ValueError(f"n must be a multiple of lanes ({lanes}) in 1..{MAX_ROW}, not {n!r}")
    check_int("slots", slots, 1, MAX_SLOTS)


def _fold_tree(k):
    """The pairwise fold of ``functions.reduce_row`` on a queue of ``k`` partials, as a
    tree: ``(ops, root, level)``; ``ops`` lists ``(node, p, q)`` (node = op(p, q)),
    leaves are ``0..k-1``, ``level[node]`` is its depth (leaves 0)."""
    queue, ops, level, nxt = list(range(k)), [], {i: 0 for i in range(k)}, k
    while len(queue) > 1:
        p, q = queue.pop(0), queue.pop(0)
        ops.append((nxt, p, q))
        level[nxt] = 1 + max(level[p], level[q])
        queue.append(nxt)
        nxt += 1
    return ops, queue[0], level


class RowReduce(wiring.Component):
    """Reduce rows of ``n`` elements with ``op`` (``"add"`` or ``"max"``) in the order of
    ``functions.reduce_row``, one beat of ``lanes`` elements per cycle, rows back to back.

    ``i``: beats of ``lanes`` binary16 (a row is ``n / lanes`` consecutive beats); ``o``:
    one binary16 per row. Structure:

    1. a pipelined pairwise tree of operators reduces each beat to one value ``v_b``;
    2. the accumulator: one operator whose results go into a queue of ``slots``
       registers; beat ``b`` combines ``v_b`` with the identity (``b < slots``; +0 for
       add, -Inf for max) or with the oldest partial (the queue's head, or the
       operator's output when the queue is empty), in order: the queue of
       ``reduce_row``. With ``slots`` >= the operator latency (add 4, max 1) a beat
       enters every cycle. Results of the last ``min(slots, n / lanes)`` beats, the
       queue's final contents, leave for a gather register instead;
    3. the final pairwise fold of the queue is a fixed tree (:func:`_fold_tree`),
       pipelined: it reduces one row while the accumulator takes the next.

    ``latency``: cycles from the last beat of a row entering ``i`` to its result on
    ``o`` without stalls.
    """

    def __init__(self, *, op="add", n=8, lanes=2, slots=4):
        if op not in ("add", "max"):
            raise ValueError(f"op must be 'add' or 'max', not {op!r}")
        _check_row(n, lanes, slots)
        self._op, self._n, self._lanes, self._slots = op, n, lanes, slots
        super().__init__({"i": In(stream.Signature(data.ArrayLayout(16, lanes))),
                          "o": Out(stream.Signature(16))})

    n = property(lambda self: self._n)
    lanes = property(lambda self: self._lanes)
    slots = property(lambda self: self._slots)

    @property
    def latency(self):
        lat = Fp16AddSub.LATENCY if self._op == "add" else Fp16Compare.LATENCY
        k = min(self._slots, self._n // self._lanes)
        _, root, level = _fold_tree(k)
        tree = (self._lanes - 1).bit_length()
        return tree * lat + max(self._slots, lat) + 1 + level[root] * lat

    def elaborate(self, platform):
        m = Module()
        op, L, P, B = self._op, self._lanes, self._slots, self._n // self._lanes
        ident = 0 if op == "add" else _NEG_INF
        # 1. beat tree
        ch = _Chain(m, "tree", self.i.valid, None)
        m.d.comb += self.i.ready.eq(ch.ready)
        vals = [self.i.payload[l] for l in range(L)]
        while len(vals) > 1:
            vals = ch.step(_op_unit(op, len(vals) // 2),
                           [_op_fields(op, vals[2 * k], vals[2 * k + 1])
                            for k in range(len(vals) // 2)], [{}])
        v, v_valid = vals[0], ch.valid
        tree_ready = Signal()
        ch.close(tree_ready)

        # 2. accumulator: the operator, then a queue of `slots` partials; the oldest
        # partial (queue head, or the operator's output when the queue is empty) is
        # the ring's output. The operator never waits while the queue has room.
        m.submodules.acc = acc = _op_unit(op, 1)
        beat = Signal(range(B), name="beat")
        fresh = beat < P
        fin = beat >= B - P
        for s in range(acc.latency):          # the final tag beside the operator
            r = Signal(name=f"acc_final_d{s}")
            with m.If(acc.i.ready):
                m.d.sync += r.eq(fin)
            fin = r
        qd = Array(Signal(17, name=f"ring{s}") for s in range(P))   # {data, final}
        rp = Signal(range(P), name="ring_rd")
        wp = Signal(range(P), name="ring_wr")
        cnt = Signal(range(P + 1), name="ring_count")
        empty = cnt == 0
        head = qd[rp]
        r_valid = ~empty | acc.o.valid
        r_data = Mux(empty, acc.o.payload[0].r, head[0:16])
        r_final = Mux(empty, fin, head[16])
        r_ready = Signal()
        pop = r_ready & ~empty
        direct = r_ready & empty
        push = acc.o.valid & ~direct & ((cnt < P) | pop)
        m.d.comb += acc.o.ready.eq(direct | (cnt < P) | pop)
        with m.If(push):
            m.d.sync += [qd[wp].eq(Cat(acc.o.payload[0].r, fin)),
                         wp.eq(Mux(wp == P - 1, 0, wp + 1))]
        with m.If(pop):
            m.d.sync += rp.eq(Mux(rp == P - 1, 0, rp + 1))
        m.d.sync += cnt.eq(cnt + push - pop)
        # a beat takes the identity (fresh) or the ring's oldest partial
        partial_ok = fresh | (r_valid & ~r_final)
        m.d.comb += acc.i.valid.eq(v_valid & partial_ok)
        for f, val in _op_fields(op, Mux(fresh, ident, r_data), v).items():
            m.d.comb += acc.i.payload[0][f].eq(val)
        m.d.comb += tree_ready.eq(acc.i.ready & partial_ok)
        with m.If(acc.i.valid & acc.i.ready):
            m.d.sync += beat.eq(Mux(beat == B - 1, 0, beat + 1))

        # 3. gather the final partials, then the fold tree
        k = min(P, B)
        g = [Signal(16, name=f"gather{i}") for i in range(k)]
        gidx = Signal(range(k), name="gather_idx")
        gfull = Signal(name="gather_full")
        fc = _Chain(m, "fold", gfull, None)
        fold_take = gfull & fc.ready
        gather_ready = ~gfull | fc.ready
        take_direct = v_valid & ~fresh & r_valid & ~r_final
        m.d.comb += r_ready.eq(r_valid & Mux(r_final, gather_ready, take_direct))
        with m.If(fold_take):
            m.d.sync += gfull.eq(0)
        with m.If(r_valid & r_final & gather_ready):
            m.d.sync += [g[i].eq(Mux(gidx == i, r_data, g[i])) for i in range(k)]
            m.d.sync += gidx.eq(Mux(gidx == k - 1, 0, gidx + 1))
            with m.If(gidx == k - 1):
                m.d.sync += gfull.eq(1)
        ops, root, level = _fold_tree(k)
        node = {i: g[i] for i in range(k)}
        for lev in range(1, level[root] + 1):
            here = [t for t in ops if level[t[0]] == lev]
            later = {x for t in ops if level[t[0]] > lev for x in t[1:]}
            keep = sorted(x for x in node if x in later)
            res = fc.step(_op_unit(op, len(here)),
                          [_op_fields(op, node[p], node[q]) for _, p, q in here],
                          [{f"v{x}": node[x] for x in keep}])
            node = {x: fc.side[0][f"v{x}"] for x in keep}
            node.update({t[0]: res[j] for j, t in enumerate(here)})
        m.d.comb += [self.o.valid.eq(fc.valid), self.o.payload.eq(node[root])]
        fc.close(self.o.ready)
        return m


def _queue(m, name, shape, depth):
    m.submodules[name] = q = Queue(shape, depth)
    return q


def _feed(m, src, dst, payload):
    """Stream ``src`` into stream ``dst``, whose payload is ``payload`` (a part of
    ``src``'s)."""
    m.d.comb += [dst.valid.eq(src.valid), src.ready.eq(dst.ready), dst.payload.eq(payload)]


def _fork(m, name, shape):
    m.submodules[name] = f = Fork(shape, 2)
    return f


def _scalar_queue(m, name):
    """A 3-entry :class:`Queue` (one word per cycle from depth 3) for a once-per-row
    scalar stream: its producer (a pipeline whose stalled output would freeze it, and with
    it the next row's value) never waits while the consumer still uses the previous
    row's value."""
    return _queue(m, name, 16, 3)


def _row_join(m, name, rows, scalar, beats):
    """A stage's input: the beats of one row from the row buffer ``rows`` (a
    :class:`Queue`) paired with that row's scalar (head of the queue ``scalar``), which
    is released with the row's last beat. Returns the stage's :class:`_Chain`."""
    valid = rows.o.valid & scalar.o.valid
    ch = _Chain(m, name, valid, None)
    fire = valid & ch.ready
    cnt = Signal(range(beats), name=f"{name}_beat")
    with m.If(fire):
        m.d.sync += cnt.eq(Mux(cnt == beats - 1, 0, cnt + 1))
    m.d.comb += [rows.o.ready.eq(fire), scalar.o.ready.eq(fire & (cnt == beats - 1))]
    return ch


def _close_into(m, ch, dst, payload):
    """End the chain ``ch`` in stream ``dst`` (a queue's or fork's ``i``) with ``payload``."""
    m.d.comb += [dst.valid.eq(ch.valid), dst.payload.eq(payload)]
    ch.close(dst.ready)


def _scalar_stage(m, name, src, steps):
    """Once-per-row scalar arithmetic: ``steps(chain, x)`` appends operators to a
    :class:`_Chain` fed by the stream ``src`` and returns the result, which goes into a
    :func:`_scalar_queue` (returned)."""
    ch = _Chain(m, name, src.valid, None)
    m.d.comb += src.ready.eq(ch.ready)
    res = steps(ch, src.payload)
    q = _scalar_queue(m, f"{name}_q")
    _close_into(m, ch, q.i, res)
    return q


class _RowUnit(wiring.Component):
    """Common part of the row units: parameters and ports."""

    def __init__(self, n, lanes, slots, in_lane):
        _check_row(n, lanes, slots)
        self._n, self._lanes, self._slots = n, lanes, slots
        self._beats = n // lanes
        super().__init__({"i": In(stream.Signature(data.ArrayLayout(in_lane, lanes))),
                          "o": Out(stream.Signature(data.ArrayLayout(16, lanes)))})

    n = property(lambda self: self._n)
    lanes = property(lambda self: self._lanes)
    slots = property(lambda self: self._slots)


#: Row-buffer slack beyond ``beats + latency`` (a few cycles of handshake delay).
_SLACK = 6


class SoftmaxUnit(_RowUnit):
    """Softmax of rows of ``n`` elements (``functions.softmax``, divide form).

    Three stages, each on its own row, connected by row buffers (FIFOs of beats) and
    scalar streams, so rows overlap and the unit takes one beat per cycle:

    1. the input row goes into row buffer X and through a max :class:`RowReduce`;
    2. when the row's max ``m`` is out (``m' = +0`` if ``m`` is -Inf), its beats leave X
       through ``x - m'`` and the exp datapath into row buffer E and a sum
       :class:`RowReduce`;
    3. when the sum ``s`` is out, its beats leave E through ``e / s`` (0 for every
       element when ``s`` is zero: an all -Inf row).

    Row buffers hold ``n / lanes`` beats plus the reduction latency (and a few), enough
    that stage 1 never waits for stage 2 in steady state. Parameters: ``n`` (a positive
    multiple of ``lanes``), ``lanes`` (a power of two; the published SFU has 256),
    ``slots`` (reduction partials, >= 4 for one beat per cycle), ``degree`` (exp).
    """

    def __init__(self, *, n=16, lanes=2, slots=4, degree=F.EXP_DEGREE):
        _check_degree(degree)
        self._degree = degree
        super().__init__(n, lanes, slots, 16)

    def elaborate(self, platform):
        m = Module()
        L, B, n, P = self._lanes, self._beats, self._n, self._slots
        m.submodules.rmax = rmax = RowReduce(op="max", n=n, lanes=L, slots=P)
        m.submodules.rsum = rsum = RowReduce(op="add", n=n, lanes=L, slots=P)
        beat = data.ArrayLayout(16, L)
        xq = _queue(m, "xbuf", beat, B + rmax.latency + _SLACK)
        eq = _queue(m, "ebuf", beat, B + rsum.latency + _SLACK)
        # stage 1: input -> X and the max reducer
        f_in = _fork(m, "fork_in", beat)
        connect(m, flipped(self.i), f_in.i)
        connect(m, f_in.o[0], xq.i)
        connect(m, f_in.o[1], rmax.i)
        # stage 2: X beats with m' -> x - m' -> exp -> E and the sum reducer
        mq = _scalar_queue(m, "mq")
        connect(m, rmax.o, mq.i)
        mx = mq.o.payload
        mp = Mux(mx == _NEG_INF, 0, mx)
        ch = _row_join(m, "smx", xq, mq, B)
        xs = [xq.o.payload[l] for l in range(L)]
        d = ch.step(Fp16AddSub(lanes=L), [dict(a=xs[l], b=mp, sub=1) for l in range(L)],
                    [{} for _ in range(L)])
        e, _ = _exp_steps(ch, d, ch.side, self._degree)
        f_exp = _fork(m, "fork_exp", beat)
        _close_into(m, ch, f_exp.i, Cat(*e))
        connect(m, f_exp.o[0], eq.i)
        connect(m, f_exp.o[1], rsum.i)
        # stage 3: E beats with s -> e / s
        sq = _scalar_queue(m, "sq")
        connect(m, rsum.o, sq.i)
        s = sq.o.payload
        dv = _row_join(m, "smd", eq, sq, B)
        q = dv.step(Fp16Div(lanes=L),
                    [dict(a=eq.o.payload[l], b=s) for l in range(L)],
                    [dict(z=s[0:15] == 0)] + [{} for _ in range(L - 1)])
        m.d.comb += self.o.valid.eq(dv.valid)
        for l in range(L):
            m.d.comb += self.o.payload[l].eq(Mux(dv.side[0]["z"], 0, q[l]))
        dv.close(self.o.ready)
        return m


LN_LANE = data.StructLayout({"x": 16, "gamma": 16, "beta": 16})


class LayerNormUnit(_RowUnit):
    """Layer norm of rows of ``n`` elements (``functions.layernorm``).

    Input lanes are ``{x, gamma, beta}``. Three stages on three rows at once, connected
    by row buffers (as :class:`SoftmaxUnit`):

    1. the input row goes into row buffer X and, scaled by ``2**-k`` (``2**k >= n``:
       the sum cannot overflow), through a sum :class:`RowReduce`; ``mean = sum / (n
       2**-k)`` (a scalar divider; ``functions.mean_scales``);
    2. with the row's mean, X beats give ``d = x - mean``, ``u = d * R`` (``R =
       fp16(1/sqrt(n))``) and ``u * u`` into a second sum reducer; ``{d, gamma, beta}``
       go into row buffer Y; ``r = sqrt(var + eps)`` (scalar adder and square root);
    3. with the row's ``r``, Y beats give ``(d / r) * gamma + beta``.

    ``eps`` is a binary16 bit pattern (generator parameter, default fp16(1e-5)); ``n``
    must be exactly representable in binary16. ``lanes``: a power of two (published
    SFU: 256).
    """

    def __init__(self, *, n=16, lanes=2, slots=4, eps=F._h(1e-5)):
        _check_row(n, lanes, slots)
        # A positive finite binary16 pattern, as the golden model requires (eps = 0 would
        # make a constant row 0 / sqrt(0) = NaN; Inf, NaN and negatives are no epsilon).
        check_int("eps", eps, 0, 0xFFFF, what="a binary16 bit pattern")
        F.check_eps(eps)
        F._fp16_of_int(n, "n")
        self._scale_in, self._n_scaled = F.mean_scales(n)
        self._eps = eps
        super().__init__(n, lanes, slots, LN_LANE)

    eps = property(lambda self: self._eps)

    def elaborate(self, platform):
        m = Module()
        L, B, n, P = self._lanes, self._beats, self._n, self._slots
        m.submodules.rsum = rsum = RowReduce(op="add", n=n, lanes=L, slots=P)
        m.submodules.rvar = rvar = RowReduce(op="add", n=n, lanes=L, slots=P)
        xq = _queue(m, "xbuf", data.ArrayLayout(LN_LANE, L),
                    B + Fp16Mul.LATENCY + rsum.latency + Fp16Div.LATENCY + _SLACK)
        yq = _queue(m, "ybuf", 48 * L,
                    B + rvar.latency + Fp16AddSub.LATENCY + Fp16Sqrt.LATENCY + _SLACK)
        # stage 1: input -> X, and x 2^-k -> the sum reducer; mean = sum / (n 2^-k)
        f_in = _fork(m, "fork_in", data.ArrayLayout(LN_LANE, L))
        connect(m, flipped(self.i), f_in.i)
        connect(m, f_in.o[0], xq.i)
        sc = _Chain(m, "lns", f_in.o[1].valid, None)
        m.d.comb += f_in.o[1].ready.eq(sc.ready)
        xs = sc.step(Fp16Mul(lanes=L), [dict(a=f_in.o[1].payload[l].x, b=self._scale_in)
                                        for l in range(L)], [{} for _ in range(L)])
        _close_into(m, sc, rsum.i, Cat(*xs))
        meanq = _scalar_stage(m, "lnm", rsum.o, lambda ch, v: ch.step(
            Fp16Div(lanes=1), [dict(a=v, b=self._n_scaled)], [{}])[0])
        mean = meanq.o.payload
        # stage 2: X beats with the mean -> d, u, u*u -> var reducer; {d, gamma, beta} -> Y
        vc = _row_join(m, "lnv", xq, meanq, B)
        lane = [xq.o.payload[l].as_value() for l in range(L)]
        d = vc.step(Fp16AddSub(lanes=L), [dict(a=w[0:16], b=mean, sub=1) for w in lane],
                    [dict(gb=w[16:48]) for w in lane])
        u = vc.step(Fp16Mul(lanes=L), [dict(a=v, b=F._h(1.0 / self._n ** 0.5)) for v in d],
                    [dict(sd, d=d[l]) for l, sd in enumerate(vc.side)])
        sq = vc.step(Fp16Mul(lanes=L), [dict(a=v, b=v) for v in u], vc.side)
        # one fork for both: {d, gamma, beta} lanes to Y, u * u lanes to the var reducer
        both = data.StructLayout({"y": 48 * L, "sq": data.ArrayLayout(16, L)})
        f_var = _fork(m, "fork_var", both)
        _close_into(m, vc, f_var.i, Cat(Cat(*[Cat(sd["d"], sd["gb"]) for sd in vc.side]),
                                        Cat(*sq)))
        _feed(m, f_var.o[0], yq.i, f_var.o[0].payload.y)
        _feed(m, f_var.o[1], rvar.i, f_var.o[1].payload.sq)
        # r = sqrt(var + eps)
        def root(ch, var):
            ve = ch.step(Fp16AddSub(lanes=1), [dict(a=var, b=self._eps, sub=0)], [{}])
            return ch.step(Fp16Sqrt(lanes=1), [dict(a=ve[0])], [{}])[0]
        rq = _scalar_stage(m, "lnr", rvar.o, root)
        r = rq.o.payload
        # stage 3: Y beats with r -> (d / r) * gamma + beta
        oc = _row_join(m, "lno", yq, rq, B)
        lane = [yq.o.payload[48 * l:48 * l + 48] for l in range(L)]
        gb = [dict(g=w[16:32], b=w[32:48]) for w in lane]
        q = oc.step(Fp16Div(lanes=L), [dict(a=w[0:16], b=r) for w in lane], gb)
        qg = oc.step(Fp16Mul(lanes=L), [dict(a=q[l], b=oc.side[l]["g"]) for l in range(L)],
                     [dict(b=sd["b"]) for sd in oc.side])
        y = oc.step(Fp16AddSub(lanes=L), [dict(a=qg[l], b=oc.side[l]["b"], sub=0)
                                           for l in range(L)], [{} for _ in range(L)])
        m.d.comb += self.o.valid.eq(oc.valid)
        for l in range(L):
            m.d.comb += self.o.payload[l].eq(y[l])
        oc.close(self.o.ready)
        return m


#: The published SFU has 256 lanes and rows of up to 512 (softmax) or 768
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
