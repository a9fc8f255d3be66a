"""cocotb unit-level testbench of the digital module's SFU path (``DigitalModule``) on
its generated Verilog: RESULT packets in, ACTIVATION words out, every word compared
with the golden chain ``to_int8(g(from_int32(acc, s1)), s2)`` of :mod:`hyflexpim.models.fp16`
(``g = gelu`` or the identity), packed as the module documentation says (output
``w * B + b`` in byte ``b`` of word ``w``, bytes past ``n`` and pad words 0), in order,
with its source, destination and tag.

The module is rebuilt from the registry (:func:`hyflexpim.tb.lib.design`); its port,
tag width, word width and GELU degree come from it. :class:`TB` mirrors the CONFIG
registers as the packets are queued (the source is in order, so every RESULT gets the
``s1``, ``s2`` and GELU choice of the writes before it: "registers take effect for
results that enter after the write"), and sends vectors under the module's rule (the
results of vector ``v + 2`` only after every word of vector ``v`` has left).

The INT32 inputs (:func:`layer_results`) are the outputs of a random INT8 layer
programmed by :func:`hyflexpim.models.program_matrix` (noise off, or programming noise
at the measured MLC BER), with the INT32 range ends mixed in.

Parameters: ``HYFLEXPIM_SEED``; ``HYFLEXPIM_PARAMS`` (JSON: ``vectors``, default 6).
"""

import numpy as np

import cocotb

from hyflexpim.models import fp16, program_matrix
from hyflexpim.rtl.bus import Kind
from hyflexpim.rtl.digital import DIG_REGISTERS, DigReg
from hyflexpim.tb import lib

DUT = lib.design()
LAYOUT = DUT.layout
NMAX = DUT.max_outputs                      # 2 ** (tag_width - 1)
TW = NMAX.bit_length()                      # tag_width
B = DUT.bytes_per_word
PORT = DUT.port
DEGREE = DUT._degree
P = lib.params()
BER = 0.0404
#: the reset values of docs/registers.md (Digital module, SFU path)
RESET = {DigReg.SCALE_IN: 0x3C00, DigReg.SCALE_OUT: 0x3C00, DigReg.GELU: 1, DigReg.DEST: 0,
         DigReg.OUTPUTS: NMAX, DigReg.WORDS: 0}


def golden_int8(acc, s1, s2, gelu):
    """INT8 of one output: ``to_int8(g(from_int32(acc, s1)), s2)``."""
    h = fp16.from_int32(np.array([acc], np.int64), s1)
    if gelu:
        h = fp16.gelu(h, degree=DEGREE)
    return int(fp16.to_int8(h, s2)[0])


def layer_results(rng, vectors, n, ber, seed):
    """INT32 outputs of ``vectors`` inputs through a random 32 x ``n`` INT8 layer (mixed
    SLC / MLC columns, noise off or at ``ber``); the INT32 range ends mixed in."""
    w = rng.integers(-128, 128, (32, n))
    modes = [str(x) for x in rng.choice(["slc", "mlc"], n)]
    pm = program_matrix(w, modes, ber=ber, seed=seed, rows=16, cols=32,
                        saturation="allow")
    y = pm.run(rng.integers(-128, 128, (vectors, 32))).astype(np.int64)
    edges = np.array([(1 << 31) - 1, -(1 << 31), 0, 1, -1, 65504, -65520])
    flat = y.reshape(-1)
    pos = rng.choice(flat.size, min(len(edges), flat.size), replace=False)
    flat[pos] = edges[:len(pos)]
    return flat.reshape(y.shape)


def h(v):
    return int(fp16.from_float(v))


class TB:
    """Clock, packet source on ``i``, sink on ``o`` (a scoreboard of the words), the
    register mirror and the vector sequencing."""

    def __init__(self, dut, name, idle=0.0, backpressure=None):
        self.dut = dut
        self.seed = lib.seed(name)
        self.rng = np.random.default_rng(self.seed)
        self.prng = lib.rng(self.seed)
        self.clock = lib.TbClock(dut)
        self.board = lib.Scoreboard(name=name)
        self.regs = dict(RESET)
        self.ends = []                    # board.checked when vector v is complete
        self.parity = 0
        self.src = lib.StreamSource(dut, "i", self.clock, layout=LAYOUT,
                                    idle=lib.random_pauses(idle, self.prng))
        # a probability of not ready per cycle (seeded from the test), or a pause generator
        self.bp = (lib.random_pauses(backpressure, self.prng)
                   if isinstance(backpressure, float) else
                   backpressure if backpressure is not None else lib.never())
        self.out = []                     # (tag, cycle) of every word out
        self.sink = lib.StreamSink(dut, "o", self.clock, layout=LAYOUT, backpressure=self.bp,
                                   callback=self._check)

    def _check(self, value, cycle):
        hd = value["header"]
        self.board.check((hd["source"], hd["destination"], hd["kind"], hd["tag"],
                          value["data"]), cycle=cycle)
        self.out.append((hd["tag"], cycle))

    async def start(self):
        await self.clock.start()

    def push(self, kind, tag, data):
        self.src.send({"header": {"source": 0, "destination": PORT, "kind": kind, "tag": tag},
                       "data": data})

    def config(self, reg, value):
        self.push(Kind.CONFIG, 0, DIG_REGISTERS.word(reg, value))
        r = self.regs
        if reg == DigReg.OUTPUTS:
            value = NMAX if value == 0 or value > NMAX else value
        if reg == DigReg.WORDS:
            value = min(value, 1 << TW)
        r[reg] = value

    def expect_vector(self, out8):
        """Queue the expected words of a vector of INT8 outputs ``out8`` (its length is
        the OUTPUTS register)."""
        n = self.regs[DigReg.OUTPUTS]
        assert len(out8) == n
        nwords = max(self.regs[DigReg.WORDS], -(-n // B))
        vals = list(out8) + [0] * (nwords * B - n)
        for w in range(nwords):
            data = sum((vals[w * B + b] & 0xFF) << (8 * b) for b in range(B))
            self.board.expect((PORT, self.regs[DigReg.DEST], Kind.ACTIVATION, w, data),
                              what=f"vector {len(self.ends)} word {w}")
        self.ends.append(self.board.checked + self.board.pending)

    def send_vector(self, accs, order=None, between=None):
        """RESULT packets of one vector (outputs ``j`` in ``order``, default random);
        ``between(k)`` may queue CONFIG writes before the ``k``-th item. Each item's INT8
        is the golden chain with the registers it enters under."""
        n = len(accs)
        order = self.rng.permutation(n) if order is None else order
        out8 = [0] * n
        for k, j in enumerate(order):
            if between is not None:
                between(k)
            r = self.regs
            out8[j] = golden_int8(int(accs[j]), r[DigReg.SCALE_IN], r[DigReg.SCALE_OUT],
                                  r[DigReg.GELU] & 1)
            self.push(Kind.RESULT, self.parity << (TW - 1) | int(j), int(accs[j]) & 0xFFFFFFFF)
        self.parity ^= 1
        self.expect_vector(out8)

    def vector_done(self, v):
        return self.board.checked >= self.ends[v]

    async def run_vectors(self, vectors, max_cycles=200_000, **kw):
        """Send ``vectors`` (lists of INT32) with at most two in flight; wait for all."""
        first = len(self.ends)
        for i, accs in enumerate(vectors):
            v = first + i
            if v >= 2:
                await self.clock.wait(lambda: self.vector_done(v - 2), max_cycles,
                                      f"vector {v - 2}", events=True)
            self.send_vector(accs, **kw)
        await self.settle(max_cycles)

    async def settle(self, max_cycles=200_000):
        await self.clock.wait(lambda: not self.board.pending and not self.src.busy,
                              max_cycles, "the words", events=True)
        await self.clock.cycles(30)       # nothing more may come out
        assert not self.board.pending

    def configure(self, s1, s2, gelu, n, words=0, dest=1):
        for reg, value in ((DigReg.SCALE_IN, s1), (DigReg.SCALE_OUT, s2), (DigReg.GELU, gelu),
                           (DigReg.DEST, dest), (DigReg.OUTPUTS, n), (DigReg.WORDS, words)):
            self.config(reg, value)

    def scales_for(self, accs):
        """``s1`` maps the largest |acc| (edges left out) to 4, ``s2`` = 30 (configuration,
        not expectation)."""
        a = np.abs(np.asarray(accs, np.int64))
        big = a[a < (1 << 20)]
        return h(4.0 / max(1, int(big.max()) if big.size else 1)), h(30.0)

    def done(self, at_least):
        cocotb.log.info(f"{self.board.name}: {self.board.checked} words exact")
        assert self.board.checked >= at_least and not self.board.pending


# ----------------------------------------------------------------------------- tests

@cocotb.test()
async def random_noise_off_and_on_gelu_on_and_off(dut):
    """Layer outputs (noise off, then on) through the chain with GELU on and off, several
    output counts (1, B, B + 1, 12, the maximum) and pad words, packets of other kinds mixed
    in (consumed, ignored), random input gaps and output backpressure."""
    tb = TB(dut, "random_noise_off_and_on_gelu_on_and_off", idle=0.3, backpressure=0.3)
    await tb.start()
    n_vec = P.get("vectors", 6)
    total = 0
    cases = [(None, 1, 12, 0), (BER, 1, 1, 4), (None, 0, B + 1, 0), (BER, 0, NMAX, 0),
             (None, 1, B, 3)]
    for ber, gelu, n, words in cases:
        accs = layer_results(tb.rng, n_vec, n, ber, tb.seed)
        s1, s2 = tb.scales_for(accs)
        tb.configure(s1, s2, gelu, n, words)

        def noise(k):
            if tb.rng.random() < 0.15:
                kind = [Kind.ACTIVATION, Kind.PARTIAL_SUM][int(tb.rng.integers(2))]
                tb.push(kind, int(tb.rng.integers(1 << TW)), int(tb.rng.integers(1 << 32)))
        await tb.run_vectors(accs, between=noise)
        total += n_vec * max(words, -(-n // B))
    tb.done(total)


@cocotb.test()
async def gelu_switched_with_items_in_flight(dut):
    """GELU written on / off between the RESULT packets of a vector (back to back, every
    few items, and alternating item by item): each item keeps the choice it entered
    with, while items of the other choice are still in the pipeline."""
    tb = TB(dut, "gelu_switched_with_items_in_flight")
    await tb.start()
    n = 16
    accs = layer_results(tb.rng, 6, n, None, tb.seed)
    s1, s2 = tb.scales_for(accs)
    tb.configure(s1, s2, 1, n)
    pattern_of = [lambda k: k % 2, lambda k: (k // 3) % 2, lambda k: int(k >= n // 2),
                  lambda k: int(tb.rng.random() < 0.5)]

    for v, accs_v in enumerate(accs):
        choose = pattern_of[v % len(pattern_of)]
        tb.send_vector(accs_v, between=lambda k: tb.config(DigReg.GELU, choose(k)))
        if v >= 1:
            await tb.clock.wait(lambda: tb.vector_done(v - 1), 50_000, "a vector", events=True)
    await tb.settle()
    # the switch changed something: a vector's INT8 differ between GELU on and off
    on = [golden_int8(int(a), s1, s2, 1) for a in accs[0]]
    off = [golden_int8(int(a), s1, s2, 0) for a in accs[0]]
    assert on != off
    tb.done(6 * -(-n // B))


@cocotb.test()
async def long_stall_then_full_rate(dut):
    """Output held not ready for far longer than the pipeline and its FIFOs take to fill
    (``stall`` cycles, several vector times) while two vectors' results (the most the
    module's rule allows in flight) arrive, then released: every word exact and in
    order, nothing before the release, and both vectors' words leave back to back (one
    word per cycle); three rounds, the last with the maximum number of outputs."""
    hold = lib.Hold(True)
    tb = TB(dut, "long_stall_then_full_rate", backpressure=hold)
    await tb.start()
    total = 0
    for rnd, n in enumerate((12, 13, NMAX)):
        accs = layer_results(tb.rng, 2, n, BER, tb.seed + rnd)
        s1, s2 = tb.scales_for(accs)
        tb.configure(s1, s2, rnd % 2, n, words=4 if rnd == 1 else 0)
        nwords = max(4 if rnd == 1 else 0, -(-n // B))
        stall = 8 * (DUT.latency + 2 * n)
        hold.held = True
        base = len(tb.out)
        tb.send_vector(accs[0])
        tb.send_vector(accs[1])
        await tb.clock.cycles(stall)
        assert len(tb.out) == base, "a word left while the output was held"
        assert not tb.src.busy, "the module did not take both vectors' results"
        hold.held = False
        await tb.clock.wait(lambda: len(tb.out) == base + 2 * nwords, 10_000, "the words",
                            events=True)
        cycles = [c for _, c in tb.out[base:]]
        assert lib.back_to_back(cycles), f"round {rnd}: words at cycles {cycles}"
        await tb.settle()
        total += 2 * nwords
    tb.done(total)


async def _reset(tb):
    """Synchronous reset now; drop the traffic the testbench had not delivered."""
    await tb.clock.reset()
    lib.withdraw(tb.src)
    tb.board.flush()
    tb.ends, tb.parity = [], 0
    tb.regs = dict(RESET)
    tb.out.clear()
    await tb.clock.cycles(3)


@cocotb.test()
async def reset_in_every_state(dut):
    """Reset while idle, mid-pipeline (items in the converters), mid-vector (all but
    one output of every word arrived, no word complete), with two vectors' words
    waiting for a held output, and with the output held after part of a vector left
    (the input never stalls: results go to the vector buffers whatever the output
    does); after each the registers read their documented reset values (a vector sent
    without any CONFIG uses them) and a configured run is exact."""
    hold = lib.Hold(False)
    tb = TB(dut, "reset_in_every_state", backpressure=hold)
    await tb.start()
    n = 12
    accs = layer_results(tb.rng, 2, n, None, tb.seed)
    s1, s2 = tb.scales_for(accs)

    async def clean_run():
        # reset values: s1 = s2 = 1.0, GELU on, DEST 0, OUTPUTS = max, WORDS 0
        small = tb.rng.integers(-200, 200, NMAX)
        tb.send_vector(small)
        await tb.settle()
        tb.configure(s1, s2, 0, n)
        await tb.run_vectors(accs[:1])

    states = ["idle", "mid-pipeline", "mid-vector", "output waiting", "output mid-vector"]
    for state in states:
        cocotb.log.info(f"reset: {state}")
        tb.out.clear()
        tb.configure(s1, s2, 1, n, dest=2)
        if state == "idle":
            await tb.settle()
        elif state == "mid-pipeline":
            tb.send_vector(accs[0])
            await tb.clock.wait(lambda: not tb.src.busy, 1000, "the items", events=True)
            await tb.clock.cycles(2)
            assert not tb.out
        elif state == "mid-vector":
            # every word of the vector but its last output: no word complete, none expected
            for j in (j for j in range(n) if j % B != B - 1):
                tb.push(Kind.RESULT, tb.parity << (TW - 1) | j, int(accs[0][j]) & 0xFFFFFFFF)
            await tb.clock.wait(lambda: not tb.src.busy, 1000, "the items", events=True)
            await tb.clock.cycles(DUT.latency + 10)
        elif state == "output waiting":
            hold.held = True
            for v in range(2):
                tb.send_vector(accs[v])
            await tb.clock.cycles(DUT.latency + 8 * n)
            assert not tb.out and not tb.src.busy
        else:
            tb.send_vector(accs[0])
            tb.send_vector(accs[1])
            await tb.clock.wait(lambda: len(tb.out) >= 2, 5000, "a word", events=True)
            hold.held = True
            await tb.clock.cycles(5)
            assert len(tb.out) < 2 * -(-n // B)
        await _reset(tb)
        hold.held = False
        await clean_run()
    tb.done(1)


@cocotb.test()
async def scales_written_with_items_in_flight(dut):
    """SCALE_IN written between the RESULT packets of a vector: a write takes effect for
    the results that enter after it, so an item still in the pipeline keeps the scale it
    entered with. SCALE_OUT is read as the words leave the requantiser (like OUTPUTS,
    WORDS and DEST, docs/registers.md): it is written between vectors, once the previous
    vector's words have left, to a different value each time."""
    tb = TB(dut, "scales_written_with_items_in_flight")
    await tb.start()
    n = 16
    accs = layer_results(tb.rng, 4, n, None, tb.seed)
    s1, s2 = tb.scales_for(accs)
    tb.configure(s1, s2, 1, n)
    f1 = float(fp16.to_float(np.uint16(s1)))
    s_ins = [s1, h(f1 * 0.5), h(f1 * 2)]
    s_outs = [s2, h(15.0)]

    def write(k):
        tb.config(DigReg.SCALE_IN, s_ins[k % len(s_ins)])
    for v, acc in enumerate(accs):
        tb.config(DigReg.SCALE_OUT, s_outs[v % len(s_outs)])
        await tb.run_vectors([acc], between=write)
    tb.done(4 * -(-n // B))
