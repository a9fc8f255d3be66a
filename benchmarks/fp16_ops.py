"""Throughput and latency of the FP16 operator units, measured in the Amaranth simulator.

For each unit: stream ``--n`` operand sets with the source always valid and the sink
always ready, record the cycle at which each input was accepted and each result
delivered. Prints results per cycle per lane (steady state: results / cycles from the
first acceptance to the last delivery, minus the pipeline fill) and the latency (cycles
from acceptance to delivery, min and max over all items), and checks every result
against the golden model.

    .venv/bin/python benchmarks/fp16_ops.py [--n 1000] [--lanes 1 4]
"""

import argparse
import sys

import numpy as np
from amaranth.sim import Simulator

from hyflexpim.tb import fp16_tb as tb

CONFIGS = [("add", {}), ("mul", {}), ("div", {}), ("div", {"steps_per_stage": 7}),
           ("sqrt", {}), ("sqrt", {"steps_per_stage": 7}), ("cmp", {}),
           ("from_int32", {}), ("to_int8", {})]


def measure(op, params, lanes, n, seed=1):
    v = tb.vectors(op, seed)
    v = {k: np.asarray(a)[:n] for k, a in v.items()}
    n = len(next(iter(v.values())))
    words = tb.pack(op, v, lanes)
    dut = tb.make_unit(op, lanes=lanes, **params)
    accepted, delivered, outs = [], [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        cycle, idx = 0, 0
        while len(outs) < len(words):
            if idx < len(words):
                ctx.set(dut.i.payload.as_value(), words[idx])
            ctx.set(dut.i.valid, idx < len(words))
            if idx < len(words) and ctx.get(dut.i.ready):
                accepted.append(cycle)
                idx += 1
            if ctx.get(dut.o.valid):
                delivered.append(cycle)
                outs.append(ctx.get(dut.o.payload.as_value()))
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    r, f = tb.unpack(op, outs, n, lanes)
    bad = tb.mismatches(op, v, r, f)
    lat = np.array(delivered) - np.array(accepted)
    span = delivered[-1] - accepted[0] + 1 - int(lat.min())
    return dict(op=op, params=params, lanes=lanes, results=n, transfers=len(words),
                per_cycle_per_lane=len(words) / span, lat_min=int(lat.min()),
                lat_max=int(lat.max()), latency_prop=dut.latency, exact=not bad)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="operand sets per unit (default 1000)")
    ap.add_argument("--lanes", type=int, nargs="+", default=[1, 4], help="lane counts")
    args = ap.parse_args(argv)
    if args.n < 1:
        raise SystemExit("--n must be a positive integer")
    print(f"{'unit':22s} {'lanes':>5s} {'results':>8s} {'res/cycle/lane':>15s} "
          f"{'latency min/max':>16s} {'documented':>11s} {'bit-exact':>9s}")
    ok = True
    for lanes in args.lanes:
        for op, params in CONFIGS:
            m = measure(op, params, lanes, args.n)
            name = op + "".join(f" {k}={v}" for k, v in params.items())
            print(f"{name:22s} {lanes:5d} {m['results']:8d} {m['per_cycle_per_lane']:15.3f} "
                  f"{m['lat_min']:>7d}/{m['lat_max']:<8d} {m['latency_prop']:11d} "
                  f"{'yes' if m['exact'] else 'NO':>9s}")
            ok &= m["exact"] and m["lat_min"] == m["lat_max"] == m["latency_prop"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
