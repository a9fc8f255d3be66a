"""Processing unit (PU): analog modules, digital modules, aggregation, inner bus, bridge.

Structure (inner-bus port numbers)::

    port 0                      bridge (:class:`Bridge`): the PU's ``i`` / ``o`` packet
                                streams, in global-bus addresses
    ports 1..n_modules          analog modules (:class:`AnalogModule`), each with
                                ``arrays_per_module`` arrays (:class:`~hyflexpim.rtl.analog.AnalogArray`)
    port n_modules + 1          partial-sum aggregator (:class:`~hyflexpim.rtl.bus.PartialSumAggregator`)
    ports n_modules + 2 + d     digital modules (:class:`~hyflexpim.rtl.digital.DigitalModule`,
                                the SFU path), d = 0..n_digital-1

Everything the PU does is driven by packets (format of :mod:`hyflexpim.rtl.bus`) that
enter by ``i``; packets leave by ``o``. ``i`` / ``o`` carry GLOBAL addresses
(``ext_addr_width`` bits; a :class:`~hyflexpim.rtl.bus.GlobalBus` stamps the source and
routes on the destination); the bridge translates (see :class:`Bridge`):

* CONFIG in: the word's ``target`` (``data[24:32]``) names the inner port it is for (0:
  the bridge itself, :data:`BRIDGE_REGISTERS`);
* ACTIVATION in: tag = input word ``w`` of the layer's input vector (``words`` INT8
  words per row chunk, ``w = chunk * words + word in chunk``); the bridge sends a copy
  to every array whose bit is set in the chunk's scatter mask;
* PARTIAL_SUM in: to the aggregator (a layer split over PUs); RESULT in: to the
  ``BridgeReg.RESULT_IN`` port (default: the first digital module);
* every packet an inner module sends to port 0 leaves by ``o``, with the global
  destination (and kind) of its kind's route register.

Analog module protocol (tag and data of the packets it takes, ``a`` = array in module):

* CONFIG, tag ``a``: writes a register of array ``a`` (:data:`ARRAY_REGISTERS`: the
  output table, one entry per neuron slot, and the cell mode; ``docs/registers.md``).
  After reset every entry is unused and every array SLC.
* ACTIVATION, tag ``a << word_bits | w``: word ``w`` of the input register of array ``a``
  (``data_width // 8`` INT8, element ``w * data_width // 8 + b`` in byte ``b``). When
  every word of a vector has arrived (in any order), the vector goes to the array; the
  register then takes the next vector while the array computes.
* Each result vector of an array becomes one PARTIAL_SUM packet per used table entry,
  in slot order, to the aggregator: tag ``parity << (tag_width - 1) | output index``,
  data the INT32 result (sign-extended), where ``parity`` counts the array's result
  vectors modulo 2. The aggregator adds the partials of one tag (``parts`` of them: the
  number of row chunks) and sends the RESULT, same tag, to its destination register
  (0: the bridge, i.e. ``o``; or a digital module, which turns the INT32 results into
  INT8 activation words for the next layer).

Sequencing rule (the IO side's duty): vector ``v + 2`` may be sent only once every
output of vector ``v`` has left the PU (two vectors in flight, told apart by ``parity``).
"""

from amaranth.hdl import Signal, Module, Const, Cat, Mux, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped
from amaranth.utils import ceil_log2

from ..models.array import ArrayParams
from .analog import AnalogArray, CrossbarSignature, Mode
from .bus import (Kind, InnerBus, PartialSumAggregator, RoundRobinArbiter, packet_layout,
                  check_data_width)
from .digital import DigitalModule
from .digital_pim import DigitalArraySignature
from ..base import Block, check_int
from .registers import CONFIG_WORD, Register, RegisterMap

__all__ = ["ArrayReg", "ARRAY_REGISTERS", "BridgeReg", "BRIDGE_REGISTERS", "REG_MODE",
           "ENTRY_USED", "BR_REG_ROUTE", "BR_REG_RESULT_IN", "CONFIG_TARGET_SHIFT",
           "AnalogModule", "Bridge", "ProcessingUnit", "route_value", "BLOCKS", "REGISTERS"]


class ArrayReg(enum.Enum, shape=8):
    """CONFIG registers of one array of an :class:`AnalogModule` (map:
    :data:`ARRAY_REGISTERS`); the CONFIG tag selects the array."""
    TABLE = 0
    MODE = 255


ENTRY_USED = 1 << 15    # bit of an output-table value that marks the entry used

ARRAY_REGISTERS = RegisterMap("Analog module (one array)", ArrayReg, {
    ArrayReg.TABLE: Register(0, "output-table entry of neuron slot `i`: bit 15 (`ENTRY_USED`) "
                             "marks it used, the low bits are the output index the slot "
                             "computes; unused entries send no partial sum",
                             count="`cols // 4`"),
    ArrayReg.MODE: Register(0, "cell mode of the array: 0 SLC, 1 MLC (`rtl.analog.Mode`)"),
}, doc="A CONFIG packet to the module's bus port writes one register of array `a` = the "
       "packet's tag. The mode is taken when a vector enters the array and the table is "
       "read when its partial sums leave, so configure an array between its vectors: a "
       "write to an array that holds a vector is not refused and changes that vector's "
       "results. Idle arrays and the bridge's chunk masks may be rewritten right behind the "
       "previous layer's last input words while other arrays' results are in flight "
       "(`tb/pu_tb.py::narrower_layer_after_a_wider_one`). In SLC only the first "
       "`cols // 8` table entries send partial sums; rewrite every entry between layers "
       "(docs/bus.md).")


class BridgeReg(enum.Enum, shape=8):
    """CONFIG registers of a PU's :class:`Bridge` (map: :data:`BRIDGE_REGISTERS`)."""
    MASK = 0x00
    ROUTE = 0xF0
    RESULT_IN = 0xF8
    ACT_IN = 0xF9


BRIDGE_REGISTERS = RegisterMap("PU bridge (inner port 0)", BridgeReg, {
    BridgeReg.MASK: Register(0, "bits `16 i .. 16 i + 15` of the scatter mask of row chunk "
                             "`c` = the CONFIG tag (bit `t`: array `t` gets the chunk's "
                             "input words)", count="`ceil(arrays / 16)`"),
    BridgeReg.ROUTE: Register("destination 0 (IO), kind `i`",
                              "route of packets of kind `i` (`Kind`) that inner modules send "
                              "to port 0: they leave by `o` with global destination "
                              "`value[0:12]` as kind `value[12:14]` (`route_value(dest, kind)`)",
                              count=4),
    BridgeReg.RESULT_IN: Register("the first digital module (0 without one)",
                                  "inner port of incoming RESULT packets"),
    BridgeReg.ACT_IN: Register(0, "inner port of incoming ACTIVATION packets (tag kept); 0: "
                               "scattered to the arrays by the chunk masks (a layer engine "
                               "takes its layer's input rows through another value)"),
}, doc="A CONFIG packet entering a PU with `target` 0 writes one bridge register; with "
       "another `target` it goes on to that inner port (tag and low 24 bits kept).")

# the register numbers, for packet-level code
REG_MODE = ArrayReg.MODE.value
BR_REG_ROUTE = BridgeReg.ROUTE.value
BR_REG_RESULT_IN = BridgeReg.RESULT_IN.value
CONFIG_TARGET_SHIFT = CONFIG_WORD["target"].offset  # incoming CONFIG: target inner port


def route_value(dest, kind):
    """Value of a bridge route register: packets leave for global port ``dest`` as ``kind``."""
    check_int("dest", dest, 0, 0xFFF)
    return (int(Kind(kind).value) << 12) | dest


class AnalogModule(wiring.Component):
    """An analog PIM module: ``n_arrays`` arrays behind one bus port (protocol: module doc).

    Ports: ``i`` packets from the bus, ``o`` packets to the bus, ``xbar[a]`` the crossbar
    interface of array ``a``. ``port`` is this module's bus address, ``agg_port`` the
    aggregator's.
    """

    @classmethod
    def check_parameters(cls, n_arrays=2, *, rows=64, cols=128, slc_bits=6, mlc_bits=7,
                         read_cycles=4, port=1, agg_port=3, addr_width=2, data_width=32,
                         tag_width=8):
        """Raise ``ValueError`` for bad parameters; return (array params, words, word bits, array bits)."""
        check_int("n_arrays", n_arrays, 1, 4096)
        params = ArrayParams(rows=rows, cols=cols, slc_bits=slc_bits, mlc_bits=mlc_bits)
        check_int("read_cycles", read_cycles, 1, 1024)
        check_int("addr_width", addr_width, 1, 16)
        check_data_width(data_width)
        check_int("tag_width", tag_width, 2, 32)
        check_int("port", port, 0, 2 ** addr_width - 1)
        check_int("agg_port", agg_port, 0, 2 ** addr_width - 1)
        words = -(-rows * 8 // data_width)
        word_bits, array_bits = ceil_log2(words), ceil_log2(n_arrays)
        need = word_bits + array_bits
        if need > tag_width:
            raise ValueError(f"tag_width must be an integer in {need}..32 to address "
                             f"{n_arrays} arrays of {words} input words, not {tag_width!r}")
        if cols // 4 > 255:
            raise ValueError(f"cols must be a multiple of 8 in 8..1020 for a module, not {cols!r}")
        return params, words, word_bits, array_bits

    def __init__(self, n_arrays=2, *, rows=64, cols=128, slc_bits=6, mlc_bits=7,
                 read_cycles=4, port=1, agg_port=3, addr_width=2, data_width=32, tag_width=8):
        self._params, self._words, self._word_bits, self._array_bits = self.check_parameters(
            n_arrays, rows=rows, cols=cols, slc_bits=slc_bits, mlc_bits=mlc_bits,
            read_cycles=read_cycles, port=port, agg_port=agg_port, addr_width=addr_width,
            data_width=data_width, tag_width=tag_width)
        self._n_arrays, self._read_cycles = n_arrays, read_cycles
        self._port, self._agg_port = port, agg_port
        self._data_width, self._tag_width = data_width, tag_width
        self._layout = packet_layout(addr_width, data_width, tag_width)
        sig = stream.Signature(self._layout)
        super().__init__({
            "i": In(sig),
            "o": Out(sig),
            "xbar": Out(CrossbarSignature(rows, cols, mlc_bits)).array(n_arrays),
        })

    n_arrays = property(lambda self: self._n_arrays)
    params = property(lambda self: self._params)
    words = property(lambda self: self._words, doc="input words per vector and array")
    word_bits = property(lambda self: self._word_bits)
    layout = property(lambda self: self._layout)

    def elaborate(self, platform):
        m = Module()
        p, na, tw = self._params, self._n_arrays, self._tag_width
        nmax = p.cols // 4
        bpw = self._data_width // 8
        entry = data.StructLayout({"out": unsigned(tw - 1), "used": unsigned(1)})
        arrays = []
        for a in range(na):
            arr = AnalogArray(p.rows, p.cols, p.slc_bits, p.mlc_bits, 32, self._read_cycles)
            m.submodules[f"array_{a}"] = arr
            connect(m, arr.xbar, flipped(self.xbar[a]))
            arrays.append(arr)

        tables = Signal(data.ArrayLayout(data.ArrayLayout(entry, nmax), na))
        modes = Signal(data.ArrayLayout(Mode, na))

        # --- input side: configuration and input-register assembly -------------------
        pkt = self.i.payload
        kind = pkt.header.kind
        tag = pkt.header.tag
        widx = tag[:self._word_bits] if self._word_bits else Const(0, 1)
        aidx = tag[self._word_bits:self._word_bits + self._array_bits] if self._array_bits \
            else Const(0, 1)
        cfg = data.View(ARRAY_REGISTERS.layout, pkt.data[:CONFIG_WORD.size])
        reg, value = cfg.register, cfg.value
        full = Signal(na)
        ready_act = Signal()
        for a in range(na):
            got = Signal(self._words, name=f"got_{a}")
            x = Signal(data.ArrayLayout(signed(8), p.rows), name=f"ir_{a}")
            m.d.comb += [
                full[a].eq(got.all()),
                arrays[a].i.valid.eq(full[a]),
                arrays[a].i.payload.x.eq(x),
                arrays[a].i.payload.mode.eq(modes[a]),
            ]
            with m.If(aidx == a):
                m.d.comb += ready_act.eq(~full[a])
            with m.If(arrays[a].i.valid & arrays[a].i.ready):
                m.d.sync += got.eq(0)
            take_a = self.i.valid & self.i.ready & (kind == Kind.ACTIVATION) & (aidx == a)
            for w in range(self._words):
                with m.If(take_a & (widx == w)):
                    m.d.sync += got[w].eq(1)
                    for b in range(bpw):
                        r = w * bpw + b
                        if r < p.rows:
                            m.d.sync += x[r].eq(pkt.data[8 * b:8 * b + 8])
            with m.If(self.i.valid & self.i.ready & (kind == Kind.CONFIG) & (tag == a)):
                with m.If(reg == ArrayReg.MODE):
                    m.d.sync += modes[a].eq(value[0])
                for j in range(nmax):
                    with m.If(reg.as_value() == ArrayReg.TABLE.value + j):
                        m.d.sync += [tables[a][j].out.eq(value[:tw - 1]),
                                     tables[a][j].used.eq(value[15])]
        if na < 2 ** self._array_bits:
            bad_array = aidx >= na
        else:
            bad_array = Const(0)
        # Activations wait for their input register; everything else is taken at once
        # (activations for a non-existent array are dropped).
        m.d.comb += self.i.ready.eq(Mux(kind == Kind.ACTIVATION, ready_act | bad_array, 1))

        # --- output side: one result vector at a time, one partial sum per cycle -----
        m.submodules.arbiter = arb = RoundRobinArbiter(na)
        m.d.comb += arb.request.eq(Cat(arr.o.valid for arr in arrays))
        y = Signal(data.ArrayLayout(signed(32), nmax))
        src = Signal(range(na))
        slot = Signal(range(nmax + 1))
        last = Signal(range(nmax + 1))
        parity = Signal(na)
        cur_parity = Signal()
        with m.FSM(init="IDLE"):
            with m.State("IDLE"):
                m.d.comb += arb.advance.eq(1)
                with m.If(arb.valid):
                    for a in range(na):
                        with m.If(arb.grant == a):
                            m.d.comb += arrays[a].o.ready.eq(1)
                            m.d.sync += [
                                y.eq(arrays[a].o.payload.y),
                                last.eq(Mux(arrays[a].o.payload.mode == Mode.MLC,
                                            p.neurons("mlc"), p.neurons("slc"))),
                                cur_parity.eq(parity[a]),
                                parity[a].eq(~parity[a]),
                            ]
                    m.d.sync += [src.eq(arb.grant), slot.eq(0)]
                    m.next = "SEND"
            with m.State("SEND"):
                ent = tables[src][slot]
                m.d.comb += [
                    self.o.valid.eq(ent.used),
                    self.o.payload.header.source.eq(self._port),
                    self.o.payload.header.destination.eq(self._agg_port),
                    self.o.payload.header.kind.eq(Kind.PARTIAL_SUM),
                    self.o.payload.header.tag.eq(Cat(ent.out, cur_parity)),
                    self.o.payload.data.eq(y[slot]),
                ]
                with m.If(~ent.used | self.o.ready):
                    m.d.sync += slot.eq(slot + 1)
                    with m.If(slot + 1 == last):
                        m.next = "IDLE"
        return m


class Bridge(wiring.Component):
    """Port 0 of a PU's inner bus: global-address packets in and out, input scatter.

    ``ext_i`` / ``ext_o``: packets from / to the global side (``ext_addr_width``
    addresses); ``bus_o`` / ``bus_i``: packets to / from the inner bus (inner addresses).

    In (``ext_i`` -> ``bus_o``):

    * CONFIG: the word's ``target`` = inner port ``p``. ``p = 0`` writes a register of
      :data:`BRIDGE_REGISTERS`; ``0 < p < n_ports``: forwarded to ``p`` (tag and
      ``data[0:24]`` kept); other ``p``: dropped.
    * ACTIVATION, tag ``c << word_bits | w``: one copy per array ``t`` whose bit is set
      in the scatter mask of row chunk ``c``, in array order, to its module with tag
      ``(t % arrays_per_module) << word_bits | w``. Mask of chunk ``c``: registers
      ``BridgeReg.MASK + i`` written with CONFIG tag ``c`` hold mask bits
      ``16 i .. 16 i + 15``. Chunks ``c >= n_chunks`` have no mask (dropped).
    * PARTIAL_SUM: to the aggregator; RESULT: to the port in ``BridgeReg.RESULT_IN``.
      ACTIVATION with ``BridgeReg.ACT_IN`` not 0: to that port, tag kept (a digital
      module's layer engine takes the layer's input rows).

    Out (``bus_i`` -> ``ext_o``, combinational; ``source`` keeps the inner port, a
    global bus overwrites it): kind ``k`` leaves for the global
    destination and with the kind of route register ``BridgeReg.ROUTE + k``
    (:func:`route_value`; reset: destination 0, the IO port, kind unchanged).
    One packet (or one scatter copy) per cycle.
    """

    @staticmethod
    def check_parameters(*, n_modules, arrays_per_module):
        """Return the scatter-mask registers per chunk of ``n_modules * arrays_per_module``
        arrays.

        Raises:
            ValueError: more arrays than 0xF0 mask registers of 16 bits address.
        """
        n_arrays = n_modules * arrays_per_module
        mask_regs = -(-n_arrays // 16)
        if mask_regs > BridgeReg.ROUTE.value - BridgeReg.MASK.value:
            raise ValueError(f"n_modules * arrays_per_module must be an integer in 1..3840 "
                             f"(bridge scatter masks), not {n_arrays!r}")
        return mask_regs

    def __init__(self, *, n_modules, arrays_per_module, word_bits, agg_port, result_in,
                 n_ports, addr_width, ext_addr_width, data_width, tag_width):
        self._mask_regs = self.check_parameters(n_modules=n_modules,
                                                arrays_per_module=arrays_per_module)
        self._n_modules, self._apm, self._word_bits = n_modules, arrays_per_module, word_bits
        self._agg_port, self._result_in, self._n_ports = agg_port, result_in, n_ports
        self._addr_width, self._ext_addr_width = addr_width, ext_addr_width
        self._tag_width = tag_width
        self._n_chunks = 2 ** max(0, min(tag_width - word_bits, 16))
        self._inner = packet_layout(addr_width, data_width, tag_width)
        self._ext = packet_layout(ext_addr_width, data_width, tag_width)
        super().__init__({
            "ext_i": In(stream.Signature(self._ext)),
            "ext_o": Out(stream.Signature(self._ext)),
            "bus_i": In(stream.Signature(self._inner)),
            "bus_o": Out(stream.Signature(self._inner)),
        })

    n_chunks = property(lambda self: self._n_chunks)
    mask_regs = property(lambda self: self._mask_regs, doc="scatter-mask registers per chunk")

    def elaborate(self, platform):
        m = Module()
        na, apm, wb, tw = self._n_modules * self._apm, self._apm, self._word_bits, self._tag_width
        masks = [Signal(16 * self._mask_regs, name=f"mask_{c}") for c in range(self._n_chunks)]
        r_dest = [Signal(self._ext_addr_width, name=f"route_dest_{k}") for k in range(4)]
        r_kind = [Signal(2, init=k, name=f"route_kind_{k}") for k in range(4)]
        result_in = Signal(self._addr_width, init=self._result_in)
        act_in = Signal(self._addr_width)

        # --- in: decode one packet, then emit it (or its scatter copies) ---------------
        pend = Signal(na)
        single = Signal()
        hold = Signal(self._inner)
        busy = Signal()
        m.d.comb += busy.eq(single | pend.any())
        a_dest = Signal(self._addr_width)
        a_tag = Signal(tw)
        a_bit = Signal(na)
        for t in reversed(range(na)):        # the lowest pending array wins
            with m.If(pend[t]):
                m.d.comb += [a_dest.eq(1 + t // apm),
                             a_tag.eq(((t % apm) << wb) | (hold.header.tag[:wb] if wb else 0)),
                             a_bit.eq(1 << t)]
        with m.If(single):
            m.d.comb += [self.bus_o.valid.eq(1), self.bus_o.payload.eq(hold)]
        with m.Else():
            m.d.comb += [
                self.bus_o.valid.eq(pend.any()),
                self.bus_o.payload.header.source.eq(hold.header.source),
                self.bus_o.payload.header.destination.eq(a_dest),
                self.bus_o.payload.header.kind.eq(Kind.ACTIVATION),
                self.bus_o.payload.header.tag.eq(a_tag),
                self.bus_o.payload.data.eq(hold.data),
            ]
        sent = self.bus_o.valid & self.bus_o.ready
        last = single | ((pend & ~a_bit) == 0)
        with m.If(sent):
            m.d.sync += [single.eq(0), pend.eq(pend & ~a_bit)]
        m.d.comb += self.ext_i.ready.eq(~busy | (sent & last))

        pkt = self.ext_i.payload
        tag, dat = pkt.header.tag, pkt.data
        with m.If(self.ext_i.valid & self.ext_i.ready):
            m.d.sync += [hold.header.source.eq(0), hold.header.kind.eq(pkt.header.kind),
                         hold.header.tag.eq(tag), hold.data.eq(dat)]
            with m.Switch(pkt.header.kind):
                with m.Case(Kind.CONFIG):
                    cfg = data.View(BRIDGE_REGISTERS.layout, dat[:CONFIG_WORD.size])
                    target, reg, value = cfg.target, cfg.register.as_value(), cfg.value
                    m.d.sync += hold.data.eq(dat[:CONFIG_TARGET_SHIFT])
                    with m.If(target == 0):
                        for c in range(self._n_chunks):
                            for j in range(self._mask_regs):
                                with m.If((tag == c) & (reg == BridgeReg.MASK.value + j)):
                                    m.d.sync += masks[c][16 * j:16 * j + 16].eq(value)
                        for k in range(4):
                            with m.If(reg == BridgeReg.ROUTE.value + k):
                                m.d.sync += [r_dest[k].eq(value[:12]), r_kind[k].eq(value[12:14])]
                        with m.If(cfg.register == BridgeReg.RESULT_IN):
                            m.d.sync += result_in.eq(value)
                        with m.If(cfg.register == BridgeReg.ACT_IN):
                            m.d.sync += act_in.eq(value)
                    with m.Elif(target < self._n_ports):
                        m.d.sync += [single.eq(1), hold.header.destination.eq(target)]
                with m.Case(Kind.ACTIVATION):
                    chunk = tag[wb:]
                    with m.If(act_in != 0):
                        m.d.sync += [single.eq(1), hold.header.destination.eq(act_in)]
                    with m.Else():
                        for c in range(self._n_chunks):
                            with m.If(chunk == c):
                                m.d.sync += pend.eq(masks[c][:na])
                with m.Case(Kind.PARTIAL_SUM):
                    m.d.sync += [single.eq(1), hold.header.destination.eq(self._agg_port)]
                with m.Case(Kind.RESULT):
                    m.d.sync += [single.eq(1), hold.header.destination.eq(result_in)]

        # --- out: route by kind -------------------------------------------------------
        q = self.bus_i.payload
        m.d.comb += [
            self.ext_o.valid.eq(self.bus_i.valid),
            self.bus_i.ready.eq(self.ext_o.ready),
            # the inner source port (a global bus overwrites it with the PU's port)
            self.ext_o.payload.header.source.eq(q.header.source),
            self.ext_o.payload.header.tag.eq(q.header.tag),
            self.ext_o.payload.data.eq(q.data),
        ]
        with m.Switch(q.header.kind):
            for k in range(4):
                with m.Case(k):
                    m.d.comb += [self.ext_o.payload.header.destination.eq(r_dest[k]),
                                 self.ext_o.payload.header.kind.eq(r_kind[k])]
        return m


class ProcessingUnit(wiring.Component):
    """A PU: analog modules, aggregator, digital modules, inner bus and bridge.

    Ports: ``i`` packets into the PU, ``o`` packets out of it (global addresses, through
    the :class:`Bridge` on inner port 0), ``xbar[t]`` crossbar interface of array
    ``t = module * arrays_per_module + a``; with ``engine``, ``pim[d]`` the digital PIM
    arrays of digital module ``d``.
    Parameters: counts (``n_modules`` 1..64, ``arrays_per_module`` 1..4096, ``n_digital``
    0..8 digital modules), array geometry (as :class:`AnalogArray`; ``rows`` must be
    ``data_width // 8`` times a power of two so that a layer's input word index splits
    into chunk and word bits), ``data_width``, ``fifo_depth`` (bus FIFOs), ``tag_width``
    (2..16: output index bits + 1 parity bit), ``max_parts`` (most row chunks per output
    the aggregator counts), ``ext_addr_width`` (1..12, global address bits of ``i`` / ``o``),
    ``degree`` (GELU's exp degree in the digital modules), ``engine`` (None, or the
    parameters of the digital modules' layer engine, :data:`~hyflexpim.rtl.digital.ENGINE_DEFAULTS`:
    attention on the digital PIM and the layer's FP16 operations,
    :class:`~hyflexpim.rtl.digital.LayerEngine`).
    """

    @classmethod
    def check_parameters(cls, n_modules=2, arrays_per_module=2, *, rows=64, cols=128,
                         slc_bits=6, mlc_bits=7, read_cycles=4, data_width=32, fifo_depth=4,
                         tag_width=8, max_parts=16, n_digital=1, ext_addr_width=5, degree=4,
                         engine=None):
        """Check the parameters without building the PU; return all of them (defaults
        filled in; ``engine`` only when given), the keyword arguments of an equal PU.

        Raises:
            ParameterTypeError: a parameter is not an integer.
            ValueError: a parameter is out of its range (the message names it).
        """
        check_int("n_modules", n_modules, 1, 64)
        check_int("arrays_per_module", arrays_per_module, 1, 4096)
        check_int("n_digital", n_digital, 0, 8)
        check_int("tag_width", tag_width, 2, 16)
        check_int("ext_addr_width", ext_addr_width, 1, 12)
        addr_width = max(1, ceil_log2(n_modules + 2 + n_digital))
        _, words, word_bits, _ = AnalogModule.check_parameters(
            arrays_per_module, rows=rows, cols=cols, slc_bits=slc_bits, mlc_bits=mlc_bits,
            read_cycles=read_cycles, port=1, agg_port=n_modules + 1, addr_width=addr_width,
            data_width=data_width, tag_width=tag_width)
        if rows * 8 != words * data_width or words != 1 << word_bits:
            raise ValueError(f"rows must be data_width/8 ({data_width // 8}) times a power of "
                             f"two, not {rows!r}")
        check_int("fifo_depth", fifo_depth, 2, 1024)
        check_int("max_parts", max_parts, 1, 65535)
        Bridge.check_parameters(n_modules=n_modules, arrays_per_module=arrays_per_module)
        if engine is not None and not n_digital:
            raise ValueError("engine needs a digital module (n_digital >= 1)")
        if n_digital:
            DigitalModule.check_parameters(port=n_modules + 2, addr_width=addr_width,
                                           data_width=data_width, tag_width=tag_width,
                                           degree=degree, engine=engine,
                                           n_arrays=n_modules * arrays_per_module,
                                           arrays_per_module=arrays_per_module,
                                           word_bits=word_bits)
        kw = dict(n_modules=n_modules, arrays_per_module=arrays_per_module, rows=rows,
                  cols=cols, slc_bits=slc_bits, mlc_bits=mlc_bits, read_cycles=read_cycles,
                  data_width=data_width, fifo_depth=fifo_depth, tag_width=tag_width,
                  max_parts=max_parts, n_digital=n_digital, ext_addr_width=ext_addr_width,
                  degree=degree)
        if engine is not None:
            kw["engine"] = engine
        return kw

    def __init__(self, n_modules=2, arrays_per_module=2, *, rows=64, cols=128, slc_bits=6,
                 mlc_bits=7, read_cycles=4, data_width=32, fifo_depth=4, tag_width=8,
                 max_parts=16, n_digital=1, ext_addr_width=5, degree=4, engine=None):
        self.check_parameters(
            n_modules, arrays_per_module, rows=rows, cols=cols, slc_bits=slc_bits,
            mlc_bits=mlc_bits, read_cycles=read_cycles, data_width=data_width,
            fifo_depth=fifo_depth, tag_width=tag_width, max_parts=max_parts,
            n_digital=n_digital, ext_addr_width=ext_addr_width, degree=degree, engine=engine)
        self._n_modules, self._apm, self._n_digital = n_modules, arrays_per_module, n_digital
        self._n_ports = n_modules + 2 + n_digital
        self._addr_width = max(1, ceil_log2(self._n_ports))
        self._ext_addr_width, self._degree = ext_addr_width, degree
        self._module_kw = dict(rows=rows, cols=cols, slc_bits=slc_bits, mlc_bits=mlc_bits,
                               read_cycles=read_cycles, addr_width=self._addr_width,
                               data_width=data_width, tag_width=tag_width)
        self._params, self._words, self._word_bits, _ = AnalogModule.check_parameters(
            arrays_per_module, port=1, agg_port=self.agg_port, **self._module_kw)
        self._data_width, self._fifo_depth = data_width, fifo_depth
        self._tag_width, self._max_parts = tag_width, max_parts
        self._bridge_kw = dict(n_modules=n_modules, arrays_per_module=arrays_per_module,
                               word_bits=self._word_bits, agg_port=self.agg_port,
                               result_in=self.digital_port(0) if n_digital else 0,
                               n_ports=self._n_ports, addr_width=self._addr_width,
                               ext_addr_width=ext_addr_width, data_width=data_width,
                               tag_width=tag_width)
        self._digital_kw = dict(addr_width=self._addr_width, data_width=data_width,
                                tag_width=tag_width, degree=degree, engine=engine,
                                n_arrays=n_modules * arrays_per_module,
                                arrays_per_module=arrays_per_module, word_bits=self._word_bits)
        self._n_chunks = 2 ** max(0, tag_width - self._word_bits)
        self._layout = packet_layout(self._addr_width, data_width, tag_width)
        self._ext_layout = packet_layout(ext_addr_width, data_width, tag_width)
        sig = stream.Signature(self._ext_layout)
        ports = {
            "i": In(sig),
            "o": Out(sig),
            "xbar": Out(CrossbarSignature(rows, cols, mlc_bits)).array(n_modules * arrays_per_module),
        }
        self._engine = None
        if engine is not None:
            self._engine = DigitalModule.check_parameters(engine=engine)
            e = self._engine
            ports["pim"] = Out(DigitalArraySignature(e["pim_arrays"], e["pim_rows"],
                                                     e["pim_cols"])).array(n_digital)
        super().__init__(ports)

    n_modules = property(lambda self: self._n_modules)
    arrays_per_module = property(lambda self: self._apm)
    n_digital = property(lambda self: self._n_digital)
    n_arrays = property(lambda self: self._n_modules * self._apm)
    n_ports = property(lambda self: self._n_ports)
    addr_width = property(lambda self: self._addr_width)
    ext_addr_width = property(lambda self: self._ext_addr_width)
    layout = property(lambda self: self._layout, doc="packet layout of the inner bus")
    ext_layout = property(lambda self: self._ext_layout, doc="packet layout of ``i`` / ``o``")
    params = property(lambda self: self._params)
    words = property(lambda self: self._words, doc="input words per array vector (row chunk)")
    word_bits = property(lambda self: self._word_bits)
    n_chunks = property(lambda self: self._n_chunks, doc="row chunks the bridge can scatter")
    mask_regs = property(lambda self: -(-self.n_arrays // 16),
                         doc="bridge scatter-mask registers per row chunk (16 arrays each)")
    data_width = property(lambda self: self._data_width)
    tag_width = property(lambda self: self._tag_width)
    engine = property(lambda self: None if self._engine is None else dict(self._engine),
                      doc="the digital modules' layer-engine parameters (None: SFU path only)")
    BRIDGE_PORT = 0

    def digital_module(self, d=0):
        """A :class:`DigitalModule` equal to digital module ``d`` (its registers, engine
        and instruction layout; never elaborated)."""
        dig = DigitalModule(port=self.digital_port(d), **self._digital_kw)
        dig._MustUse__silence = True
        return dig

    def module_port(self, k):
        """Bus port of analog module ``k``."""
        return 1 + check_int("k", k, 0, self._n_modules - 1)

    @property
    def agg_port(self):
        return self._n_modules + 1

    def digital_port(self, d):
        """Bus port of digital module ``d``."""
        return self._n_modules + 2 + check_int("d", d, 0, self._n_digital - 1)

    def array_location(self, t):
        """(bus port, array index in its module) of PU array ``t``."""
        check_int("t", t, 0, self.n_arrays - 1)
        return self.module_port(t // self._apm), t % self._apm

    def elaborate(self, platform):
        m = Module()
        m.submodules.bus = bus = InnerBus(self._n_ports, self._data_width, self._fifo_depth,
                                          addr_width=self._addr_width, tag_width=self._tag_width)
        m.submodules.bridge = bridge = Bridge(**self._bridge_kw)
        m.submodules.aggregator = agg = PartialSumAggregator(
            2 ** self._tag_width, self._max_parts, port=self.agg_port, init_dest=0,
            addr_width=self._addr_width, data_width=self._data_width, tag_width=self._tag_width)
        connect(m, flipped(self.i), bridge.ext_i)
        connect(m, bridge.ext_o, flipped(self.o))
        connect(m, bridge.bus_o, bus.i[0])
        connect(m, bus.o[0], bridge.bus_i)
        for k in range(self._n_modules):
            mod = AnalogModule(self._apm, port=self.module_port(k), agg_port=self.agg_port,
                               **self._module_kw)
            m.submodules[f"module_{k}"] = mod
            connect(m, bus.o[self.module_port(k)], mod.i)
            connect(m, mod.o, bus.i[self.module_port(k)])
            for a in range(self._apm):
                connect(m, mod.xbar[a], flipped(self.xbar[k * self._apm + a]))
        connect(m, bus.o[self.agg_port], agg.i)
        connect(m, agg.o, bus.i[self.agg_port])
        for d in range(self._n_digital):
            dig = DigitalModule(port=self.digital_port(d), **self._digital_kw)
            m.submodules[f"digital_{d}"] = dig
            connect(m, bus.o[self.digital_port(d)], dig.i)
            connect(m, dig.o, bus.i[self.digital_port(d)])
            if self._engine is not None:
                connect(m, dig.pim, flipped(self.pim[d]))
        return m

BLOCKS = [
    Block("analog_module", AnalogModule,
          dict(n_arrays=2, rows=64, cols=128, slc_bits=6, mlc_bits=7, read_cycles=4,
               port=1, agg_port=3, addr_width=2, data_width=32, tag_width=8),
          "analog PIM module: arrays behind one bus port, input-register assembly from "
          "activation packets, partial sums out as packets",
          small=dict(rows=16, cols=32)),
    Block("pu", ProcessingUnit,
          dict(n_modules=2, arrays_per_module=2, rows=64, cols=128, slc_bits=6, mlc_bits=7,
               read_cycles=4, data_width=32, fifo_depth=4, tag_width=8, max_parts=16,
               n_digital=1, ext_addr_width=5, degree=4),
          "processing unit: analog modules, partial-sum aggregator, digital module (SFU "
          "path), inner-unit bus, bridge to the global bus",
          small=dict(rows=16, cols=32, tag_width=6)),
]

REGISTERS = [BRIDGE_REGISTERS, ARRAY_REGISTERS]
