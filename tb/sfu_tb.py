"""cocotb testbench of the SFU function units (``rtl/sfu.py``) on their generated Verilog.

``HYFLEXPIM_PARAMS`` (JSON) names the unit (``kind``: exp, gelu, softmax, layernorm)
and its generator parameters (lanes, n, slots, degree, eps); ``HYFLEXPIM_SEED`` seeds
the random tests, ``HYFLEXPIM_COUNT`` sets how many random inputs / rows are sent,
``HYFLEXPIM_EXHAUSTIVE=1`` sends all 65,536 bit patterns (element-wise units),
``HYFLEXPIM_REPORT`` names a file to which the throughput tests append one JSON line
of measured figures (read by ``benchmarks/sfu_throughput.py``).

Parts: :class:`Driver` (input beats, random gaps), :class:`Monitor` (output beats, random
backpressure), checked in order against the golden model
(:mod:`hyflexpim.models.fp16.functions`) on every output word. Drive after the rising
edge, observe at the falling edge.
"""

import json
import os
import random

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

from hyflexpim.models import fp16
from hyflexpim.models.fp16 import functions as F

P = json.loads(os.environ.get("HYFLEXPIM_PARAMS", "{}"))
KIND = P.get("kind", "exp")
LANES = P.get("lanes", 2)
N = P.get("n", 16)
SLOTS = P.get("slots", 4)
DEGREE = P.get("degree", F.EXP_DEGREE)
EPS = P.get("eps", F._h(1e-5))
BASE_SEED = int(os.environ.get("HYFLEXPIM_SEED", "1"))
COUNT = int(os.environ.get("HYFLEXPIM_COUNT", "400"))
EXHAUSTIVE = os.environ.get("HYFLEXPIM_EXHAUSTIVE", "") not in ("", "0")
REPORT = os.environ.get("HYFLEXPIM_REPORT", "")
ROWS = int(os.environ.get("HYFLEXPIM_ROWS", "6"))
SPECIALS = [0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE00, 0x0001, 0x8001, 0x03FF,
            0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF, 0x4A00, 0xCC80, 0x498B, 0x498C, 0xCC55,
            0xCC56, 0x3800, 0xB800, 0x4800, 0xC800]


def test_seed(name):
    seed = (BASE_SEED * 1000003 + sum(map(ord, name))) & 0xFFFFFFFF
    cocotb.log.info(f"{name}: seed {seed} (replay: HYFLEXPIM_SEED={BASE_SEED})")
    return seed


def golden(x, gamma=None, beta=None):
    if KIND == "exp":
        return F.exp(x, degree=DEGREE)
    if KIND == "gelu":
        return F.gelu(x, degree=DEGREE)
    if KIND == "softmax":
        return F.softmax(x, lanes=LANES, slots=SLOTS, degree=DEGREE)
    return F.layernorm(x, gamma, beta, EPS, lanes=LANES, slots=SLOTS)


def report(**fig):
    if REPORT:
        with open(REPORT, "a") as f:
            f.write(json.dumps(dict(P, **fig)) + "\n")


def pack(words, width=16):
    v = 0
    for k, w in enumerate(words):
        v |= int(w) << (width * k)
    return v


def unpack(v):
    return [(v >> (16 * k)) & 0xFFFF for k in range(LANES)]


class TB:
    def __init__(self, dut, rng, gap=0.3, stall=0.3):
        self.dut, self.rng, self.gap, self.stall = dut, rng, gap, stall
        self.got = []
        self.cycles = 0
        self.first_out = None
        self.out_cycles = []          # cycle of every output beat

    async def start(self):
        dut = self.dut
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst.value = 1
        dut.i__valid.value = 0
        dut.o__ready.value = 0
        for _ in range(2):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        # Icarus evaluates a combinational block only when one of its inputs changes, so
        # a block whose inputs keep their initial values stays X. Flush the pipelines with
        # changing payloads while i.valid is low (bubbles carry data, never results).
        width = len(dut.i__payload)
        for _ in range(128):
            dut.i__payload.value = int.from_bytes(self.rng.bytes((width + 7) // 8),
                                                  "little") % (1 << width)
            await RisingEdge(dut.clk)

    async def drive(self, beats):
        dut = self.dut
        for beat in beats:
            while self.rng.random() < self.gap:
                dut.i__valid.value = 0
                await RisingEdge(dut.clk)
            dut.i__payload.value = beat
            dut.i__valid.value = 1
            while True:
                await FallingEdge(dut.clk)
                ready = int(dut.i__ready.value)
                await RisingEdge(dut.clk)
                if ready:
                    break
        dut.i__valid.value = 0

    async def monitor(self, n_beats):
        dut = self.dut
        while len(self.got) < n_beats:
            dut.o__ready.value = int(self.rng.random() >= self.stall)
            await FallingEdge(dut.clk)
            self.cycles += 1
            if int(dut.o__valid.value) and int(dut.o__ready.value):
                if not dut.o__payload.value.is_resolvable:
                    cocotb.log.error(f"unresolved output {dut.o__payload.value} at beat {len(self.got) // LANES}")
                self.got.extend(unpack(int(dut.o__payload.value)))
                self.out_cycles.append(self.cycles)
                if self.first_out is None:
                    self.first_out = self.cycles
            await RisingEdge(dut.clk)

    async def run(self, beats, n_beats):
        mon = cocotb.start_soon(self.monitor(n_beats))
        await self.drive(beats)
        await mon
        return np.array(self.got, np.uint16)


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
    rng = np.random.default_rng(test_seed("elementwise_bit_exact"))
    x = elementwise_inputs(rng)
    tb = TB(dut, rng, gap=0.0 if EXHAUSTIVE else 0.3, stall=0.0 if EXHAUSTIVE else 0.3)
    await tb.start()
    beats = [pack(x[k:k + LANES]) for k in range(0, len(x), LANES)]
    got = await tb.run(beats, len(x))
    check(got, golden(x), f"{KIND} on {len(x)} inputs")


@cocotb.test(skip=KIND not in ("exp", "gelu"))
async def elementwise_throughput(dut):
    """No gaps, no backpressure: one beat per cycle after the pipeline latency."""
    rng = np.random.default_rng(test_seed("elementwise_throughput"))
    n = 200
    x = rng.integers(0, 1 << 16, n * LANES).astype(np.uint16)
    tb = TB(dut, rng, gap=0.0, stall=0.0)
    await tb.start()
    got = await tb.run([pack(x[k:k + LANES]) for k in range(0, len(x), LANES)], len(x))
    check(got, golden(x), "throughput run")
    latency = tb.first_out
    per_cycle = n / (tb.cycles - tb.first_out + 1)
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
                lanes = [pack([x[r, k], gamma[r, k], beta[r, k]]) for k in range(b, b + LANES)]
                beats.append(pack(lanes, 48))
            else:
                beats.append(pack(x[r, b:b + LANES]))
    return beats


@cocotb.test(skip=KIND not in ("softmax", "layernorm"))
async def rows_bit_exact(dut):
    """Adversarial and random rows, random gaps and backpressure."""
    rng = np.random.default_rng(test_seed("rows_bit_exact"))
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
    rng = np.random.default_rng(test_seed("rows_throughput"))
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
    cocotb.log.info(f"{KIND} n={N} lanes={LANES}: first result after {tb.first_out} cycles, "
                    f"{period:.1f} cycles per row in steady state, "
                    f"{rate:.3f} results per cycle per lane")
    report(test="rows_throughput", first_out=tb.first_out, cycles_per_row=period,
           per_cycle_per_lane=rate, rows=rows)
    if SLOTS >= 4:      # the reduction ring keeps up with the adder (latency 4)
        assert period == B, f"{period} cycles per row, {B} beats"
