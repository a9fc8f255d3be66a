"""cocotb unit testbench of the analog module (``AnalogModule``, block ``analog_module``):
arrays behind one bus port, input registers assembled from ACTIVATION packets, one
PARTIAL_SUM packet per used output-table entry of each result vector.

The module under test is rebuilt from the registry (:func:`hyflexpim.tb.lib.design`):
array count and geometry, ADC resolution, word and tag widths, its port and the
aggregator's come from it. Each array's comparator ``xbar__a__cmp`` is answered by a
:class:`~hyflexpim.tb.lib.CrossbarBank` holding the crossbar of the tile the vector is
meant for (:func:`hyflexpim.models.program_matrix`, noise off or on). The expected
packets come from the golden model and the documented protocol (rtl/pu.py module
documentation, docs/bus.md, docs/registers.md), never from the RTL:

* CONFIG, tag ``a``, ``data = register << 16 | value``: MODE (255: 0 SLC, 1 MLC) or
  output-table entry ``i`` (bit 15 used, low bits the output index); after reset every
  entry is unused and every array SLC;
* ACTIVATION, tag ``a << word_bits | w``: word ``w`` of array ``a``'s input register
  (element ``w * bytes + b`` in byte ``b``), in any order;
* each result vector of array ``a`` (``program_matrix(...).run(x)`` of its tile, read
  noise numbered by the array's vectors) gives, for every used entry ``j`` of the first
  ``neurons(mode)`` slots in slot order, a PARTIAL_SUM to the aggregator port, tag
  ``parity << (tag_width - 1) | out[j]``, data ``y[j]`` sign-extended, ``parity`` the
  array's result count since reset modulo 2; one vector's packets are never interleaved
  with another's.

Each array's outputs use a separate set of output indices, so a packet's tag names its
array; the scoreboard has one channel per array. Parameters: ``HYFLEXPIM_SEED``.
"""

from collections import deque

import numpy as np

import cocotb

from hyflexpim.models import program_matrix
from hyflexpim.models.encoding import INPUT_BITS, neurons_per_array
from hyflexpim.rtl.bus import Kind
from hyflexpim.tb import lib

DUT = lib.design()
P = DUT.params
ROWS, COLS = P.rows, P.cols
NA, WORDS, WB = DUT.n_arrays, DUT.words, DUT.word_bits
LAYOUT = DUT.layout
HEADER = LAYOUT["header"].shape
AW = HEADER["source"].shape.width
TW = HEADER["tag"].shape.width
DW = LAYOUT["data"].shape.width
BPW = DW // 8
PORT, AGG = DUT._port, DUT._agg_port
ARRAY_BITS = max(0, (NA - 1).bit_length())
MODE_REG, USED = 255, 1 << 15
BER = 0.0404


def cycles_per_vector(mode):
    return INPUT_BITS * COLS * (P.mlc_bits if mode == "mlc" else P.slc_bits)


class Tile:
    def __init__(self, rng, mode, ber, seed):
        self.mode = mode
        self.n = neurons_per_array(mode, COLS)
        self.w = rng.integers(-128, 128, (ROWS, self.n))
        self.pm = program_matrix(self.w, mode, ber=ber, seed=seed, rows=ROWS, cols=COLS,
                                 slc_bits=P.slc_bits, mlc_bits=P.mlc_bits)
        self.crossbar = self.pm.tiles[0].crossbar

    def run(self, x, vector):
        return self.pm.run(np.asarray(x)[None, :], first_vector=vector)[0].astype(np.int64)


class TB:
    """Clock, packet source and sink, crossbar bank, the per-array model state and the
    scoreboard of one module."""

    def __init__(self, dut, seed, idle=0.0, stall=0.0):
        self.dut = dut
        self.rng = np.random.default_rng(seed)
        self.prng = lib.rng(seed)
        self.idle, self.stall = idle, stall
        self.clock = lib.TbClock(dut, period_ns=1)
        self.board = lib.Scoreboard(name="partial sums")
        self.hold = lib.Hold()
        self.out_of = {}                            # output index -> array
        self.reset_model()
        self.received = []                          # (packet, cycle)
        self.vector_left = deque()                  # packets left of each vector, in order
        self.current = None                         # array whose vector is being sent

    def reset_model(self):
        """The documented state after reset: entries unused, arrays SLC, parity 0."""
        self.tables = [[None] * neurons_per_array("mlc", COLS) for _ in range(NA)]
        self.modes = ["slc"] * NA
        self.results = [0] * NA
        self.vectors = getattr(self, "vectors", [0] * NA)   # read-noise numbering goes on
        self.pending = [deque() for _ in range(NA)]         # packet counts of vectors in flight

    async def start(self):
        self.bank = lib.CrossbarBank(self.dut, self.clock, ROWS)
        for a in range(NA):
            self.bank.add(f"xbar__{a}")
        self.source = lib.StreamSource(self.dut, "i", self.clock, layout=LAYOUT,
                                       idle=lib.random_pauses(self.idle, self.prng)
                                       if self.idle else lib.never())
        self.sink = lib.StreamSink(self.dut, "o", self.clock, layout=LAYOUT,
                                   backpressure=lib.random_pauses(self.stall, self.prng)
                                   if self.stall else self.hold, callback=self._got)
        await self.clock.start(reset_cycles=3)

    def packet(self, kind, tag, data):
        self.source.send({"header": {"source": int(self.prng.randrange(2 ** AW)),
                                     "destination": PORT, "kind": kind, "tag": tag},
                          "data": data})

    def configure(self, a, mode, table, slots=None):
        """Cell mode and output table of array ``a``: ``table[j]`` the output index of
        slot ``j`` or None (unused); the entries of ``slots`` are written (default: all;
        the others keep their values)."""
        self.packet(Kind.CONFIG, a, (MODE_REG << 16) | int(mode == "mlc"))
        for j in (range(len(table)) if slots is None else slots):
            out = table[j]
            self.packet(Kind.CONFIG, a, (j << 16) | (0 if out is None else USED | out))
            if out is not None:
                self.out_of[out] = a
            self.tables[a][j] = out
        self.modes[a] = mode

    def words(self, a, x, order=None):
        """The ACTIVATION packets (tag, data) of input ``x`` for array ``a``."""
        xp = np.zeros(WORDS * BPW, dtype=np.int64)
        xp[:ROWS] = x
        out = []
        for w in range(WORDS):
            data = sum((int(v) & 0xFF) << (8 * b) for b, v in enumerate(xp[w * BPW:(w + 1) * BPW]))
            out.append(((a << WB) | w, data))
        return out

    def expect_vector(self, a, tile, x, what):
        """Queue the crossbar and the expected packets of the next vector of array ``a``."""
        assert tile.mode == self.modes[a]
        k = self.vectors[a]
        self.vectors[a] += 1
        self.bank.push(a, tile.crossbar, vector=k)
        y = tile.run(x, k)
        parity = self.results[a] % 2
        self.results[a] += 1
        count = 0
        for j in range(neurons_per_array(self.modes[a], COLS)):
            out = self.tables[a][j]
            if out is not None:
                self.board.expect((PORT, AGG, Kind.PARTIAL_SUM, (parity << (TW - 1)) | out,
                                   int(y[j]) & ((1 << DW) - 1)), channel=a, what=f"{what} slot {j}")
                count += 1
        self.pending[a].append(count)

    def send_vectors(self, jobs):
        """``jobs``: (array, tile, x, what); the words of different arrays interleave at
        random, a vector's words come in random order, one array's vectors in order."""
        queues = {}
        for a, tile, x, what in jobs:
            self.expect_vector(a, tile, x, what)
            ws = self.words(a, x)
            self.prng.shuffle(ws)
            queues.setdefault(a, deque()).extend(ws)
        while queues:
            a = self.prng.choice(sorted(queues))
            tag, data = queues[a].popleft()
            self.packet(Kind.ACTIVATION, tag, data)
            if not queues[a]:
                del queues[a]

    def _got(self, value, cycle):
        h = value["header"]
        pkt = (h["source"], h["destination"], h["kind"], h["tag"], value["data"])
        a = self.out_of.get(pkt[3] & ((1 << (TW - 1)) - 1))
        assert a is not None, f"packet {pkt} names no configured output"
        if self.current is None:
            while self.pending[a] and self.pending[a][0] == 0:
                self.pending[a].popleft()
            assert self.pending[a], f"packet {pkt} of array {a}: no vector in flight"
            self.current, self.left = a, self.pending[a].popleft()
        assert a == self.current, \
            f"array {a}'s packet {pkt} inside a vector of array {self.current}"
        self.board.check(pkt, channel=a, cycle=cycle)
        self.received.append((pkt, cycle, a))
        self.left -= 1
        if not self.left:
            self.current = None

    async def drain(self, max_cycles):
        await self.clock.wait(lambda: not self.source.busy and not self.board.pending,
                              max_cycles, f"{self.board.pending} partial sums", events=True)
        await self.clock.cycles(20)
        assert not self.board.pending and self.current is None

    async def reset(self, cycles=3):
        await self.clock.reset(cycles)
        lib.withdraw(self.source)
        self.bank.flush()
        self.board.flush()
        self.current = None
        self.reset_model()
        await self.clock.cycles(2)
        assert not int(self.dut.o__valid.value), "a packet is offered after the reset"


def random_table(rng, mode, outs, used=1.0):
    """A table for ``mode``: the first neurons(mode) slots use outputs from ``outs``
    (with probability ``used``), the rest unused."""
    n = neurons_per_array(mode, COLS)
    table = [None] * neurons_per_array("mlc", COLS)
    for j in range(n):
        if rng.random() < used:
            table[j] = outs[j]
    return table


def output_sets(rng):
    """Disjoint output indices per array, the largest (2^(tag_width-1) - 1) among them."""
    top = 2 ** (TW - 1)
    nm = neurons_per_array("mlc", COLS)
    assert NA * nm <= top, "too few output indices for disjoint sets"
    perm = list(rng.permutation(top - 1)[:NA * nm - 1]) + [top - 1]
    rng.shuffle(perm)
    return [[int(v) for v in perm[a * nm:(a + 1) * nm]] for a in range(NA)]


async def layer(tb, ber, seed, vectors=2, used=0.8, modes=None):
    outs = output_sets(tb.rng)
    tiles = []
    for a in range(NA):
        mode = modes[a] if modes else ("slc", "mlc")[int(tb.rng.integers(2))]
        tiles.append(Tile(tb.rng, mode, ber, seed + a))
        tb.configure(a, mode, random_table(tb.rng, mode, outs[a], used))
    jobs = [(a, tiles[a], tb.rng.integers(-128, 128, ROWS), f"array {a} vector {v}")
            for v in range(vectors) for a in range(NA)]
    tb.send_vectors(jobs)
    await tb.drain((vectors + 1) * cycles_per_vector("mlc") + 500)
    return tiles


@cocotb.test()
async def random_slc_mlc_noise_off_and_on(dut):
    """Random tiles, modes and tables (some entries unused), noise off then on, words of
    the arrays interleaved in random order, random gaps and backpressure."""
    seed = lib.seed("random_slc_mlc_noise_off_and_on")
    tb = TB(dut, seed, idle=0.3, stall=0.3)
    await tb.start()
    for i, ber in enumerate((None, BER)):
        await layer(tb, ber, seed + 10 * i, modes=[("slc", "mlc")[(a + i) % 2] for a in range(NA)])
    assert tb.board.checked > 0
    dut._log.info(f"{tb.board.checked} partial sums exact")


@cocotb.test()
async def long_stall_then_full_rate(dut):
    """``o.ready`` held low for 5 vector times with 4 vectors per array queued (input
    registers and arrays fill, input refused), released: every packet exact and in
    order, then each array at one vector per 8 x cols x steps cycles."""
    seed = lib.seed("long_stall_then_full_rate")
    tb = TB(dut, seed)
    await tb.start()
    outs = output_sets(tb.rng)
    tiles = [Tile(tb.rng, "mlc", BER, seed + a) for a in range(NA)]
    for a in range(NA):
        tb.configure(a, "mlc", random_table(tb.rng, "mlc", outs[a]))
    await tb.drain(100)
    tb.hold.held = True
    n = 5
    tb.send_vectors([(a, tiles[a], tb.rng.integers(-128, 128, ROWS), f"array {a} #{v}")
                     for v in range(n) for a in range(NA)])
    cpv = cycles_per_vector("mlc")
    await tb.clock.cycles(5 * cpv)
    assert not tb.received, "packets left while the output was held"
    assert tb.source.busy and not int(dut.i__ready.value), "the stall did not reach the input"
    release = tb.clock.cycle
    tb.hold.held = False
    await tb.drain(2 * n * cpv + 500)
    # the first packet of every vector of array 0 after the release
    firsts, left = [], 0
    for pkt, cycle, a in tb.received:
        if a == 0:
            if left == 0:
                firsts.append(cycle)
                left = sum(o is not None for o in tb.tables[0][:neurons_per_array("mlc", COLS)])
            left -= 1
    assert len(firsts) == n
    steady = [c for c in firsts if c - release >= cpv // 2]
    gaps = {b - a for a, b in zip(steady, steady[1:])}
    dut._log.info(f"{n - len(steady)} vectors waited; then vector gaps {sorted(gaps)} "
                  f"(ideal {cpv})")
    assert len(steady) >= 2 and gaps == {cpv}, f"gaps {sorted(gaps)}, ideal {cpv}"


@cocotb.test()
async def reconfiguration_narrower_layer(dut):
    """Three layers on the same module, the output sets kept:

    1. every array MLC, every entry used;
    2. narrower: array 0 SLC, only its SLC slots rewritten (two used, the others
       cleared), so its slots past the SLC neurons still hold layer 1's used entries:
       they send nothing (an SLC result has ``cols // 8`` slots); the other arrays MLC
       with every entry rewritten, every other one used: no packet from a cleared entry;
    3. array 0 back to MLC with only its SLC slots rewritten: the entries past them are
       layer 1's again (registers keep their values) and send with layer 1's outputs.

    Every packet is the golden value of the layer's tiles; nothing stale in any word."""
    seed = lib.seed("reconfiguration_narrower_layer")
    tb = TB(dut, seed, idle=0.2, stall=0.2)
    await tb.start()
    outs = output_sets(tb.rng)
    n_mlc, n_slc = neurons_per_array("mlc", COLS), neurons_per_array("slc", COLS)
    cpv = cycles_per_vector("mlc")

    async def run(tiles, what, vectors=2):
        start = tb.board.checked
        tb.send_vectors([(a, tiles[a], tb.rng.integers(-128, 128, ROWS), f"{what} {a} #{v}")
                         for v in range(vectors) for a in range(NA)])
        await tb.drain((vectors + 1) * cpv + 500)
        return tb.board.checked - start

    tiles = [Tile(tb.rng, "mlc", None, seed + a) for a in range(NA)]
    for a in range(NA):
        tb.configure(a, "mlc", list(outs[a]))
    assert await run(tiles, "wide") == 2 * NA * n_mlc

    tiles = [Tile(tb.rng, "slc" if a == 0 else "mlc", None, seed + 5 + a) for a in range(NA)]
    table0 = [None] * n_mlc
    table0[0], table0[n_slc - 1] = outs[0][0], outs[0][n_slc - 1]
    tb.configure(0, "slc", table0, slots=range(n_slc))
    assert tb.tables[0][n_slc:] == outs[0][n_slc:]        # layer 1's entries stay
    for a in range(1, NA):
        tb.configure(a, "mlc", [o if j % 2 == 0 else None for j, o in enumerate(outs[a])])
    assert await run(tiles, "narrow") == 2 * (2 + (NA - 1) * (n_mlc // 2))

    tiles[0] = Tile(tb.rng, "mlc", None, seed + 9)
    tb.configure(0, "mlc", list(outs[0]), slots=range(n_slc))
    assert await run(tiles, "MLC again") == 2 * (n_mlc + (NA - 1) * (n_mlc // 2))


@cocotb.test()
async def reset_in_every_state(dut):
    """Synchronous reset: idle (the configuration is lost: after it a vector sends no
    packet, the documented reset state); with half the words of a vector received (the
    rest of a new vector alone must not complete it); mid-conversion; with packets
    waiting for ``ready``; stalled with every array, its buffers and the input registers
    full (input refused). After each: the
    configuration rewritten and a vector per array exact, parity from 0 again."""
    seed = lib.seed("reset_in_every_state")
    tb = TB(dut, seed)
    await tb.start()
    outs = output_sets(tb.rng)
    tiles = [Tile(tb.rng, ("slc", "mlc")[a % 2], BER, seed + a) for a in range(NA)]
    cpv = cycles_per_vector("mlc")

    def config():
        for a in range(NA):
            tb.configure(a, tiles[a].mode, random_table(tb.rng, tiles[a].mode, outs[a]))

    async def clean(state):
        tb.hold.held = False
        config()
        start = tb.board.checked
        tb.send_vectors([(a, tiles[a], tb.rng.integers(-128, 128, ROWS), f"after {state} {a}")
                         for a in range(NA)])
        await tb.drain(2 * cpv + 500)
        assert tb.board.checked > start
        dut._log.info(f"reset {state}: exact after it")

    # idle: configuration back to the reset state
    config()
    await tb.drain(200)
    await tb.reset()
    samples = tb.bank.samples
    tb.send_vectors([(a, Tile(tb.rng, "slc", None, 0), tb.rng.integers(-128, 128, ROWS),
                      f"unconfigured {a}") for a in range(NA)])
    await tb.clock.wait(lambda: tb.bank.samples >= samples + NA * INPUT_BITS, 2 * cpv,
                        "the unconfigured vectors", events=True)
    await tb.clock.cycles(COLS * P.mlc_bits + 100)
    await tb.drain(100)              # nothing expected: any packet fails
    assert not tb.received, "an unconfigured array sent partial sums"
    await clean("in idle")

    # half a vector received
    x_old = tb.rng.integers(-128, 128, ROWS)
    for tag, data in tb.words(0, x_old)[:WORDS // 2 or 1]:
        tb.packet(Kind.ACTIVATION, tag, data)
    await tb.drain(100)
    await tb.reset()
    config()
    x = tb.rng.integers(-128, 128, ROWS)
    ws = tb.words(0, x)
    samples = tb.bank.samples
    if WORDS > 1:
        for tag, data in ws[WORDS // 2:]:
            tb.packet(Kind.ACTIVATION, tag, data)
        await tb.clock.cycles(3 * DUT._read_cycles + 50)
        assert tb.bank.samples == samples, "a vector started from words received before the reset"
    tb.expect_vector(0, tiles[0], x, "after a half vector")
    for tag, data in ws[:WORDS // 2]:
        tb.packet(Kind.ACTIVATION, tag, data)
    await tb.drain(2 * cpv)
    await clean("with half a vector received")

    # mid-conversion
    tb.send_vectors([(a, tiles[a], tb.rng.integers(-128, 128, ROWS), f"dropped {a}")
                     for a in range(NA)])
    samples = tb.bank.samples
    await tb.clock.wait(lambda: tb.bank.samples >= samples + 2, 2 * cpv, "conversions",
                        events=True)
    assert tb.board.pending, "nothing in flight"
    await tb.reset()
    await clean("mid-conversion")

    # packets waiting for ready
    tb.hold.held = True
    tb.send_vectors([(a, tiles[a], tb.rng.integers(-128, 128, ROWS), f"dropped {a}")
                     for a in range(NA)])
    await tb.clock.wait(lambda: int(dut.o__valid.value), 2 * cpv, "a partial sum")
    await tb.clock.cycles(10)
    await tb.reset()
    await clean("with packets waiting")

    # stalled, input registers full
    tb.hold.held = True
    tb.send_vectors([(a, tiles[a], tb.rng.integers(-128, 128, ROWS), f"dropped {a} #{v}")
                     for v in range(6) for a in range(NA)])
    await tb.clock.cycles(3 * cpv)
    assert not int(dut.i__ready.value) and tb.source.busy, "the stall did not reach the input"
    await tb.reset()
    await clean("while stalled")


@cocotb.test()
async def boundaries_tags_and_kinds(dut):
    """Tags and kinds at the edges: ACTIVATION for an array index past the last (only
    when the array bits allow one: dropped, nothing blocked), CONFIG with tag n_arrays
    and 2^tag_width - 1 (no array: ignored), PARTIAL_SUM / RESULT packets (ignored), the
    largest output index (2^(tag_width-1) - 1) used, then a vector per array exact."""
    seed = lib.seed("boundaries_tags_and_kinds")
    tb = TB(dut, seed, idle=0.2, stall=0.2)
    await tb.start()
    outs = output_sets(tb.rng)
    tiles = [Tile(tb.rng, "mlc", None, seed + a) for a in range(NA)]
    for a in range(NA):
        tb.configure(a, "mlc", random_table(tb.rng, "mlc", outs[a]))
    for tag in {NA, 2 ** TW - 1} - set(range(NA)):
        tb.packet(Kind.CONFIG, tag, (MODE_REG << 16) | 0)
        for j in range(neurons_per_array("mlc", COLS)):
            tb.packet(Kind.CONFIG, tag, j << 16)          # would clear the entries
    if NA < 2 ** ARRAY_BITS:
        for w in range(WORDS):
            tb.packet(Kind.ACTIVATION, (NA << WB) | w, 2 ** DW - 1)
    for kind in (Kind.PARTIAL_SUM, Kind.RESULT):
        for tag in (0, 2 ** TW - 1):
            tb.packet(kind, tag, 2 ** DW - 1)
    samples = tb.bank.samples
    await tb.drain(500)
    assert tb.bank.samples == samples, "a packet that is no activation started a vector"
    tb.send_vectors([(a, tiles[a], tb.rng.integers(-128, 128, ROWS), f"array {a}")
                     for a in range(NA)])
    await tb.drain(2 * cycles_per_vector("mlc") + 500)
    assert tb.board.checked == NA * sum(o is not None for o in tb.tables[0])
    tops = [p[3] & ((1 << (TW - 1)) - 1) for p, _, _ in tb.received]
    assert 2 ** (TW - 1) - 1 in tops, "the largest output index was not sent"
