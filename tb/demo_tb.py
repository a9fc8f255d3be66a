"""cocotb module behind ``hyflexpim demo``: one array GEMV, RTL vs golden model.

Reads ``HYFLEXPIM_DEMO`` (JSON: mode, ber, seed, vectors, out) and writes to ``out`` a
JSON report with the weights, inputs, RTL outputs, golden outputs and cycle counts. The
parts are those of :mod:`hyflexpim.tb.analog_tb`.
"""

import json
import os

import cocotb

from hyflexpim.models.encoding import neurons_per_array
from hyflexpim.tb.analog_tb import TB, Tile, ROWS, COLS, cycles_per_vector


@cocotb.test()
async def demo_gemv(dut):
    cfg = json.loads(os.environ["HYFLEXPIM_DEMO"])
    mode, ber, seed, n = cfg["mode"], cfg["ber"], cfg["seed"], cfg["vectors"]
    dut._log.info(f"demo: mode {mode}, ber {ber}, seed {seed}, {n} vectors")
    tb = TB(dut, seed)
    await tb.start()
    k = neurons_per_array(mode, COLS)
    W = tb.rng.integers(-128, 128, (ROWS, k))
    X = tb.rng.integers(-128, 128, (n, ROWS))
    tile = Tile(W, mode, ber, seed)
    for i in range(n):
        tb.send(X[i], tile, f"demo #{i}")
    await tb.drain(2 * n * cycles_per_vector(mode) + 200)
    times = [c for _, c in tb.results]
    first_in = times[0] - tb.board.latencies[0]
    report = dict(mode=mode, ber=ber, seed=seed, rows=ROWS, cols=COLS,
                  weights=W.tolist(), x=X.tolist(),
                  rtl=[[int(v) for v in y[:k]] for y, _ in tb.results],
                  golden=tile.pm.run(X).tolist(), exact=(X @ W).tolist(),
                  saturated=tile.pm.saturated(X),
                  first_result_cycles=times[0] - first_in,
                  cycles_total=times[-1] - first_in,
                  steady_cycles_per_vector=((times[-1] - times[0]) / (n - 1)) if n > 1 else None,
                  ideal_cycles_per_vector=cycles_per_vector(mode))
    with open(cfg["out"], "w") as f:
        json.dump(report, f)
