"""Formal property harnesses: wrappers that instantiate RTL blocks, constrain their
environment with ``Assume`` and state the properties with ``Assert``.

The harnesses look at the blocks' ports and, for the shift-and-add, at the state the
block exposes for observation (``acc``, ``partial``); the expected values and bounds are
written as the specification states them (binary-search result, exact sums and their
ranges), not copied from the RTL.
Run them with :mod:`hyflexpim.sim.formal` (SymbiYosys through ``yowasp-sby``).

:class:`BusOrderHarness` (the shared bus: no loss, duplication, corruption or
reordering, bounded wait) wraps a small :class:`~hyflexpim.rtl.bus.SharedBus` whose
inputs (valid, payload, output ready) are free in every cycle (``AnySeq``). The
environment is constrained only in what it *sends*: the ``k``-th packet that port ``s``
sends to port ``d`` carries ``data = k`` (and ``tag``, ``kind`` derived from ``k``). The
assertions then say, for every packet leaving port ``d``:

* its destination is ``d`` and its source a real port;
* it is the next packet of its (source, destination) pair: ``data``, ``tag`` and
  ``kind`` equal the pair's receive counter. A lost, duplicated, reordered or altered
  packet makes some later packet of the pair break this;
* the number of packets of a pair in flight never exceeds what the FIFOs can hold;
* fairness: a port whose head could cross in every cycle waits at most ``n_ports - 1``
  grants to other ports.

It is checked by bounded model checking (:func:`hyflexpim.sim.formal.run_bmc`, the
``bus_order`` check) and, with ``invariants=True``, proven for any number of cycles by
k-induction. An induction step may start in any state that satisfies the assertions, so
``invariants=True`` adds assertions that describe every state reachable from reset (they
are proven with the rest, not assumed):

* FIFO bookkeeping (each ``SyncFIFOBuffered``, input and output): its read and write
  pointers (the addresses of its memory's own ports) are in range and ``level - r_rdy``
  words apart. Its entries, oldest first, are the output register (valid when ``r_rdy``)
  and then the memory words from the read pointer on, ``level - r_rdy`` of them; the
  harness reads them through a comb read port it adds to the memory
  (:func:`_elaborate_now` elaborates the bus and its FIFOs inside the harness so that
  it can);
* headers: every entry of input FIFO ``k`` has source ``k`` and a destination below
  ``n_ports``; every entry of output FIFO ``d`` has destination ``d`` and a source below
  ``n_ports``;
* sequence: the entries of pair ``(s, d)`` along its path, oldest first (output FIFO
  ``d`` with source ``s``, then input FIFO ``s`` with destination ``d``), carry exactly
  ``recv, recv + 1, ...`` (data, tag and kind), and there are ``sent - recv`` of them
  (which gives the in-flight bound);
* arbiter: its priority pointer (``RoundRobinArbiter.first``) is a port number, and for
  every port ``k`` the grants ``k`` has waited plus the pointer's cyclic distance to
  ``k`` are at most ``n_ports - 1`` (each grant to another port while ``k`` requests
  moves the pointer strictly closer to ``k``); this gives the wait bound.

With these, every assertion at a step follows from all of them at the step before:
k-induction closes at depth 1. The tests are ``tests/test_bus_formal.py``, and
docs/bus.md records the depths and times, and where the solver does not finish.
"""

from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Const, Elaboratable, Module, Mux, ResetSignal, Signal, signed
from amaranth.lib import data

from ..models.encoding import (INPUT_BITS, WEIGHT_OFFSET, bits_per_cell, column_weight,
                               slices_per_weight)
from ..rtl.analog import Mode, SarAdcController, ShiftAdd
from ..rtl.bus import SharedBus

__all__ = ["SarAdcProps", "ShiftAddProps", "BusOrderHarness", "stream_source_rules"]


def stream_source_rules(m, stream, fields):
    """Assume a well-behaved stream source: once ``valid``, ``valid`` and the payload
    ``fields`` hold until the transfer (Amaranth stream rules)."""
    past_valid = Signal(name="past_valid")
    past_ready = Signal(name="past_ready")
    past = [Signal.like(f, name=f"past_{i}") for i, f in enumerate(fields)]
    m.d.sync += [past_valid.eq(stream.valid), past_ready.eq(stream.ready)]
    m.d.sync += [p.eq(f) for p, f in zip(past, fields)]
    with m.If(past_valid & ~past_ready):
        m.d.comb += Assume(stream.valid)
        for p, f in zip(past, fields):
            m.d.comb += Assume(f == p)


def _no_reset(m):
    """The solver must not toggle reset: start in the reset state, never reset again."""
    m.d.comb += Assume(~ResetSignal())


class SarAdcProps(Elaboratable):
    """"The SAR controller finishes every conversion in exactly ``slc_bits`` (SLC) or
    ``mlc_bits`` (MLC) comparison steps and its code equals the binary-search result."

    Environment: plane tokens arrive at any time in any mode; at every ``sample`` the
    sample-and-hold captures an arbitrary held value per column (up to twice the ADC
    range, so saturation is exercised); the comparator answers
    ``held[sel] >= trial`` in the same cycle. With ``always_ready`` the output is never
    stalled, and each conversion must take exactly ``steps(mode)`` cycles of active
    comparisons followed by the output in the next cycle; without it the output may
    stall arbitrarily and the code, column and token fields must still be right.

    Observation from the ports only: a conversion's first step presents the trial
    ``1 << (steps - 1)`` with an all-zero code (no later step of a conversion can
    present it), and the controller presents a non-zero trial exactly while converting.
    """

    def __init__(self, cols=2, slc_bits=6, mlc_bits=7, rows=4, always_ready=True, max_stall=3,
                 dut=None):
        self.cols, self.slc_bits, self.mlc_bits, self.rows = cols, slc_bits, mlc_bits, rows
        self.always_ready, self.max_stall = always_ready, max_stall
        # `dut` replaces the block under test (tests use it to check that a wrong
        # controller is caught); its ports must be those of SarAdcController.
        self._dut = dut

    def elaborate(self, platform):
        m = Module()
        _no_reset(m)
        m.submodules.dut = dut = self._dut or SarAdcController(
            self.cols, self.slc_bits, self.mlc_bits, self.rows)
        mb, sb, cols = self.mlc_bits, self.slc_bits, self.cols
        hw = mb + 1                                     # held values 0 .. 2^(mb+1)-1

        # --- environment -------------------------------------------------------------
        m.d.comb += [dut.i.valid.eq(AnySeq(1)), dut.i.p.as_value().eq(AnySeq(len(dut.i.p.as_value())))]
        stream_source_rules(m, dut.i, [dut.i.p.as_value()])
        if self.always_ready:
            m.d.comb += dut.o.ready.eq(1)
        else:
            # Arbitrary backpressure, but a stall lasts at most `max_stall` cycles (keeps
            # the induction depth finite; any longer stall repeats the same states).
            m.d.comb += dut.o.ready.eq(AnySeq(1))
            stall = Signal(range(self.max_stall + 2))
            with m.If(dut.o.valid & ~dut.o.ready):
                m.d.sync += stall.eq(stall + 1)
            with m.Else():
                m.d.sync += stall.eq(0)
            m.d.comb += Assume(stall <= self.max_stall)
        held = [Signal(hw, name=f"held{c}") for c in range(cols)]
        with m.If(dut.sample):
            for c in range(cols):
                m.d.sync += held[c].eq(AnySeq(hw))
        held_sel = Signal(hw)
        for c in range(cols):
            with m.If(dut.sel == c):
                m.d.comb += held_sel.eq(held[c])
        m.d.comb += dut.cmp.eq(held_sel >= dut.trial)

        # --- reference: the token being converted -----------------------------------
        tok_mode = Signal(Mode)
        tok_plane = Signal(range(INPUT_BITS))
        tok_xsum = Signal.like(dut.i.p.xsum)
        seen_token = Signal()
        with m.If(dut.sample):
            m.d.sync += [tok_mode.eq(dut.i.p.mode), tok_plane.eq(dut.i.p.plane),
                         tok_xsum.eq(dut.i.p.xsum), seen_token.eq(1)]
        steps = Signal(range(mb + 1))
        top = Signal(range(mb))
        m.d.comb += [steps.eq(Mux(tok_mode == Mode.MLC, mb, sb)),
                     top.eq(Mux(tok_mode == Mode.MLC, mb - 1, sb - 1))]

        # Expected code: the largest `steps`-bit value not above the held value.
        limit = Signal(mb)
        m.d.comb += limit.eq(Mux(tok_mode == Mode.MLC, (1 << mb) - 1, (1 << sb) - 1))
        exp_code = Signal(mb)
        m.d.comb += exp_code.eq(Mux(held_sel > limit, limit, held_sel))

        # Step index of the current cycle within a conversion (0 = not converting).
        first_step = Signal()
        m.d.comb += first_step.eq(seen_token & (dut.trial == (Const(1, mb) << top)))
        prev = Signal(range(mb + 1))
        idx = Signal(range(mb + 1))
        with m.If(first_step):
            m.d.comb += idx.eq(1)
        with m.Elif(prev != 0):
            m.d.comb += idx.eq(Mux(prev < steps, prev + 1, steps))
        finish = Signal()
        m.d.comb += finish.eq((idx != 0) & (idx == steps) & (~dut.o.valid | dut.o.ready))
        m.d.sync += prev.eq(Mux(finish, 0, idx))

        # A trial is presented exactly while a conversion is in progress, and it never
        # has bits at or above `steps` (SLC mode skips the MSB comparison).
        m.d.comb += Assert((dut.trial != 0) == (idx != 0))
        m.d.comb += Assert((dut.trial >> steps) == 0)

        # Columns are converted in order 0 .. cols-1 for every token.
        next_col = Signal(range(cols))
        with m.If(dut.sample):
            m.d.sync += next_col.eq(0)
        with m.Elif(finish):
            m.d.sync += next_col.eq(Mux(next_col == cols - 1, 0, next_col + 1))
        with m.If(first_step):
            m.d.comb += Assert(dut.sel == next_col)

        # The result of the conversion that finishes now, expected at the output.
        pend_code = Signal(mb)
        pend_col = Signal(range(cols))
        pend_mode = Signal(Mode)
        pend_plane = Signal(range(INPUT_BITS))
        pend_xsum = Signal.like(dut.i.p.xsum)
        with m.If(finish):
            m.d.sync += [pend_code.eq(exp_code), pend_col.eq(dut.sel), pend_mode.eq(tok_mode),
                         pend_plane.eq(tok_plane), pend_xsum.eq(tok_xsum)]
        with m.If(dut.o.valid):
            m.d.comb += [
                Assert(dut.o.p.code == pend_code),
                Assert(dut.o.p.col == pend_col),
                Assert(dut.o.p.mode == pend_mode),
                Assert(dut.o.p.plane == pend_plane),
                Assert(dut.o.p.xsum == pend_xsum),
            ]
        if self.always_ready:
            # Never stalled: the output follows the last of exactly `steps` comparison
            # cycles, and appears at no other time.
            due = Signal()
            m.d.sync += due.eq(finish)
            m.d.comb += Assert(dut.o.valid == due)
        return m


class ShiftAddProps(Elaboratable):
    """"The shift-and-add never overflows its result width for any input."

    Environment: codes arrive in the order the SAR controller sends them (column
    0..cols-1 for plane 0, then plane 1, ... plane 7, then the next vector), with any
    code of the mode's ADC range (0 .. 2^slc_bits - 1 in SLC, 0 .. 2^mlc_bits - 1 in
    MLC), any ``xsum`` of ``rows`` INT8 inputs, mode and ``xsum`` fixed per vector; with
    ``gaps`` also arbitrary input gaps and output backpressure.

    Inductive statement, per neuron ``j`` (``C`` = largest code x sum of the mode's
    column weights, 255 x (2^slc_bits - 1) in SLC, 85 x (2^mlc_bits - 1) in MLC; ``b`` =
    planes of the current vector neuron ``j`` has completed, known from the position in
    the code sequence):

    * ``1 <= b <= 7``: ``-128 xsum <= acc[j] <= -128 xsum + (2^b - 1) C``;
    * ``b == 8`` (sign plane done): ``-128 xsum - 128 C <= acc[j] <= -128 xsum + 127 C``;
    * ``partial`` (sum over the slices of the current neuron done so far,
      ``sum_{i<k} code_i w^i``) ``<= maxcode (w^k - 1) / (w - 1)``;
    * every accumulation step, computed from the block's own ``acc`` and ``partial`` in
      a width 8 bits wider than ``result_width`` (``-128 xsum`` or ``acc[j]``, plus
      ``+-(partial + code w^k) 2^plane``), fits ``result_width``: the base, the plane
      term and their sum; the slice sum fits ``partial``'s width.

    The bounds are written from the specification (``models.encoding`` weights), not
    from the RTL. ``acc`` and ``partial`` are ``ShiftAdd``'s observation signals
    (``dut.acc``, ``dut.partial``). With the asserts assumed for the previous steps,
    each step's bound follows from the previous one, so k-induction closes at a small
    depth (see :data:`hyflexpim.sim.formal.CHECKS`).

    ``dut`` replaces the block under test (tests pass one with a result width below the
    minimum, which must fail); ``result_width`` defaults to the dut's, else to
    :meth:`ArrayParams.min_result_width`.
    """

    def __init__(self, rows=4, cols=8, slc_bits=6, mlc_bits=7, result_width=None, gaps=False,
                 dut=None):
        from ..models.array import ArrayParams
        self.params = ArrayParams(rows=rows, cols=cols, slc_bits=slc_bits, mlc_bits=mlc_bits)
        if result_width is None:
            result_width = dut.result_width if dut is not None else \
                self.params.min_result_width()
        self.result_width = result_width
        self.gaps = gaps
        self._dut = dut

    def _mode_consts(self):
        """Per mode: (max code, bits per cell, slices per neuron, C)."""
        p, out = self.params, {}
        for mode, name in ((Mode.SLC, "slc"), (Mode.MLC, "mlc")):
            spn = slices_per_weight(name)
            maxc = p.max_code(name)
            out[mode] = (maxc, bits_per_cell(name), spn,
                         maxc * sum(column_weight(name, k) for k in range(spn)))
        return out

    def elaborate(self, platform):
        m = Module()
        _no_reset(m)
        p, rw = self.params, self.result_width
        m.submodules.dut = dut = self._dut or ShiftAdd(p.rows, p.cols, p.slc_bits, p.mlc_bits,
                                                       rw)
        n_out = p.cols // 4
        wide = rw + 8
        consts = self._mode_consts()
        lo, hi = -(1 << (rw - 1)), (1 << (rw - 1)) - 1
        pw = len(dut.partial)

        def fits(v, lo=lo, hi=hi):
            return [Assert(v >= lo), Assert(v <= hi)]

        # --- environment: a legal code sequence ------------------------------------
        c = dut.i.p
        m.d.comb += c.as_value().eq(AnySeq(len(c.as_value())))
        if self.gaps:
            m.d.comb += [dut.i.valid.eq(AnySeq(1)), dut.o.ready.eq(AnySeq(1))]
            stream_source_rules(m, dut.i, [c.as_value()])
        else:
            m.d.comb += [dut.i.valid.eq(1), dut.o.ready.eq(1)]
        plane = Signal(range(INPUT_BITS))
        col = Signal(range(p.cols))
        vmode = Signal(Mode)
        vxsum = Signal(signed(len(c.xsum)))
        at_start = (plane == 0) & (col == 0)
        xlo, xhi = -128 * p.rows, 127 * p.rows
        m.d.comb += [Assume(c.plane == plane), Assume(c.col == col),
                     Assume(c.xsum >= xlo), Assume(c.xsum <= xhi)]
        with m.If(~at_start):
            m.d.comb += [Assume(c.mode == vmode), Assume(c.xsum == vxsum)]
        with m.If(c.mode == Mode.SLC):
            m.d.comb += Assume(c.code <= consts[Mode.SLC][0])
        xfer = dut.i.valid & dut.i.ready
        with m.If(xfer):
            m.d.sync += [vmode.eq(c.mode), vxsum.eq(c.xsum)]
            with m.If(col == p.cols - 1):
                m.d.sync += [col.eq(0), plane.eq(Mux(plane == INPUT_BITS - 1, 0, plane + 1))]
            with m.Else():
                m.d.sync += col.eq(col + 1)
        # The recorded xsum is always one of a legal vector.
        m.d.comb += fits(vxsum, xlo, xhi)

        # --- state invariants: acc and partial within the bounds of the work done ----
        # acc holds the transfers up to ACC_LATENCY cycles ago (the S&A pipeline): its
        # bounds are those of the position ACC_LATENCY - 1 cycles ago.
        lagged = (plane, col, vmode, vxsum)
        for i in range(getattr(dut, "ACC_LATENCY", 1) - 1):
            nxt = tuple(Signal.like(x, name=f"{nm}_lag{i + 1}")
                        for x, nm in zip(lagged, ("plane", "col", "vmode", "vxsum")))
            m.d.sync += [a.eq(b) for a, b in zip(nxt, lagged)]
            lagged = nxt
            m.d.comb += fits(lagged[3], xlo, xhi)
        a_plane, a_col, a_vmode, a_vxsum = lagged
        offset = Signal(signed(wide))
        m.d.comb += offset.eq(-WEIGHT_OFFSET * a_vxsum)
        top = INPUT_BITS - 1
        for mode, (maxc, bpc, spn, big_c) in consts.items():
            w = 1 << bpc
            with m.If(~((a_plane == 0) & (a_col == 0)) & (a_vmode == mode)):
                used = n_out if mode == Mode.MLC else p.cols // 8
                for j in range(used):
                    # Planes of this vector neuron j has completed.
                    b = Signal(range(INPUT_BITS + 1), name=f"b{j}_{mode.name}")
                    m.d.comb += b.eq(a_plane + (a_col > (j + 1) * spn - 1))
                    acc = dut.acc[j]
                    for done in range(1, INPUT_BITS + 1):
                        if done <= top:
                            a_lo, a_hi = 0, ((1 << done) - 1) * big_c
                        else:
                            a_lo, a_hi = -(1 << top) * big_c, ((1 << top) - 1) * big_c
                        with m.If(b == done):
                            m.d.comb += fits(acc, offset + a_lo, offset + a_hi)
            with m.If(~at_start & (vmode == mode)):
                k = col % spn
                for done in range(1, spn):
                    with m.If(k == done):
                        m.d.comb += Assert(dut.partial <= maxc * ((w ** done - 1) // (w - 1)))

        # --- every accumulation step fits result_width ----------------------------
        mlc = c.mode == Mode.MLC
        k = Signal(3)
        last_k = Signal()
        neuron = Signal(range(n_out))
        m.d.comb += [
            k.eq(Mux(mlc, col % 4, col % 8)),
            last_k.eq(Mux(mlc, col % 4 == 3, col % 8 == 7)),
            neuron.eq(Mux(mlc, col // 4, col // 8)),
        ]
        summed = Signal(wide)
        m.d.comb += summed.eq(Mux(k == 0, 0, dut.partial) +
                              (c.code << Mux(mlc, k * 2, k)))
        term = Signal(signed(wide))
        m.d.comb += term.eq(Mux(plane == top, -(summed << top), summed << plane))
        acc_n = Signal(signed(rw))
        for j in range(n_out):
            with m.If(neuron == j):
                m.d.comb += acc_n.eq(dut.acc[j])
        base = Signal(signed(wide))
        m.d.comb += base.eq(Mux(plane == 0, -WEIGHT_OFFSET * c.xsum, acc_n))
        step = Signal(signed(wide))
        m.d.comb += step.eq(base + term)
        with m.If(xfer):
            m.d.comb += Assert(summed < (1 << pw))
            with m.If(last_k):
                m.d.comb += fits(base) + fits(term) + fits(step)
        return m


def _elaborate_now(obj, platform):
    """Elaborate ``obj`` now and make its later elaboration return the same module, so that
    a harness can reach what ``elaborate`` creates (submodules, memories) and observe it."""
    module = obj.elaborate(platform)
    obj.elaborate = lambda platform: module
    return module


class BusOrderHarness(Elaboratable):
    """Properties of a ``SharedBus(n_ports, 32, fifo_depth)`` (see the module documentation).

    ``invariants``: also assert the inductive invariants (FIFO contents against the pair
    counters, arbiter pointer against the wait counters) that make k-induction close;
    needs a power-of-two ``fifo_depth`` (then a FIFO's inner level is exactly its
    ``level - r_rdy``). ``expect_skew``: added to the sequence number a received packet
    must carry (non-zero only in the tests, to show that a wrong expectation fails).
    """

    def __init__(self, n_ports=3, fifo_depth=2, tag_width=2, wait_bound=None, *,
                 invariants=False, expect_skew=0):
        if invariants and fifo_depth & (fifo_depth - 1):
            raise ValueError(f"the inductive invariants need a power-of-two fifo_depth, "
                             f"not {fifo_depth!r}")
        self.n_ports, self.fifo_depth, self.tag_width = n_ports, fifo_depth, tag_width
        # ``wait_bound`` below ``n_ports - 1`` must fail: the tests use it to show that the
        # solver reaches full contention.
        self.wait_bound = n_ports - 1 if wait_bound is None else wait_bound
        self.invariants, self.expect_skew = invariants, expect_skew

    def _fields(self, m, check, pkt, number):
        """``check`` that the packet ``pkt`` carries the sequence number ``number``
        (``cw`` bits): data, tag and kind are derived from it."""
        m.d.comb += [
            check(pkt.data == number),
            check(pkt.header.tag == number[:self.tag_width]),
            check(pkt.header.kind.as_value() == number[:2]),
        ]

    def _sequence(self, m, check, pkt, peer, counters, skew=0):
        """``check`` (Assume when sent, Assert when received) that the packet ``pkt`` of
        the pair picked by ``peer`` is the pair's next: data, tag and kind equal its
        counter (plus ``skew``), which then counts it."""
        for k, count in enumerate(counters):
            with m.If(peer == k):
                self._fields(m, check, pkt, (count + skew)[:len(count)] if skew else count)
                m.d.sync += count.eq(count + 1)

    def _slots(self, m, fifo, fm):
        """The entries a ``SyncFIFOBuffered`` holds, oldest first, as ``(valid, packet)``:
        its output register (``r_rdy``, ``r_data``), then its inner memory's words from
        the read pointer on (``level - r_rdy`` of them), each read through an observation
        port added to that memory. The pointers are the memory's own port addresses
        (read: ``consume``, write: ``produce``); also asserts that they are in range and
        ``inner level`` words apart (the FIFO states reset can reach)."""
        # This reads SyncFIFOBuffered's internals (Amaranth 0.5: a memory ``storage`` with
        # one write and one sync read port, ``level`` = inner level + ``r_rdy``). All of it
        # ends up in assertions, so a misreading can make the proof fail, never pass.
        layout = self._layout
        storage = fm.submodules.storage
        inner = storage.depth
        (rd,), (wr,) = storage.read_ports, storage.write_ports
        consume, produce = rd.addr, wr.addr
        held = Signal(range(inner + 1), name="inner_level")
        m.d.comb += held.eq(fifo.level - fifo.r_rdy)   # exact: depth a power of two
        m.d.comb += [Assert(consume < inner), Assert(produce < inner)]
        end = consume + held
        m.d.comb += Assert(produce == Mux(end >= inner, end - inner, end))
        out = [(fifo.r_rdy, data.View(layout, fifo.r_data))]
        for j in range(inner):
            peek = storage.read_port(domain="comb")
            at = consume + j
            m.d.comb += peek.addr.eq(Mux(at >= inner, at - inner, at))
            out.append((held > j, data.View(layout, peek.data)))
        return out

    def _invariants(self, m, bus_m, platform, sent, recv, waits, cw):
        """Assert the inductive strengthening (see the module documentation)."""
        n = self.n_ports
        slots = {}
        for kind in ("in", "out"):
            for k in range(n):
                fifo = bus_m.submodules[f"{kind}_fifo_{k}"]
                slots[kind, k] = self._slots(m, fifo, _elaborate_now(fifo, platform))
        # Headers: an input FIFO's entries carry its port as source and a real
        # destination; an output FIFO's entries its port as destination, a real source.
        for k in range(n):
            for valid, pkt in slots["in", k]:
                with m.If(valid):
                    m.d.comb += [Assert(pkt.header.source == k),
                                 Assert(pkt.header.destination < n)]
            for valid, pkt in slots["out", k]:
                with m.If(valid):
                    m.d.comb += [Assert(pkt.header.destination == k),
                                 Assert(pkt.header.source < n)]
        # Per pair (s, d): its entries along its path, oldest first (output FIFO d, then
        # input FIFO s), carry recv, recv + 1, ..., and there are sent - recv of them.
        for s in range(n):
            for d in range(n):
                path = [(v, p, p.header.source == s) for v, p in slots["out", d]] + \
                       [(v, p, p.header.destination == d) for v, p in slots["in", s]]
                ahead = Const(0, cw)
                for i, (valid, pkt, mine) in enumerate(path):
                    hit = Signal(name=f"held_{s}_{d}_{i}")
                    m.d.comb += hit.eq(valid & mine)
                    with m.If(hit):
                        self._fields(m, Assert, pkt, (recv[s][d] + ahead)[:cw])
                    ahead = (ahead + hit)[:cw]
                m.d.comb += Assert((sent[s][d] - recv[s][d])[:cw] == ahead)
        # Fairness: each grant to another port while port k waits moves the arbiter's
        # priority pointer strictly closer to k (cyclically), so the grants k has waited
        # plus the pointer's distance to k never exceed n - 1.
        first = bus_m.submodules.arbiter.first
        m.d.comb += Assert(first < n)
        for k in range(n):
            dist = Signal(range(n), name=f"rr_dist_{k}")
            m.d.comb += dist.eq(Mux(first <= k, k - first, k + n - first))
            m.d.comb += Assert(waits[k] + dist <= n - 1)

    def elaborate(self, platform):
        m = Module()
        n, tw = self.n_ports, self.tag_width
        m.submodules.dut = dut = SharedBus(n, 32, self.fifo_depth, tag_width=tw)
        self._layout = dut.layout
        _no_reset(m)
        cw = 8              # counter width: > BMC depth, > 2 * fifo_depth (packets in flight)
        sent = [[Signal(cw, name=f"sent_{s}_{d}") for d in range(n)] for s in range(n)]
        recv = [[Signal(cw, name=f"recv_{s}_{d}") for d in range(n)] for s in range(n)]
        for s in range(n):
            p = dut.i[s].payload
            m.d.comb += [
                dut.i[s].valid.eq(AnySeq(1)),
                p.as_value().eq(AnySeq(len(p.as_value()))),
                dut.o[s].ready.eq(AnySeq(1)),
            ]
            with m.If(dut.i[s].valid & dut.i[s].ready):
                m.d.comb += Assume(p.header.destination < n)
                self._sequence(m, Assume, p, p.header.destination, [sent[s][d] for d in range(n)])
        for d in range(n):
            q = dut.o[d].payload
            with m.If(dut.o[d].valid & dut.o[d].ready):
                m.d.comb += [Assert(q.header.destination == d), Assert(q.header.source < n)]
                self._sequence(m, Assert, q, q.header.source, [recv[s][d] for s in range(n)],
                               self.expect_skew)
        for s in range(n):
            for d in range(n):
                m.d.comb += Assert((sent[s][d] - recv[s][d])[:cw] <= 2 * self.fifo_depth)
        # Fairness (bounded wait).
        waits = [Signal(range(n + 1), name=f"wait_{k}") for k in range(n)]
        mon = dut.mon
        for k in range(n):
            with m.If(~mon.request[k] | (mon.valid & (mon.grant == k))):
                m.d.sync += waits[k].eq(0)
            with m.Elif(mon.valid):
                m.d.sync += waits[k].eq(waits[k] + 1)
            m.d.comb += Assert(waits[k] <= self.wait_bound)
        if self.invariants:
            self._invariants(m, _elaborate_now(dut, platform), platform, sent, recv, waits, cw)
        return m
