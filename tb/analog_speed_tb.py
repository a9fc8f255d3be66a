"""cocotb module behind ``benchmarks/rtl_sim_speed.py``: simulated cycles per second.

A stream of ``vectors`` random INT8 vectors through one programmed tile of the array
under test (the parts of :mod:`hyflexpim.tb.analog_tb`: source, sink, crossbar bank,
scoreboard; every result is still checked against the golden model, computed for the
whole batch before the clock is timed). Reads ``HYFLEXPIM_PARAMS`` (JSON: ``mode``,
``vectors``, ``ber``, ``read_noise``, ``seed``, ``idle`` and ``ready_prob``: random
input gaps and output backpressure, none by default) and appends its figures
(simulator, S&H model, clock, cycles, wall and CPU seconds of this process, cycles per
second of each, and ``results``: every result vector with the cycle it left the array,
for the comparison of S&H models and clocks) to ``HYFLEXPIM_REPORT``.
"""

import os
import time

import numpy as np

import cocotb

from hyflexpim.models.encoding import neurons_per_array
from hyflexpim.tb import lib
from hyflexpim.tb.analog_tb import COLS, MLC_BITS, ROWS, SLC_BITS, TB, Tile, cycles_per_vector


class SpeedTB(TB):
    """:class:`~hyflexpim.tb.analog_tb.TB` whose source and sink draw their pauses from
    generators of their own: with one shared generator, the order in which the two
    parts draw at one clock edge (the order the simulator wakes them in) would decide
    the pauses, and Icarus and Verilator wake them in different orders."""

    def _pauses(self, probability):
        self._parts = getattr(self, "_parts", 0) + 1
        if probability <= 0:
            return lib.never()
        return lib.random_pauses(probability, lib.rng(self.seed * 7919 + self._parts))


@cocotb.test()
async def simulation_speed(dut):
    """Cycles per second of a stream of vectors, results checked."""
    p = lib.params()
    mode, n = p.get("mode", "mlc"), int(p.get("vectors", 16))
    seed = int(p.get("seed", lib.seed("simulation_speed")))
    tb = SpeedTB(dut, seed, idle=float(p.get("idle", 0.0)),
                 ready_prob=float(p.get("ready_prob", 1.0)))
    tb.seed = seed
    await tb.start()
    rng = np.random.default_rng(seed)
    k = neurons_per_array(mode, COLS)
    tile = Tile(rng.integers(-128, 128, (ROWS, k)), mode, p.get("ber"), seed)
    if p.get("read_noise"):
        from hyflexpim.models import program_matrix
        tile.pm = program_matrix(tile.weights, mode, ber=p.get("ber"), seed=seed,
                                 read_noise=p["read_noise"], rows=ROWS, cols=COLS,
                                 slc_bits=SLC_BITS, mlc_bits=MLC_BITS)
        tile.crossbar = tile.pm.tiles[0].crossbar
    X = rng.integers(-128, 128, (n, ROWS))
    Y = tile.pm.run(X, first_vector=tb.vectors)
    c0, t0, cpu0 = tb.clock.cycle, time.perf_counter(), time.process_time()
    for i in range(n):
        tb.send(X[i], tile, f"speed #{i}", expected=tile.words(Y[i]))
    await tb.drain(2 * n * cycles_per_vector(mode) + 200)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    cycles = tb.clock.cycle - c0
    assert tb.board.checked == n
    figures = tb.clock.figures()
    lib.report("simulation_speed", os.environ.get("HYFLEXPIM_REPORT"),
               simulator=figures["simulator"], sh_model=os.environ.get("HYFLEXPIM_SH_MODEL"),
               poll=os.environ.get("HYFLEXPIM_TB_POLL") or "events", rows=ROWS, cols=COLS,
               clock=os.environ.get("HYFLEXPIM_CLOCK"), mode=mode, vectors=n, cycles=cycles,
               wall_s=wall, cpu_s=cpu, cycles_per_s=cycles / wall, cycles_per_cpu_s=cycles / cpu,
               read_noise=bool(p.get("read_noise")),
               results=[[[int(v) for v in y], int(c - c0)]
                        for y, c in tb.results])
