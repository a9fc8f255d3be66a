"""Fixed rank vs soft-threshold (learned per-layer) rank on one task.

    .venv/bin/python benchmarks/algo_rank_select.py digits [--small] [--modes hardware]
        [--epochs 2] [--budget F] [--temperature 0.1] [--penalty 10] [--threshold-lr 0.02]
        [--seeds 2] [--eval-limit N]

For each noise mode: float accuracy (or loss) of the base, truncated and fine-tuned
models with the fixed r = floor(mn/(m+n)) and with the soft-threshold ranks (before
and after the hard threshold), the parameter counts (original, fixed-rank, budget,
soft, hard), the chosen rank of every matrix, and the noise-free INT8 metric and the
metric under noise (fast backend in hardware mode, paper noise in paper mode) for the
gradient policy at k = 0 and 10 (mean over seeds). Torch uses one thread.
"""

import argparse
import time

import numpy as np

from hyflexpim.models._torch import torch
from hyflexpim.models.algo_tasks import get_task
from hyflexpim.models import accuracy as acc
from hyflexpim.models.soft_rank import SoftRankConfig


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("task")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--modes", default="hardware")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--budget", type=float, default=None)
    ap.add_argument("--temperature", type=float, default=0.1)
    ap.add_argument("--penalty", type=float, default=10.0)
    ap.add_argument("--threshold-lr", type=float, default=0.02)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--eval-limit", type=int, default=None)
    ap.add_argument("--no-cache", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    soft = SoftRankConfig(a.temperature, a.penalty, a.threshold_lr, a.budget)
    task = get_task(a.task, small=a.small, eval_limit=a.eval_limit)
    print(f"task {a.task}{' --small' if a.small else ''}, knobs {soft.as_dict()}")
    for mode in a.modes.split(","):
        res = {}
        for rs in ("fixed", "soft-threshold"):
            t = time.time()
            prep = acc.prepare(task, mode, ft_epochs=a.epochs, cache=not a.no_cache, quiet=True,
                               rank_select=rs, soft=soft)
            f = prep.figures
            be = "fast" if mode == "hardware" else "paper"
            mp0 = acc.mapping_for(prep, "gradient", 0)
            int8 = acc.evaluate_mapping(prep, mp0, noise=False,
                                        backend="int8" if be != "paper" else be)
            noisy = {k: float(np.mean([acc.evaluate_mapping(
                prep, acc.mapping_for(prep, "gradient", k, seed=s), seed=s, backend=be)
                for s in range(a.seeds)])) for k in (0, 10)}
            res[rs] = (f, int8, noisy, time.time() - t)
        f0, f1 = res["fixed"][0], res["soft-threshold"][0]
        print(f"\n[{a.task}/{mode}] metric: {task.metric_name}")
        print(f"  base {f0['base']:.4f}, truncated (fixed r) {f0['truncated']:.4f}")
        for rs, (f, int8, noisy, dt) in res.items():
            extra = (f", before hard threshold {f['soft_finetuned']:.4f}"
                     if rs != "fixed" else "")
            print(f"  {rs:>14}: fine-tuned {f['finetuned']:.4f}{extra}; INT8 noise-free "
                  f"{int8:.4f}; gradient k=0 {noisy[0]:.4f}, k=10 {noisy[10]:.4f} "
                  f"({a.seeds} seeds); {dt:.0f} s")
        print(f"  parameters: original {f1['params_dense']}, fixed-rank {f1['params_fixed']}, "
              f"budget {f1['params_budget']}, soft {f1['params_soft']:.0f}, "
              f"hard {f1['params_hard']}")
        names = list(f1["ranks"])
        w = max(len(n) for n in names)
        print(f"  {'matrix':<{w}}  fixed  soft-threshold")
        for n in names:
            print(f"  {n:<{w}}  {f1['ranks_fixed'][n]:>5}  {f1['ranks'][n]:>5}")


if __name__ == "__main__":
    main()
