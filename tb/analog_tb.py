"""cocotb testbench of the analog array top (``AnalogArray``) on its generated Verilog.

The array under test is rebuilt from the registry (:func:`hyflexpim.tb.lib.design`);
its geometry, ADC resolution, result width and port layouts come from it. The
comparator ``xbar__cmp`` is answered by a :class:`~hyflexpim.tb.lib.CrossbarBank`
holding the crossbar model (:class:`hyflexpim.models.crossbar.Crossbar`) of the weight
tile each input vector is meant for. Each result vector is compared word by word, in
order (:class:`~hyflexpim.tb.lib.Scoreboard`), with
:func:`hyflexpim.models.program_matrix` of the same tile and noise seed.

Parts (owned by :class:`TB`): a :class:`~hyflexpim.tb.lib.StreamSource` of input
vectors (random gaps), a :class:`~hyflexpim.tb.lib.StreamSink` of result vectors
(random backpressure), the crossbar bank and the scoreboard.

Parameters: ``HYFLEXPIM_SEED``; ``HYFLEXPIM_QUICK=1`` trims the corner set to its
extremes; ``HYFLEXPIM_STREAM_VECTORS`` (default 4) vectors per mode in the throughput
test, whose figures go to ``HYFLEXPIM_REPORT`` (JSON) when set.
"""

import json
import os

import numpy as np

import cocotb

from hyflexpim.models import program_matrix
from hyflexpim.models.encoding import INPUT_BITS, neurons_per_array
from hyflexpim.rtl.analog import Mode
from hyflexpim.tb import lib

DUT = lib.design()
PARAMS = DUT.params
ROWS, COLS = PARAMS.rows, PARAMS.cols
SLC_BITS, MLC_BITS = PARAMS.slc_bits, PARAMS.mlc_bits
VECTOR = DUT.i.payload.shape()
RESULT = DUT.o.payload.shape()
NEURONS = RESULT["y"].shape.length
BER = 0.0404
QUICK = os.environ.get("HYFLEXPIM_QUICK", "") not in ("", "0")


class Tile:
    """A weight tile programmed on the array, and its golden outputs."""

    def __init__(self, weights, mode, ber, seed):
        self.mode = mode
        self.weights = np.asarray(weights)
        self.pm = program_matrix(self.weights, mode, ber=ber, seed=seed, rows=ROWS, cols=COLS,
                                 slc_bits=SLC_BITS, mlc_bits=MLC_BITS)
        self.crossbar = self.pm.tiles[0].crossbar

    @property
    def cell_mode(self):
        return Mode.MLC if self.mode == "mlc" else Mode.SLC

    def expected(self, x, vector=0):
        """Full result word vector of the array (unused neurons give 0) for input ``x``
        read as vector number ``vector`` (the read-noise counter)."""
        return self.words(self.pm.run(np.asarray(x)[None, :], first_vector=vector)[0])

    def words(self, y):
        """The array's result words for the golden outputs ``y`` of one vector."""
        out = np.zeros(NEURONS, dtype=np.int64)
        out[:self.weights.shape[1]] = y
        return out


def random_tile(rng, mode, ber, seed, low=-128, high=127):
    n = neurons_per_array(mode, COLS)
    return Tile(rng.integers(low, high + 1, (ROWS, n)), mode, ber, seed)


def _compare(got, exp):
    y, mode = np.array(got["y"], dtype=np.int64), got["mode"]
    if mode != exp["mode"]:
        return f"mode {mode}, expected {exp['mode']}"
    bad = np.flatnonzero(y != exp["y"])
    if len(bad):
        return (f"{len(bad)} of {NEURONS} words differ, first at neuron {bad[0]}: "
                f"RTL {y[bad[0]]} golden {exp['y'][bad[0]]}")
    return None


class TB:
    """Clock, input source, result sink, crossbar bank and scoreboard of one array."""

    def __init__(self, dut, seed, idle=0.0, ready_prob=1.0, hold=None):
        self.dut = dut
        self.hold = hold              # a lib.Hold on the result sink (held stalls)
        self.rng = np.random.default_rng(seed)
        self.prng = lib.rng(seed)
        self.idle, self.ready_prob = idle, ready_prob
        self.clock = lib.TbClock(dut, period_ns=1)
        self.board = lib.Scoreboard(_compare, "results")
        self.results = []            # (y words, cycle) of every result, in order
        self.vectors = 0             # vectors accepted: the read-noise vector numbers

    async def start(self):
        self.bank = lib.CrossbarBank(self.dut, self.clock, ROWS)
        self.array = self.bank.add("xbar")
        self.source = lib.StreamSource(self.dut, "i", self.clock, layout=VECTOR,
                                       idle=self._pauses(self.idle))
        self.source.on_transfer.append(self._accepted)
        self.sink = lib.StreamSink(self.dut, "o", self.clock, layout=RESULT,
                                   backpressure=self.hold if self.hold is not None
                                   else self._pauses(1 - self.ready_prob),
                                   callback=self._result)
        await self.clock.start(reset_cycles=3)

    def _pauses(self, probability):
        """Random pauses, or none at all (then the part need not wake every cycle)."""
        return lib.random_pauses(probability, self.prng) if probability > 0 else lib.never()

    def send(self, x, tile, what, expected=None):
        """Queue input ``x`` for ``tile``; ``expected``: its golden result words when
        already known (else computed when the vector is accepted)."""
        self.source.send({"x": [int(v) for v in x], "mode": tile.cell_mode},
                         (x, tile, what, expected))

    def _accepted(self, value, context, cycle):
        x, tile, what, expected = context
        k = self.vectors
        self.vectors += 1
        self.bank.push(self.array, tile.crossbar, vector=k)
        y = tile.expected(x, k) if expected is None else expected
        self.board.expect({"y": y, "mode": tile.cell_mode}, cycle=cycle, what=what)

    def _result(self, value, cycle):
        self.board.check(value, cycle=cycle)
        self.results.append((value["y"], cycle))

    async def reset(self, cycles=3):
        """Synchronous reset in the middle of traffic: everything in flight is dropped
        (the vectors queued in the source too: :func:`lib.withdraw`)."""
        await self.clock.reset(cycles)
        lib.withdraw(self.source)
        self.bank.flush()
        self.board.flush()

    async def drain(self, max_cycles):
        await self.clock.wait(lambda: not self.source.busy and not self.board.pending,
                              max_cycles, f"{self.board.pending} results", events=True)


def cycles_per_vector(mode):
    return INPUT_BITS * COLS * (MLC_BITS if mode == "mlc" else SLC_BITS)


@cocotb.test()
async def random_slc_mlc_noise_off_and_on(dut):
    """Random matrices and inputs, SLC and MLC, ideal and noisy (ber 4.04%), back to back."""
    seed = lib.seed("random_slc_mlc_noise_off_and_on")
    tb = TB(dut, seed)
    await tb.start()
    n = 0
    for mode in ("slc", "mlc"):
        for ber in (None, BER):
            tile = random_tile(tb.rng, mode, ber, seed + n)
            for _ in range(2):
                tb.send(tb.rng.integers(-128, 128, ROWS), tile, f"{mode} ber={ber} #{n}")
                n += 1
    await tb.drain(n * cycles_per_vector("mlc") + 200)
    assert tb.board.checked == n


@cocotb.test()
async def corner_cases_and_saturation(dut):
    """All-ones, all-max, all-min, zero inputs and weights; ADC saturation in both modes."""
    seed = lib.seed("corner_cases_and_saturation")
    tb = TB(dut, seed)
    await tb.start()
    n = sat = 0
    for mode in ("slc", "mlc"):
        k = neurons_per_array(mode, COLS)
        for wv in ((-128, 127) if QUICK else (-128, -1, 0, 127)):
            tile = Tile(np.full((ROWS, k), wv), mode, None, 0)
            for xv in ((-128, -1, 127) if QUICK else (-128, -1, 0, 127)):
                x = np.full(ROWS, xv)
                sat += tile.pm.saturated(x[None, :])
                tb.send(x, tile, f"{mode} w={wv} x={xv}")
                n += 1
        # mixed extreme weights, to reach every slice level
        tile = Tile(tb.rng.choice([-128, -1, 0, 127, 85, -86], (ROWS, k)), mode, None, 0)
        x = np.full(ROWS, -1)
        sat += tile.pm.saturated(x[None, :])
        tb.send(x, tile, f"{mode} extreme mix")
        n += 1
    assert sat > 0, "corner set must include saturating conversions"
    dut._log.info(f"corner set: {n} vectors, {sat} saturating conversions")
    await tb.drain(n * cycles_per_vector("mlc") + 200)
    assert tb.board.checked == n


@cocotb.test()
async def mode_switches_and_backpressure(dut):
    """Alternating modes vector by vector, random input gaps, random output backpressure."""
    seed = lib.seed("mode_switches_and_backpressure")
    tb = TB(dut, seed, idle=0.3, ready_prob=0.3)
    await tb.start()
    tiles = {m: random_tile(tb.rng, m, BER, seed + i) for i, m in enumerate(("slc", "mlc"))}
    n = 6
    for i in range(n):
        mode = ("slc", "mlc")[(i + (i // 3)) % 2]
        tb.send(tb.rng.integers(-128, 128, ROWS), tiles[mode], f"switch #{i} {mode}")
    await tb.drain(n * cycles_per_vector("mlc") * 2 + 500)
    assert tb.board.checked == n


@cocotb.test()
async def reset_in_the_middle_of_a_vector(dut):
    """A reset mid-vector drops it cleanly; the vectors after it are exact."""
    seed = lib.seed("reset_in_the_middle_of_a_vector")
    tb = TB(dut, seed)
    await tb.start()
    tile = random_tile(tb.rng, "mlc", BER, seed)
    tb.send(tb.rng.integers(-128, 128, ROWS), tile, "dropped")
    await tb.clock.cycles(cycles_per_vector("mlc") // 2)
    await tb.reset()
    assert tb.board.checked == 0
    for i in range(2):
        mode = ("slc", "mlc")[i]
        tb.send(tb.rng.integers(-128, 128, ROWS), random_tile(tb.rng, mode, BER, seed + 7 + i),
                f"after reset #{i}")
    await tb.drain(3 * cycles_per_vector("mlc") + 200)
    assert tb.board.checked == 2


@cocotb.test()
async def stream_throughput(dut):
    """A stream of vectors: cycles per vector equal the ideal 8 x cols x steps (no bubbles)."""
    seed = lib.seed("stream_throughput")
    tb = TB(dut, seed)
    await tb.start()
    n = int(os.environ.get("HYFLEXPIM_STREAM_VECTORS", "4"))
    report = {}
    for mode in ("slc", "mlc"):
        tile = random_tile(tb.rng, mode, None, seed)
        start_checked = tb.board.checked
        first_in = tb.source.sent
        for i in range(n):
            tb.send(tb.rng.integers(-128, 128, ROWS), tile, f"stream {mode} #{i}")
        await tb.clock.wait(lambda: tb.board.checked >= start_checked + n,
                            2 * n * cycles_per_vector(mode) + 200, f"{mode} stream", events=True)
        outs = [c for _, c in tb.results[start_checked:]]
        accepted = tb.board.latencies[start_checked:]
        ideal = cycles_per_vector(mode)
        # from the cycle the first vector is transferred to the cycle its result is
        latency = accepted[0]
        per_vec = (outs[-1] - outs[0]) / (n - 1)
        assert tb.source.sent == first_in + n
        report[mode] = dict(latency=latency, cycles_per_vector=per_vec, ideal=ideal,
                            ratio=per_vec / ideal)
        dut._log.info(f"{mode}: latency {latency:.0f} cycles (ideal {ideal}), steady state "
                      f"{per_vec:.1f} cycles/vector = {per_vec / ideal:.4f} x ideal")
        assert per_vec == ideal, f"{mode}: {per_vec} cycles per vector, ideal {ideal}"
        # let the pipeline empty before the next mode so latency is measured from idle
        await tb.clock.cycles(10)
    out = os.environ.get("HYFLEXPIM_REPORT")
    if out:
        with open(out, "w") as f:
            json.dump(report, f)

