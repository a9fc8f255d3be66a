"""``hyflexpim accuracy``: metric of a task's model under RRAM noise; ``--sweep`` over k."""

import json
import sys
from pathlib import Path

from ..cli import UsageError
from .redistribute import (TASKS, POLICIES, RANK_SELECT, check_common, load_algo,
                           add_rank_arguments, rank_config)

NAME = "accuracy"
HELP = "accuracy (or eval loss) under RRAM noise for a mapping, or a sweep over SLC rates"


def add_arguments(p):
    p.add_argument("--task", required=True, help=f"one of {', '.join(TASKS)}")
    p.add_argument("--mapping", help="mapping JSON from 'hyflexpim redistribute' (single run)")
    p.add_argument("--mode", default="hardware", help="hardware or paper (single run)")
    p.add_argument("--backend", default=None,
                   help="hardware mode: faithful (golden array model, default) or fast")
    p.add_argument("--sweep", action="store_true",
                   help="sweep k in {0,5,10,20,30,50,100} x policies x seeds, both noise modes")
    p.add_argument("--policies", default=",".join(POLICIES), help="comma-separated policies")
    p.add_argument("--ks", default="0,5,10,20,30,50,100", help="comma-separated SLC rates")
    p.add_argument("--modes", default="hardware,paper", help="noise modes of the sweep")
    p.add_argument("--ber", type=float, default=0.0404,
                   help="hardware mode: device 2-bit MLC bit error rate (default 0.0404)")
    p.add_argument("--paper-std", type=float, default=0.025,
                   help="paper mode: noise std per 2-bit group (default 0.025)")
    p.add_argument("--seeds", type=int, default=3, help="noise seeds (default 3)")
    p.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (default 2)")
    p.add_argument("--seed", type=int, default=0, help="data split seed")
    p.add_argument("--small", action="store_true", help="subsampled data (fast)")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N samples")
    p.add_argument("--no-cache", action="store_true", help="retrain, do not use checkpoints")
    add_rank_arguments(p)
    p.add_argument("--out", default="accuracy", help="output prefix: PREFIX.csv, .png, .json")


def _list(text, name, conv=str):
    try:
        return [conv(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{name} must be a comma-separated list, not {text!r}") from None


def run(args):
    check_common(args)
    ks = _list(args.ks, "ks", float)
    for k in ks:
        if not 0 <= k <= 100:
            raise UsageError(f"SLC rate k must be in [0, 100], not {k:g}")
    pols = _list(args.policies, "policies")
    for p in pols:
        if p not in POLICIES:
            raise UsageError(f"policy must be one of {', '.join(POLICIES)}, not {p!r}")
    modes = _list(args.modes, "modes")
    for m in modes:
        if m not in ("hardware", "paper"):
            raise UsageError(f"mode must be 'hardware' or 'paper', not {m!r}")
    if args.backend not in (None, "faithful", "fast"):
        raise UsageError(f"backend must be 'faithful' or 'fast', not {args.backend!r}")
    if not 0 < args.ber < 0.5:
        raise UsageError(f"ber must be in (0, 0.5), not {args.ber!r}")
    if not 0 <= args.paper_std <= 1:
        raise UsageError(f"paper-std must be in [0, 1], not {args.paper_std!r}")
    if args.seeds < 1:
        raise UsageError(f"seeds must be a positive integer, not {args.seeds!r}")
    if not args.sweep and not args.mapping:
        raise UsageError("give --mapping FILE (single evaluation) or --sweep")
    if args.rank_select not in RANK_SELECT:
        raise UsageError(f"rank-select must be one of {', '.join(RANK_SELECT)}, "
                         f"not {args.rank_select!r}")
    load_algo()
    rs, soft = rank_config(args)
    from ...models.algo_tasks import get_task
    from ...models import accuracy as acc
    from ...models.redistribute import load_mapping
    task = get_task(args.task, small=args.small, seed=args.seed, eval_limit=args.eval_limit)
    if not args.sweep:
        mp = load_mapping(args.mapping)
        if mp.get("task") not in (None, args.task):
            raise UsageError(f"mapping file {args.mapping} is for task {mp.get('task')!r}, "
                             f"not {args.task!r}")
        mode = mp.get("noise_mode", args.mode)
        if mp.get("rank_select") in RANK_SELECT:    # the model the mapping was made for
            from ...models.soft_rank import SoftRankConfig
            rs, soft = mp["rank_select"], SoftRankConfig(**(mp.get("soft_threshold") or {}))
        prep = acc.prepare(task, mode, ft_epochs=args.epochs, cache=not args.no_cache,
                           rank_select=rs, soft=soft)
        be = args.backend if mode == "hardware" else None
        for s in range(args.seeds):
            v = acc.evaluate_mapping(prep, mp, seed=s, backend=be, ber=args.ber,
                                     paper_std=args.paper_std)
            print(f"{args.task} {mode} policy={mp['policy']} k={mp['slc_percent']:g} seed={s}: "
                  f"{task.metric_name} {v:.4f}")
        return 0
    rows, summary = acc.sweep(task, modes=modes, policies=pols, ks=ks,
                              seeds=tuple(range(args.seeds)), ft_epochs=args.epochs,
                              hw_backend=args.backend or "faithful", cache=not args.no_cache,
                              ber=args.ber, paper_std=args.paper_std, rank_select=rs, soft=soft,
                              log=lambda s: print(s, file=sys.stderr))
    def out(ext):        # PREFIX.ext, the prefix kept whole even if it has a dot
        return Path(f"{args.out}{ext}")
    acc.write_csv(rows, out(".csv"))
    acc.plot_sweep(rows, out(".png"), summary)
    out(".json").write_text(json.dumps(summary, indent=1, default=float))
    for mode, s in summary.items():
        ks_txt = ", ".join(f"{p} {s.get(f'smallest_k_{p}')}" for p in pols)
        print(f"{args.task} {mode}: smallest k within 1% of noise-free INT8: {ks_txt}")
    print(f"wrote {out('.csv')}, {out('.png')}, {out('.json')}",
          file=sys.stderr)
    return 0
