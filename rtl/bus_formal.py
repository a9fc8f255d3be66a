"""Formal harness of the shared bus: no loss, duplication, corruption or reordering.

:class:`BusOrderHarness` wraps a small :class:`~hyflexpim.rtl.bus.SharedBus` whose
inputs (valid, payload, output ready) are free in every cycle (``AnySeq``). The
environment is constrained only in what it *sends*: the ``k``-th packet that port
``s`` sends to port ``d`` carries ``data = k`` (and ``tag``, ``kind`` derived from ``k``).
The assertions then say, for every packet leaving port ``d``:

* its destination is ``d`` and its source a real port;
* it is the next packet of its (source, destination) pair: ``data``, ``tag`` and
  ``kind`` equal the pair's receive counter. A lost, duplicated, reordered or altered
  packet makes some later packet of the pair break this;
* the number of packets of a pair in flight never exceeds what the FIFOs can hold;
* fairness: a port whose head could cross in every cycle waits at most ``n_ports - 1``
  grants to other ports.

Checked by bounded model checking with ``yowasp-sby`` (:func:`run_bmc`); the test is
``tests/test_bus_formal.py`` and docs/bus.md records the depth and time.
"""

import shutil
from pathlib import Path

from amaranth.hdl import Assert, Assume, Elaboratable, Module, ResetSignal, Signal
from amaranth.asserts import AnySeq

from .bus import SharedBus, Kind
from ..sim import formal

__all__ = ["BusOrderHarness", "run_bmc", "SCRIPT"]


class BusOrderHarness(Elaboratable):
    """Properties of a ``SharedBus(n_ports, 32, fifo_depth)`` (see the module documentation)."""

    def __init__(self, n_ports=3, fifo_depth=2, tag_width=2, wait_bound=None):
        self.n_ports, self.fifo_depth, self.tag_width = n_ports, fifo_depth, tag_width
        # ``wait_bound`` below ``n_ports - 1`` must fail: the tests use it to show that the
        # solver reaches full contention.
        self.wait_bound = n_ports - 1 if wait_bound is None else wait_bound

    def elaborate(self, platform):
        m = Module()
        n, tw = self.n_ports, self.tag_width
        m.submodules.dut = dut = SharedBus(n, 32, self.fifo_depth, tag_width=tw)
        m.d.comb += Assume(~ResetSignal())
        cw = 8                                          # counter width: > BMC depth
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
                for d in range(n):
                    with m.If(p.header.destination == d):
                        k = sent[s][d]
                        m.d.comb += [
                            Assume(p.data == k),
                            Assume(p.header.tag == k[:tw]),
                            Assume(p.header.kind.as_value() == k[:2]),
                        ]
                        m.d.sync += k.eq(k + 1)
        for d in range(n):
            q = dut.o[d].payload
            with m.If(dut.o[d].valid & dut.o[d].ready):
                m.d.comb += [Assert(q.header.destination == d), Assert(q.header.source < n)]
                for s in range(n):
                    with m.If(q.header.source == s):
                        k = recv[s][d]
                        m.d.comb += [
                            Assert(q.data == k),
                            Assert(q.header.tag == k[:tw]),
                            Assert(q.header.kind.as_value() == k[:2]),
                        ]
                        m.d.sync += k.eq(k + 1)
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
        return m


# ``memory_map; opt -fast`` after ``prep``: the bus FIFOs' memories become registers,
# which makes this BMC about 2.8x faster with yices (depth 12: 28 s instead of 77 s).
SCRIPT = ("memory_map", "opt -fast")


def run_bmc(harness, workdir, depth=20, timeout=900):
    """Bounded model check of ``harness`` to ``depth`` through
    :func:`hyflexpim.sim.formal.run_sby` (with :data:`SCRIPT`) under ``workdir`` (inside
    the project: the WebAssembly Yosys does not see the system temp folder).

    Returns ``(passed, log text)``.
    """
    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    res = formal.run_sby(harness, workdir.name, mode="bmc", depth=depth, workdir=workdir,
                         timeout=timeout, script=SCRIPT)
    return res.passed, (workdir / "sby.log").read_text()
