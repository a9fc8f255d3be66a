"""Small reusable stream components: a queue and a fork.

Both follow the rules of ``amaranth.lib.stream`` (a transfer when ``valid & ready``;
once valid, ``valid`` and ``payload`` hold until the transfer; ``valid`` never depends
on ``ready``) and name their streams ``i`` / ``o``.

* :class:`Queue`: a FIFO of ``depth`` payloads, ``amaranth.lib.fifo.SyncFIFOBuffered``
  through its ``w_stream`` / ``r_stream`` views (``o.payload`` comes from a register).
* :class:`Fork`: every payload of ``i`` to each of ``n`` outputs ``o[k]``; ``i`` moves on
  once every output has taken it. An output that took the payload waits (a flag per
  output), so an output's ``valid`` depends on ``i.valid`` and those flags, never on a
  ``ready``.
"""

from amaranth.hdl import Cat, Module, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..base import check_int

__all__ = ["Queue", "Fork"]


class Queue(wiring.Component):
    """First-in first-out queue of ``depth`` (1..65536) payloads of ``shape``.

    From ``depth`` 3 it takes and gives one payload per cycle; ``o.valid`` follows a
    transfer on ``i`` by two cycles when empty (the buffered FIFO's read register).

    Raises:
        ParameterTypeError / ValueError: a bad ``depth``.
    """

    def __init__(self, shape, depth):
        self._shape = shape
        self._depth = check_int("depth", depth, 1, 65536)
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    shape = property(lambda self: self._shape)
    depth = property(lambda self: self._depth)

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=Shape.cast(self._shape).width,
                                                    depth=self._depth)
        m.d.comb += [
            fifo.w_stream.payload.eq(self.i.payload),
            fifo.w_stream.valid.eq(self.i.valid),
            self.i.ready.eq(fifo.w_stream.ready),
            self.o.payload.eq(fifo.r_stream.payload),
            self.o.valid.eq(fifo.r_stream.valid),
            fifo.r_stream.ready.eq(self.o.ready),
        ]
        return m


class Fork(wiring.Component):
    """One stream ``i`` to ``n`` (2..64) streams ``o[k]``, all with payloads of ``shape``.

    Each payload is offered to every output; ``i`` transfers in the cycle the last
    output takes it (all of them in one cycle when all are ready: one payload per cycle).

    Raises:
        ParameterTypeError / ValueError: a bad ``n``.
    """

    def __init__(self, shape, n=2):
        self._n = check_int("n", n, 2, 64)
        self._shape = shape
        super().__init__({"i": In(stream.Signature(shape)),
                          "o": Out(stream.Signature(shape)).array(n)})

    n = property(lambda self: self._n)

    def elaborate(self, platform):
        m = Module()
        done = Signal(self._n)          # outputs that took the payload on offer
        took = Cat(self.o[k].valid & self.o[k].ready for k in range(self._n)) | done
        for k in range(self._n):
            m.d.comb += [self.o[k].valid.eq(self.i.valid & ~done[k]),
                         self.o[k].payload.eq(self.i.payload)]
        m.d.comb += self.i.ready.eq(took.all())
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += done.eq(0)
        with m.Elif(self.i.valid):
            m.d.sync += done.eq(took)
        return m
