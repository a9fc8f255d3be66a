"""Digital PIM controller: attention products by in-memory NOR in SLC RRAM arrays.

The micro-architecture is ``docs/digital_pim.md``; the golden model, the layout and the
cycle model are :mod:`hyflexpim.models.digital_pim` (same parameter checks, same
sequence of array operations). The arrays themselves stay outside the RTL: the
controller drives them through :class:`DigitalArraySignature` (one operation per cycle,
the same for all arrays, data and enable per array); in simulation the behavioural
:class:`~hyflexpim.models.digital_pim.DigitalArray` answers the port.

Units::

    i (commands) -> IR (streamed operand)  --+
                   KV-cache append writes    |     SlotPattern x arrays: A/B group bits
                   fetch buffer (2 rows) ----+---> row step: WRITE A, WRITE B, preset OUT,
                                                   NOR, READ OUT   --pim-->  [arrays]
    o (results) <- FIFO <- OR <- scores / P V reduction <- WindowSums x arrays (S&A)

Commands (``i``, :func:`command_layout`): a header beat (``cmd``, ``arg``) and its data
beats (``lanes`` INT8 in ``x``; the extra lanes of a last beat are ignored). The head
is ``cfg.head`` when the header is accepted (register map convention: configure between
commands).

==========  =====================  ================================  ======================
``cmd``     ``arg``                data beats                        results on ``o``
==========  =====================  ================================  ======================
CLEAR       --                     none                              none (length := 0)
APPEND      tokens ``n``           per token: K row, then V row,     none
                                   ``ceil(d / lanes)`` beats each
SCORES      ``n_keys`` (0: all)    ``q``: ``ceil(d / lanes)``        ``ceil(len / A)`` beats
CONTEXT     ``n_keys`` (0: all)    ``p``: ``ceil(len / lanes)``      ``ceil(d / A)`` beats
==========  =====================  ================================  ======================

``n_keys`` above the cache length is taken as the length (causal mask: ``n_keys =
position + 1``). SCORES beat ``u`` holds the scores of tokens ``u A .. u A + A - 1``
(lane ``a``: token ``u A + a``; keys from ``n_keys`` on, and lanes past the length, read
:data:`~hyflexpim.models.digital_pim.MASKED`); CONTEXT beat ``b`` lanes ``l``: element
``b A + l`` of ``sum_{t < n_keys} p[t] V[t]`` (0 past ``d``). ``last`` marks the last
beat of a command. Tokens appended to a full cache are consumed and dropped.

Timing: a product run (SCORES or CONTEXT after its data beats) issues exactly
:func:`~hyflexpim.models.digital_pim.run_cycles` ``(ceil(n_keys / A) * d)`` array
operations back to back (no idle cycle) unless the output FIFO is full; CONTEXT then
adds the arrays' partial vectors in ``log2(arrays)`` cycles (a tree on the accumulators'
adders) and the results go out one beat a cycle (:func:`~hyflexpim.models.digital_pim.command_cycles`).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..base import Block, check_int, check_pow2
from ..models.digital_pim import (ELEMENT_BITS, MASKED, NORS_PER_PRODUCT, Layout,
                                  step_windows)

__all__ = ["RESULT_WIDTH", "ArrayOp", "Cmd", "DigitalArraySignature", "command_layout",
           "result_layout", "config_layout", "status_layout", "SlotPattern", "WindowSums",
           "DigitalPimController", "BLOCKS"]

#: Width of a result (INT32).
RESULT_WIDTH = 32
_PARTIAL_WIDTH = 17         # one window's partial sum: |sum| <= 127^2 + 2^14 < 2^15


class ArrayOp(enum.Enum, shape=2):
    """Operation on the array port in one cycle."""
    NOP = 0
    WRITE = 1
    NOR = 2
    READ = 3


class Cmd(enum.Enum, shape=2):
    """Command of a header beat."""
    CLEAR = 0
    APPEND = 1
    SCORES = 2
    CONTEXT = 3


class DigitalArraySignature(wiring.Signature):
    """Port group between the controller and ``arrays`` digital SLC arrays (lockstep).

    ``op``      :class:`ArrayOp` of this cycle (NOP: nothing);
    ``row``     the row (wordline) every array works on;
    ``col``     first column of a WRITE or READ, the output column of a NOR;
    ``a``, ``b`` first operand columns of a NOR;
    ``count``   columns (NOR gates) of the operation;
    ``en``      arrays a WRITE or NOR acts on (one bit per array);
    ``wdata``   per array: bit ``k`` is written into column ``col + k``;
    ``rdata``   per array, same cycle as READ: bit ``k`` is cell ``col + k`` (0 past ``count``).

    Raises:
        ParameterTypeError, ValueError: ``arrays`` not in 1..1024, ``rows`` not in
            1..65536, ``cols`` not in 1..4096.
    """

    def __init__(self, arrays, rows, cols):
        self._arrays = check_int("arrays", arrays, 1, 1024)
        self._rows = check_int("rows", rows, 1, 1 << 16)
        self._cols = check_int("cols", cols, 1, 4096)
        super().__init__({
            "op": Out(ArrayOp),
            "row": Out(range(rows)),
            "col": Out(range(cols)),
            "a": Out(range(cols)),
            "b": Out(range(cols)),
            "count": Out(range(cols + 1)),
            "en": Out(arrays),
            "wdata": Out(data.ArrayLayout(cols, arrays)),
            "rdata": In(data.ArrayLayout(cols, arrays)),
        })

    arrays = property(lambda self: self._arrays)
    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)

    def __eq__(self, other):
        return (isinstance(other, DigitalArraySignature) and
                (self.arrays, self.rows, self.cols) == (other.arrays, other.rows, other.cols))

    def __repr__(self):
        return f"DigitalArraySignature(arrays={self.arrays}, rows={self.rows}, cols={self.cols})"


def command_layout(lanes, max_seq):
    """Command beat: ``cmd`` (:class:`Cmd`, header only), ``arg``, ``x`` (``lanes`` INT8)."""
    return data.StructLayout({"cmd": Cmd, "arg": range(max_seq + 1),
                              "x": data.ArrayLayout(signed(ELEMENT_BITS), lanes)})


def result_layout(arrays):
    """Result beat: ``y`` (``arrays`` x INT32, the OR) and ``last`` (last beat of a command)."""
    return data.StructLayout({"y": data.ArrayLayout(signed(RESULT_WIDTH), arrays), "last": 1})


def _head_shape(heads):
    return range(max(heads, 2))


def config_layout(heads):
    """Configuration: ``head`` whose KV cache the next commands use (values >= heads: the last)."""
    return data.StructLayout({"head": _head_shape(heads)})


def status_layout(max_seq):
    """Status: ``busy`` (a command or results in flight), ``length`` of ``cfg.head``'s cache."""
    return data.StructLayout({"busy": 1, "length": range(max_seq + 1)})


class SlotPattern(wiring.Component):
    """Group A and group B bits of one array for one row step (combinational).

    Window ``k`` is the product ``m0 + k`` of the step: its 64 slots ``8 i + j`` take
    ``NOT stat[k]_i`` (group A) and ``NOT strm[k]_j`` (group B); the windows,
    concatenated, are shifted right by ``offset`` (the slot of the step's first bit in
    its product) and cut to ``slots`` bits.
    """

    def __init__(self, slots):
        self._slots = check_int("slots", slots, 1, 4096 // 3)
        self._windows = step_windows(slots)
        super().__init__({
            "stat": In(data.ArrayLayout(ELEMENT_BITS, self._windows)),
            "strm": In(data.ArrayLayout(ELEMENT_BITS, self._windows)),
            "offset": In(range(NORS_PER_PRODUCT)),
            "a_bits": Out(slots),
            "b_bits": Out(slots),
        })

    slots = property(lambda self: self._slots)
    windows = property(lambda self: self._windows)

    def elaborate(self, platform):
        m = Module()
        wa, wb = [], []
        for k in range(self._windows):
            s, t = self.stat[k], self.strm[k]
            wa.append(Cat(*[~s[i] for i in range(ELEMENT_BITS) for _ in range(ELEMENT_BITS)]))
            wb.append(Cat(*[~t for _ in range(ELEMENT_BITS)]))
        m.d.comb += [
            self.a_bits.eq((Cat(*wa) >> self.offset)[:self._slots]),
            self.b_bits.eq((Cat(*wb) >> self.offset)[:self._slots]),
        ]
        return m


class WindowSums(wiring.Component):
    """Shift-and-add of the bits one array read in a row step (combinational).

    The ``slots`` bits are shifted left by ``offset`` into product windows of 64 bits;
    window ``k`` sums ``s_i s_j 2^(i+j)`` over its set bits ``8 i + j`` (``s_7 = -1``):
    the part of product ``m0 + k`` this step made.
    """

    def __init__(self, slots):
        self._slots = check_int("slots", slots, 1, 4096 // 3)
        self._windows = step_windows(slots)
        super().__init__({
            "bits": In(slots),
            "offset": In(range(NORS_PER_PRODUCT)),
            "sums": Out(data.ArrayLayout(signed(_PARTIAL_WIDTH), self._windows)),
        })

    slots = property(lambda self: self._slots)
    windows = property(lambda self: self._windows)

    def elaborate(self, platform):
        m = Module()
        aligned = Signal(NORS_PER_PRODUCT * self._windows)
        m.d.comb += aligned.eq(self.bits << self.offset)
        for k in range(self._windows):
            win = aligned[NORS_PER_PRODUCT * k:NORS_PER_PRODUCT * (k + 1)]
            total = 0
            for i in range(ELEMENT_BITS):
                row = win[ELEMENT_BITS * i:ELEMENT_BITS * (i + 1)].as_signed() << i
                total = total - row if i == ELEMENT_BITS - 1 else total + row
            m.d.comb += self.sums[k].eq(total)
        return m


class DigitalPimController(wiring.Component):
    """Controller of one digital PIM module (protocol: module documentation).

    Parameters (checked as :class:`~hyflexpim.models.digital_pim.Layout`, plus):
    ``arrays`` a power of two in 1..1024, ``rows`` at least the KV-cache rows + 1,
    ``cols`` a power of two in 16..4096, ``head_dim`` ``windows``..1024 (7 for 1024
    columns), ``max_seq`` 1..65536, ``heads`` 1..64, ``lanes`` (INT8 per input beat) a
    power of two in 1..64.
    Ports: ``i`` commands, ``o`` results, ``pim`` (:class:`DigitalArraySignature`),
    ``cfg`` (:func:`config_layout`), ``status`` (:func:`status_layout`).

    Raises:
        ParameterTypeError, ValueError: a parameter out of its range.
    """

    @classmethod
    def check_parameters(cls, arrays=2, rows=32, cols=32, head_dim=4, max_seq=16, heads=1,
                         lanes=4):
        """Check the parameters without building the controller; return its
        :class:`~hyflexpim.models.digital_pim.Layout`.

        Raises:
            ParameterTypeError, ValueError: a parameter out of its range.
        """
        check_pow2("arrays", arrays, 1, 1024)
        layout = Layout(arrays, rows, cols, head_dim, max_seq, heads)
        check_pow2("lanes", lanes, 1, 64)
        return layout

    def __init__(self, arrays=2, rows=32, cols=32, head_dim=4, max_seq=16, heads=1, lanes=4):
        self._layout = self.check_parameters(arrays, rows, cols, head_dim, max_seq, heads,
                                             lanes)
        self._lanes = lanes
        super().__init__({
            "i": In(stream.Signature(command_layout(lanes, max_seq))),
            "o": Out(stream.Signature(result_layout(arrays))),
            "pim": Out(DigitalArraySignature(arrays, rows, cols)),
            "cfg": In(config_layout(heads)),
            "status": Out(status_layout(max_seq)),
        })

    layout = property(lambda self: self._layout)
    lanes = property(lambda self: self._lanes)
    arrays = property(lambda self: self._layout.arrays)
    head_dim = property(lambda self: self._layout.head_dim)

    def elaborate(self, platform):
        m = Module()
        lay = self._layout
        A, C, d, T, H, L = lay.arrays, lay.cols, lay.head_dim, lay.max_seq, lay.heads, self._lanes
        S, E, W = lay.slots, lay.elements_per_row, lay.windows
        logA, logE, logL = exact_log2(A), exact_log2(E), exact_log2(L)
        RR, FC, NC = lay.region_rows, lay.storage_rows, lay.compute_rows
        Umax = lay.tokens_per_array
        Mmax = Umax * d
        irn = L * -(-max(d, (Umax + 1) * A) // L)          # IR elements
        in_beats_d = -(-d // L)
        out_beats_d = -(-d // A)
        pim, cmdp = self.pim, self.i.p

        # ---------------------------------------------------------------- state
        lens = Signal(data.ArrayLayout(range(T + 1), H))
        head = Signal(_head_shape(H))
        cmd = Signal(Cmd)
        arg = Signal(range(T + 1))
        length = Signal(range(T + 1))               # cache length when the command began
        n_keys = Signal(range(T + 1))
        ir = Signal(ELEMENT_BITS * irn)
        beat = Signal(range(max(irn // L, in_beats_d) + 1))
        beats = Signal(range(max(irn // L, in_beats_d) + 1))
        tokens = Signal(range(T + 1))               # APPEND: tokens still to come
        kv = Signal()                               # APPEND: 0 K row, 1 V row
        e_s = Signal(range(d + 1))                  # APPEND: next element of the row to write

        s_left = Signal(range(NORS_PER_PRODUCT * Mmax + 1))
        off = Signal(range(NORS_PER_PRODUCT))       # slot offset of the step in its product
        m0 = Signal(range(Mmax + W + 1))            # product of the step's first slot
        e0 = Signal(range(d))
        u0 = Signal(range(Umax + 2))
        loaded = Signal(range(-(-Mmax // E) + 2))   # storage rows fetched in this run
        ph = Signal(range(5))
        crow = Signal(range(NC))
        base = Signal(range(lay.rows))
        fbuf = Signal(data.ArrayLayout(2 * E * ELEMENT_BITS, A))

        head_in = Signal(_head_shape(H))
        m.d.comb += head_in.eq(Mux(self.cfg.head < H, self.cfg.head, H - 1))
        len_in = Signal(range(T + 1))
        m.d.comb += len_in.eq(lens[head_in])
        m.d.comb += self.status.length.eq(len_in)
        is_qk = cmd == Cmd.SCORES

        # ---------------------------------------------------------------- output FIFO
        # depth 3: a buffered FIFO of depth 2 takes a beat only every other cycle
        m.submodules.out_fifo = fifo = SyncFIFOBuffered(
            width=result_layout(A).size, depth=3)
        push = data.View(result_layout(A), Signal(fifo.width))
        m.d.comb += [
            fifo.w_stream.payload.eq(push.as_value()),
            self.o.payload.eq(fifo.r_stream.payload),
            self.o.valid.eq(fifo.r_stream.valid),
            fifo.r_stream.ready.eq(self.o.ready),
        ]
        out_beats_qk = Signal(range(-(-T // A) + 1))
        m.d.comb += out_beats_qk.eq((length + A - 1) >> logA)

        # ---------------------------------------------------------------- step geometry
        n_used = Signal(range(S + 1))
        m.d.comb += n_used.eq(Mux(s_left < S, s_left, S))
        m_last = Signal(range(Mmax + 2 * W + 2))
        m.d.comb += m_last.eq(m0 + ((off + n_used - 1) >> 6))
        need_fetch = Signal()
        m.d.comb += need_fetch.eq((m_last >> logE) >= loaded)
        completes = Signal()
        m.d.comb += completes.eq(n_used + off >= NORS_PER_PRODUCT * (d - e0))
        en = Signal(A)
        for a in range(A):
            m.d.comb += en[a].eq(((u0 << logA) + a) < n_keys)

        # ---------------------------------------------------------------- slot patterns
        ek, wrap = [], []
        for k in range(W):
            raw = e0 + k
            w = Signal(name=f"wrap{k}")
            e = Signal(range(d), name=f"e{k}")
            m.d.comb += [w.eq(raw >= d), e.eq(Mux(w, raw - d, raw))]
            ek.append(e)
            wrap.append(w)
        pats = []
        for a in range(A):
            pat = SlotPattern(S)
            m.submodules[f"pattern{a}"] = pat
            pats.append(pat)
            m.d.comb += pat.offset.eq(off)
            for k in range(W):
                idx = (m0 + k)[:logE + 1]                    # position mod 2E in the buffer
                m.d.comb += pat.stat[k].eq(fbuf[a].word_select(idx, ELEMENT_BITS))
                t = ((u0 + wrap[k]) << logA) + a
                strm_pv = Mux(t < n_keys, ir.word_select(t, ELEMENT_BITS), 0)
                m.d.comb += pat.strm[k].eq(Mux(is_qk, ir.word_select(ek[k], ELEMENT_BITS),
                                               strm_pv))

        # ---------------------------------------------------------------- shift-and-add
        sa_valid = Signal()
        sa_bits = Signal(data.ArrayLayout(S, A))
        sa_off = Signal(range(NORS_PER_PRODUCT))
        sa_e0 = Signal(range(d))
        sa_u0 = Signal(range(Umax + 2))
        sa_complete = Signal()
        acc = Signal(data.ArrayLayout(signed(RESULT_WIDTH), A))
        acc_pv = Signal(data.ArrayLayout(data.ArrayLayout(signed(RESULT_WIDTH), d), A))
        red_cnt = Signal(range(logA + 1))               # CONTEXT: reduction step
        reducing = Signal()
        # stage 2: the window sums, registered, go into the accumulators
        sb_valid = Signal()
        sb_sums = Signal(data.ArrayLayout(data.ArrayLayout(signed(_PARTIAL_WIDTH), W), A))
        sb_e0 = Signal(range(d))
        sb_u0 = Signal(range(Umax + 2))
        sb_complete = Signal()
        m.d.sync += sb_valid.eq(sa_valid)
        with m.If(sa_valid):
            m.d.sync += [sa_valid.eq(0), sb_e0.eq(sa_e0), sb_u0.eq(sa_u0),
                         sb_complete.eq(sa_complete)]
        sb_ek = []
        for k in range(W):
            raw = sb_e0 + k
            e = Signal(range(d), name=f"sb_e{k}")
            m.d.comb += e.eq(Mux(raw >= d, raw - d, raw))
            sb_ek.append((e, raw >= d))
        scores = Signal(data.ArrayLayout(signed(RESULT_WIDTH), A))
        for a in range(A):
            ws = WindowSums(S)
            m.submodules[f"sums{a}"] = ws
            m.d.comb += [ws.bits.eq(sa_bits[a]), ws.offset.eq(sa_off)]
            with m.If(sa_valid):
                m.d.sync += sb_sums[a].eq(ws.sums)
            sums = sb_sums[a]
            cur = 0
            nxt = 0
            for k in range(W):
                cur = cur + Mux(sb_ek[k][1], 0, sums[k])
                nxt = nxt + Mux(sb_ek[k][1], sums[k], 0)
            m.d.comb += scores[a].eq(acc[a] + cur)
            with m.If(sb_valid & is_qk):
                m.d.sync += acc[a].eq(Mux(sb_complete, nxt, acc[a] + cur))
            # P V: the accumulators add the window sums while the run lasts, then the
            # partial vector of array a + A / 2^(k + 1) in reduction step k (a tree on
            # the same adders: log2(A) cycles)
            with m.If((sb_valid & ~is_qk) | (reducing & (a < A // 2))):
                for e in range(d):
                    add = 0
                    for k in range(W):
                        add = add + Mux(sb_ek[k][0] == e, sums[k], 0)
                    partner = 0
                    for k in range(logA):
                        stride = A >> (k + 1)
                        if a < stride:
                            partner = Mux(red_cnt == k, acc_pv[a + stride][e], partner)
                    m.d.sync += acc_pv[a][e].eq(acc_pv[a][e] + Mux(reducing, partner, add))
        qk_push = Signal()
        m.d.comb += qk_push.eq(sb_valid & sb_complete & is_qk)
        push_y = []
        for a in range(A):
            keep = ((sb_u0 << logA) + a) < n_keys
            push_y.append(Mux(keep, scores[a], MASKED))
        # the start of a completing step waits until the FIFO has room for its beat (the
        # level only falls until the beat is pushed, apart from the pending ones)
        # (steps are 5 cycles apart: at most one completion is in the two S&A stages)
        blocked = Signal()
        pending = (sa_valid & sa_complete) | (sb_valid & sb_complete)
        m.d.comb += blocked.eq(is_qk & completes & ((fifo.level + pending) >= fifo.depth))

        # ---------------------------------------------------------------- sequencer
        out_beat = Signal(range(max(-(-T // A), out_beats_d) + 1))
        m.d.comb += pim.en.eq((1 << A) - 1)
        mask = Signal(S)
        m.d.comb += mask.eq(~(Const((1 << S) - 1, S) << n_used))

        with m.FSM(init="IDLE") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [cmd.eq(cmdp.cmd), arg.eq(cmdp.arg), head.eq(head_in),
                                 length.eq(len_in), beat.eq(0)]
                    nk = Mux((cmdp.arg == 0) | (cmdp.arg > len_in), len_in, cmdp.arg)
                    U = (nk + A - 1) >> logA
                    m.d.sync += [
                        n_keys.eq(nk), s_left.eq(U * (NORS_PER_PRODUCT * d)),
                        off.eq(0), m0.eq(0), e0.eq(0), u0.eq(0), loaded.eq(0), ph.eq(0),
                        base.eq((head_in * 2 + (cmdp.cmd == Cmd.CONTEXT)) * RR),
                        acc.eq(0), acc_pv.eq(0), red_cnt.eq(0), out_beat.eq(0),
                        tokens.eq(cmdp.arg), kv.eq(0), e_s.eq(0),
                    ]
                    with m.Switch(cmdp.cmd):
                        with m.Case(Cmd.CLEAR):
                            m.d.sync += lens[head_in].eq(0)
                        with m.Case(Cmd.APPEND):
                            m.d.sync += beats.eq(in_beats_d)
                            with m.If(cmdp.arg != 0):
                                m.next = "LOAD"
                        with m.Case(Cmd.SCORES):
                            m.d.sync += beats.eq(in_beats_d)
                            m.next = "LOAD"
                        with m.Case(Cmd.CONTEXT):
                            m.d.sync += beats.eq((len_in + L - 1) >> logL)
                            with m.If(len_in == 0):
                                m.next = "DRAIN"
                            with m.Else():
                                m.next = "LOAD"

            with m.State("LOAD"):                   # data beats into the IR
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [ir.word_select(beat, ELEMENT_BITS * L).eq(cmdp.x.as_value()),
                                 beat.eq(beat + 1)]
                    with m.If(beat == beats - 1):
                        with m.If(cmd == Cmd.APPEND):
                            m.d.sync += [beat.eq(0), e_s.eq(0)]
                            m.next = "APP_WRITE"
                        with m.Elif(s_left == 0):
                            m.next = "DRAIN"
                        with m.Else():
                            m.next = "RUN"

            with m.State("APP_WRITE"):
                t = lens[head]
                full = t >= T
                pos = (t >> logA) * d + e_s
                poff = pos[:logE]
                cnt = Mux(d - e_s < E - poff, d - e_s, E - poff)
                row_done = full | (e_s + cnt >= d)
                with m.If(~full):
                    m.d.comb += [
                        pim.op.eq(ArrayOp.WRITE),
                        pim.row.eq((head * 2 + kv) * RR + (pos >> logE)),
                        pim.col.eq(poff << 3),
                        pim.count.eq(cnt << 3),
                        pim.en.eq(Const(1, A) << t[:logA] if A > 1 else 1),
                    ]
                    for a in range(A):
                        m.d.comb += pim.wdata[a].eq((ir >> (e_s << 3))[:C])
                    m.d.sync += e_s.eq(e_s + cnt)
                with m.If(row_done):
                    m.d.sync += [e_s.eq(0), beat.eq(0), kv.eq(~kv)]
                    with m.If(kv):
                        with m.If(~full):
                            m.d.sync += lens[head].eq(t + 1)
                        m.d.sync += tokens.eq(tokens - 1)
                        with m.If(tokens == 1):
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "LOAD"
                    with m.Else():
                        m.next = "LOAD"

            with m.State("RUN"):
                crow_row = FC + crow
                with m.Switch(ph):
                    with m.Case(0):
                        with m.If(need_fetch):
                            m.d.comb += [pim.op.eq(ArrayOp.READ), pim.row.eq(base + loaded),
                                         pim.count.eq(ELEMENT_BITS * E)]
                            for a in range(A):
                                m.d.sync += fbuf[a].word_select(loaded[0], ELEMENT_BITS * E).eq(
                                    pim.rdata[a][:ELEMENT_BITS * E])
                            m.d.sync += loaded.eq(loaded + 1)
                        with m.Elif(~blocked):
                            m.d.comb += [pim.op.eq(ArrayOp.WRITE), pim.row.eq(crow_row),
                                         pim.col.eq(0), pim.count.eq(n_used), pim.en.eq(en)]
                            for a in range(A):
                                m.d.comb += pim.wdata[a].eq(pats[a].a_bits)
                            m.d.sync += ph.eq(1)
                    with m.Case(1):
                        m.d.comb += [pim.op.eq(ArrayOp.WRITE), pim.row.eq(crow_row),
                                     pim.col.eq(S), pim.count.eq(n_used), pim.en.eq(en)]
                        for a in range(A):
                            m.d.comb += pim.wdata[a].eq(pats[a].b_bits)
                        m.d.sync += ph.eq(2)
                    with m.Case(2):
                        m.d.comb += [pim.op.eq(ArrayOp.WRITE), pim.row.eq(crow_row),
                                     pim.col.eq(2 * S), pim.count.eq(n_used), pim.en.eq(en)]
                        for a in range(A):
                            m.d.comb += pim.wdata[a].eq((1 << S) - 1)
                        m.d.sync += ph.eq(3)
                    with m.Case(3):
                        m.d.comb += [pim.op.eq(ArrayOp.NOR), pim.row.eq(crow_row),
                                     pim.a.eq(0), pim.b.eq(S), pim.col.eq(2 * S),
                                     pim.count.eq(n_used), pim.en.eq(en)]
                        m.d.sync += ph.eq(4)
                    with m.Case(4):
                        m.d.comb += [pim.op.eq(ArrayOp.READ), pim.row.eq(crow_row),
                                     pim.col.eq(2 * S), pim.count.eq(n_used)]
                        adv = (off + S) >> 6
                        e_raw = e0 + adv
                        m.d.sync += [
                            sa_valid.eq(1), sa_off.eq(off), sa_e0.eq(e0), sa_u0.eq(u0),
                            sa_complete.eq(completes),
                            s_left.eq(s_left - n_used),
                            off.eq((off + S)[:6]), m0.eq(m0 + adv),
                            e0.eq(Mux(e_raw >= d, e_raw - d, e_raw)),
                            u0.eq(u0 + (e_raw >= d)),
                            crow.eq(Mux(crow == NC - 1, 0, crow + 1)),
                            ph.eq(0),
                        ]
                        for a in range(A):
                            m.d.sync += sa_bits[a].eq(Mux(en[a], pim.rdata[a][:S] & mask, 0))
                        with m.If(s_left == n_used):
                            m.next = "DRAIN"

            with m.State("DRAIN"):
                with m.If(~sa_valid & ~sb_valid):
                    with m.If(is_qk):
                        m.d.sync += out_beat.eq((n_keys + A - 1) >> logA)
                        m.next = "TAIL"
                    with m.Else():
                        m.next = "REDUCE"

            with m.State("TAIL"):                   # SCORES: beats of masked keys only
                with m.If(out_beat >= out_beats_qk):
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += fifo.w_stream.valid.eq(1)
                    m.d.comb += [push.y[a].eq(MASKED) for a in range(A)]
                    m.d.comb += push.last.eq(out_beat == out_beats_qk - 1)
                    with m.If(fifo.w_stream.ready):
                        m.d.sync += out_beat.eq(out_beat + 1)

            with m.State("REDUCE"):                 # CONTEXT: add the arrays' partials
                with m.If(red_cnt == logA):
                    m.next = "EMIT"
                with m.Else():
                    m.d.comb += reducing.eq(1)
                    m.d.sync += red_cnt.eq(red_cnt + 1)

            with m.State("EMIT"):
                m.d.comb += fifo.w_stream.valid.eq(1)
                for b in range(out_beats_d):
                    with m.If(out_beat == b):
                        m.d.comb += [push.y[lane].eq(acc_pv[0][b * A + lane])
                                     for lane in range(A) if b * A + lane < d]
                m.d.comb += push.last.eq(out_beat == out_beats_d - 1)
                with m.If(fifo.w_stream.ready):
                    m.d.sync += out_beat.eq(out_beat + 1)
                    with m.If(out_beat == out_beats_d - 1):
                        m.next = "IDLE"

        with m.If(qk_push):
            m.d.comb += fifo.w_stream.valid.eq(1)
            m.d.comb += [push.y[a].eq(push_y[a]) for a in range(A)]
            m.d.comb += push.last.eq(sb_u0 == out_beats_qk - 1)
        m.d.comb += self.status.busy.eq(~fsm.ongoing("IDLE") | fifo.r_stream.valid)
        return m


BLOCKS = [
    Block("digital_pim", DigitalPimController,
          {"arrays": 2, "rows": 32, "cols": 32, "head_dim": 4, "max_seq": 16, "heads": 1,
           "lanes": 4},
          "digital PIM controller: KV-cache append, Q K^T and P V by in-array MAGIC NOR "
          "(64 NORs per INT8 product, 5-cycle row steps), shift-and-add, array port "
          "(published: -p arrays=256 rows=1024 cols=1024 head_dim=64 max_seq=1024)",
          small={"arrays": 2, "rows": 32, "cols": 32, "head_dim": 4, "max_seq": 16}),
]
