"""Packet fabric of a processing unit: shared buses, fair arbiter, partial-sum aggregation.

Packet format (one bus word, :func:`packet_layout`)::

    header  source       unsigned(addr_width)  port the packet entered by (stamped by the bus)
            destination  unsigned(addr_width)  port it leaves by
            kind         Kind                  activation, partial sum, result, config
            tag          unsigned(tag_width)   meaning depends on kind (see below)
    data                 unsigned(data_width)  payload word

The same format runs on the inner-unit bus of a PU (:class:`InnerBus`: analog modules,
digital modules, the aggregator, the PU's bridge to the global bus) and on the global
bus of the chip (:class:`GlobalBus`: the IO port and the PUs). Both are the same
component, :class:`SharedBus`: one word per cycle at most crosses it (a shared bus,
no crossbar), chosen by a round-robin :class:`RoundRobinArbiter` among the input
ports whose head packet's destination can take it. Every port has an input FIFO and
an output FIFO (``amaranth.lib.fifo.SyncFIFOBuffered``); every stream has
backpressure.

Guarantees (checked by ``tb/bus_tb.py`` under random traffic and backpressure and by
the formal harness ``BusOrderHarness`` in ``sim/formal_props.py``):

* no packet is lost, duplicated, altered or reordered between one source port and one
  destination port; the ``source`` field on the way out is the input port's number;
* bounded wait: a port whose head packet can go (its destination FIFO has room) in
  every cycle from some cycle on is granted after at most ``n_ports - 1`` grants to
  other ports (``SharedBus.wait_bound``);
* a packet whose destination is not a port (``destination >= n_ports``) is taken off
  its input FIFO and dropped, and ``mon.bad_dest`` pulses for that cycle (a wrong
  address must not block its port forever).

:class:`PartialSumAggregator` adds the INT32 partial sums of the row chunks of one
output: every packet's tag selects an accumulator slot; after ``parts`` packets for a
slot it emits one RESULT packet with the total and clears the slot.
"""

from amaranth.hdl import Signal, Module, Const, Cat, Mux, unsigned, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.utils import ceil_log2

from ..base import Block, check_int, check_pow2
from .registers import CONFIG_WORD, Register, RegisterMap

__all__ = [
    "Kind", "header_layout", "packet_layout", "RoundRobinArbiter", "BusMonitorSignature",
    "SharedBus", "InnerBus", "GlobalBus", "PartialSumAggregator", "AggReg", "AGG_REGISTERS",
    "AGG_REG_PARTS", "AGG_REG_DEST", "config_word", "pack_packet", "unpack_packet",
    "check_data_width", "BLOCKS", "REGISTERS",
]


class Kind(enum.Enum, shape=2):
    """What a packet carries."""
    ACTIVATION = 0   # input activations (data: packed INT8), tag: word position
    PARTIAL_SUM = 1  # an INT32 partial sum of one output, tag: accumulator slot
    RESULT = 2       # a finished output (INT32), tag: the slot it was summed in
    CONFIG = 3       # configuration write: data is a CONFIG word (rtl/registers.py)


def check_data_width(data_width, *, pow2=False):
    """Return ``data_width`` if it is a bus word width: a multiple of 8 (a power of two
    when ``pow2``) in 32..1024.

    Raises:
        ParameterTypeError: not an integer.
        ValueError: outside 32..1024, or not a multiple of 8 (a power of two).
    """
    check_int("data_width", data_width, 32, 1024)
    if data_width % 8:
        raise ValueError(f"data_width must be a multiple of 8 in 32..1024, not {data_width!r}")
    if pow2:
        check_pow2("data_width", data_width, 32, 1024)
    return data_width


def header_layout(addr_width=5, tag_width=8):
    """``data.StructLayout`` of a packet header (see the module documentation)."""
    check_int("addr_width", addr_width, 1, 16)
    check_int("tag_width", tag_width, 1, 32)
    return data.StructLayout({
        "source": unsigned(addr_width),
        "destination": unsigned(addr_width),
        "kind": Kind,
        "tag": unsigned(tag_width),
    })


def packet_layout(addr_width=5, data_width=32, tag_width=8):
    """``data.StructLayout`` of one bus word: ``{"header": ..., "data": unsigned(data_width)}``."""
    check_data_width(data_width)
    return data.StructLayout({
        "header": header_layout(addr_width, tag_width),
        "data": unsigned(data_width),
    })


def pack_packet(layout, source, destination, kind, tag, data):
    """Integer bits of a packet of ``layout`` (what a testbench drives on a payload)."""
    return layout.const({"header": {"source": source, "destination": destination,
                                    "kind": Kind(kind), "tag": tag},
                         "data": data}).as_bits()


def unpack_packet(layout, bits):
    """``(source, destination, kind, tag, data)`` of the integer ``bits`` of a packet."""
    c = layout.from_bits(bits)
    return (int(c.header.source), int(c.header.destination), Kind(c.header.kind),
            int(c.header.tag), int(c.data))


def config_word(register, value):
    """The ``data`` of a CONFIG packet writing ``value`` (0..65535) to ``register``
    (0..255, a number or a register enum member), a
    :data:`~hyflexpim.rtl.registers.CONFIG_WORD` for inner port 0."""
    number = register.value if isinstance(register, enum.Enum) else register
    check_int("register", number, 0, 255)
    check_int("value", value, 0, 0xFFFF)
    return CONFIG_WORD.const({"value": value, "register": number}).as_bits()


class RoundRobinArbiter(wiring.Component):
    """Round-robin arbiter over ``n`` requesters.

    ``request`` (n bits) in; ``grant`` (index) and ``valid`` out, combinational. A grant
    is taken when ``advance`` is high in the same cycle (``valid & advance``); the
    priority then starts just after the granted requester. A requester that requests
    continuously is granted after at most ``n - 1`` grants to others.

    ``first`` (a read-only observation signal, not a port: the formal harness reads it)
    is the arbiter's only state, the requester with the highest priority this cycle.
    """

    def __init__(self, n):
        self._n = check_int("n", n, 1, 1024)
        self.first = Signal(range(self._n), init=0)
        super().__init__({
            "request": In(n),
            "advance": In(1),
            "grant": Out(range(n)),
            "valid": Out(1),
        })

    @property
    def n(self):
        return self._n

    @property
    def wait_bound(self):
        """Most grants to other requesters before a continuous requester is served."""
        return self._n - 1

    def elaborate(self, platform):
        m = Module()
        n = self._n
        # ``first``: the requester with the highest priority (just after the last grant).
        # Grant the lowest-numbered request at or after ``first``; if there is none, the
        # lowest-numbered request overall.
        first = self.first
        upper = Signal(n)
        m.d.comb += [
            self.valid.eq(self.request.any()),
            upper.eq(self.request & ~((Const(1, n + 1) << first) - 1)[:n]),
        ]

        def lowest(bits):
            expr = Const(0, range(n))
            for k in range(n - 1, -1, -1):
                expr = Mux(bits[k], k, expr)
            return expr

        m.d.comb += self.grant.eq(Mux(upper.any(), lowest(upper), lowest(self.request)))
        with m.If(self.valid & self.advance):
            m.d.sync += first.eq(Mux(self.grant == n - 1, 0, self.grant + 1))
        return m


class BusMonitorSignature(wiring.Signature):
    """Observation ports of a bus (for testbenches and benchmarks), all outputs.

    ``request``: ports whose head packet could cross this cycle; ``grant`` / ``valid``:
    the port crossing this cycle; ``bad_dest``: a packet with an unknown destination
    was dropped this cycle.
    """

    def __init__(self, n_ports):
        self._n_ports = n_ports
        super().__init__({
            "request": Out(n_ports),
            "grant": Out(range(n_ports)),
            "valid": Out(1),
            "bad_dest": Out(1),
        })

    @property
    def n_ports(self):
        return self._n_ports

    def __eq__(self, other):
        return isinstance(other, BusMonitorSignature) and other.n_ports == self.n_ports

    def __repr__(self):
        return f"BusMonitorSignature({self._n_ports})"


class SharedBus(wiring.Component):
    """A shared, destination-addressed packet bus with ``n_ports`` ports.

    Ports (seen from the bus): ``i[k]`` In(stream of packets) that port ``k`` sends,
    ``o[k]`` Out(stream of packets) that port ``k`` receives, ``mon`` observation outputs.
    Each input has a FIFO of ``fifo_depth`` words, each output another one. One word
    per cycle crosses the bus; input-FIFO to output-FIFO takes one cycle, so the latency
    of an uncontended transfer, ``i[k]`` accepted to ``o[d]`` valid, is
    :attr:`latency` cycles.

    Parameters: ``n_ports`` 2..2**addr_width, ``data_width`` a multiple of 8 in 32..1024,
    ``fifo_depth`` 2..1024 (at least 3 for one word per cycle into one destination: a
    ``SyncFIFOBuffered`` of depth 2 takes a word every other cycle), ``addr_width`` 1..16
    (``None``: the smallest that numbers the ports), ``tag_width`` 1..32.
    """

    def __init__(self, n_ports, data_width=32, fifo_depth=4, *, addr_width=None, tag_width=8):
        check_int("n_ports", n_ports, 2, 65536)
        if addr_width is None:
            addr_width = max(1, ceil_log2(n_ports))
        check_int("addr_width", addr_width, 1, 16)
        if n_ports > 2 ** addr_width:
            raise ValueError(f"n_ports must be an integer in 2..{2 ** addr_width} "
                             f"(addr_width {addr_width}), not {n_ports!r}")
        check_data_width(data_width)
        check_int("fifo_depth", fifo_depth, 2, 1024)
        check_int("tag_width", tag_width, 1, 32)
        self._n_ports = n_ports
        self._data_width = data_width
        self._fifo_depth = fifo_depth
        self._addr_width = addr_width
        self._tag_width = tag_width
        self._layout = packet_layout(addr_width, data_width, tag_width)
        sig = stream.Signature(self._layout)
        super().__init__({
            "i": In(sig).array(n_ports),
            "o": Out(sig).array(n_ports),
            "mon": Out(BusMonitorSignature(n_ports)),
        })

    n_ports = property(lambda self: self._n_ports)
    data_width = property(lambda self: self._data_width)
    fifo_depth = property(lambda self: self._fifo_depth)
    addr_width = property(lambda self: self._addr_width)
    tag_width = property(lambda self: self._tag_width)
    layout = property(lambda self: self._layout, doc="the packet ``StructLayout``")

    @property
    def wait_bound(self):
        """Most grants to other ports before a continuously ready port is served."""
        return self._n_ports - 1

    @property
    def latency(self):
        """Cycles from ``i[k]`` transfer to ``o[d].valid``, bus idle and ``o[d]`` ready."""
        return 4   # input FIFO (2: buffered read), crossing (1), output FIFO read register (1)

    def elaborate(self, platform):
        m = Module()
        n, width = self._n_ports, self._layout.size
        m.submodules.arbiter = arb = RoundRobinArbiter(n)
        ififo, ofifo = [], []
        for k in range(n):
            fi = SyncFIFOBuffered(width=width, depth=self._fifo_depth)
            fo = SyncFIFOBuffered(width=width, depth=self._fifo_depth)
            m.submodules[f"in_fifo_{k}"] = fi
            m.submodules[f"out_fifo_{k}"] = fo
            ififo.append(fi)
            ofifo.append(fo)
            # Input: stamp the source with the port number.
            pkt = Signal(self._layout)
            m.d.comb += [
                pkt.eq(self.i[k].payload),
                pkt.header.source.eq(k),
                fi.w_stream.payload.eq(pkt),
                fi.w_stream.valid.eq(self.i[k].valid),
                self.i[k].ready.eq(fi.w_stream.ready),
            ]
            m.d.comb += [
                self.o[k].payload.eq(fo.r_stream.payload),
                self.o[k].valid.eq(fo.r_stream.valid),
                fo.r_stream.ready.eq(self.o[k].ready),
            ]

        heads = [data.View(self._layout, fi.r_stream.payload) for fi in ififo]
        bad = Signal(n)
        req = Signal(n)
        for k in range(n):
            dest = heads[k].header.destination
            ok = Signal(name=f"dest_ready_{k}")
            for d in range(n):
                with m.If(dest == d):
                    m.d.comb += ok.eq(ofifo[d].w_stream.ready)
            if n < 2 ** self._addr_width:
                m.d.comb += bad[k].eq(ififo[k].r_stream.valid & (dest >= n))
            m.d.comb += req[k].eq(ififo[k].r_stream.valid & (ok | bad[k]))
        m.d.comb += [arb.request.eq(req), arb.advance.eq(1)]

        # The crossing: the granted head moves into its destination's output FIFO.
        sel = Signal(self._layout)
        for k in range(n):
            with m.If(arb.grant == k):
                m.d.comb += sel.eq(heads[k])
        for k in range(n):
            m.d.comb += ififo[k].r_stream.ready.eq(arb.valid & (arb.grant == k))
        for d in range(n):
            m.d.comb += [
                ofifo[d].w_stream.payload.eq(sel),
                ofifo[d].w_stream.valid.eq(arb.valid & (sel.header.destination == d)),
            ]
        m.d.comb += [
            self.mon.request.eq(req),
            self.mon.grant.eq(arb.grant),
            self.mon.valid.eq(arb.valid),
            self.mon.bad_dest.eq(arb.valid & (bad.bit_select(arb.grant, 1))),
        ]
        return m


class InnerBus(SharedBus):
    """Inner-unit shared bus of a PU: ``n_ports`` modules (analog, digital, aggregator, bridge)."""


class GlobalBus(SharedBus):
    """Global bus of the chip: port 0 is the IO port, ports ``1..n_pus`` the PUs.

    Same packet format and behaviour as :class:`InnerBus` (``n_pus`` 1..2**addr_width - 1).
    """

    IO_PORT = 0

    def __init__(self, n_pus, data_width=32, fifo_depth=4, *, addr_width=None, tag_width=8):
        check_int("n_pus", n_pus, 1, 65535)
        if addr_width is not None and n_pus + 1 > 2 ** check_int("addr_width", addr_width, 1, 16):
            raise ValueError(f"n_pus must be an integer in 1..{2 ** addr_width - 1} "
                             f"(addr_width {addr_width}), not {n_pus!r}")
        self._n_pus = n_pus
        super().__init__(n_pus + 1, data_width, fifo_depth, addr_width=addr_width,
                         tag_width=tag_width)

    n_pus = property(lambda self: self._n_pus)

    def pu_port(self, index):
        """Bus port number of PU ``index`` (0-based)."""
        check_int("index", index, 0, self._n_pus - 1)
        return index + 1


class AggReg(enum.Enum, shape=8):
    """CONFIG registers of the :class:`PartialSumAggregator` (map: :data:`AGG_REGISTERS`)."""
    PARTS = 0
    DEST = 1


AGG_REGISTERS = RegisterMap("Partial-sum aggregator", AggReg, {
    AggReg.PARTS: Register("`init_parts` (1)", "partial sums per output, 1..`max_parts` "
                           "(0 reads as 1): the number of row chunks of the layer. The RTL does not "
                           "check the range: it keeps the low `ceil(log2(max_parts + 1))` bits "
                           "of the word (with `max_parts` 4, 8 is stored as 0 and reads as 1; "
                           "5..7 are kept), so the IO side writes only 1..`max_parts` "
                           "(`tb/psum_agg_tb.py::boundaries_tags_parts_dest`)"),
    AggReg.DEST: Register("`init_dest` (0)", "bus port the RESULT packets go to"),
}, doc="A CONFIG packet to the aggregator's bus port writes one register.")
AGG_REG_PARTS = AggReg.PARTS.value     # the register numbers, for packet-level code
AGG_REG_DEST = AggReg.DEST.value


class PartialSumAggregator(wiring.Component):
    """Adds the partial sums of each output and emits the total once all have arrived.

    ``i``: In(stream of packets). A PARTIAL_SUM packet adds its ``data`` (two's
    complement, low ``result_width`` bits) into accumulator slot ``tag mod slots``; the
    ``parts``-th packet of a slot emits a RESULT packet (``source`` = ``port``,
    ``destination`` = the configured destination, same tag, data = the wrapped
    ``result_width``-bit sum) on ``o`` and clears the slot. A CONFIG packet writes one
    register of :data:`AGG_REGISTERS` (parts per output, result destination). Other
    kinds are consumed and ignored. Partial sums of
    different slots may interleave freely; one packet is taken per cycle.

    Parameters: ``slots`` 1..65536 (power of two), ``max_parts`` 1..65535, ``port``
    (this unit's bus address), ``init_parts``, ``init_dest``: register values after
    reset. Packet-format parameters as for :class:`SharedBus`.
    """

    def __init__(self, slots=128, max_parts=16, *, result_width=32, port=0, init_parts=1,
                 init_dest=0, addr_width=5, data_width=32, tag_width=8):
        check_pow2("slots", slots, 1, 65536)
        if slots > 2 ** tag_width:
            raise ValueError(f"slots must be a power of two in 1..{2 ** tag_width} "
                             f"(tag_width {tag_width}), not {slots!r}")
        check_int("max_parts", max_parts, 1, 65535)
        check_data_width(data_width)
        check_int("result_width", result_width, 1, data_width)
        check_int("port", port, 0, 2 ** addr_width - 1)
        check_int("init_parts", init_parts, 1, max_parts)
        check_int("init_dest", init_dest, 0, 2 ** addr_width - 1)
        self._slots, self._max_parts = slots, max_parts
        self._result_width, self._port = result_width, port
        self._init_parts, self._init_dest = init_parts, init_dest
        self._layout = packet_layout(addr_width, data_width, tag_width)
        self._addr_width = addr_width
        sig = stream.Signature(self._layout)
        super().__init__({"i": In(sig), "o": Out(sig)})

    slots = property(lambda self: self._slots)
    max_parts = property(lambda self: self._max_parts)
    layout = property(lambda self: self._layout)

    def elaborate(self, platform):
        m = Module()
        rw = self._result_width
        cnt_shape = unsigned(ceil_log2(self._max_parts + 1))
        entry = data.StructLayout({"sum": signed(rw), "count": cnt_shape})
        abits = ceil_log2(self._slots)
        m.submodules.acc = acc = Memory(shape=entry, depth=self._slots, init=[])
        wr = acc.write_port()
        rd = acc.read_port(transparent_for=(wr,))

        parts = Signal(cnt_shape, init=self._init_parts)
        dest = Signal(self._addr_width, init=self._init_dest)

        # Stage 1: the packet whose slot is being read.
        valid1 = Signal()
        pkt1 = Signal(self._layout)
        is_psum1 = pkt1.header.kind == Kind.PARTIAL_SUM
        new_sum = Signal(signed(rw))
        new_cnt = Signal(cnt_shape)
        done = Signal()
        m.d.comb += [
            new_sum.eq(rd.data.sum + pkt1.data[:rw].as_signed()),
            new_cnt.eq(rd.data.count + 1),
            done.eq(is_psum1 & ((new_cnt >= parts) | (parts == 0))),
        ]
        advance = Signal()
        m.d.comb += advance.eq(~done | ~self.o.valid | self.o.ready)
        take = Signal()
        m.d.comb += [
            self.i.ready.eq(~valid1 | advance),
            take.eq(self.i.valid & self.i.ready),
            rd.addr.eq(self.i.payload.header.tag[:abits] if abits else 0),
            rd.en.eq(take),
        ]
        with m.If(take):
            m.d.sync += [valid1.eq(1), pkt1.eq(self.i.payload)]
        with m.Elif(advance):
            m.d.sync += valid1.eq(0)

        m.d.comb += [
            wr.addr.eq(pkt1.header.tag[:abits] if abits else 0),
            wr.en.eq(valid1 & advance & is_psum1),
            wr.data.sum.eq(Mux(done, 0, new_sum)),
            wr.data.count.eq(Mux(done, 0, new_cnt)),
        ]
        cfg = data.View(AGG_REGISTERS.layout, pkt1.data[:CONFIG_WORD.size])
        with m.If(valid1 & advance & (pkt1.header.kind == Kind.CONFIG)):
            with m.Switch(cfg.register):
                with m.Case(AggReg.PARTS):
                    m.d.sync += parts.eq(cfg.value)
                with m.Case(AggReg.DEST):
                    m.d.sync += dest.eq(cfg.value)

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(valid1 & done & advance):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.header.source.eq(self._port),
                self.o.payload.header.destination.eq(dest),
                self.o.payload.header.kind.eq(Kind.RESULT),
                self.o.payload.header.tag.eq(pkt1.header.tag),
                self.o.payload.data.eq(new_sum.as_unsigned()),
            ]
        return m


BLOCKS = [
    Block("inner_bus", InnerBus,
          dict(n_ports=34, data_width=32, fifo_depth=4, tag_width=8),
          "inner-unit shared packet bus of a PU (24 analog + 8 digital modules, aggregator, "
          "bridge), round-robin arbiter, per-port FIFOs",
          small=dict(n_ports=4)),
    Block("global_bus", GlobalBus,
          dict(n_pus=24, data_width=32, fifo_depth=4, tag_width=8),
          "global packet bus of the chip: IO port + PUs, same packet format as the inner bus",
          small=dict(n_pus=2)),
    Block("psum_agg", PartialSumAggregator,
          dict(slots=128, max_parts=16, result_width=32, port=0, init_parts=1, init_dest=0,
               addr_width=5, data_width=32, tag_width=8),
          "partial-sum aggregation: adds the INT32 partials of each output, emits the total",
          small=dict(slots=16, max_parts=4)),
]

REGISTERS = [AGG_REGISTERS]
