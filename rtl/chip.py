"""Chip top: an IO port and ``n_pus`` processing units joined by the global bus.

Global-bus ports: 0 = IO (the chip's ``i`` / ``o`` streams), ``1 + p`` = PU ``p``. All
packets on ``i`` / ``o`` and between PUs carry global addresses (the packet format of
:mod:`hyflexpim.rtl.bus`, ``addr_width = ceil_log2(n_pus + 1)``); each PU's bridge
(:class:`~hyflexpim.rtl.pu.Bridge`) translates to its inner bus. What flows where is set
by CONFIG packets from the IO port:

* layer output to the next layer's PU: the digital module of PU ``p`` sends its INT8
  activation words to its bridge, whose ACTIVATION route names PU ``q``'s global port;
  PU ``q``'s bridge scatters them to its arrays (:func:`~hyflexpim.rtl.pu.route_value`);
* a layer split over PUs: PU ``p``'s aggregator sends its (partial) RESULTs to the
  bridge, whose RESULT route names PU ``q`` with kind PARTIAL_SUM; PU ``q``'s bridge
  hands them to its aggregator, which counts them as one more part;
* the last layer's outputs: route to global port 0 (the IO port).

Ports: ``i`` packets the IO port sends, ``o`` packets it receives, ``xbar[p * A + t]``
crossbar interface of array ``t`` of PU ``p`` (``A`` arrays per PU); with a layer engine
(``engine``), ``pim[p * D + d]`` the digital PIM arrays of digital module ``d`` of PU ``p``
(``D`` digital modules per PU).
"""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped
from amaranth.utils import ceil_log2

from .analog import CrossbarSignature
from .bus import GlobalBus, packet_layout
from .digital import DigitalModule
from .digital_pim import DigitalArraySignature
from .pu import ProcessingUnit
from ..base import Block, check_int

__all__ = ["Chip", "BLOCKS"]


class Chip(wiring.Component):
    """``n_pus`` PUs (1..64) and the IO port on a :class:`~hyflexpim.rtl.bus.GlobalBus`.

    ``global_fifo_depth`` is the global bus's FIFO depth (2..1024); every other keyword
    goes to each :class:`~hyflexpim.rtl.pu.ProcessingUnit` (``ext_addr_width`` is set here).
    """

    def __init__(self, n_pus=2, *, global_fifo_depth=4, **pu_kw):
        check_int("n_pus", n_pus, 1, 64)
        check_int("global_fifo_depth", global_fifo_depth, 2, 1024)
        if "ext_addr_width" in pu_kw:
            raise ValueError("ext_addr_width is set by the chip (global bus address bits)")
        self._n_pus, self._fifo_depth = n_pus, global_fifo_depth
        self._addr_width = max(1, ceil_log2(n_pus + 1))
        self._pu_kw = ProcessingUnit.check_parameters(**pu_kw, ext_addr_width=self._addr_width)
        kw = self._pu_kw
        self._n_arrays = kw["n_modules"] * kw["arrays_per_module"]
        self._data_width, self._tag_width = kw["data_width"], kw["tag_width"]
        self._layout = packet_layout(self._addr_width, self._data_width, self._tag_width)
        sig = stream.Signature(self._layout)
        ports = {
            "i": In(sig),
            "o": Out(sig),
            "xbar": Out(CrossbarSignature(kw["rows"], kw["cols"], kw["mlc_bits"]))
            .array(n_pus * self._n_arrays),
        }
        self._n_digital = kw["n_digital"]
        if kw.get("engine") is not None:
            e = DigitalModule.check_parameters(engine=kw["engine"])
            ports["pim"] = Out(DigitalArraySignature(e["pim_arrays"], e["pim_rows"],
                                                     e["pim_cols"])).array(n_pus * self._n_digital)
        super().__init__(ports)

    n_pus = property(lambda self: self._n_pus)
    addr_width = property(lambda self: self._addr_width)
    layout = property(lambda self: self._layout, doc="global packet layout")
    arrays_per_pu = property(lambda self: self._n_arrays)
    IO_PORT = GlobalBus.IO_PORT

    def pu_port(self, p):
        """Global address of PU ``p``."""
        return 1 + check_int("p", p, 0, self._n_pus - 1)

    @property
    def pu_params(self):
        """Keyword arguments of each :class:`ProcessingUnit` (all of them, ``ext_addr_width``
        included): ``ProcessingUnit(**chip.pu_params)`` has the chip's PU addresses and
        layouts."""
        return dict(self._pu_kw)

    def elaborate(self, platform):
        m = Module()
        m.submodules.bus = bus = GlobalBus(self._n_pus, self._data_width, self._fifo_depth,
                                           addr_width=self._addr_width, tag_width=self._tag_width)
        connect(m, flipped(self.i), bus.i[self.IO_PORT])
        connect(m, bus.o[self.IO_PORT], flipped(self.o))
        for p in range(self._n_pus):
            pu = ProcessingUnit(**self._pu_kw)
            m.submodules[f"pu_{p}"] = pu
            connect(m, bus.o[self.pu_port(p)], pu.i)
            connect(m, pu.o, bus.i[self.pu_port(p)])
            for t in range(self._n_arrays):
                connect(m, pu.xbar[t], flipped(self.xbar[p * self._n_arrays + t]))
            if self._pu_kw.get("engine") is not None:
                for d in range(self._n_digital):
                    connect(m, pu.pim[d], flipped(self.pim[p * self._n_digital + d]))
        return m


BLOCKS = [
    Block("chip", lambda n_pus, **kw: Chip(n_pus, **kw),
          dict(n_pus=2, global_fifo_depth=4, fifo_depth=4, n_modules=2, arrays_per_module=2, rows=64, cols=128,
               slc_bits=6, mlc_bits=7, read_cycles=4, data_width=32, tag_width=8,
               max_parts=16, n_digital=1, degree=4),
          "chip top: IO port and processing units on the global bus (layer pipeline, "
          "split layers)",
          small=dict(rows=16, cols=32, tag_width=6)),
]
