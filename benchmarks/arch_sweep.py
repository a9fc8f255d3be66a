"""Architecture model benchmark: the full sweep (5 models x 7 lengths x 7 SLC rates x 4
designs, plus chip/PU scaling) with its run time, and the headline table.

    .venv/bin/python benchmarks/arch_sweep.py [--out build/perf] [--no-plots]
"""

import argparse
import time

from hyflexpim.sim.arch import evaluate, run_sweep
from hyflexpim.sim.arch.sweep import _budget


def headline(model="bert-large", seq=512, slc=0.1):
    chips = _budget(model, seq, slc)
    rows = []
    for design, rate in (("hyflexpim", slc), ("hyflexpim", 0.0), ("hyflexpim", 0.2),
                         ("slc-only", 1.0), ("non-pim", slc), ("nmp", slc)):
        r = evaluate(model, seq, rate, design, chips=chips)
        rows.append((design if design != "hyflexpim" else f"hyflexpim {rate:.0%} SLC", r))
    base = rows[0][1]
    print(f"\n{model}, seq {seq}, {chips} chip(s) for every design")
    print(f"| design | tokens/s | latency | energy/token | area mm^2 | vs HyFlexPIM {slc:.0%}: throughput, energy |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['tokens_per_s']:.4g} | {r['latency_s'] * 1e3:.3g} ms | "
              f"{r['energy_per_token_j'] * 1e6:.4g} uJ | {r['area_mm2']:.0f} | "
              f"{r['tokens_per_s'] / base['tokens_per_s']:.3g}x, {r['energy_per_token_j'] / base['energy_per_token_j']:.3g}x |")
    print("\nenergy breakdown (uJ/token):")
    for name, r in rows:
        parts = ", ".join(f"{k} {v * 1e6:.3g}" for k, v in sorted(r["energy_breakdown_j"].items(),
                                                                   key=lambda kv: -kv[1]) if v > 0)
        print(f"  {name}: {parts}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="build/perf")
    ap.add_argument("--no-plots", action="store_true")
    a = ap.parse_args()
    t0 = time.perf_counter()
    res = run_sweep(a.out, plots=not a.no_plots)
    print(f"sweep: {res['rows']} design points + {res['scaling_rows']} scaling points; "
          f"model {res['model_seconds']:.2f} s, with CSV/plots {res['seconds']:.2f} s "
          f"(wall {time.perf_counter() - t0:.2f} s)")
    headline()
    headline("gpt2", 512)
    headline("llama-3.2-1b", 2048)


if __name__ == "__main__":
    main()
