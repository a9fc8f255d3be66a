"""Formal property harnesses: wrappers that instantiate RTL blocks, constrain their
environment with ``Assume`` and state the properties with ``Assert``.

Each harness only looks at the block's ports; the expected values are written as the
specification states them (binary-search result, exact sum), not copied from the RTL.
Run them with :mod:`hyflexpim.sim.formal` (SymbiYosys through ``yowasp-sby``).
"""

from amaranth.asserts import AnyConst, AnySeq, Initial
from amaranth.hdl import Assert, Assume, Const, Elaboratable, Module, Mux, ResetSignal, Signal, signed
from amaranth.utils import ceil_log2

from ..models.encoding import INPUT_BITS, WEIGHT_OFFSET
from ..rtl.analog import Mode, SarAdcController, ShiftAdd

__all__ = ["SarAdcProps", "ShiftAddProps", "stream_source_rules"]


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
    0..cols-1 for plane 0, then plane 1, ... plane 7), with any code of the mode's ADC
    range (0 .. 2^slc_bits - 1 in SLC, 0 .. 2^mlc_bits - 1 in MLC), any ``xsum`` of
    ``rows`` INT8 inputs, a mode and ``xsum`` fixed per vector; with ``gaps`` also
    arbitrary input gaps and output backpressure; with ``vertices`` only codes 0 and
    max (enough for the extremes, y being linear in every code).

    Status: NOT part of :data:`hyflexpim.sim.formal.CHECKS`. Comparing the output with
    the reference after a full vector (64 transfers) is an arithmetic equivalence that
    yices did not finish within minutes; an inductive proof needs the accumulators as
    an observation port of ``ShiftAdd`` (see docs/synthesis.md).

    Reference: the exact result of the specification, in a width 8 bits wider than
    the block's ``result_width``::

        y[j] = -128 * xsum + sum_p s(p) 2^p sum_k code(p, j, k) * w^k

    with s(7) = -1 (two's-complement sign plane), s(p) = +1 otherwise, w = 2 (SLC, 8
    columns per neuron) or 4 (MLC, 4 columns per neuron). Assertions: the exact value
    fits ``result_width`` (no overflow is possible), and every result word equals it
    (no wrap-around happened); neurons that SLC mode leaves unused are 0.
    """

    def __init__(self, rows=4, cols=8, slc_bits=6, mlc_bits=7, result_width=None, gaps=False,
                 vertices=True, dut=None):
        from ..models.array import ArrayParams
        self.params = ArrayParams(rows=rows, cols=cols, slc_bits=slc_bits, mlc_bits=mlc_bits)
        self.result_width = result_width or self.params.min_result_width()
        self.gaps, self.vertices = gaps, vertices
        self._dut = dut

    def elaborate(self, platform):
        m = Module()
        _no_reset(m)
        p, rw = self.params, self.result_width
        m.submodules.dut = dut = self._dut or ShiftAdd(p.rows, p.cols, p.slc_bits, p.mlc_bits,
                                                       rw)
        n_out = p.cols // 4
        wide = rw + 8

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
        first = (plane == 0) & (col == 0)
        m.d.comb += [Assume(c.plane == plane), Assume(c.col == col),
                     Assume(c.xsum >= -128 * p.rows), Assume(c.xsum <= 127 * p.rows)]
        with m.If(~first):
            m.d.comb += [Assume(c.mode == vmode), Assume(c.xsum == vxsum)]
        with m.If(c.mode == Mode.SLC):
            m.d.comb += Assume(c.code < (1 << p.slc_bits))
        if self.vertices:
            # Codes at the ends of their range only: y is linear in every code, so its
            # extremes over the box of legal inputs lie at these vertices.
            maxc = Mux(c.mode == Mode.MLC, (1 << p.mlc_bits) - 1, (1 << p.slc_bits) - 1)
            m.d.comb += Assume((c.code == 0) | (c.code == maxc))
        xfer = dut.i.valid & dut.i.ready
        with m.If(xfer):
            m.d.sync += [vmode.eq(c.mode), vxsum.eq(c.xsum)]
            with m.If(col == p.cols - 1):
                m.d.sync += [col.eq(0), plane.eq(Mux(plane == INPUT_BITS - 1, 0, plane + 1))]
            with m.Else():
                m.d.sync += col.eq(col + 1)

        # --- reference: exact sums in a wider width ----------------------------------
        mlc = c.mode == Mode.MLC
        neuron = Signal(range(n_out))
        m.d.comb += neuron.eq(Mux(mlc, col // 4, col // 8))
        # Per neuron and plane, the slices are summed first (sum_k code * w^k), then the
        # plane's weight is applied: the association of the specification's formula.
        part = Signal(wide)
        part_nxt = Signal(wide)
        k0 = Mux(mlc, col % 4 == 0, col % 8 == 0)
        last_k = Mux(mlc, col % 4 == 3, col % 8 == 7)
        m.d.comb += part_nxt.eq(Mux(k0, 0, part) + (c.code << Mux(mlc, (col % 4) * 2, col % 8)))
        scaled = Signal(signed(wide))
        m.d.comb += scaled.eq(Mux(plane == INPUT_BITS - 1, -(part_nxt << plane),
                                  part_nxt << plane))
        ref = [Signal(signed(wide), name=f"ref{j}") for j in range(n_out)]
        nxt = [Signal(signed(wide), name=f"nxt{j}") for j in range(n_out)]
        for j in range(n_out):
            base = Mux(plane == 0, -WEIGHT_OFFSET * c.xsum, ref[j])
            m.d.comb += nxt[j].eq(Mux((neuron == j) & last_k, base + scaled, ref[j]))
        final = (plane == INPUT_BITS - 1) & (col == p.cols - 1)
        pend = [Signal(signed(wide), name=f"pend{j}") for j in range(n_out)]
        pend_mode = Signal(Mode)
        with m.If(xfer):
            m.d.sync += part.eq(part_nxt)
            m.d.sync += [r.eq(x) for r, x in zip(ref, nxt)]
            with m.If(final):
                m.d.sync += [q.eq(x) for q, x in zip(pend, nxt)]
                m.d.sync += pend_mode.eq(c.mode)

        # --- properties ---------------------------------------------------------------
        lo, hi = -(1 << (rw - 1)), (1 << (rw - 1)) - 1
        for j in range(n_out):
            m.d.comb += [Assert(nxt[j] >= lo), Assert(nxt[j] <= hi)]
        with m.If(dut.o.valid):
            m.d.comb += Assert(dut.o.p.mode == pend_mode)
            for j in range(n_out):
                with m.If((pend_mode == Mode.MLC) | (j < p.cols // 8)):
                    m.d.comb += Assert(dut.o.p.y[j] == pend[j])
                with m.Else():
                    m.d.comb += Assert(dut.o.p.y[j] == 0)
        return m
