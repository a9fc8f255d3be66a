"""One analog PIM array: wordline driver, SAR ADC controller, shift-and-add.

The crossbar itself, its sample-and-hold (S&H) circuits, the 128:1 multiplexer, the
DAC and the comparator are analog and live outside the RTL; the array talks to them
through :class:`CrossbarSignature`. In simulation the crossbar model
(:mod:`hyflexpim.models.crossbar`) answers the comparator.

Dataflow and protocol::

    i (input vectors) -> WordlineDriver --plane tokens--> SarAdcController
                              |  wl                         | sample, sel, trial / cmp
                              v                             v
                         [ crossbar + S&H + mux + DAC + comparator, analog ]
                                                            |
                         o (result vectors) <- ShiftAdd <--codes--

* ``WordlineDriver`` holds one INT8 vector in its input register (IR) and drives one
  bit-plane at a time on the wordlines. When a plane has been driven for
  ``read_cycles`` cycles (the crossbar read), it offers a *plane token*. The transfer
  of that token is the sampling instant: the ADC asserts ``sample`` in the same cycle
  and the S&H captures the bitlines at that clock edge. The driver then moves to the
  next plane, so the next crossbar read overlaps the conversions of this one.
* ``SarAdcController`` converts the held values column by column, one comparison per
  clock, MSB first: ``mlc_bits`` steps in MLC mode, ``slc_bits`` in SLC mode (the top
  comparisons are skipped and their code bits are 0). It accepts the next token in the
  cycle of the last comparison of the last column, so the ADC is never idle while
  work is queued: a stream of vectors takes ``8 * cols * steps`` cycles per vector.
* ``ShiftAdd`` accumulates ``code << (plane + k * bits_per_cell)`` per output neuron
  (negated for the sign plane 7), starting from the offset correction
  ``-128 * sum(x)`` (computed by the driver while loading the IR), into the output
  register (OR), and emits a result vector after plane 7. The results are copied to
  an output buffer, so the next vector proceeds while the result waits for ``o.ready``.

The number encoding is the one of :mod:`hyflexpim.models.encoding`.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped
from amaranth.utils import ceil_log2

from ..models.array import ArrayParams
from ..models.encoding import INPUT_BITS, WEIGHT_OFFSET
from ..base import Block, check_choice, check_int

__all__ = [
    "PIPELINE_LATENCY", "Mode", "CrossbarSignature", "vector_layout", "plane_layout", "code_layout",
    "result_layout", "WordlineDriver", "SarAdcController", "ShiftAdd", "AnalogArray",
]


class Mode(enum.Enum, shape=1):
    """Cell mode of an array: 1 bit per cell (SLC) or 2 bits per cell (MLC)."""
    SLC = 0
    MLC = 1


def xsum_width(rows):
    """Signed width of ``sum(x)`` over ``rows`` INT8 inputs."""
    return INPUT_BITS + ceil_log2(rows) if rows > 1 else INPUT_BITS


def vector_layout(rows):
    """Input vector: ``x`` (rows x INT8, element r on wordline r) and the cell ``mode``."""
    return data.StructLayout({"x": data.ArrayLayout(signed(INPUT_BITS), rows), "mode": Mode})


def plane_layout(rows):
    """Plane token from the wordline driver to the ADC."""
    return data.StructLayout({"plane": range(INPUT_BITS), "mode": Mode,
                              "xsum": signed(xsum_width(rows))})


def code_layout(rows, cols, adc_bits):
    """One ADC code with the column, plane and vector context it belongs to."""
    return data.StructLayout({"code": adc_bits, "col": range(cols), "plane": range(INPUT_BITS),
                              "mode": Mode, "xsum": signed(xsum_width(rows))})


def result_layout(neurons, result_width):
    """Result vector: ``y`` (neurons x signed ``result_width``) and its ``mode``."""
    return data.StructLayout({"y": data.ArrayLayout(signed(result_width), neurons),
                              "mode": Mode})


class CrossbarSignature(wiring.Signature):
    """Port group between the array's digital periphery and the analog crossbar.

    ``wl``      wordline drive, one bit per row;
    ``sample``  the S&H captures every bitline at this clock edge;
    ``sel``     column selected by the 128:1 multiplexer;
    ``trial``   trial code presented to the DAC;
    ``cmp``     comparator: held[sel] >= DAC level of ``trial`` (combinational, same cycle).
    """

    def __init__(self, rows, cols, adc_bits):
        check_int("rows", rows, 1, 1024)
        check_int("cols", cols, 1, 1024)
        check_int("adc_bits", adc_bits, 1, 16)
        self._rows, self._cols, self._adc_bits = rows, cols, adc_bits
        super().__init__({
            "wl": Out(rows),
            "sample": Out(1),
            "sel": Out(range(cols)),
            "trial": Out(adc_bits),
            "cmp": In(1),
        })

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    adc_bits = property(lambda self: self._adc_bits)

    def __eq__(self, other):
        return (isinstance(other, CrossbarSignature) and
                (self.rows, self.cols, self.adc_bits) ==
                (other.rows, other.cols, other.adc_bits))

    def __repr__(self):
        return f"CrossbarSignature(rows={self.rows}, cols={self.cols}, adc_bits={self.adc_bits})"


class WordlineDriver(wiring.Component):
    """Input register and bit-serial wordline driver.

    Parameters: ``rows`` (1..1024), ``read_cycles`` (1..1024, cycles each bit-plane is
    driven before it is sampled). The tokens' ``xsum`` (sum of the inputs) is computed
    from the IR by a pipelined adder tree during the first plane's ``read_cycles``.
    Ports: ``i`` input vectors, ``o`` plane tokens (transfer = sampling instant),
    ``wl`` wordline bits.
    """

    def __init__(self, rows=64, read_cycles=4):
        check_int("rows", rows, 1, 1024)
        check_int("read_cycles", read_cycles, 1, 1024)
        self._rows, self._read_cycles = rows, read_cycles
        super().__init__({
            "i": In(stream.Signature(vector_layout(rows))),
            "o": Out(stream.Signature(plane_layout(rows))),
            "wl": Out(rows),
        })

    rows = property(lambda self: self._rows)
    read_cycles = property(lambda self: self._read_cycles)

    #: Adder levels of the sum(x) tree between two of its registers.
    XSUM_LEVELS_PER_STAGE = 2

    @property
    def xsum_stages(self):
        """Register stages of the sum(x) tree: ``ceil(ceil_log2(rows) / 2)``, at least 1,
        at most ``read_cycles`` (the tree then never delays the first plane)."""
        levels = ceil_log2(self._rows)
        return max(1, min(self._read_cycles, -(-levels // self.XSUM_LEVELS_PER_STAGE)))

    def elaborate(self, platform):
        m = Module()
        rows = self._rows
        ir = Signal(data.ArrayLayout(signed(INPUT_BITS), rows))
        loaded = Signal()
        settle = Signal(range(self._read_cycles + 1))
        last_plane = self.o.p.plane == INPUT_BITS - 1

        m.d.comb += [
            self.o.valid.eq(loaded & (settle == self._read_cycles)),
            self.i.ready.eq(~loaded | (self.o.valid & self.o.ready & last_plane)),
        ]
        # The IR shifts right by one bit per plane: wordline r is bit 0 of row r's byte (a
        # flip-flop output, no plane multiplexer on the wordline or fanout of the plane
        # counter into every row).
        bits = ir.as_value()
        for r in range(rows):
            m.d.comb += self.wl[r].eq(loaded & bits[INPUT_BITS * r])

        with m.If(loaded & (settle != self._read_cycles)):
            m.d.sync += settle.eq(settle + 1)

        # sum(x) of the vector (the weight offset's correction), computed from the IR
        # while the first plane settles: a balanced adder tree, built level by level, with
        # a register after every ceil(levels / stages) levels; its last register is the
        # token's xsum, valid from the cycle the first plane can be sampled (``stages``
        # <= ``read_cycles``: the tree adds no cycle), and held from the first plane's
        # transfer on (the IR then shifts).
        terms = [ir[r] for r in range(rows)]
        levels = ceil_log2(rows)
        stages = self.xsum_stages
        per_stage = -(-levels // stages) if levels else 1
        level = 0
        while len(terms) > 1:
            nxt = [terms[j] + terms[j + 1] for j in range(0, len(terms) - 1, 2)]
            if len(terms) % 2:
                nxt.append(terms[-1])
            terms, level = nxt, level + 1
            if level % per_stage == 0 and level < levels:
                regs = []
                for j, t in enumerate(terms):
                    reg = Signal.like(t, name=f"xsum_l{level}_{j}")
                    m.d.sync += reg.eq(t)
                    regs.append(reg)
                terms = regs
        with m.If(self.o.p.plane == 0):
            m.d.sync += self.o.p.xsum.eq(terms[0])

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                ir.eq(self.i.p.x),
                self.o.p.mode.eq(self.i.p.mode),
                self.o.p.plane.eq(0),
                settle.eq(0),
                loaded.eq(1),
            ]
        with m.Elif(self.o.valid & self.o.ready):
            with m.If(last_plane):
                m.d.sync += loaded.eq(0)
            with m.Else():
                m.d.sync += [self.o.p.plane.eq(self.o.p.plane + 1), settle.eq(0)]
                for r in range(rows):
                    row = bits[INPUT_BITS * r:INPUT_BITS * (r + 1)]
                    m.d.sync += row.eq(row >> 1)
        return m


class SarAdcController(wiring.Component):
    """Sequencer of the shared SAR ADC of one array, reconfigurable at run time.

    Parameters: ``cols`` (1..1024 columns behind the multiplexer), ``slc_bits`` and
    ``mlc_bits`` (comparisons per conversion in each mode, 1 <= slc_bits <= mlc_bits
    <= 16; ``slc_bits == mlc_bits`` gives a fixed-resolution ADC), ``rows`` (only sizes
    the ``xsum`` field carried along).
    Ports: ``i`` plane tokens (accepting one asserts ``sample``), ``o`` codes in column
    order, and the analog ``sample``, ``sel``, ``trial``, ``cmp``.
    """

    def __init__(self, cols=128, slc_bits=6, mlc_bits=7, rows=64):
        check_int("cols", cols, 1, 1024)
        check_int("mlc_bits", mlc_bits, 1, 16)
        check_int("slc_bits", slc_bits, 1, mlc_bits)
        check_int("rows", rows, 1, 1024)
        self._cols, self._slc_bits, self._mlc_bits, self._rows = cols, slc_bits, mlc_bits, rows
        super().__init__({
            "i": In(stream.Signature(plane_layout(rows))),
            "o": Out(stream.Signature(code_layout(rows, cols, mlc_bits))),
            "sample": Out(1),
            "sel": Out(range(cols)),
            "trial": Out(mlc_bits),
            "cmp": In(1),
        })

    cols = property(lambda self: self._cols)
    slc_bits = property(lambda self: self._slc_bits)
    mlc_bits = property(lambda self: self._mlc_bits)

    def elaborate(self, platform):
        m = Module()
        cols, sb, mb = self._cols, self._slc_bits, self._mlc_bits
        active = Signal()
        tok = Signal(plane_layout(self._rows))
        col = Signal(range(cols))
        bit = Signal(range(mb))
        code = Signal(mb)

        def top_bit(mode):
            return Mux(mode == Mode.MLC, mb - 1, sb - 1) if sb != mb else mb - 1

        trial = Signal(mb)
        m.d.comb += [
            trial.eq(code | (Const(1, mb) << bit)),
            self.trial.eq(Mux(active, trial, 0)),
            self.sel.eq(col),
        ]
        decided = Signal(mb)
        m.d.comb += decided.eq(Mux(self.cmp, trial, code))

        out_free = ~self.o.valid | self.o.ready
        last_step = active & (bit == 0)
        can_finish = last_step & out_free
        last_col = col == cols - 1
        m.d.comb += [
            self.i.ready.eq(~active | (can_finish & last_col)),
            self.sample.eq(self.i.valid & self.i.ready),
        ]

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.If(active & (bit != 0)):
            m.d.sync += [code.eq(decided), bit.eq(bit - 1)]
        with m.Elif(can_finish):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.p.code.eq(decided),
                self.o.p.col.eq(col),
                self.o.p.plane.eq(tok.plane),
                self.o.p.mode.eq(tok.mode),
                self.o.p.xsum.eq(tok.xsum),
                code.eq(0),
                bit.eq(top_bit(tok.mode)),
            ]
            with m.If(~last_col):
                m.d.sync += col.eq(col + 1)
            with m.Else():
                m.d.sync += [col.eq(0), active.eq(0)]

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                active.eq(1), tok.eq(self.i.p), col.eq(0), code.eq(0),
                bit.eq(top_bit(self.i.p.mode)),
            ]
        return m


class ShiftAdd(wiring.Component):
    """Shift-and-add unit and output register of one array, SLC/MLC aware.

    Parameters: ``rows``, ``cols`` (a multiple of 8), ``slc_bits``, ``mlc_bits`` (the
    code ranges, which bound the accumulator), ``result_width`` (at least the width of
    :meth:`ArrayParams.min_result_width`, at most 64), ``variant`` (which unit is built:
    ``"slc_mlc"``, the reconfigurable one; ``"slc_only"``, an SLC-only unit without
    the MLC datapath, or ``"mlc_only"``, an MLC-only one without the SLC datapath: the
    dedicated baselines for area, which read every code in their own mode whatever its
    ``mode`` field says).
    Ports: ``i`` codes in column order, plane by plane; ``o`` result vectors of
    ``cols // 4`` neurons (``cols // 8`` for ``"slc_only"``); in SLC mode neurons
    ``cols // 8`` and up of the reconfigurable unit are 0.
    """

    VARIANTS = ("slc_mlc", "slc_only", "mlc_only")

    def __init__(self, rows=64, cols=128, slc_bits=6, mlc_bits=7, result_width=32,
                 variant="slc_mlc"):
        params = ArrayParams(rows=rows, cols=cols, slc_bits=slc_bits, mlc_bits=mlc_bits)
        need = params.min_result_width()
        check_int("result_width", result_width, need, 64)
        check_choice("variant", variant, self.VARIANTS)
        self._params, self._result_width, self._variant = params, result_width, variant
        self._neurons = cols // 8 if variant == "slc_only" else cols // 4
        super().__init__({
            "i": In(stream.Signature(code_layout(rows, cols, mlc_bits))),
            "o": Out(stream.Signature(result_layout(self._neurons, result_width))),
        })
        # Internal state, created here so that verification harnesses (formal
        # properties) can observe it; not ports, and nothing outside drives them.
        self._acc = Signal(data.ArrayLayout(signed(result_width), self._neurons), name="acc")
        self._partial = Signal(mlc_bits + INPUT_BITS, name="partial")

    params = property(lambda self: self._params)
    result_width = property(lambda self: self._result_width)
    variant = property(lambda self: self._variant)
    neurons = property(lambda self: self._neurons)
    acc = property(lambda self: self._acc, doc="output register (OR), per neuron (observation)")
    partial = property(lambda self: self._partial,
                       doc="running sum over the slices of the current neuron (observation)")

    #: Cycles from the transfer of a code on ``i`` to the update of the accumulator it
    #: contributes to (the accumulators are what the next plane's codes read back).
    ACC_LATENCY = 4
    #: Cycles from the transfer of a vector's last code on ``i`` to ``o.valid``. Five
    #: stages: (0) the transfer: slice sum, the neuron's accumulator read; (1) the plane
    #: shift, the sign plane's term inverted; (2) the low half of the accumulate, (3) its
    #: high half and the write; (4) the copy of the accumulators into the output buffer.
    LATENCY = ACC_LATENCY + 1

    def elaborate(self, platform):
        m = Module()
        p, rw, n = self._params, self._result_width, self._neurons
        mlc = self._variant == "slc_mlc"
        c = self.i.p
        is_mlc = {"slc_mlc": c.mode == Mode.MLC, "slc_only": Const(0),
                  "mlc_only": Const(1)}[self._variant]
        top = INPUT_BITS - 1

        # --- stage 0, the transfer: slice position, the neuron's running plane sum, and
        # the accumulator value the plane term is added to.
        k = Signal(3)
        last_slice = Signal()
        neuron = Signal(range(n))
        m.d.comb += [
            k.eq(Mux(is_mlc, c.col[:2], c.col[:3])),
            last_slice.eq(Mux(is_mlc, c.col[:2] == 3, c.col[:3] == 7)),
            neuron.eq(Mux(is_mlc, c.col >> 2, c.col >> 3)),
        ]
        # Per-neuron, per-plane partial: sum_k code << (k * bits_per_cell).
        pw = p.mlc_bits + INPUT_BITS
        partial = self._partial
        shifted = Signal(pw)
        m.d.comb += shifted.eq(Mux(is_mlc, c.code << (k << 1), c.code << k))
        summed = Signal(pw)
        m.d.comb += summed.eq(Mux(k == 0, 0, partial) + shifted)

        acc = self._acc
        base = Signal(signed(rw))
        m.d.comb += base.eq(Mux(c.plane == 0, -(c.xsum * WEIGHT_OFFSET), acc[neuron]))

        final = last_slice & (c.plane == top) & (c.col == p.cols - 1)
        # A final code is taken only when the output buffer is free (or frees now): nothing
        # else fills it before the code reaches the last stage.
        m.d.comb += self.i.ready.eq(~(final & self.o.valid & ~self.o.ready))
        xfer = self.i.valid & self.i.ready

        # Stage registers; the stages advance every cycle. A neuron's accumulator is next
        # read one plane (cols >= 8 codes, at least 8 cycles) after the code that writes
        # it, so ACC_LATENCY <= 8 needs no forwarding.
        lo_w = rw // 2
        hi_w = rw - lo_w
        ctl = {"valid": 1, "final": 1, "mode": Mode, "neuron": range(n)}
        s1 = Signal(data.StructLayout({**ctl, "plane": range(INPUT_BITS), "sum": pw,
                                       "base": signed(rw)}))
        s2 = Signal(data.StructLayout({**ctl, "cin": 1, "term": rw, "base": rw}))
        s3 = Signal(data.StructLayout({**ctl, "lo": lo_w, "carry": 1, "term_hi": hi_w,
                                       "base_hi": hi_w}))
        s4 = Signal(data.StructLayout({"valid": 1, "final": 1, "mode": Mode}))
        with m.If(xfer):
            m.d.sync += partial.eq(summed)
        m.d.sync += [
            s1.valid.eq(xfer & last_slice), s1.final.eq(final), s1.mode.eq(c.mode),
            s1.neuron.eq(neuron), s1.plane.eq(c.plane), s1.sum.eq(summed), s1.base.eq(base),
        ]

        # --- stage 1: the plane shift; the sign plane (weight -2^7) is subtracted:
        # base - term = base + ~term + 1.
        term = Signal(rw)
        m.d.comb += term.eq(s1.sum << s1.plane)
        neg = s1.plane == top
        m.d.sync += [
            s2.valid.eq(s1.valid), s2.final.eq(s1.final), s2.mode.eq(s1.mode),
            s2.neuron.eq(s1.neuron), s2.cin.eq(neg), s2.term.eq(Mux(neg, ~term, term)),
            s2.base.eq(s1.base),
        ]

        # --- stage 2: the low half of the sum, its carry.
        lo = Signal(lo_w + 1)
        m.d.comb += lo.eq(s2.base[:lo_w] + s2.term[:lo_w] + s2.cin)
        m.d.sync += [
            s3.valid.eq(s2.valid), s3.final.eq(s2.final), s3.mode.eq(s2.mode),
            s3.neuron.eq(s2.neuron), s3.lo.eq(lo[:lo_w]), s3.carry.eq(lo[lo_w]),
            s3.term_hi.eq(s2.term[lo_w:]), s3.base_hi.eq(s2.base[lo_w:]),
        ]

        # --- stage 3: the high half; write the neuron's accumulator (the OR).
        hi = Signal(hi_w)
        m.d.comb += hi.eq(s3.base_hi + s3.term_hi + s3.carry)
        with m.If(s3.valid):
            m.d.sync += acc[s3.neuron].eq(Cat(s3.lo, hi))
        m.d.sync += [s4.valid.eq(s3.valid), s4.final.eq(s3.final), s4.mode.eq(s3.mode)]

        # --- stage 4: after the vector's last write, copy the accumulators out.
        # ``final`` travels ungated beside ``valid`` and is qualified only here: the load
        # enable of the n * result_width output flip-flops is then a gate, which the
        # mapper buffers (ABC's ``buffer -N 8``), not a flip-flop output, which it does not
        # (one DFFPOSX1 driving ~515 loads, a 6.7 ns clock-to-Q, was the critical path).
        # Copies of the register would not help: Yosys' opt_merge merges identical
        # flip-flops, and Amaranth puts ``keep`` on the wire, not on the $dff cell.
        copy_out = Signal()
        m.d.comb += copy_out.eq(s4.valid & s4.final)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(copy_out):
            m.d.sync += [self.o.valid.eq(1), self.o.p.mode.eq(s4.mode)]
            for j in range(n):
                value = acc[j]
                if mlc and j >= p.cols // 8:
                    value = Mux(s4.mode == Mode.MLC, value, 0)
                m.d.sync += self.o.p.y[j].eq(value)
        return m


#: Cycles an idle array adds to ``read_cycles + 8 * cols * steps`` between the cycle
#: an input vector is transferred on ``i`` and the cycle its result is transferred on
#: ``o`` (wordlines settle after the IR load, the sample strobe, the code register, and
#: the shift-and-add's :attr:`ShiftAdd.LATENCY` stages). A stream of ``n`` vectors
#: completes in ``read_cycles + PIPELINE_LATENCY + n * 8 * cols * steps`` cycles.
PIPELINE_LATENCY = 2 + ShiftAdd.LATENCY


class AnalogArray(wiring.Component):
    """Digital periphery of one analog PIM array (IR, WL driver, ADC sequencer, S&A, OR).

    Parameters (checked, ``ValueError`` names the parameter and its range):
    ``rows`` 1..1024 (default 64), ``cols`` multiple of 8 in 8..1024 (128),
    ``slc_bits`` 1..mlc_bits (6), ``mlc_bits`` 1..16 (7), ``result_width``
    min..64 (32; the minimum is :meth:`ArrayParams.min_result_width`),
    ``read_cycles`` 1..1024 (4).
    Ports: ``i`` input vectors (:func:`vector_layout`), ``o`` result vectors
    (:func:`result_layout`, ``cols // 4`` neurons), ``xbar`` (:class:`CrossbarSignature`).
    """

    def __init__(self, rows=64, cols=128, slc_bits=6, mlc_bits=7, result_width=32,
                 read_cycles=4):
        params = ArrayParams(rows=rows, cols=cols, slc_bits=slc_bits, mlc_bits=mlc_bits)
        check_int("result_width", result_width, params.min_result_width(), 64)
        check_int("read_cycles", read_cycles, 1, 1024)
        self._params, self._result_width, self._read_cycles = params, result_width, read_cycles
        super().__init__({
            "i": In(stream.Signature(vector_layout(rows))),
            "o": Out(stream.Signature(result_layout(cols // 4, result_width))),
            "xbar": Out(CrossbarSignature(rows, cols, mlc_bits)),
        })

    params = property(lambda self: self._params)
    result_width = property(lambda self: self._result_width)
    read_cycles = property(lambda self: self._read_cycles)

    def elaborate(self, platform):
        m = Module()
        p = self._params
        m.submodules.wl_driver = drv = WordlineDriver(p.rows, self._read_cycles)
        m.submodules.adc = adc = SarAdcController(p.cols, p.slc_bits, p.mlc_bits, p.rows)
        m.submodules.shift_add = sa = ShiftAdd(p.rows, p.cols, p.slc_bits, p.mlc_bits,
                                               self._result_width)
        connect(m, flipped(self.i), drv.i)
        connect(m, drv.o, adc.i)
        connect(m, adc.o, sa.i)
        connect(m, sa.o, flipped(self.o))
        m.d.comb += [
            self.xbar.wl.eq(drv.wl),
            self.xbar.sample.eq(adc.sample),
            self.xbar.sel.eq(adc.sel),
            self.xbar.trial.eq(adc.trial),
            adc.cmp.eq(self.xbar.cmp),
        ]
        return m


BLOCKS = [
    Block("wl_driver", WordlineDriver, {"rows": 64, "read_cycles": 4},
          "input register and bit-serial wordline driver", small={"rows": 16}),
    Block("sar_adc", SarAdcController, {"cols": 128, "slc_bits": 6, "mlc_bits": 7, "rows": 64},
          "reconfigurable 6/7-bit SAR ADC sequencer with column multiplexer control",
          small={"cols": 32, "rows": 16}),
    Block("shift_add", ShiftAdd, {"rows": 64, "cols": 128, "slc_bits": 6, "mlc_bits": 7,
                                  "result_width": 32, "variant": "slc_mlc"},
          "SLC/MLC shift-and-add with offset correction and output register",
          small={"rows": 16, "cols": 32}),
    Block("analog_array", AnalogArray, {"rows": 64, "cols": 128, "slc_bits": 6, "mlc_bits": 7,
                                        "result_width": 32, "read_cycles": 4},
          "analog PIM array top: IR, WL driver, SAR ADC controller, S&A, OR",
          small={"rows": 16, "cols": 32}),
]
