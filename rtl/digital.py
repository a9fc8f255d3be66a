"""Digital module of a PU, SFU path: INT32 results -> FP16 -> GELU -> INT8 activations.

:class:`DigitalModule` sits on one port of the inner bus, like the analog modules, and
is driven by packets (format of :mod:`hyflexpim.rtl.bus`):

* CONFIG writes a register of :data:`DIG_REGISTERS` (the scales ``s1`` / ``s2``, GELU on
  or off, the destination port, outputs per vector ``n``, words per vector; reset values
  and meanings there and in ``docs/registers.md``).
* RESULT, tag ``parity << (tag_width - 1) | j``, data the INT32 output ``j`` of a vector
  (what :class:`~hyflexpim.rtl.bus.PartialSumAggregator` emits): the module computes
  ``to_int8(g(from_int32(acc, s1)), s2)`` with ``g = gelu`` (or the identity when GELU
  is off), bit-exact to :mod:`hyflexpim.models.fp16`, and stores the INT8 in byte ``j``
  of the buffer of vector ``parity``.
* Other kinds are consumed and ignored.

Output: ACTIVATION packets to the DEST port, tag = word index ``w``, data = INT8
outputs ``w * B .. w * B + B - 1`` (``B = data_width // 8``, output ``w * B + b`` in
byte ``b``; bytes past ``n`` are 0, and so are the pad words up to ``DigReg.WORDS``, which
fill the next layer's last row chunk). A word leaves once all its outputs have arrived;
the words of one vector leave in order 0, 1, ..., then the next vector's (the other
parity), so a receiver sees whole vectors one after the other. The word index is the
input-word address of the next layer (:class:`~hyflexpim.rtl.pu.Bridge` scatters it to
the arrays that hold that row chunk).

Pipeline: three in-order stream units, :class:`~hyflexpim.rtl.fp16.Fp16FromInt32` ->
:class:`~hyflexpim.rtl.sfu.GeluUnit` -> :class:`~hyflexpim.rtl.fp16.Fp16ToInt8`, one
result per cycle; the output index, parity and GELU choice of each item travel in a FIFO
beside each unit (pushed when the item enters, popped when it leaves), so they stay with
their item under any backpressure. With GELU off the item still passes the GELU unit
(same order, same latency) and its input is used. Registers take effect for items that
enter after the write: configure between layers.

Rule (as for the PU): results of vector ``v + 2`` may arrive only after every word of
vector ``v`` has left (two vectors in flight, told apart by ``parity``).
"""

from amaranth.hdl import Signal, Module, Const, Cat, Mux, Shape, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from .bus import Kind, packet_layout, check_data_width
from .fp16 import Fp16FromInt32, Fp16ToInt8
from .sfu import GeluUnit
from ..base import Block, check_int
from .registers import CONFIG_WORD, Register, RegisterMap

__all__ = ["DigitalModule", "DigReg", "DIG_REGISTERS", "DIG_REG_SCALE_IN", "DIG_REG_SCALE_OUT",
           "DIG_REG_GELU", "DIG_REG_DEST", "DIG_REG_OUTPUTS", "DIG_REG_WORDS", "BLOCKS",
           "REGISTERS"]

_FP16_ONE = 0x3C00


class DigReg(enum.Enum, shape=8):
    """CONFIG registers of the :class:`DigitalModule` (map: :data:`DIG_REGISTERS`)."""
    SCALE_IN = 0
    SCALE_OUT = 1
    GELU = 2
    DEST = 3
    OUTPUTS = 4
    WORDS = 5


DIG_REGISTERS = RegisterMap("Digital module (SFU path)", DigReg, {
    DigReg.SCALE_IN: Register(_FP16_ONE, "binary16 dequantisation scale `s1` (INT32 -> FP16)"),
    DigReg.SCALE_OUT: Register(_FP16_ONE, "binary16 requantisation scale `s2` (FP16 -> INT8)"),
    DigReg.GELU: Register(1, "bit 0: apply GELU (0: the identity)"),
    DigReg.DEST: Register(0, "bus port the activation words go to"),
    DigReg.OUTPUTS: Register("`2**(tag_width-1)`", "outputs per vector `n` (0, or more than "
                             "`2**(tag_width-1)`: that maximum)"),
    DigReg.WORDS: Register(0, "words sent per vector: `max(value, ceil(n / B))`, "
                           "`B = data_width / 8` (pad words fill the next layer's last row "
                           "chunk; at most `2**tag_width`)"),
}, doc="A CONFIG packet to the module's bus port writes one register; registers take "
       "effect for results that enter after the write (configure between layers).")
# the register numbers, for packet-level code
DIG_REG_SCALE_IN, DIG_REG_SCALE_OUT, DIG_REG_GELU, DIG_REG_DEST, DIG_REG_OUTPUTS, \
    DIG_REG_WORDS = (r.value for r in DigReg)


class _Tracked:
    """An in-order stream ``unit`` with a FIFO of side values beside it.

    ``valid`` / ``side`` / ``ready`` (in), ``out_valid`` / ``out_side`` / ``out_ready``
    (out); the unit's own payloads are set by the caller. The side value of an item is
    pushed when the item enters the unit and popped when it leaves, so it stays with
    its item; an item enters only while the FIFO has room.
    """

    def __init__(self, m, name, unit, side_layout, depth):
        self.unit = unit
        fifo = SyncFIFOBuffered(width=Shape.cast(side_layout).width, depth=depth)
        m.submodules[f"{name}_unit"] = unit
        m.submodules[f"{name}_side"] = fifo
        self.valid, self.ready = Signal(name=f"{name}_valid"), Signal(name=f"{name}_ready")
        self.side = Signal(side_layout, name=f"{name}_side_in")
        self.out_valid = Signal(name=f"{name}_out_valid")
        self.out_ready = Signal(name=f"{name}_out_ready")
        self.out_side = data.View(side_layout, fifo.r_stream.payload)
        m.d.comb += [
            unit.i.valid.eq(self.valid & fifo.w_stream.ready),
            fifo.w_stream.valid.eq(self.valid & unit.i.ready),
            fifo.w_stream.payload.eq(self.side),
            self.ready.eq(unit.i.ready & fifo.w_stream.ready),
            self.out_valid.eq(unit.o.valid & fifo.r_stream.valid),
            unit.o.ready.eq(self.out_ready & fifo.r_stream.valid),
            fifo.r_stream.ready.eq(self.out_ready & unit.o.valid),
        ]


class DigitalModule(wiring.Component):
    """Digital PIM module with the SFU path (protocol: module documentation).

    Ports: ``i`` packets from the bus, ``o`` packets to the bus. Parameters: ``port``
    (this module's bus address, 0..2**addr_width - 1), ``addr_width`` 1..16,
    ``data_width`` a power of two in 32..1024, ``tag_width`` 2..16 (output index bits +
    1 parity bit), ``degree`` (Taylor degree of the GELU's exp, as
    :class:`~hyflexpim.rtl.sfu.GeluUnit`).
    """

    @classmethod
    def check_parameters(cls, *, port=3, addr_width=2, data_width=32, tag_width=8, degree=4):
        """Check the parameters without building the module.

        Raises:
            ParameterTypeError: a parameter is not an integer.
            ValueError: a parameter is out of its range (the message names it).
        """
        check_int("addr_width", addr_width, 1, 16)
        check_data_width(data_width, pow2=True)
        check_int("tag_width", tag_width, 2, 16)
        check_int("port", port, 0, 2 ** addr_width - 1)
        GeluUnit.check_parameters(lanes=1, degree=degree)

    @staticmethod
    def latency_of(degree=4):
        """Pipeline stages from a RESULT accepted to its INT8 stored (FIFOs not counted)."""
        return Fp16FromInt32.LATENCY + GeluUnit.latency_of(degree) + Fp16ToInt8.LATENCY

    def __init__(self, *, port=3, addr_width=2, data_width=32, tag_width=8, degree=4):
        self.check_parameters(port=port, addr_width=addr_width, data_width=data_width,
                              tag_width=tag_width, degree=degree)
        self._latency = self.latency_of(degree)
        self._port, self._addr_width = port, addr_width
        self._data_width, self._tag_width, self._degree = data_width, tag_width, degree
        self._layout = packet_layout(addr_width, data_width, tag_width)
        sig = stream.Signature(self._layout)
        super().__init__({"i": In(sig), "o": Out(sig)})

    layout = property(lambda self: self._layout)
    port = property(lambda self: self._port)
    max_outputs = property(lambda self: 2 ** (self._tag_width - 1),
                           doc="most outputs per vector (output index bits of the tag)")
    bytes_per_word = property(lambda self: self._data_width // 8)

    @property
    def latency(self):
        """Pipeline stages from a RESULT accepted to its INT8 stored (FIFOs not counted)."""
        return self._latency

    def elaborate(self, platform):
        m = Module()
        tw, nmax, bpw = self._tag_width, self.max_outputs, self.bytes_per_word
        ib = tw - 1                                     # output index bits
        bb = exact_log2(bpw)                            # byte-in-word bits
        nwmax = -(-nmax // bpw)                         # words per vector at most
        wb = max(1, ceil_log2(nwmax))

        regs = DIG_REGISTERS
        scale_in = Signal(16, init=regs.reset(DigReg.SCALE_IN))
        scale_out = Signal(16, init=regs.reset(DigReg.SCALE_OUT))
        gelu_on = Signal(init=regs.reset(DigReg.GELU))
        dest = Signal(self._addr_width, init=regs.reset(DigReg.DEST))
        n_out = Signal(range(nmax + 1), init=nmax)
        pad_words = Signal(tw + 1, init=regs.reset(DigReg.WORDS))

        # --- input: configuration, results into the pipeline ---------------------------
        pkt = self.i.payload
        kind = pkt.header.kind
        item = data.StructLayout({"idx": unsigned(ib), "parity": 1, "gelu": 1})
        item_x = data.StructLayout({"idx": unsigned(ib), "parity": 1, "gelu": 1, "x": 16})
        t1 = _Tracked(m, "dequant", Fp16FromInt32(), item, 8)
        gelu = GeluUnit(lanes=1, degree=self._degree)
        t2 = _Tracked(m, "gelu", gelu, item_x, gelu.latency + 4)
        t3 = _Tracked(m, "requant", Fp16ToInt8(), item, 8)
        is_result = kind == Kind.RESULT
        m.d.comb += [
            t1.valid.eq(self.i.valid & is_result),
            t1.unit.i.payload[0].acc.eq(pkt.data[:32]),
            t1.unit.i.payload[0].scale.eq(scale_in),
            t1.side.idx.eq(pkt.header.tag[:ib]),
            t1.side.parity.eq(pkt.header.tag[ib]),
            t1.side.gelu.eq(gelu_on),
            self.i.ready.eq(Mux(is_result, t1.ready, 1)),
        ]
        cfg = data.View(DIG_REGISTERS.layout, pkt.data[:CONFIG_WORD.size])
        with m.If(self.i.valid & self.i.ready & (kind == Kind.CONFIG)):
            value = cfg.value
            with m.Switch(cfg.register):
                with m.Case(DigReg.SCALE_IN):
                    m.d.sync += scale_in.eq(value)
                with m.Case(DigReg.SCALE_OUT):
                    m.d.sync += scale_out.eq(value)
                with m.Case(DigReg.GELU):
                    m.d.sync += gelu_on.eq(value[0])
                with m.Case(DigReg.DEST):
                    m.d.sync += dest.eq(value)
                with m.Case(DigReg.OUTPUTS):
                    m.d.sync += n_out.eq(Mux((value == 0) | (value > nmax), nmax, value))
                with m.Case(DigReg.WORDS):
                    m.d.sync += pad_words.eq(Mux(value > 2 ** tw, 2 ** tw, value))

        # dequant -> GELU -> requant
        x1 = t1.unit.o.payload[0].r
        m.d.comb += [
            t2.valid.eq(t1.out_valid), t1.out_ready.eq(t2.ready),
            t2.unit.i.payload[0].eq(x1),
            t2.side.eq(Cat(t1.out_side.as_value(), x1)),
        ]
        y = Mux(t2.out_side.gelu, t2.unit.o.payload[0], t2.out_side.x)
        m.d.comb += [
            t3.valid.eq(t2.out_valid), t2.out_ready.eq(t3.ready),
            t3.unit.i.payload[0].x.eq(y),
            t3.unit.i.payload[0].scale.eq(scale_out),
            t3.side.eq(t2.out_side.as_value()[:Shape.cast(item).width]),
        ]

        # --- vector buffers: one word memory, two vectors (parity), byte writes ----------
        m.submodules.buf = buf = Memory(shape=unsigned(self._data_width), depth=2 * 2 ** wb,
                                        init=[])
        wr = buf.write_port(granularity=8)
        rd = buf.read_port(domain="comb")
        got = Signal(data.ArrayLayout(nmax, 2))
        r8 = t3.unit.o.payload[0].r
        side3 = t3.out_side
        widx = side3.idx >> bb
        m.d.comb += [
            t3.out_ready.eq(1),
            wr.addr.eq(Cat(widx[:wb], side3.parity)),
            wr.data.eq(Cat([r8.as_unsigned()] * bpw)),
        ]
        with m.If(t3.out_valid):
            m.d.comb += wr.en.eq(1 << side3.idx[:bb] if bb else 1)

        # --- output: the words of vector ``cur`` in order ----------------------------------
        cur = Signal()
        wptr = Signal(tw + 1)
        nwords = Signal(tw + 1)
        need = (n_out + bpw - 1) >> bb
        m.d.comb += nwords.eq(Mux(pad_words > need, pad_words, need))
        valid_pos = Signal(nmax)
        m.d.comb += valid_pos.eq(Cat(Const(j, range(nmax + 1)) < n_out for j in range(nmax)))
        have = Signal(nmax)
        m.d.comb += have.eq(got[cur] | ~valid_pos)
        word_done = Signal(init=1)                  # pad words (w >= nwmax) are always done
        byte_mask = Signal(bpw)
        for w in range(nwmax):
            with m.If(wptr == w):
                m.d.comb += [
                    word_done.eq(have[w * bpw:(w + 1) * bpw].all()),
                    byte_mask.eq(valid_pos[w * bpw:(w + 1) * bpw]),
                ]
        m.d.comb += [
            rd.addr.eq(Cat(wptr[:wb], cur)),
            self.o.valid.eq(word_done & (wptr < nwords)),
            self.o.payload.header.source.eq(self._port),
            self.o.payload.header.destination.eq(dest),
            self.o.payload.header.kind.eq(Kind.ACTIVATION),
            self.o.payload.header.tag.eq(wptr),
            self.o.payload.data.eq(rd.data & Cat(Mux(byte_mask[b], 0xFF, 0) for b in range(bpw))),
        ]
        with m.If(self.o.valid & self.o.ready):
            with m.If(wptr + 1 == nwords):
                m.d.sync += [wptr.eq(0), cur.eq(~cur), got[cur].eq(0)]
            with m.Else():
                m.d.sync += wptr.eq(wptr + 1)
        # A byte stored this cycle (statements after the clear win).
        with m.If(t3.out_valid):
            m.d.sync += got[side3.parity].bit_select(side3.idx, 1).eq(1)
        return m


BLOCKS = [
    Block("digital_module", lambda **kw: DigitalModule(**kw),
          dict(port=3, addr_width=2, data_width=32, tag_width=8, degree=4),
          "digital PIM module, SFU path: INT32 results -> FP16 (scale) -> GELU -> INT8 "
          "activation words for the next layer",
          small=dict(tag_width=6)),
]

REGISTERS = [DIG_REGISTERS]
