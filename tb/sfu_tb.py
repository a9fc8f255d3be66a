"""cocotb testbench of the SFU function units (``rtl/sfu.py``) on their generated Verilog.

The unit under test is rebuilt from the registry (:func:`hyflexpim.tb.lib.design`): its
kind (exp, GELU, softmax, layer norm), lanes, row length, slots, degree and eps come from
it, and its port layouts pack the beats. ``HYFLEXPIM_SEED`` seeds the random tests,
``HYFLEXPIM_COUNT`` sets how many random inputs / rows are sent,
``HYFLEXPIM_EXHAUSTIVE=1`` sends all 65,536 bit patterns (element-wise units),
``HYFLEXPIM_ROWS`` the rows of the row throughput test, ``HYFLEXPIM_REPORT`` names a file
to which the throughput tests append one JSON line of measured figures (read by
``benchmarks/sfu_throughput.py``).

Parts (:class:`TB`): a :class:`~hyflexpim.tb.lib.StreamSource` of input beats (random
gaps) and a :class:`~hyflexpim.tb.lib.StreamSink` of output beats (random
backpressure); every output word is checked in order against the golden model
(:mod:`hyflexpim.models.fp16.functions`). :class:`HeldTB` (no gaps, the output held
under a :class:`~hyflexpim.tb.lib.Hold`) runs :func:`long_stall_then_full_rate` and
:func:`reset_in_every_state` on every kind.
"""

import os

import numpy as np

import cocotb

from hyflexpim.models import fp16
from hyflexpim.models.fp16 import functions as F
from hyflexpim.rtl.sfu import ExpUnit, GeluUnit, LayerNormUnit, SoftmaxUnit
from hyflexpim.tb import lib

DUT = lib.design()
KIND = {ExpUnit: "exp", GeluUnit: "gelu", SoftmaxUnit: "softmax",
        LayerNormUnit: "layernorm"}[type(DUT)]
LANES = DUT.lanes
N = getattr(DUT, "n", None)
SLOTS = getattr(DUT, "slots", None)
DEGREE = getattr(DUT, "degree", F.EXP_DEGREE)
EPS = getattr(DUT, "eps", None)
IN, OUT = DUT.i.payload.shape(), DUT.o.payload.shape()
COUNT = int(os.environ.get("HYFLEXPIM_COUNT", "400"))
EXHAUSTIVE = os.environ.get("HYFLEXPIM_EXHAUSTIVE", "") not in ("", "0")
REPORT = os.environ.get("HYFLEXPIM_REPORT", "")
ROWS = int(os.environ.get("HYFLEXPIM_ROWS", "6"))
SPECIALS = [0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE00, 0x0001, 0x8001, 0x03FF,
            0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF, 0x4A00, 0xCC80, 0x498B, 0x498C, 0xCC55,
            0xCC56, 0x3800, 0xB800, 0x4800, 0xC800]


def golden(x, gamma=None, beta=None):
    if KIND == "exp":
        return F.exp(x, degree=DEGREE)
    if KIND == "gelu":
        return F.gelu(x, degree=DEGREE)
    if KIND == "softmax":
        return F.softmax(x, lanes=LANES, slots=SLOTS, degree=DEGREE)
    return F.layernorm(x, gamma, beta, EPS, lanes=LANES, slots=SLOTS)


def report(**fig):
    params = dict(kind=KIND, lanes=LANES, n=N, slots=SLOTS, degree=DEGREE)
    lib.report("sfu", REPORT, **{k: v for k, v in params.items() if v is not None}, **fig)


class TB:
    """Clock, input source (gaps with probability ``gap``) and output sink (not ready
    with probability ``stall``) of one unit; :meth:`run` sends beats and collects the
    output words."""

    def __init__(self, dut, rng, gap=0.3, stall=0.3):
        self.dut = dut
        self.prng = lib.rng(int(rng.integers(1 << 32)))
        self.gap, self.stall = gap, stall
        self.clock = lib.TbClock(dut)

    async def start(self):
        self.source = lib.StreamSource(self.dut, "i", self.clock, layout=IN,
                                       idle=lib.random_pauses(self.gap, self.prng))
        self.sink = lib.StreamSink(self.dut, "o", self.clock, layout=OUT, keep=True,
                                   backpressure=lib.random_pauses(self.stall, self.prng))
        await self.clock.start()

    async def run(self, beats, n_words):
        """Send ``beats`` (one value of the input layout each); return the output words
        (uint16) once ``n_words`` have arrived."""
        for beat in beats:
            self.source.send(beat)
        await self.clock.wait(lambda: self.sink.count * LANES >= n_words,
                              100 * len(beats) + 2000, f"{n_words} results")
        return np.array([w for beat, _ in self.sink.received for w in beat], np.uint16)

    @property
    def out_cycles(self):
        """Cycle of every output beat."""
        return [c for _, c in self.sink.received]


def check(got, want, what):
    want = np.asarray(want, np.uint16).reshape(-1)
    assert len(got) == len(want), f"{what}: {len(got)} results, {len(want)} expected"
    bad = np.nonzero(got != want)[0]
    assert len(bad) == 0, (f"{what}: {len(bad)} mismatches, first at word {bad[0]}: "
                           f"got {got[bad[0]]:#06x}, expected {want[bad[0]]:#06x}")


# ----------------------------------------------------------------------------- element-wise

def elementwise_inputs(rng):
    if EXHAUSTIVE:
        x = np.arange(1 << 16, dtype=np.uint16)
        rng.shuffle(x)
    else:
        x = np.concatenate([np.array(SPECIALS, np.uint16),
                            rng.integers(0, 1 << 16, COUNT).astype(np.uint16),
                            fp16.from_float(rng.uniform(-20, 14, COUNT))])
    pad = (-len(x)) % LANES
    return np.concatenate([x, np.zeros(pad, np.uint16)])


@cocotb.test(skip=KIND not in ("exp", "gelu"))
async def elementwise_bit_exact(dut):
    """Random (or all) bit patterns with random gaps and backpressure."""
    rng = np.random.default_rng(lib.seed("elementwise_bit_exact"))
    x = elementwise_inputs(rng)
    tb = TB(dut, rng, gap=0.0 if EXHAUSTIVE else 0.3, stall=0.0 if EXHAUSTIVE else 0.3)
    await tb.start()
    beats = [[int(w) for w in x[k:k + LANES]] for k in range(0, len(x), LANES)]
    got = await tb.run(beats, len(x))
    check(got, golden(x), f"{KIND} on {len(x)} inputs")


@cocotb.test(skip=KIND not in ("exp", "gelu"))
async def elementwise_throughput(dut):
    """No gaps, no backpressure: one beat per cycle after the pipeline latency."""
    rng = np.random.default_rng(lib.seed("elementwise_throughput"))
    n = 200
    x = rng.integers(0, 1 << 16, n * LANES).astype(np.uint16)
    tb = TB(dut, rng, gap=0.0, stall=0.0)
    await tb.start()
    got = await tb.run([[int(w) for w in x[k:k + LANES]] for k in range(0, len(x), LANES)],
                       len(x))
    check(got, golden(x), "throughput run")
    # from the first input transfer to the first output transfer
    latency = tb.sink.first - tb.source.first
    per_cycle = n / (tb.sink.last - tb.sink.first + 1)
    cocotb.log.info(f"{KIND}: latency {latency} cycles, {per_cycle:.3f} beats per cycle "
                    f"({LANES} lanes)")
    report(test="elementwise_throughput", first_out=latency, per_cycle_per_lane=per_cycle)
    assert per_cycle == 1.0


# ----------------------------------------------------------------------------- rows

def adversarial_rows(rng):
    ninf = fp16.NEG_INF
    rows = []
    rows.append(fp16.from_float(rng.standard_normal(N) * 1000))        # large range
    rows.append(np.full(N, fp16.from_float(1.5), np.uint16))              # all equal (ties)
    r = fp16.from_float(rng.standard_normal(N)); r[rng.integers(N)] = fp16.from_float(60000.0)
    rows.append(r)                                                         # one huge value
    r = fp16.from_float(rng.standard_normal(N)); r[rng.random(N) < 0.5] = ninf; r[0] = 0
    rows.append(r)                                                         # masked entries
    rows.append(np.full(N, ninf, np.uint16))                               # fully masked
    r = fp16.from_float(rng.standard_normal(N)); r[1] = fp16.CANONICAL_NAN
    rows.append(r)                                                         # a NaN entry
    rows.append(fp16.from_float(rng.standard_normal(N) * 1e-4))            # tiny values
    rows.append(fp16.from_float(np.linspace(-300, 300, N)))               # large RMS
    rows.append(fp16.from_float(65504 / N + 100 + 100 * rng.standard_normal(N)))  # sum > 65504
    return np.array(rows, np.uint16)


def row_inputs(rng):
    n_rows = max(2, COUNT // N)
    x = np.concatenate([adversarial_rows(rng),
                        fp16.from_float(rng.standard_normal((n_rows, N)) * rng.uniform(0.1, 8))])
    gamma = fp16.from_float(rng.uniform(0.5, 1.5, x.shape))
    beta = fp16.from_float(rng.standard_normal(x.shape) * 0.1)
    return x, gamma, beta


def row_beats(x, gamma, beta):
    beats = []
    for r in range(x.shape[0]):
        for b in range(0, N, LANES):
            if KIND == "layernorm":
                beats.append([{"x": int(x[r, k]), "gamma": int(gamma[r, k]),
                               "beta": int(beta[r, k])} for k in range(b, b + LANES)])
            else:
                beats.append([int(w) for w in x[r, b:b + LANES]])
    return beats


@cocotb.test(skip=KIND not in ("softmax", "layernorm"))
async def rows_bit_exact(dut):
    """Adversarial and random rows, random gaps and backpressure."""
    rng = np.random.default_rng(lib.seed("rows_bit_exact"))
    x, gamma, beta = row_inputs(rng)
    tb = TB(dut, rng)
    await tb.start()
    got = await tb.run(row_beats(x, gamma, beta), x.size)
    check(got, golden(x, gamma, beta), f"{KIND} on {x.shape[0]} rows of {N}")


@cocotb.test(skip=KIND not in ("softmax", "layernorm"))
async def rows_throughput(dut):
    """Back-to-back rows (``HYFLEXPIM_ROWS``, default 6) without gaps or backpressure.

    Steady-state period: cycles between the first output beats of row 1 and of the
    last row, divided by the rows in between (row 0 carries the fill latency)."""
    rng = np.random.default_rng(lib.seed("rows_throughput"))
    rows = max(3, ROWS)
    x = fp16.from_float(rng.standard_normal((rows, N)))
    gamma = fp16.from_float(rng.uniform(0.5, 1.5, x.shape))
    beta = fp16.from_float(rng.standard_normal(x.shape) * 0.1)
    tb = TB(dut, rng, gap=0.0, stall=0.0)
    await tb.start()
    got = await tb.run(row_beats(x, gamma, beta), x.size)
    check(got, golden(x, gamma, beta), "throughput rows")
    B = N // LANES
    firsts = tb.out_cycles[::B]
    period = (firsts[-1] - firsts[1]) / (rows - 2)
    rate = N / period / LANES
    first_out = tb.sink.first - tb.source.first
    cocotb.log.info(f"{KIND} n={N} lanes={LANES}: first result after {first_out} cycles, "
                    f"{period:.1f} cycles per row in steady state, "
                    f"{rate:.3f} results per cycle per lane")
    report(test="rows_throughput", first_out=first_out, cycles_per_row=period,
           per_cycle_per_lane=rate, rows=rows)
    if SLOTS >= 4:      # the reduction ring keeps up with the adder (latency 4)
        assert period == B, f"{period} cycles per row, {B} beats"


# ----------------------------------------------------------------------------- long stalls, reset

def stall_inputs(rng, rows, fill=True):
    """Inputs of the stall and reset tests: ``(x, gamma, beta)`` of ``rows`` rows of N
    (row units) or ``rows * 8`` beats of random patterns (element-wise units, gamma and
    beta None; with ``fill``, at least twice the pipeline depth)."""
    if KIND in ("exp", "gelu"):
        # a "row" of an element-wise unit: 8 beats
        beats = max(rows * 8, 2 * DUT.latency + 16) if fill else rows * 8
        x = np.concatenate([fp16.from_float(rng.uniform(-20, 14, beats * LANES // 2)),
                            rng.integers(0, 1 << 16, beats * LANES // 2).astype(np.uint16)])
        return x, None, None
    x = fp16.from_float(rng.standard_normal((rows, N)) * rng.uniform(0.5, 8, (rows, 1)))
    gamma = fp16.from_float(rng.uniform(0.5, 1.5, x.shape))
    beta = fp16.from_float(rng.standard_normal(x.shape) * 0.1)
    return x, gamma, beta


def _fill_rows(beats_per_row):
    """Rows (element-wise: groups of 8 beats) more than the unit holds with its output
    held (measured: exp 58 and GELU 91 beats, softmax n 16 / 2 lanes 124 beats: the
    three stages and two row buffers of n / lanes + latency + 6 beats each)."""
    if KIND in ("exp", "gelu"):
        return 16
    return -(-140 // beats_per_row) + 6


def beats_of(x, gamma, beta):
    if KIND in ("exp", "gelu"):
        return [[int(w) for w in x[k:k + LANES]] for k in range(0, len(x), LANES)]
    return row_beats(x, gamma, beta)


class HeldTB:
    """Source without gaps, sink under a :class:`~hyflexpim.tb.lib.Hold` (ready unless
    held), the words out and their cycles."""

    def __init__(self, dut):
        self.clock = lib.TbClock(dut)
        self.hold = lib.Hold(False)
        self.source = lib.StreamSource(dut, "i", self.clock, layout=IN)
        self.got, self.cycles = [], []
        self.sink = lib.StreamSink(dut, "o", self.clock, layout=OUT, backpressure=self.hold,
                                   callback=self._take)

    def _take(self, beat, cycle):
        self.got.extend(beat)
        self.cycles.append(cycle)

    def send(self, beats):
        for b in beats:
            self.source.send(b)

    async def wait_words(self, n, what):
        await self.clock.wait(lambda: len(self.got) >= n, 100_000, what, events=True)

    def clear(self):
        self.got, self.cycles = [], []


@cocotb.test()
async def long_stall_then_full_rate(dut):
    """Output held not ready for 12 row times (element-wise: the pipeline depth + 12 x 8
    beats), far past what the unit's pipelines and row buffers hold, while the input keeps offering
    beats (it must be held back), then released: every result exact and in order
    (nothing lost, duplicated or reordered, no row buffer overwritten), and the results
    the unit held at the release leave back to back, one beat per cycle. Twice, the
    second release mid-row."""
    rng = np.random.default_rng(lib.seed("long_stall_then_full_rate"))
    beats_per_row = N // LANES if N else 8
    rows = _fill_rows(beats_per_row)
    x, gamma, beta = stall_inputs(rng, 2 * rows)
    beats = beats_of(x, gamma, beta)
    want = np.asarray(golden(x, gamma, beta), np.uint16).reshape(-1)
    tb = HeldTB(dut)
    await tb.clock.start()
    stall = 12 * beats_per_row + 200 + (DUT.latency if KIND in ("exp", "gelu") else 0)
    half = len(beats) // 2
    for rnd, chunk in enumerate((beats[:half], beats[half:])):
        tb.hold.held = True
        base_words, base_beats = len(tb.got), len(tb.cycles)
        accepted0 = tb.source.sent
        tb.send(chunk)
        await tb.clock.cycles(stall)
        assert len(tb.got) == base_words, "a result left while the output was held"
        inside = tb.source.sent - accepted0
        assert tb.source.busy, f"the unit took all {len(chunk)} beats with its output held"
        cocotb.log.info(f"{KIND}: round {rnd}: {inside} of {len(chunk)} beats taken during "
                        f"a {stall}-cycle stall")
        if rnd == 1:
            await tb.clock.cycles(beats_per_row // 2)    # released mid-row (cycle phase)
        tb.hold.held = False
        await tb.wait_words(base_words + len(chunk) * LANES, "the results")
        out = tb.cycles[base_beats:]
        span = out[-1] - out[0] + 1
        cocotb.log.info(f"{KIND}: round {rnd}: {len(out)} beats out in {span} cycles "
                        "after the release")
        if SLOTS is None or SLOTS >= 4:
            # the unit sustains one beat per cycle (rows overlap; slots >= the adder
            # latency) and the input keeps up: every beat after the release back to back
            assert lib.back_to_back(out), \
                f"round {rnd}: {len(out)} beats after the release took {span} cycles"
    check(np.array(tb.got, np.uint16), want, f"{KIND} after two long stalls")


async def _reset_and_withdraw(tb):
    await tb.clock.reset()
    lib.withdraw(tb.source)
    tb.clear()
    await tb.clock.cycles(2)


@cocotb.test()
async def reset_in_every_state(dut):
    """Reset while idle, mid-pipeline (the inputs in, no result out yet), mid-row (half
    a row in), with results waiting for a held output, and with the input held back
    behind a full unit; after each, two rows (element-wise: 16 beats) sent afresh come
    out exact (a reset row assembly starts at element 0, no stale partial, nothing of
    the traffic before the reset comes out)."""
    rng = np.random.default_rng(lib.seed("reset_in_every_state"))
    beats_per_row = N // LANES if N else 8
    tb = HeldTB(dut)
    await tb.clock.start()
    for state in ("idle", "mid-pipeline", "mid-row", "output waiting", "input stalled"):
        x, gamma, beta = stall_inputs(rng, _fill_rows(beats_per_row))
        beats = beats_of(x, gamma, beta)
        if state == "mid-pipeline":
            tb.send(beats[:beats_per_row])
            await tb.clock.wait(lambda: not tb.source.busy, 1000, "the beats", events=True)
            await tb.clock.cycles(2)
            assert not tb.got
        elif state == "mid-row":
            tb.send(beats[:beats_per_row + beats_per_row // 2 + 1])
            await tb.clock.wait(lambda: not tb.source.busy, 1000, "the beats", events=True)
        elif state == "output waiting":
            tb.hold.held = True
            tb.send(beats[:2 * beats_per_row])
            await tb.clock.cycles(8 * beats_per_row + 200)
            assert not tb.got and not tb.source.busy
        elif state == "input stalled":
            tb.hold.held = True
            tb.send(beats)
            await tb.clock.cycles(12 * beats_per_row + 200 + getattr(DUT, "latency", 0))
            assert tb.source.busy and not tb.got
        cocotb.log.info(f"{KIND}: reset {state}")
        await _reset_and_withdraw(tb)
        tb.hold.held = False
        x, gamma, beta = stall_inputs(rng, 2, fill=False)
        clean = beats_of(x, gamma, beta)
        tb.send(clean)
        await tb.wait_words(len(clean) * LANES, "the results after the reset")
        await tb.clock.cycles(3 * beats_per_row + 150)      # nothing more may come out
        check(np.array(tb.got, np.uint16), golden(x, gamma, beta), f"{KIND} after reset {state}")
        tb.clear()
