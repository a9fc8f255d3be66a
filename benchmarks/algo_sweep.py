"""Evidence for docs/algorithm.md: the whole flow on one task, with wall times.

    .venv/bin/python benchmarks/algo_sweep.py digits [--backend faithful|fast] [--seeds 3]
        [--small] [--eval-limit N] [--ks 0,5,...] [--policies ...] [--modes hardware,paper]
        [--paper-std 0.025] [--ber 0.0404] [--out PREFIX]

Prints: base / truncated / fine-tuned metric, the top-5% / top-10% share of the rank
scores before and after fine-tuning, the noise-free INT8 references, the metric vs SLC
rate per policy (mean and min..max over seeds) for both noise modes, the smallest k
within 1% of the noise-free INT8 model per policy, and the wall time of each stage.
Writes PREFIX.csv, PREFIX.png and PREFIX.json (through ``hyflexpim accuracy --sweep``).
"""

import argparse
import json
import sys
import time
from pathlib import Path

from hyflexpim.sim.cli import main as cli


def run(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("task")
    ap.add_argument("--backend", default="faithful")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--eval-limit", type=int)
    ap.add_argument("--modes", default="hardware,paper")
    ap.add_argument("--paper-std", default="0.025")
    ap.add_argument("--ber", default="0.0404")
    ap.add_argument("--ks", default="0,5,10,20,30,50,100")
    ap.add_argument("--policies", default="gradient,rank,magnitude,random")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    out = a.out or f"{Path.home()}/.cache/hyflexpim/bench/algo_{a.task}{'_small' if a.small else ''}_{a.backend}"
    if a.out is None and a.paper_std != "0.025":
        out += f"_std{a.paper_std}"
    if a.out is None and a.ber != "0.0404":
        out += f"_ber{a.ber}"
    argv2 = ["accuracy", "--task", a.task, "--sweep", "--backend", a.backend, "--seeds",
             str(a.seeds), "--epochs", str(a.epochs), "--modes", a.modes, "--out", out, "--paper-std", a.paper_std,
             "--ber", a.ber, "--ks", a.ks, "--policies", a.policies]
    if a.small:
        argv2.append("--small")
    if a.eval_limit:
        argv2 += ["--eval-limit", str(a.eval_limit)]
    t = time.time()
    rc = cli(argv2)
    wall = time.time() - t
    if rc:
        return rc
    summary = json.loads(Path(f"{out}.json").read_text())
    for mode, s in summary.items():
        print(f"\n== {a.task} / {mode} noise ({s['metric']}) ==")
        print(f"base {s['base']:.4f}  truncated {s['truncated']:.4f}  fine-tuned "
              f"{s['finetuned']:.4f}  INT8 noise-free: factored {s['int8_factored']:.4f}, "
              f"base {s['int8_base']:.4f}")
        print(f"score share top 5%: before {s['top5_before']:.3f} after {s['top5_after']:.3f} "
              f"(during fine-tuning {s['top5_during']:.3f}); top 10%: before "
              f"{s['top10_before']:.3f} after {s['top10_after']:.3f} "
              f"(during {s['top10_during']:.3f})")
        for key in sorted(k for k in s if k.startswith("means_")):
            pol = key[6:]
            pts = "  ".join(f"k={k:g}:{v:.4f}" for k, v in s[key])
            print(f"  {pol:9s} {pts}  -> smallest k {s.get('smallest_k_' + pol)}")
        print(f"times: train {s['train_s']:.0f} s (0 = cached), fine-tune "
              f"{s.get('finetune_s', 0):.0f} s, sweep {s['sweep_s']:.0f} s")
    print(f"\nwall time of this run: {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run())
