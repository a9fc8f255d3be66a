"""cocotb testbench of the analog array top (``AnalogArray``) on its generated Verilog.

The comparator input ``xbar__cmp`` is driven by the behavioural crossbar model
(:class:`hyflexpim.models.crossbar.Crossbar`) of the weight tile that each input vector
is meant for: whenever the DUT asserts ``xbar__sample``, the model captures the held
bitline values for the wordlines the DUT drives at that moment; in every cycle it
answers ``held[sel] >= dac_level(trial)``. Each result vector is compared word by word
with :func:`hyflexpim.models.program_matrix` of the same tile, same noise seed.

Parts: :class:`CrossbarModel` (analog side), :class:`VectorDriver` (input stream),
:class:`ResultMonitor` (output stream, random backpressure), :class:`Scoreboard`
(in-order check). All drive right after the rising edge and observe at the falling
edge, so nothing races.

Parameters come from ``HYFLEXPIM_PARAMS`` (JSON: rows, cols, slc_bits, mlc_bits,
result_width, read_cycles) and ``HYFLEXPIM_SEED``; every test prints its seed.
"""

import json
import os
import random
from collections import deque

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

from hyflexpim.models import program_matrix
from hyflexpim.models.crossbar import Crossbar
from hyflexpim.models.encoding import neurons_per_array

P = json.loads(os.environ.get("HYFLEXPIM_PARAMS", "{}"))
ROWS = P.get("rows", 64)
COLS = P.get("cols", 128)
SLC_BITS = P.get("slc_bits", 6)
MLC_BITS = P.get("mlc_bits", 7)
RW = P.get("result_width", 32)
NEURONS = COLS // 4
BER = 0.0404
BASE_SEED = int(os.environ.get("HYFLEXPIM_SEED", "1"))
# QUICK trims the corner set to its extremes (used for the big array in the default suite)
QUICK = os.environ.get("HYFLEXPIM_QUICK", "") not in ("", "0")


def test_seed(name):
    seed = (BASE_SEED * 1000003 + sum(map(ord, name))) & 0xFFFFFFFF
    cocotb.log.info(f"{name}: seed {seed} (replay: HYFLEXPIM_SEED={BASE_SEED})")
    return seed


class Tile:
    """A weight tile programmed on the array, and its golden outputs."""

    def __init__(self, weights, mode, ber, seed):
        self.mode = mode
        self.weights = np.asarray(weights)
        self.pm = program_matrix(self.weights, mode, ber=ber, seed=seed, rows=ROWS, cols=COLS,
                                 slc_bits=SLC_BITS, mlc_bits=MLC_BITS)
        self.crossbar = self.pm.tiles[0].crossbar

    def expected(self, x):
        """Full result word vector of the array (unused neurons give 0)."""
        y = np.zeros(NEURONS, dtype=np.int64)
        y[:self.weights.shape[1]] = self.pm.run(np.asarray(x)[None, :])[0]
        return y


def random_tile(rng, mode, ber, seed, low=-128, high=127):
    n = neurons_per_array(mode, COLS)
    return Tile(rng.integers(low, high + 1, (ROWS, n)), mode, ber, seed)


def pack_vector(x, mode):
    v = 0
    for r, xv in enumerate(x):
        v |= (int(xv) & 0xFF) << (8 * r)
    return v | ((1 if mode == "mlc" else 0) << (8 * ROWS))


def unpack_result(v):
    mask = (1 << RW) - 1
    y = []
    for j in range(NEURONS):
        w = (v >> (RW * j)) & mask
        y.append(w - (1 << RW) if w >> (RW - 1) else w)
    return np.array(y, dtype=np.int64), (v >> (RW * NEURONS)) & 1


class CrossbarModel:
    """Analog side: S&H capture on ``sample`` and the comparator, from the tile's model."""

    def __init__(self, dut):
        self.dut = dut
        self.pending = deque()     # tiles of accepted vectors, in order
        self.samples = 0           # planes sampled of the oldest pending vector
        self.held = None
        self.tile = None

    def flush(self):
        self.pending.clear()
        self.samples = 0
        self.held = None

    async def run(self):
        dut = self.dut
        while True:
            await FallingEdge(dut.clk)
            if self.held is not None:
                sel = dut.xbar__sel.value.to_unsigned()
                trial = dut.xbar__trial.value.to_unsigned()
                dut.xbar__cmp.value = int(Crossbar.compare(self.held[sel], trial))
            else:
                dut.xbar__cmp.value = 0
            if int(dut.rst.value) == 0 and int(dut.xbar__sample.value):
                assert self.pending, "DUT sampled bitlines with no vector in flight"
                wl = dut.xbar__wl.value.to_unsigned()
                bits = np.array([(wl >> r) & 1 for r in range(ROWS)], dtype=np.int64)
                self.held = self.pending[0].crossbar.held_values(bits)
                self.samples += 1
                if self.samples == 8:
                    self.pending.popleft()
                    self.samples = 0


class Scoreboard:
    """In-order comparison of every result word with the golden model."""

    def __init__(self):
        self.expected = deque()
        self.checked = 0

    def flush(self):
        self.expected.clear()

    def push(self, y, mode, what):
        self.expected.append((y, mode, what))

    def check(self, y, mode):
        assert self.expected, "DUT produced a result nobody asked for"
        exp, exp_mode, what = self.expected.popleft()
        assert mode == (1 if exp_mode == "mlc" else 0), f"{what}: mode bit {mode}"
        bad = np.flatnonzero(y != exp)
        assert not len(bad), (f"{what}: {len(bad)} of {NEURONS} words differ, first at "
                              f"neuron {bad[0]}: RTL {y[bad[0]]} golden {exp[bad[0]]}")
        self.checked += 1


class VectorDriver:
    """Drives the input stream; tells the crossbar model which tile a vector is for."""

    def __init__(self, dut, xbar, board, rng, idle=0.0):
        self.dut, self.xbar, self.board, self.rng, self.idle = dut, xbar, board, rng, idle
        self.queue = deque()
        self.accepted = 0
        self.first_accept = None

    def send(self, x, tile, what):
        self.queue.append((np.asarray(x), tile, what))

    async def run(self):
        dut = self.dut
        cycle = 0
        while True:
            await RisingEdge(dut.clk)
            cycle += 1
            if self.queue and self.rng.random() >= self.idle:
                x, tile, what = self.queue[0]
                dut.i__payload.value = pack_vector(x, tile.mode)
                dut.i__valid.value = 1
                await FallingEdge(dut.clk)
                while not int(dut.i__ready.value) or int(dut.rst.value):
                    await RisingEdge(dut.clk)
                    cycle += 1
                    await FallingEdge(dut.clk)
                # transfer at the next rising edge
                self.queue.popleft()
                self.xbar.pending.append(tile)
                self.board.push(tile.expected(x), tile.mode, what)
                self.accepted += 1
                if self.first_accept is None:
                    self.first_accept = cocotb.utils.get_sim_time("ns")
                await RisingEdge(dut.clk)
                dut.i__valid.value = 0
            else:
                dut.i__valid.value = 0


class ResultMonitor:
    """Drives ``o.ready`` (random backpressure) and hands each transfer to the scoreboard."""

    def __init__(self, dut, board, rng, ready_prob=1.0):
        self.dut, self.board, self.rng, self.ready_prob = dut, board, rng, ready_prob
        self.last_time = None

    async def run(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            dut.o__ready.value = int(self.rng.random() < self.ready_prob)
            await FallingEdge(dut.clk)
            if (not int(dut.rst.value) and int(dut.o__valid.value)
                    and int(dut.o__ready.value)):
                y, mode = unpack_result(dut.o__payload.value.to_unsigned())
                self.board.check(y, mode)
                self.last_time = cocotb.utils.get_sim_time("ns")


class TB:
    """Owns the clock, the reset and the parts above."""

    def __init__(self, dut, seed, idle=0.0, ready_prob=1.0):
        self.dut = dut
        self.rng = np.random.default_rng(seed)
        prng = random.Random(seed)
        self.xbar = CrossbarModel(dut)
        self.board = Scoreboard()
        self.driver = VectorDriver(dut, self.xbar, self.board, prng, idle)
        self.monitor = ResultMonitor(dut, self.board, prng, ready_prob)

    async def start(self):
        d = self.dut
        d.i__valid.value = 0
        d.o__ready.value = 0
        d.xbar__cmp.value = 0
        d.rst.value = 1
        cocotb.start_soon(Clock(d.clk, 1, unit="ns").start())
        for _ in range(3):
            await RisingEdge(d.clk)
        d.rst.value = 0
        for part in (self.xbar, self.driver, self.monitor):
            cocotb.start_soon(part.run())

    async def reset(self, cycles=3):
        """Synchronous reset in the middle of traffic: everything in flight is dropped."""
        d = self.dut
        await RisingEdge(d.clk)
        d.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(d.clk)
        self.xbar.flush()
        self.board.flush()
        d.rst.value = 0

    async def drain(self, max_cycles):
        d = self.dut
        for _ in range(max_cycles):
            await FallingEdge(d.clk)
            if not self.driver.queue and not self.board.expected:
                return
        raise AssertionError(f"timeout: {len(self.board.expected)} results still expected")


def cycles_per_vector(mode):
    return 8 * COLS * (MLC_BITS if mode == "mlc" else SLC_BITS)


@cocotb.test()
async def random_slc_mlc_noise_off_and_on(dut):
    """Random matrices and inputs, SLC and MLC, ideal and noisy (ber 4.04%), back to back."""
    seed = test_seed("random_slc_mlc_noise_off_and_on")
    tb = TB(dut, seed)
    await tb.start()
    n = 0
    for mode in ("slc", "mlc"):
        for ber in (None, BER):
            tile = random_tile(tb.rng, mode, ber, seed + n)
            for _ in range(2):
                tb.driver.send(tb.rng.integers(-128, 128, ROWS), tile, f"{mode} ber={ber} #{n}")
                n += 1
    await tb.drain(n * cycles_per_vector("mlc") + 200)
    assert tb.board.checked == n


@cocotb.test()
async def corner_cases_and_saturation(dut):
    """All-ones, all-max, all-min, zero inputs and weights; ADC saturation in both modes."""
    seed = test_seed("corner_cases_and_saturation")
    tb = TB(dut, seed)
    await tb.start()
    n = 0
    for mode in ("slc", "mlc"):
        k = neurons_per_array(mode, COLS)
        for wv in ((-128, 127) if QUICK else (-128, -1, 0, 127)):
            tile = Tile(np.full((ROWS, k), wv), mode, None, 0)
            for xv in ((-128, -1, 127) if QUICK else (-128, -1, 0, 127)):
                tb.driver.send(np.full(ROWS, xv), tile, f"{mode} w={wv} x={xv}")
                n += 1
        # mixed extreme weights, to reach every slice level
        tile = Tile(tb.rng.choice([-128, -1, 0, 127, 85, -86], (ROWS, k)), mode, None, 0)
        tb.driver.send(np.full(ROWS, -1), tile, f"{mode} extreme mix")
        n += 1
    sat = sum(t.pm.saturated(x[None, :]) for x, t, _ in tb.driver.queue)
    assert sat > 0, "corner set must include saturating conversions"
    dut._log.info(f"corner set: {n} vectors, {sat} saturating conversions")
    await tb.drain(n * cycles_per_vector("mlc") + 200)
    assert tb.board.checked == n


@cocotb.test()
async def mode_switches_and_backpressure(dut):
    """Alternating modes vector by vector, random input gaps, random output backpressure."""
    seed = test_seed("mode_switches_and_backpressure")
    tb = TB(dut, seed, idle=0.3, ready_prob=0.3)
    await tb.start()
    tiles = {m: random_tile(tb.rng, m, BER, seed + i) for i, m in enumerate(("slc", "mlc"))}
    n = 6
    for i in range(n):
        mode = ("slc", "mlc")[(i + (i // 3)) % 2]
        tb.driver.send(tb.rng.integers(-128, 128, ROWS), tiles[mode], f"switch #{i} {mode}")
    await tb.drain(n * cycles_per_vector("mlc") * 2 + 500)
    assert tb.board.checked == n


@cocotb.test()
async def reset_in_the_middle_of_a_vector(dut):
    """A reset mid-vector drops it cleanly; the vectors after it are exact."""
    seed = test_seed("reset_in_the_middle_of_a_vector")
    tb = TB(dut, seed)
    await tb.start()
    tile = random_tile(tb.rng, "mlc", BER, seed)
    tb.driver.send(tb.rng.integers(-128, 128, ROWS), tile, "dropped")
    for _ in range(cycles_per_vector("mlc") // 2):
        await RisingEdge(dut.clk)
    await tb.reset()
    assert tb.board.checked == 0
    for i in range(2):
        mode = ("slc", "mlc")[i]
        tb.driver.send(tb.rng.integers(-128, 128, ROWS), random_tile(tb.rng, mode, BER, seed + 7 + i),
                       f"after reset #{i}")
    await tb.drain(3 * cycles_per_vector("mlc") + 200)
    assert tb.board.checked == 2


@cocotb.test()
async def stream_throughput(dut):
    """A stream of vectors: cycles per vector equal the ideal 8 x cols x steps (no bubbles)."""
    seed = test_seed("stream_throughput")
    tb = TB(dut, seed)
    await tb.start()
    n = int(os.environ.get("HYFLEXPIM_STREAM_VECTORS", "4"))
    report = {}
    for mode in ("slc", "mlc"):
        tile = random_tile(tb.rng, mode, None, seed)
        tb.driver.first_accept = None
        start_checked = tb.board.checked
        for i in range(n):
            tb.driver.send(tb.rng.integers(-128, 128, ROWS), tile, f"stream {mode} #{i}")
        # first result time gives the latency, the spacing after it the throughput
        first_out = None
        while tb.board.checked < start_checked + n:
            await FallingEdge(dut.clk)
            if first_out is None and tb.board.checked > start_checked:
                first_out = tb.monitor.last_time
        last_out = tb.monitor.last_time
        ideal = cycles_per_vector(mode)
        # from the cycle the first vector is transferred to the cycle its result is
        latency = first_out - tb.driver.first_accept
        per_vec = (last_out - first_out) / (n - 1)
        report[mode] = dict(latency=latency, cycles_per_vector=per_vec, ideal=ideal,
                            ratio=per_vec / ideal)
        dut._log.info(f"{mode}: latency {latency:.0f} cycles (ideal {ideal}), steady state "
                      f"{per_vec:.1f} cycles/vector = {per_vec / ideal:.4f} x ideal")
        assert per_vec == ideal, f"{mode}: {per_vec} cycles per vector, ideal {ideal}"
        # let the pipeline empty before the next mode so latency is measured from idle
        for _ in range(10):
            await RisingEdge(dut.clk)
    out = os.environ.get("HYFLEXPIM_REPORT")
    if out:
        with open(out, "w") as f:
            json.dump(report, f)
