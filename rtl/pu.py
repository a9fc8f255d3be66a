"""Processing unit (PU): analog modules, partial-sum aggregation and the inner-unit bus.

Structure (inner-bus port numbers)::

    port 0               bridge: the PU's ``i`` / ``o`` packet streams (to the global bus side)
    ports 1..n_modules   analog modules (:class:`AnalogModule`), each with
                         ``arrays_per_module`` arrays (:class:`~hyflexpim.rtl.analog.AnalogArray`)
    port n_modules + 1   partial-sum aggregator (:class:`~hyflexpim.rtl.bus.PartialSumAggregator`)

Everything the PU does is driven by packets (format of :mod:`hyflexpim.rtl.bus`) that
enter by ``i``; results leave by ``o``. Packets on ``i`` / ``o`` carry inner-bus
addresses (``PU.MODULE_PORT(k)``, ``PU.agg_port``, 0 for the bridge).

Analog module protocol (tag and data of the packets it takes, ``a`` = array in module):

* CONFIG, tag ``a``, data ``config_word(reg, value)``: ``reg`` < ``cols // 4``: output
  table entry ``reg`` of array ``a`` = ``value`` (bit 15: entry used, low bits: the
  output index the neuron slot ``reg`` computes); ``reg`` 255 (:data:`REG_MODE`): cell
  mode of array ``a`` (0 SLC, 1 MLC). After reset every entry is unused and every array SLC.
* ACTIVATION, tag ``a << word_bits | w``: word ``w`` of the input register of array ``a``
  (``data_width // 8`` INT8, element ``w * data_width // 8 + b`` in byte ``b``). When
  every word of a vector has arrived (in any order), the vector goes to the array; the
  register then takes the next vector while the array computes.
* Each result vector of an array becomes one PARTIAL_SUM packet per used table entry,
  in slot order, to the aggregator: tag ``parity << (tag_width - 1) | output index``,
  data the INT32 result (sign-extended), where ``parity`` counts the array's result
  vectors modulo 2. The aggregator adds the partials of one tag (``parts`` of them: the
  number of row chunks) and sends the RESULT, same tag, to its destination register
  (0: the bridge, i.e. ``o``).

Sequencing rule (the IO side's duty): vector ``v + 2`` may be sent only once every
result of vector ``v`` has left by ``o`` (two vectors in flight, told apart by
``parity``).

The digital modules and the SFU are not part of this PU yet (see docs/bus.md).
"""

from amaranth.hdl import Signal, Module, Const, Cat, Mux, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..models.array import ArrayParams
from .analog import AnalogArray, CrossbarSignature, Mode
from .bus import (Kind, InnerBus, PartialSumAggregator, RoundRobinArbiter, packet_layout,
                  _check_int, _check_data_width)
from ..sim.blocks import Block

__all__ = ["REG_MODE", "ENTRY_USED", "AnalogModule", "ProcessingUnit", "BLOCKS"]

REG_MODE = 255          # CONFIG register of an array's cell mode
ENTRY_USED = 1 << 15    # bit of an output-table value that marks the entry used


def _connect_xbar(m, outer, inner):
    """Pass an array's crossbar port group ``inner`` out through ``outer``."""
    m.d.comb += [
        outer.wl.eq(inner.wl),
        outer.sample.eq(inner.sample),
        outer.sel.eq(inner.sel),
        outer.trial.eq(inner.trial),
        inner.cmp.eq(outer.cmp),
    ]


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
        _check_int("n_arrays", n_arrays, 1, 4096)
        params = ArrayParams(rows=rows, cols=cols, slc_bits=slc_bits, mlc_bits=mlc_bits)
        _check_int("read_cycles", read_cycles, 1, 1024)
        _check_int("addr_width", addr_width, 1, 16)
        _check_data_width(data_width)
        _check_int("tag_width", tag_width, 2, 32)
        _check_int("port", port, 0, 2 ** addr_width - 1)
        _check_int("agg_port", agg_port, 0, 2 ** addr_width - 1)
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
            _connect_xbar(m, self.xbar[a], arr.xbar)
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
        reg = pkt.data[16:24]
        value = pkt.data[:16]
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
                with m.If(reg == REG_MODE):
                    m.d.sync += modes[a].eq(value[0])
                for j in range(nmax):
                    with m.If(reg == j):
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


class ProcessingUnit(wiring.Component):
    """A PU: ``n_modules`` analog modules of ``arrays_per_module`` arrays, inner bus, aggregator.

    Ports: ``i`` packets into the PU, ``o`` packets out of it (both on bus port 0),
    ``xbar[t]`` crossbar interface of array ``t = module * arrays_per_module + a``.
    Parameters: counts (``n_modules`` 1..64, ``arrays_per_module`` 1..4096), array
    geometry (as :class:`AnalogArray`), ``data_width``, ``fifo_depth`` (bus FIFOs),
    ``tag_width`` (2..16: output index bits + 1 parity bit), ``max_parts`` (most row
    chunks per output the aggregator counts).
    """

    def __init__(self, n_modules=2, arrays_per_module=2, *, rows=64, cols=128, slc_bits=6,
                 mlc_bits=7, read_cycles=4, data_width=32, fifo_depth=4, tag_width=8,
                 max_parts=16):
        _check_int("n_modules", n_modules, 1, 64)
        _check_int("arrays_per_module", arrays_per_module, 1, 4096)
        _check_int("tag_width", tag_width, 2, 16)
        self._n_modules, self._apm = n_modules, arrays_per_module
        self._n_ports = n_modules + 2
        self._addr_width = max(1, ceil_log2(self._n_ports))
        self._module_kw = dict(rows=rows, cols=cols, slc_bits=slc_bits, mlc_bits=mlc_bits,
                               read_cycles=read_cycles, addr_width=self._addr_width,
                               data_width=data_width, tag_width=tag_width)
        self._params, self._words, self._word_bits, _ = AnalogModule.check_parameters(
            arrays_per_module, port=self._n_ports - 1, agg_port=self.agg_port, **self._module_kw)
        _check_int("fifo_depth", fifo_depth, 2, 1024)
        _check_int("max_parts", max_parts, 1, 65535)
        self._data_width, self._fifo_depth = data_width, fifo_depth
        self._tag_width, self._max_parts = tag_width, max_parts
        self._layout = packet_layout(self._addr_width, data_width, tag_width)
        sig = stream.Signature(self._layout)
        super().__init__({
            "i": In(sig),
            "o": Out(sig),
            "xbar": Out(CrossbarSignature(rows, cols, mlc_bits)).array(n_modules * arrays_per_module),
        })

    n_modules = property(lambda self: self._n_modules)
    arrays_per_module = property(lambda self: self._apm)
    n_arrays = property(lambda self: self._n_modules * self._apm)
    n_ports = property(lambda self: self._n_ports)
    addr_width = property(lambda self: self._addr_width)
    layout = property(lambda self: self._layout)
    params = property(lambda self: self._params)
    words = property(lambda self: self._words, doc="input words per array vector")
    word_bits = property(lambda self: self._word_bits)
    BRIDGE_PORT = 0

    def module_port(self, k):
        """Bus port of analog module ``k``."""
        return 1 + _check_int("k", k, 0, self._n_modules - 1)

    @property
    def agg_port(self):
        return self._n_modules + 1

    def array_location(self, t):
        """(bus port, array index in its module) of PU array ``t``."""
        _check_int("t", t, 0, self.n_arrays - 1)
        return self.module_port(t // self._apm), t % self._apm

    def elaborate(self, platform):
        m = Module()
        m.submodules.bus = bus = InnerBus(self._n_ports, self._data_width, self._fifo_depth,
                                          addr_width=self._addr_width, tag_width=self._tag_width)
        m.submodules.aggregator = agg = PartialSumAggregator(
            2 ** self._tag_width, self._max_parts, port=self.agg_port, init_dest=0,
            addr_width=self._addr_width, data_width=self._data_width, tag_width=self._tag_width)
        modules = [AnalogModule(self._apm, port=self.module_port(k), agg_port=self.agg_port,
                                **self._module_kw) for k in range(self._n_modules)]
        wiring.connect(m, wiring.flipped(self.i), bus.i[0])
        wiring.connect(m, bus.o[0], wiring.flipped(self.o))
        for k, mod in enumerate(modules):
            m.submodules[f"module_{k}"] = mod
            wiring.connect(m, bus.o[self.module_port(k)], mod.i)
            wiring.connect(m, mod.o, bus.i[self.module_port(k)])
            for a in range(self._apm):
                _connect_xbar(m, self.xbar[k * self._apm + a], mod.xbar[a])
        wiring.connect(m, bus.o[self.agg_port], agg.i)
        wiring.connect(m, agg.o, bus.i[self.agg_port])
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
               read_cycles=4, data_width=32, fifo_depth=4, tag_width=8, max_parts=16),
          "processing unit: analog modules, inner-unit bus, partial-sum aggregator",
          small=dict(rows=16, cols=32, tag_width=6)),
]
