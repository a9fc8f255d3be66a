"""cocotb testbench of the shared packet bus (``SharedBus`` / ``InnerBus`` / ``GlobalBus``).

The bus under test is rebuilt from the registry (:func:`hyflexpim.tb.lib.design`): port
count, packet layout, address and tag widths, FIFO depth and the wait bound come from it.
Parts, owned by :class:`TB`:

* one :class:`~hyflexpim.tb.lib.StreamSource` per input port ``i[k]``: random packets
  (random gaps, destinations, kinds, tags and data, and a random ``source`` field that
  the bus must overwrite with the port number);
* one :class:`~hyflexpim.tb.lib.StreamSink` per output port ``o[k]`` under random
  backpressure;
* a :class:`~hyflexpim.tb.lib.Scoreboard` with one channel per (source, destination)
  pair: every delivered packet is checked against the head of its pair (nothing lost,
  duplicated, corrupted or reordered within a pair); at the end every pair is empty;
* :class:`FairnessMonitor` watches ``mon`` and counts, for every port whose head could
  cross in every cycle since it started to wait, the grants given to other ports; the
  maximum is compared with the bus's ``wait_bound``.

Parameters: ``HYFLEXPIM_SEED``; benchmark figures are appended as JSON lines to
``HYFLEXPIM_BUS_REPORT`` when that is set.
"""

import os

import cocotb
from cocotb.triggers import FallingEdge

from hyflexpim.rtl.bus import Kind
from hyflexpim.tb import lib

DUT = lib.design()
N, AW, DW, TW = DUT.n_ports, DUT.addr_width, DUT.data_width, DUT.tag_width
LAYOUT = DUT.layout
REPORT = os.environ.get("HYFLEXPIM_BUS_REPORT")


def packet(value):
    """``(source, destination, kind, tag, data)`` of an unpacked packet."""
    h = value["header"]
    return h["source"], h["destination"], h["kind"], h["tag"], value["data"]


class FairnessMonitor(lib.Part):
    """Grants to others while a port waits with a head that could cross in every cycle."""

    def __init__(self, dut, clock):
        self.dut, self.clock = dut, clock
        self.clear()
        self._launch()

    def clear(self):
        self.wait = [0] * N
        self.max_wait = self.grants = self.bad = 0
        self.first_grant = self.last_grant = None

    async def _run(self):
        while True:
            await FallingEdge(self.clock.clk)
            if not self.clock.in_reset:
                self.observe(self.clock.cycle)

    def observe(self, cycle):
        req = self.dut.mon__request.value.to_unsigned()
        valid = int(self.dut.mon__valid.value)
        grant = self.dut.mon__grant.value.to_unsigned() if valid else None
        if valid:
            assert req >> grant & 1, f"grant to port {grant} which did not request ({req:b})"
            self.grants += 1
            if self.first_grant is None:
                self.first_grant = cycle
            self.last_grant = cycle
            self.bad += int(self.dut.mon__bad_dest.value)
        else:
            assert req == 0, f"no grant although ports {req:b} request"
        for k in range(N):
            if not req >> k & 1 or (valid and grant == k):
                self.wait[k] = 0
            elif valid:
                self.wait[k] += 1
                self.max_wait = max(self.max_wait, self.wait[k])


class TB:
    """The bus's clock, a source and a sink per port, the scoreboard and the fairness
    monitor. :meth:`phase` starts a traffic mix with new counters."""

    def __init__(self, dut):
        self.dut = dut
        self.clock = lib.TbClock(dut)

    async def start(self):
        self.sources = [lib.StreamSource(self.dut, f"i__{k}", self.clock, layout=LAYOUT)
                        for k in range(N)]
        self.sinks = [lib.StreamSink(self.dut, f"o__{k}", self.clock, layout=LAYOUT,
                                     callback=self._delivered(k)) for k in range(N)]
        for k, src in enumerate(self.sources):
            src.on_transfer.append(self._accepted(k))
        self.fairness = FairnessMonitor(self.dut, self.clock)
        await self.clock.start()

    def phase(self, seed, p_valid=0.7, p_ready=0.7):
        """A new traffic mix: sources offer with ``p_valid``, sinks are ready with
        ``p_ready``; fresh scoreboard, fairness and send counts."""
        self.rng = lib.rng(seed)
        for src in self.sources:
            src.idle = lib.random_pauses(1 - p_valid, lib.rng(self.rng.random()))
        for sink in self.sinks:
            sink.backpressure = lib.random_pauses(1 - p_ready, lib.rng(self.rng.random()))
        self.scoreboard = lib.Scoreboard(name="bus")
        self.fairness.clear()
        self.dropped = self.sent = 0

    def _accepted(self, k):
        def accepted(value, context, cycle):
            self.sent += 1
            d, kind, tag, data = context
            if d >= N:
                self.dropped += 1        # unknown destination: the bus drops it
            else:
                self.scoreboard.expect((k, d, kind, tag, data), channel=(k, d), cycle=cycle,
                                       what=f"pair {k}->{d}")
        return accepted

    def _delivered(self, k):
        def delivered(value, cycle):
            pkt = packet(value)
            assert pkt[1] == k, f"packet for port {pkt[1]} came out of port {k}: {pkt}"
            self.scoreboard.check(pkt, channel=pkt[:2], cycle=cycle)
        return delivered

    def send(self, k, d, kind, tag, data):
        # The source field is random: the bus must overwrite it with the port number.
        self.sources[k].send({"header": {"source": self.rng.randrange(2 ** AW), "destination": d,
                                         "kind": kind, "tag": tag}, "data": data},
                             (d, kind, tag, data))

    def random_traffic(self, per_port, bad_fraction=0.0, dest=None):
        for k in range(N):
            for _ in range(per_port):
                if dest is not None:
                    d = dest
                elif bad_fraction and N < 2 ** AW and self.rng.random() < bad_fraction:
                    d = self.rng.randrange(N, 2 ** AW)
                else:
                    d = self.rng.randrange(N)
                self.send(k, d, Kind(self.rng.randrange(4)), self.rng.getrandbits(TW),
                          self.rng.getrandbits(DW))

    async def run(self, max_cycles=200000, drain=60, stall=2000):
        """Run until every source is done and every expected packet has arrived, then
        ``drain`` more cycles (nothing more may arrive). Fails after ``stall`` cycles
        without a delivery while packets are still expected."""
        sb, start = self.scoreboard, self.clock.cycle
        idle = 0
        last_progress, last_checked = start, sb.checked
        while idle < drain:
            await FallingEdge(self.clock.clk)
            cycle = self.clock.cycle
            assert cycle - start < max_cycles, "bus made no progress"
            if sb.checked != last_checked:
                last_progress, last_checked = cycle, sb.checked
            pending = sb.pending
            assert not pending or cycle - last_progress < stall, \
                f"no delivery for {stall} cycles, still expected: {sb.leftover()}"
            idle = 0 if pending or any(s.busy for s in self.sources) else idle + 1

    def final_checks(self):
        sb = self.scoreboard
        assert not sb.leftover(), f"packets never delivered: {sb.leftover()}"
        assert sb.checked + self.dropped == self.sent
        assert self.fairness.bad == self.dropped
        assert self.fairness.max_wait <= DUT.wait_bound, \
            f"a port waited {self.fairness.max_wait} grants, bound {DUT.wait_bound}"
        return self.sent


@cocotb.test()
async def random_traffic_random_backpressure(dut):
    """Every port sends to random ports with random gaps; every output stalls at random."""
    seed = lib.seed("random_traffic_random_backpressure")
    tb = TB(dut)
    await tb.start()
    for p_valid, p_ready in ((0.8, 0.5), (0.3, 0.9), (1.0, 0.2)):
        tb.phase(seed + int(p_ready * 10), p_valid, p_ready)
        tb.random_traffic(120, bad_fraction=0.05)
        await tb.run()
        sent = tb.final_checks()
        assert tb.scoreboard.checked > 0
        cocotb.log.info(f"p_valid {p_valid} p_ready {p_ready}: {sent} packets, "
                        f"{tb.dropped} dropped (bad destination), "
                        f"max wait {tb.fairness.max_wait} grants (bound {DUT.wait_bound})")


@cocotb.test()
async def saturation_throughput_and_fairness(dut):
    """All ports always valid, all outputs always ready: words per cycle and max wait."""
    seed = lib.seed("saturation_throughput_and_fairness")
    per_port = 150
    tb = TB(dut)
    await tb.start()
    tb.phase(seed, p_valid=1.0, p_ready=1.0)
    tb.random_traffic(per_port)
    await tb.run()
    tb.final_checks()
    fair = tb.fairness
    # Words per cycle from the first grant to the last (the FIFOs fill before the first).
    cycles = fair.last_grant - fair.first_grant + 1
    words_per_cycle = fair.grants / cycles
    lat = sorted(tb.scoreboard.latencies)
    lib.report("bus", REPORT, test="saturation_random_destinations", n_ports=N,
               fifo_depth=DUT.fifo_depth, words=fair.grants, cycles=cycles,
               words_per_cycle=round(words_per_cycle, 4), max_wait=fair.max_wait,
               wait_bound=DUT.wait_bound, latency_min=lat[0],
               latency_median=lat[len(lat) // 2], latency_max=lat[-1])
    assert words_per_cycle > 0.9, f"saturated bus moved only {words_per_cycle:.3f} words per cycle"

    # Hot spot: every port sends to port 0; the bus still moves a word per cycle and
    # round-robin serves each source in turn.
    tb.phase(seed + 1, p_valid=1.0, p_ready=1.0)
    tb.random_traffic(per_port, dest=0)
    await tb.run()
    tb.final_checks()
    hot = fair.grants / (fair.last_grant - fair.first_grant + 1)
    if DUT.fifo_depth >= 3:
        # A SyncFIFOBuffered of depth 2 takes a word only every other cycle, so only deeper
        # output FIFOs let one destination take a word per cycle.
        assert hot > 0.9, f"hot-spot bus moved only {hot:.3f} words per cycle"
        assert fair.max_wait == N - 1, "with all ports contending the bound is reached"
    lib.report("bus", REPORT, test="saturation_hot_spot", n_ports=N, words=fair.grants,
               words_per_cycle=round(hot, 4), max_wait=fair.max_wait,
               wait_bound=DUT.wait_bound, latency_max=max(tb.scoreboard.latencies))


@cocotb.test()
async def uncontended_latency(dut):
    """One packet on an idle bus: cycles from the input transfer to the output valid."""
    lib.seed("uncontended_latency")
    tb = TB(dut)
    await tb.start()
    tb.phase(0, p_valid=1.0, p_ready=1.0)
    lats = []
    for k in range(N):
        tb.send(k, (k + 1) % N, Kind.PARTIAL_SUM, 1, 0x1234 + k)
        await tb.run(drain=12)
        lats.append(tb.scoreboard.latencies[-1])
    tb.final_checks()
    assert len(set(lats)) == 1, f"latency differs between ports: {lats}"
    lib.report("bus", REPORT, test="uncontended_latency", n_ports=N, latency_cycles=lats[0])
