"""Simulated cycles per second of the published 64 x 128 analog array under cocotb.

For every simulator found (Icarus, Verilator) x S&H model (``python``: the testbench
answers the comparator on every cycle; ``hdl``: sim/hdl/hyflexpim_sh_bank.v, loaded
once per bit-plane) x clock (``cocotb``'s GPI clock; ``hdl``: toggled in the simulation
top) x mode (SLC, MLC), one run of tb/analog_speed_tb.py streams random INT8 vectors
through one programmed tile, every result checked against the golden model, and reports
the cycles simulated per wall second of the stream (the golden outputs are computed
before the clock is timed; build and start-up are not counted, the build time is
printed apart). All in one process, one run at a time.

    .venv/bin/python benchmarks/rtl_sim_speed.py                 # everything found
    .venv/bin/python benchmarks/rtl_sim_speed.py --simulators verilator --sh-models hdl

Target (issue 16): at least 500,000 cycles/s with Verilator. docs/simulation.md keeps
the figures.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from hyflexpim.sim import cocotb_runner as R


def _list(text, allowed, what):
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise SystemExit(f"rtl_sim_speed: error: --{what} takes a comma list of "
                         f"{', '.join(allowed)}, not {text!r}")
    return items


def vectors_for(sim, model, mode, args):
    """Enough vectors for about a second of stream at the expected speed."""
    if args.vectors:
        return args.vectors
    fast = sim == "verilator" and model == "hdl"
    n = args.fast_vectors if fast else args.slow_vectors
    return n                # an SLC vector is 6/7 of an MLC one (6-bit against 7-bit ADC)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--simulators", default=",".join(R.available_simulators()))
    ap.add_argument("--sh-models", default="python,hdl")
    ap.add_argument("--clocks", default="cocotb,hdl")
    ap.add_argument("--modes", default="slc,mlc")
    ap.add_argument("--vectors", type=int, help="vectors of every run (default: by speed)")
    ap.add_argument("--slow-vectors", type=int, default=4,
                    help="MLC vectors of a run with Icarus or the Python S&H (default 4)")
    ap.add_argument("--fast-vectors", type=int, default=96,
                    help="MLC vectors of a Verilator run with the HDL S&H (default 96)")
    ap.add_argument("--read-noise", type=float, default=None,
                    help="per-read noise sigma (default: off)")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    sims = _list(args.simulators, R.SIMULATORS, "simulators")
    models = _list(args.sh_models, R.SH_MODELS, "sh-models")
    clocks = _list(args.clocks, R.CLOCKS, "clocks")
    modes = _list(args.modes, ("slc", "mlc"), "modes")
    for n in (args.vectors, args.slow_vectors, args.fast_vectors):
        if n is not None and not 1 <= n <= 10_000:
            raise SystemExit(f"rtl_sim_speed: error: vectors must be in 1..10000, not {n}")
    missing = [s for s in sims if s not in R.available_simulators()]
    if missing:
        raise SystemExit(f"rtl_sim_speed: error: not installed: {', '.join(missing)} "
                         "(./dev setup)")
    rows = []
    print(f"{'simulator':9} {'S&H':6} {'clock':6} {'mode':4} {'vectors':>7} {'cycles':>10} "
          f"{'stream s':>8} {'cycles/s':>10} {'cyc/CPU s':>10} {'build s':>7}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for sim in sims:
            for model in models:
                for clock in clocks:
                    bdir = R.build_dir_for("analog_array", {"bench": "rtl_sim_speed"},
                                           None, sim, model, clock)
                    for mode in modes:
                        report = Path(tmp) / f"{sim}-{model}-{clock}-{mode}.jsonl"
                        n = vectors_for(sim, model, mode, args)
                        tb = dict(mode=mode, vectors=n, seed=1)
                        if args.read_noise:
                            tb["read_noise"] = args.read_noise
                        R.run_block("analog_array", test_module="hyflexpim.tb.analog_speed_tb",
                                    small=False, tb_params=tb, simulator=sim, sh_model=model,
                                    clock=clock, build_dir=bdir, quiet=True,
                                    extra_env={"HYFLEXPIM_REPORT": report})
                        run = R.last_run()
                        r = json.loads(report.read_text().splitlines()[-1])
                        r.pop("results", None)
                        r.update(simulator=sim, build_s=run["build_s"] if run["built"] else 0.0,
                                 runner_cycles_per_s=run["cycles_per_s"])
                        rows.append(r)
                        print(f"{sim:9} {model:6} {clock:6} {mode:4} {n:7d} {r['cycles']:10,d} "
                              f"{r['wall_s']:8.2f} {r['cycles_per_s']:10,.0f} "
                              f"{r['cycles_per_cpu_s']:10,.0f} {r['build_s']:7.1f}", flush=True)
    best = {}
    for r in rows:
        best[r["simulator"]] = max(best.get(r["simulator"], 0), r["cycles_per_s"])
    for sim, v in best.items():
        print(f"best {sim}: {v:,.0f} cycles/s of the 64 x 128 array"
              + (f" (target 500,000: {'met' if v >= 500_000 else 'NOT met'})"
                 if sim == "verilator" else ""))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
          f"at {time.strftime('%Y-%m-%d %H:%M')}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
