"""cocotb testbench of the partial-sum aggregator (``PartialSumAggregator``, block ``psum_agg``).

The aggregator under test is rebuilt from the registry (:func:`hyflexpim.tb.lib.design`):
slots, ``max_parts``, result and packet widths, its bus port and the register values
after reset come from it. Every packet it accepts is also given to :class:`AggModel`, a
reference model written from the documented behaviour (docs/bus.md, the class
documentation in rtl/bus.py), not from the RTL:

* PARTIAL_SUM: adds ``data`` (its low ``result_width`` bits, two's complement) into slot
  ``tag mod slots``; when the slot's count reaches ``parts`` (0 reads as 1) a RESULT
  leaves (``source`` = the unit's port, ``destination`` = DEST, the packet's tag, the
  wrapped ``result_width``-bit sum) and the slot is cleared;
* CONFIG: ``data = register << 16 | value`` writes PARTS (0) or DEST (1);
* other kinds are consumed and ignored;
* reset: PARTS and DEST return to their generator values; the slots are NOT cleared
  (docs/bus.md, "Known limits": "a reset in the middle of a layer needs the slots
  drained"); a RESULT not yet delivered is lost.

Every RESULT is compared, in order, with the model's (:class:`~hyflexpim.tb.lib.Scoreboard`).

Parts, owned by :class:`TB`: a :class:`~hyflexpim.tb.lib.StreamSource` of packets on
``i``, a :class:`~hyflexpim.tb.lib.StreamSink` of RESULTs on ``o`` (random or held
backpressure), the model and the scoreboard. Parameter: ``HYFLEXPIM_SEED``.
"""

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge

from hyflexpim.rtl.bus import Kind
from hyflexpim.tb import lib

DUT = lib.design()
LAYOUT = DUT.layout
HEADER = LAYOUT["header"].shape
AW = HEADER["source"].shape.width
TW = HEADER["tag"].shape.width
DW = LAYOUT["data"].shape.width
SLOTS, MAX_PARTS = DUT.slots, DUT.max_parts
RW = DUT._result_width
PORT, INIT_PARTS, INIT_DEST = DUT._port, DUT._init_parts, DUT._init_dest
PARTS, DEST = 0, 1                # register numbers (docs/registers.md)


def cfg_data(register, value):
    """CONFIG data: ``register << 16 | value`` (docs/bus.md)."""
    return (register << 16) | value


def signed_bits(value, width):
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


class AggModel:
    """The documented behaviour of the aggregator (module documentation)."""

    def __init__(self):
        self.slots = {}                       # slot -> [sum, count]
        self.reset()
        self._undo = None

    def reset(self):
        """Registers back to their generator values; the slots keep their contents."""
        self.parts, self.dest = INIT_PARTS, INIT_DEST

    def packet(self, kind, tag, data):
        """Take one packet; return the RESULT it makes ``(src, dst, kind, tag, data)`` or None."""
        self._undo = (dict((k, list(v)) for k, v in self.slots.items()), self.parts, self.dest)
        if kind == Kind.CONFIG:
            reg, value = (data >> 16) & 0xFF, data & 0xFFFF
            if reg == PARTS:
                self.parts = value
            elif reg == DEST:
                self.dest = value
            return None
        if kind != Kind.PARTIAL_SUM:
            return None
        slot = tag % SLOTS
        s, c = self.slots.get(slot, [0, 0])
        s, c = signed_bits(s + signed_bits(data, RW), RW), c + 1
        if c >= max(self.parts, 1):
            self.slots[slot] = [0, 0]
            return (PORT, self.dest, Kind.RESULT, tag, s & ((1 << RW) - 1))
        self.slots[slot] = [s, c]
        return None

    def undo(self):
        """Forget the last packet (it never reached the slots)."""
        self.slots, self.parts, self.dest = self._undo

    def used(self):
        return sorted(k for k, (s, c) in self.slots.items() if c)


def packet(value):
    h = value["header"]
    return h["source"], h["destination"], h["kind"], h["tag"], value["data"]


class TB:
    """Clock, packet source, RESULT sink, model and scoreboard of one aggregator."""

    def __init__(self, dut, seed):
        self.dut = dut
        self.rng = lib.rng(seed)
        self.clock = lib.TbClock(dut)
        self.model = AggModel()
        self.board = lib.Scoreboard(name="results")
        self.results = []             # (packet, cycle)
        self.hold = lib.Hold()

    async def start(self, idle=0.0, stall=0.0):
        self.source = lib.StreamSource(self.dut, "i", self.clock, layout=LAYOUT)
        self.source.on_transfer.append(self._accepted)
        self.sink = lib.StreamSink(self.dut, "o", self.clock, layout=LAYOUT,
                                   backpressure=self.hold, callback=self._result)
        self.traffic(idle, stall)
        await self.clock.start()

    def traffic(self, idle, stall):
        """Random input gaps and output backpressure (0: none)."""
        self.source.idle = lib.random_pauses(idle, self.rng) if idle else lib.never()
        self.sink.backpressure = lib.random_pauses(stall, self.rng) if stall else self.hold

    def send(self, kind, tag, data, dest=None):
        # the destination and source fields are the bus's business: random here
        self.source.send({"header": {"source": self.rng.randrange(2 ** AW),
                                     "destination": self.rng.randrange(2 ** AW)
                                     if dest is None else dest,
                                     "kind": kind, "tag": tag}, "data": data},
                         (Kind(kind), tag, data))

    def psum(self, tag, value):
        self.send(Kind.PARTIAL_SUM, tag, value & ((1 << DW) - 1))

    def config(self, register, value):
        self.send(Kind.CONFIG, self.rng.randrange(2 ** TW), cfg_data(register, value))

    def _accepted(self, value, context, cycle):
        res = self.model.packet(*context)
        if res is not None:
            self.board.expect(res, cycle=cycle, what=f"RESULT tag {res[3]}")

    def _result(self, value, cycle):
        pkt = packet(value)
        self.board.check(pkt, cycle=cycle)
        self.results.append((pkt, cycle))

    async def drain(self, max_cycles=20000):
        await self.clock.wait(lambda: not self.source.busy and not self.board.pending,
                              max_cycles, f"{self.board.pending} results", events=True)
        await self.clock.cycles(10)          # nothing more may come
        assert not self.board.pending

    async def reset(self, cycles=3):
        """Synchronous reset; the queued packets are withdrawn. The packet held in the
        input stage at the first reset edge reaches its slot only if it can advance in
        that cycle (``i.ready`` high: the memory write is not reset); the model then
        forgets it otherwise. Results not delivered are lost."""
        await RisingEdge(self.clock.clk)
        self.dut.rst.value = 1
        lib.withdraw(self.source)
        await FallingEdge(self.clock.clk)
        stuck = not int(self.dut.i__ready.value)
        # (observation only: whether the input stage holds a packet at the reset)
        self.staged = bool(int(lib.core(self.dut).valid1.value))
        await self.clock.cycles(cycles)
        self.dut.rst.value = 0
        if stuck:
            self.model.undo()
        self.model.reset()
        self.board.flush()
        await FallingEdge(self.clock.clk)
        assert not int(self.dut.o__valid.value), "a RESULT is offered after the reset"
        return stuck

    async def drain_slots(self):
        """The documented way to clear the slots after a reset: PARTS = 1 and a zero
        partial to every slot; each slot's leftover sum comes out (the model's)."""
        self.config(PARTS, 1)
        for t in range(SLOTS):
            self.psum(t, 0)
        await self.drain()
        assert not self.model.used()

    def random_layer(self, parts, tags, rounds=1, activations=0.1):
        """``rounds`` outputs per tag of ``tags``, each of ``parts`` random partials,
        interleaved at random (a tag's round ends before its next starts)."""
        todo = {t: rounds * parts for t in tags}
        while todo:
            t = self.rng.choice(sorted(todo))
            self.psum(t, self.rng.getrandbits(DW))
            todo[t] -= 1
            if not todo[t]:
                del todo[t]
            if self.rng.random() < activations:
                self.send(self.rng.choice((Kind.ACTIVATION, Kind.RESULT)),
                          self.rng.randrange(2 ** TW), self.rng.getrandbits(DW))


def disjoint_tags(rng, count):
    """``count`` tags naming different slots, at random over the whole tag range."""
    slots = rng.sample(range(SLOTS), count)
    return [s + SLOTS * rng.randrange(2 ** TW // SLOTS) for s in slots]


@cocotb.test()
async def random_layers_gaps_backpressure(dut):
    """Random partials over random tags of the whole tag range (tags that alias one
    slot never overlap in time), activation / RESULT packets in between (ignored),
    several PARTS and DEST values, random gaps and backpressure."""
    seed = lib.seed("random_layers_gaps_backpressure")
    tb = TB(dut, seed)
    await tb.start(idle=0.3, stall=0.4)
    n = 0
    for parts in (1, 2, MAX_PARTS):
        tb.config(PARTS, parts)
        tb.config(DEST, tb.rng.randrange(2 ** AW))
        tb.random_layer(parts, disjoint_tags(tb.rng, min(SLOTS, 12)), rounds=2)
        await tb.drain()
        n = tb.board.checked
    assert n > 0
    cocotb.log.info(f"{n} RESULTs exact")


@cocotb.test()
async def boundaries_tags_parts_dest(dut):
    """Tags slots - 1, slots, 2^tag_width - 1 (a tag >= slots uses slot tag mod slots,
    the RESULT keeps the full tag: partials of tags t and t + slots add up in one slot);
    PARTS = 0 (reads as 1), 1 (one RESULT per cycle), max_parts; DEST 0 and
    2^addr_width - 1; partials at the ends of the result range (wrap-around)."""
    seed = lib.seed("boundaries_tags_parts_dest")
    tb = TB(dut, seed)
    await tb.start()
    top = 2 ** TW - 1
    lo, hi = -(1 << (RW - 1)), (1 << (RW - 1)) - 1
    # PARTS = max_parts, aliasing tags, extreme values
    tb.config(PARTS, MAX_PARTS)
    tb.config(DEST, 2 ** AW - 1)
    alias = [SLOTS - 1, top]               # top % SLOTS == SLOTS - 1
    assert top % SLOTS == SLOTS - 1
    for j in range(MAX_PARTS):
        tb.psum(alias[j % 2], (hi if j % 2 else lo) + j)
    tb.psum(SLOTS % (2 ** TW), hi)         # tag = slots (slot 0 when slots < 2^TW)
    for j in range(MAX_PARTS - 1):
        tb.psum(0, hi)
    await tb.drain()
    got = [p for p, _ in tb.results]
    assert len(got) == 2
    assert got[0][3] == alias[(MAX_PARTS - 1) % 2] and got[0][1] == 2 ** AW - 1
    # PARTS = 0 reads as 1; PARTS = 1: one RESULT per cycle, back to back
    for parts in (0, 1):
        tb.config(PARTS, parts)
        tb.config(DEST, 0)
        first = len(tb.results)
        for t in range(2 * SLOTS):
            tb.psum(t if t < SLOTS else top - t + SLOTS, tb.rng.getrandbits(DW))
        await tb.drain()
        cycles = [c for _, c in tb.results[first:]]
        assert len(cycles) == 2 * SLOTS
        assert lib.back_to_back(cycles), f"PARTS={parts}: RESULTs not one per cycle"
    cocotb.log.info(f"{tb.board.checked} RESULTs exact")


@cocotb.test()
async def reconfiguration_narrower_layer(dut):
    """A wide layer (every slot, PARTS = max_parts, DEST a) then a narrower one (half
    the slots, PARTS 2, DEST b) with no stale word; then PARTS lowered while a slot
    holds more partials than the new value (it completes at its next partial, its old
    partials included: the count is compared with PARTS, ``>=``), and DEST rewritten
    between two outputs of one slot."""
    seed = lib.seed("reconfiguration_narrower_layer")
    tb = TB(dut, seed)
    await tb.start(idle=0.2, stall=0.2)
    tb.config(PARTS, MAX_PARTS)
    tb.config(DEST, 3)
    tb.random_layer(MAX_PARTS, list(range(SLOTS)))
    await tb.drain()
    assert tb.board.checked == SLOTS
    tb.config(PARTS, 2)
    tb.config(DEST, 2 ** AW - 2)
    first = len(tb.results)
    tb.random_layer(2, list(range(SLOTS // 2 or 1)), rounds=2)
    await tb.drain()
    assert len(tb.results) - first == 2 * (SLOTS // 2 or 1)
    assert all(p[1] == 2 ** AW - 2 for p, _ in tb.results[first:])
    if MAX_PARTS >= 3:
        tb.config(PARTS, 3)
        for _ in range(2):
            tb.psum(1, tb.rng.getrandbits(DW))
        tb.config(PARTS, 2)               # slot 1 holds 2: its next partial completes it
        tb.psum(1, tb.rng.getrandbits(DW))
        tb.config(DEST, 1)
        for _ in range(2):
            tb.psum(1, tb.rng.getrandbits(DW))
        first = len(tb.results)
        await tb.drain()
        assert [p[1] for p, _ in tb.results[first:]] == [2 ** AW - 2, 1]
    cocotb.log.info(f"{tb.board.checked} RESULTs exact")


@cocotb.test()
async def long_stall_then_full_rate(dut):
    """Output held not ready for many times the input stage and output register take to
    fill (the unit then refuses input), released: every RESULT in order, nothing lost or
    twice, then one RESULT per cycle (PARTS = 1, input always valid); then the same with
    interleaved partials of PARTS = max_parts."""
    seed = lib.seed("long_stall_then_full_rate")
    tb = TB(dut, seed)
    await tb.start()
    stall = 20 * SLOTS
    for parts in (1, MAX_PARTS):
        tb.config(PARTS, parts)
        await tb.drain()
        tb.hold.held = True
        first = len(tb.results)
        tb.random_layer(parts, list(range(SLOTS)), rounds=2, activations=0)
        await tb.clock.cycles(stall)
        assert len(tb.results) == first, "a RESULT left while the output was held"
        assert tb.source.busy and not int(dut.i__ready.value), "the stall did not reach the input"
        accepted = tb.source.sent
        await tb.clock.cycles(stall)
        assert tb.source.sent == accepted, "input taken while the output was held"
        release = tb.clock.cycle
        tb.hold.held = False
        await tb.drain()
        cycles = [c for _, c in tb.results[first:]]
        assert len(cycles) == 2 * SLOTS
        assert cycles[0] - release <= 1
        # full rate: one packet taken per cycle from the release on
        remaining = tb.source.sent - accepted
        cocotb.log.info(f"PARTS {parts}: {remaining} packets after the release, last "
                        f"RESULT {cycles[-1] - release} cycles after it")
        assert cycles[-1] - release <= remaining + 1, \
            f"{remaining} packets took {cycles[-1] - release} cycles after the release"
        if parts == 1:
            assert lib.back_to_back(cycles), "RESULTs after the release not one per cycle"
    cocotb.log.info(f"{tb.board.checked} RESULTs exact")


@cocotb.test()
async def reset_in_every_state(dut):
    """Synchronous reset in every state, each followed by a drain of the slots (their
    documented leftovers compared) and a clean random layer:

    * idle after configuration: PARTS and DEST return to their generator values;
    * mid-layer, the unit idle: the slots keep their partials (documented: not cleared);
    * mid-input: packets streaming in, a packet in the input stage (it reaches its slot);
    * output waiting, input stalled: a RESULT in the output register (lost) and a
      completing partial held in the input stage (never reaches its slot).
    """
    seed = lib.seed("reset_in_every_state")
    tb = TB(dut, seed)
    await tb.start()

    async def clean(what):
        await tb.drain_slots()
        tb.config(PARTS, 2)
        tb.config(DEST, 4)
        first = tb.board.checked
        tb.random_layer(2, disjoint_tags(tb.rng, min(SLOTS, 8)))
        await tb.drain()
        assert tb.board.checked - first == min(SLOTS, 8)
        cocotb.log.info(f"after reset {what}: exact")

    # 1. idle: registers back to the generator values
    tb.config(PARTS, MAX_PARTS)
    tb.config(DEST, 2 ** AW - 1)
    await tb.drain()
    assert not await tb.reset()
    first = len(tb.results)
    for j in range(max(INIT_PARTS, 1)):
        tb.psum(5 % SLOTS, j + 1)
    await tb.drain()
    assert [p[1] for p, _ in tb.results[first:]] == [INIT_DEST], "DEST not back to init_dest"
    await clean("in idle")

    # 2. mid-layer, idle: slots hold partials across the reset
    tb.config(PARTS, MAX_PARTS)
    if MAX_PARTS > 1:
        for t in range(SLOTS):
            for _ in range(tb.rng.randrange(1, MAX_PARTS)):
                tb.psum(t, tb.rng.getrandbits(DW))
    await tb.drain()
    kept = tb.model.used()
    assert not await tb.reset()
    assert kept == tb.model.used() and (MAX_PARTS == 1 or kept), kept
    await clean("mid-layer (slots kept)")

    # 3. mid-input: a stream of partials, reset while one is in the input stage
    tb.config(PARTS, 2)
    await tb.drain()
    base = tb.source.sent
    tb.random_layer(2, list(range(SLOTS)), rounds=3, activations=0.2)
    await tb.clock.wait(lambda: tb.source.sent >= base + 2 * SLOTS, 2000, "input")
    assert not await tb.reset()
    assert tb.staged, "no packet in the input stage at the reset"
    await clean("mid-input")

    # 4. output waiting, input stalled: slot 1 holds one partial; slot 0 completes (its
    # RESULT waits in the output register), then slot 1's completing partial waits in
    # the input stage. After the reset slot 1 must still hold its first partial only.
    tb.config(PARTS, 2)
    tb.psum(1, tb.rng.getrandbits(DW))
    await tb.drain()
    tb.hold.held = True
    tb.psum(0, tb.rng.getrandbits(DW))
    tb.psum(0, tb.rng.getrandbits(DW))
    tb.psum(1, tb.rng.getrandbits(DW))
    tb.psum(2, tb.rng.getrandbits(DW))
    await tb.clock.cycles(30)
    assert int(dut.o__valid.value) and not int(dut.i__ready.value)
    assert await tb.reset(), "the input stage was not stuck at the reset"
    assert tb.model.used() == [1 % SLOTS], tb.model.used()
    tb.hold.held = False
    await clean("with output waiting")
