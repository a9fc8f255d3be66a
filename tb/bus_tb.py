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

Besides random traffic, saturation and latency: a held stall of one output (:class:`lib.Hold`)
long past the FIFOs' fill time, then its release at full rate; a synchronous reset in
each state (idle, crossing, FIFOs full under a stall, draining), the bus empty after it;
destinations, source field, tags and data at their limits.

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
        self._ovalid = [getattr(dut, f"o__{k}__valid") for k in range(N)]
        self._oready = [getattr(dut, f"o__{k}__ready") for k in range(N)]
        self.clear()
        self._launch()

    def clear(self):
        self.wait = [0] * N
        self.max_wait = self.grants = self.bad = 0
        self.first_grant = self.last_grant = None
        self.stalls = 0          # (cycle, port) pairs with o[port] valid and not ready
        self.grant_cycles = []   # the cycle of every grant

    async def _run(self):
        while True:
            await FallingEdge(self.clock.clk)
            # (a falling edge of the clock still running from the previous test may come
            # before this test's TbClock.start: no cycle count yet, nothing to watch)
            if self.clock._t0 is not None and not self.clock.in_reset:
                self.observe(self.clock.cycle)

    def observe(self, cycle):
        req = self.dut.mon__request.value.to_unsigned()
        valid = int(self.dut.mon__valid.value)
        grant = self.dut.mon__grant.value.to_unsigned() if valid else None
        if valid:
            assert req >> grant & 1, f"grant to port {grant} which did not request ({req:b})"
            self.grants += 1
            self.grant_cycles.append(cycle)
            if self.first_grant is None:
                self.first_grant = cycle
            self.last_grant = cycle
            self.bad += int(self.dut.mon__bad_dest.value)
        else:
            assert req == 0, f"no grant although ports {req:b} request"
        for k in range(N):
            if int(self._ovalid[k].value) and not int(self._oready[k].value):
                self.stalls += 1
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
        # Every sink starts with a pause generator the test can replace (a phase's random
        # backpressure, a held stall). A sink built with no backpressure (``never``)
        # takes its always-ready path for good and would ignore a later one.
        self.sinks = [lib.StreamSink(self.dut, f"o__{k}", self.clock, layout=LAYOUT,
                                     backpressure=lib.Hold(),
                                     callback=self._delivered(k)) for k in range(N)]
        self.delivered = [[] for _ in range(N)]     # (packet, cycle) per output port
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
            self.delivered[k].append((pkt, cycle))
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
        if p_ready < 1:     # the backpressure reached the bus (outputs waited)
            assert tb.fairness.stalls > 0, "no output ever waited for ready"
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


# ----------------------------------------------------------------------------- long stalls, reset, limits

def buffer_words():
    """Words the bus can hold: an input and an output FIFO per port."""
    return 2 * N * DUT.fifo_depth


def cycles_per_word_into_one_port():
    """Steady cycles per word into one output: 1, or 2 with FIFOs of depth 2 (a
    ``SyncFIFOBuffered`` of depth 2 takes a word every other cycle, docs/bus.md)."""
    return 2 if DUT.fifo_depth == 2 else 1


@cocotb.test()
async def long_stall_then_full_rate(dut):
    """Output 0 held not ready for many FIFO fill-and-drain times while every port sends:

    * mixed traffic: port N-1 never sends to port 0 and must finish during the stall (a
      full destination blocks no other); the others block on their heads for port 0,
      the bus goes idle; after the release everything arrives, in order per pair;
    * hot spot: every port sends only to port 0, stall, release: port 0 then takes one
      word every ``cycles_per_word_into_one_port()`` cycles, with no gap, to the last.
    """
    seed = lib.seed("long_stall_then_full_rate")
    tb = TB(dut)
    await tb.start()
    stall = 8 * buffer_words() + 50
    hold = lib.Hold(True)

    # mixed traffic
    tb.phase(seed, p_valid=1.0, p_ready=1.0)
    for sink in tb.sinks:
        sink.backpressure = lib.never()   # always ready (on the per-cycle path)
    tb.sinks[0].backpressure = hold
    for k in range(N):
        for _ in range(40):
            d = tb.rng.randrange(1, N) if k == N - 1 else tb.rng.randrange(N)
            tb.send(k, d, Kind(tb.rng.randrange(4)), tb.rng.getrandbits(TW), tb.rng.getrandbits(DW))
    delivered0 = tb.sinks[0].count
    await tb.clock.cycles(stall)
    assert tb.sinks[0].count == delivered0, "a port held not ready received packets"
    free = [c for c in tb.scoreboard.leftover() if c[0] == N - 1]
    assert not free, f"port {N - 1}'s packets (none for port 0) are stuck behind the stall: {free}"
    grants = tb.fairness.grants
    await tb.clock.cycles(buffer_words())
    assert tb.fairness.grants == grants, "the bus still moves words after the stall filled it"
    backlog = tb.scoreboard.pending
    # output FIFO 0 full, and the input FIFOs of the ports blocked behind it
    assert backlog >= DUT.fifo_depth * (N - 1), \
        f"only {backlog} packets waiting: the stall did not bite"
    assert any(s.busy for s in tb.sources), "no source was held back"
    release = tb.clock.cycle
    hold.held = False
    await tb.run()
    tb.final_checks()
    after = [g for g in tb.fairness.grant_cycles if g >= release]
    cocotb.log.info(f"mixed: {backlog} packets waited {stall} cycles; after the release "
                    f"{len(after)} words in {after[-1] - after[0] + 1} cycles")

    # hot spot: every port -> port 0
    tb.phase(seed + 1, p_valid=1.0, p_ready=1.0)
    for sink in tb.sinks:
        sink.backpressure = lib.never()
    hold.held = True
    tb.sinks[0].backpressure = hold
    per_port = 3 * DUT.fifo_depth + 4
    tb.random_traffic(per_port, dest=0)
    delivered0 = tb.sinks[0].count
    await tb.clock.cycles(stall)
    assert tb.sinks[0].count == delivered0, "a port held not ready received packets"
    assert all(s.busy for s in tb.sources), "a source got every packet in: the stall did not bite"
    release = tb.clock.cycle
    first = len(tb.delivered[0])
    hold.held = False
    await tb.run()
    tb.final_checks()
    cycles = [c for _, c in tb.delivered[0][first:]]
    assert len(cycles) == N * per_port
    step = cycles_per_word_into_one_port()
    # the words waiting in port 0's output FIFO leave back to back; from then on the
    # bus refills it at its steady rate
    held = DUT.fifo_depth
    gaps = sorted({b - a for a, b in zip(cycles[held - 1:], cycles[held:])})
    assert gaps == [step], \
        f"after the release port 0 took words at gaps {gaps}, expected {step} cycle(s) each"
    assert lib.back_to_back(cycles[:held]), "the words held in the output FIFO had gaps"
    assert cycles[0] - release <= 2, f"first word {cycles[0] - release} cycles after the release"
    cocotb.log.info(f"hot spot: {len(cycles)} words after the release, one per {step} cycle(s)")


async def _reset_and_check_empty(tb, cycles=3):
    """Synchronous reset; the sources' queued and offered packets are withdrawn (the
    packets the bus had accepted are dropped by the reset). Then the bus must be empty:
    no output valid, every input ready, and nothing may come out for a while."""
    await tb.clock.reset(cycles)
    for src in tb.sources:
        lib.withdraw(src)
    tb.phase(tb.rng.randrange(1 << 30), p_valid=1.0, p_ready=1.0)
    for sink in tb.sinks:
        sink.backpressure = lib.never()
    await FallingEdge(tb.clock.clk)
    for k in range(N):
        assert not int(getattr(tb.dut, f"o__{k}__valid").value), f"o[{k}] valid after reset"
        assert int(getattr(tb.dut, f"i__{k}__ready").value), f"i[{k}] not ready after reset"
    counts = [s.count for s in tb.sinks]
    await tb.clock.cycles(4 * DUT.latency + buffer_words())
    assert [s.count for s in tb.sinks] == counts, "packets from before the reset came out"



async def _clean_run(tb, seed, what):
    """Random traffic with random gaps and backpressure after a reset: bit-exact."""
    tb.phase(seed, p_valid=0.8, p_ready=0.6)
    tb.random_traffic(30, bad_fraction=0.05)
    await tb.run()
    sent = tb.final_checks()
    assert tb.scoreboard.checked > 0
    cocotb.log.info(f"after reset {what}: {sent} packets exact")


@cocotb.test()
async def reset_in_every_state(dut):
    """Synchronous reset in each state of the bus: idle; words crossing (a grant in the
    reset cycle) with FIFOs partly full; every output held not ready with the FIFOs full
    and inputs refused; and right after a release, while the backlog drains. After each
    reset the bus is empty (no stale word ever comes out) and random traffic is exact."""
    seed = lib.seed("reset_in_every_state")
    tb = TB(dut)
    await tb.start()
    tb.phase(seed, 1.0, 1.0)

    # 1. idle
    await tb.clock.cycles(5)
    await _reset_and_check_empty(tb)
    await _clean_run(tb, seed + 1, "in idle")

    # 2. mid-traffic: a word crossing in the cycle the reset starts, words in FIFOs
    tb.phase(seed + 2, p_valid=1.0, p_ready=0.5)
    tb.random_traffic(40)
    await tb.clock.wait(lambda: tb.scoreboard.checked >= 10, 5000, "traffic")
    await tb.clock.wait(lambda: int(dut.mon__valid.value) == 1, 100, "a grant")
    assert tb.scoreboard.pending > 0, "nothing in flight at the reset"
    await _reset_and_check_empty(tb)
    await _clean_run(tb, seed + 3, "mid-traffic")

    # 3. every output stalled, FIFOs full, inputs refused
    tb.phase(seed + 4, p_valid=1.0, p_ready=1.0)
    hold = lib.Hold(True)
    for sink in tb.sinks:
        sink.backpressure = hold
    tb.random_traffic(3 * DUT.fifo_depth + 2)
    await tb.clock.cycles(4 * buffer_words() + 20)
    refused = [k for k in range(N) if not int(getattr(dut, f"i__{k}__ready").value)]
    assert refused, "the stall filled no input FIFO"
    await _reset_and_check_empty(tb)
    await _clean_run(tb, seed + 5, "while stalled")

    # 4. just after a long stall is released, the backlog draining
    tb.phase(seed + 6, p_valid=1.0, p_ready=1.0)
    hold = lib.Hold(True)
    for sink in tb.sinks:
        sink.backpressure = hold
    tb.random_traffic(3 * DUT.fifo_depth + 2)
    await tb.clock.cycles(4 * buffer_words() + 20)
    hold.held = False
    before = tb.scoreboard.checked
    await tb.clock.wait(lambda: tb.scoreboard.checked >= before + 2, 100, "the drain")
    assert tb.scoreboard.pending > 0
    await _reset_and_check_empty(tb)
    await _clean_run(tb, seed + 7, "while draining")


@cocotb.test()
async def address_and_field_limits(dut):
    """Every source to destination 0 and n - 1 (delivered) and, where the address space
    is larger than the bus, n and 2^addr_width - 1 (dropped, each counted by
    ``mon.bad_dest``); source field 2^addr_width - 1 (overwritten), tags 0 and
    2^tag_width - 1, data 0 and all ones, every kind."""
    seed = lib.seed("address_and_field_limits")
    tb = TB(dut)
    await tb.start()
    tb.phase(seed, p_valid=1.0, p_ready=0.7)
    dests = [0, N - 1] + ([N, 2 ** AW - 1] if N < 2 ** AW else [])
    for k in range(N):
        for d in dests:
            for kind in Kind:
                for tag, word in ((0, 2 ** DW - 1), (2 ** TW - 1, 0), (2 ** TW - 1, 2 ** DW - 1)):
                    tb.sources[k].send({"header": {"source": 2 ** AW - 1, "destination": d,
                                                   "kind": kind, "tag": tag}, "data": word},
                                       (d, kind, tag, word))
    await tb.run()
    sent = tb.final_checks()
    bad = sum(1 for d in dests if d >= N) * N * len(Kind) * 3
    assert sent == len(dests) * N * len(Kind) * 3
    assert tb.dropped == bad and tb.fairness.bad == bad, (tb.dropped, tb.fairness.bad, bad)
    cocotb.log.info(f"destinations {dests}: {sent} packets, {bad} dropped")
