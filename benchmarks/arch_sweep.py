"""Architecture model benchmark: the full sweep (5 models x 7 lengths x 7 SLC rates x 7
designs, plus chip/PU scaling) and the report with their run times, and the headline
tables of every design on each published workload.

    .venv/bin/python benchmarks/arch_sweep.py [--out build/perf] [--no-plots]
"""

import argparse
import time

from hyflexpim.sim.arch import evaluate, run_report, run_sweep, DESIGNS, WORKLOADS
from hyflexpim.sim.arch.report import budget


def headline(model, seq, slc=0.1, gen=0, batch=1):
    chips = budget(model, seq, slc) if gen == 0 else None
    rows = []
    for design in DESIGNS:
        c = None if design == "asadi" else chips
        r = evaluate(model, seq, slc, design, chips=c, gen=gen, batch=batch)
        rows.append((design, r))
    base = rows[0][1]
    mode = "all tokens at once" if gen == 0 else f"{gen} generated, batch {batch}"
    print(f"\n{model}, seq {seq} ({mode}), SLC {slc:.0%}; {chips or 'as needed'} chip(s) "
          f"(ASADI: as it needs)")
    print("| design | chips | tokens/s | energy/token | linear energy/token | tokens/s/mm^2 | "
          "bottleneck | HyFlexPIM over it: speed-up, energy eff., area eff. |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['chips']} | {r['tokens_per_s']:.4g} | {r['energy_per_token_j'] * 1e6:.4g} uJ | "
              f"{r['linear_energy_per_token_j'] * 1e6:.4g} uJ | {r['area_efficiency']:.4g} | "
              f"{r['bottleneck'] or '-'} | {base['tokens_per_s'] / r['tokens_per_s']:.3g}x, "
              f"{r['energy_per_token_j'] / base['energy_per_token_j']:.3g}x, "
              f"{base['area_efficiency'] / r['area_efficiency']:.3g}x |")


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
    t0 = time.perf_counter()
    rep = run_report(f"{a.out}/report", plots=not a.no_plots)
    print(f"report: {len(rep['rows'])} rows; model {rep['seconds']:.2f} s, with files "
          f"{time.perf_counter() - t0:.2f} s")
    for w in WORKLOADS.values():
        for m in w.models:
            headline(m, w.seq)
    headline("gpt2", 512, gen=256)
    headline("gpt2", 512, gen=256, batch=16)
    headline("llama-3.2-1b", 2048, gen=1024, batch=8)


if __name__ == "__main__":
    main()
