"""``hyflexpim redistribute``: SVD, fine-tuning, rank scores and the SLC/MLC mapping file."""

import os
import sys

from ..cli import UsageError

NAME = "redistribute"
HELP = "factor a task's model by SVD, fine-tune, rank and write the SLC/MLC mapping (JSON)"
TASKS = ("tiny", "digits", "fashion", "minilm", "austen")
POLICIES = ("gradient", "rank", "magnitude", "random")


def add_arguments(p):
    p.add_argument("--task", required=True, help=f"one of {', '.join(TASKS)}")
    p.add_argument("--policy", default="gradient", help=f"one of {', '.join(POLICIES)}")
    p.add_argument("--slc", type=float, default=10.0, metavar="K",
                   help="SLC rate in percent of ranks (or weights), 0..100 (default 10)")
    p.add_argument("--mode", default="hardware",
                   help="hardware (A=U S, B=V^T, accumulated gradient score) or paper "
                        "(U, S, V with head, last-batch |dL/dS| score)")
    p.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (default 2)")
    p.add_argument("--seed", type=int, default=0, help="data split / random policy seed")
    p.add_argument("--small", action="store_true", help="subsampled data (fast)")
    p.add_argument("--no-cache", action="store_true", help="retrain, do not use checkpoints")
    add_rank_arguments(p)
    p.add_argument("--out", required=True, help="mapping JSON to write")


RANK_SELECT = ("fixed", "soft-threshold")


def add_rank_arguments(p):
    """The rank-selection options, shared with ``hyflexpim accuracy``."""
    p.add_argument("--rank-select", default="fixed",
                   help="fixed (r = floor(mn/(m+n)) per matrix, default) or soft-threshold "
                        "(per-layer rank learned by a soft mask on the singular values)")
    p.add_argument("--rank-budget", type=float, default=None, metavar="F",
                   help="soft-threshold: parameter budget as a fraction of the original "
                        "matrices' parameters, in (0, 1] (default: the fixed-rank flow's)")
    p.add_argument("--rank-temperature", type=float, default=0.1, metavar="T",
                   help="soft-threshold: mask temperature in log units (default 0.1)")
    p.add_argument("--rank-penalty", type=float, default=10.0, metavar="LAMBDA",
                   help="soft-threshold: weight of the budget penalty (default 10)")
    p.add_argument("--threshold-lr", type=float, default=0.02,
                   help="soft-threshold: learning rate of the thresholds (default 0.02)")


def rank_config(args):
    """``(rank_select, SoftRankConfig)`` from the options; UsageError on bad values."""
    if args.rank_select not in RANK_SELECT:
        raise UsageError(f"rank-select must be one of {', '.join(RANK_SELECT)}, "
                         f"not {args.rank_select!r}")
    from ...models.soft_rank import SoftRankConfig
    try:
        return args.rank_select, SoftRankConfig(args.rank_temperature, args.rank_penalty,
                                                args.threshold_lr, args.rank_budget)
    except ValueError as exc:
        raise UsageError(str(exc).replace("temperature", "rank-temperature", 1)
                         .replace("penalty", "rank-penalty", 1)
                         .replace("threshold_lr", "threshold-lr", 1)
                         .replace("budget", "rank-budget", 1)) from None


def load_algo():
    """Import the torch-based modules, or a one-line UsageError naming the install."""
    try:
        from ...models._torch import torch
    except ImportError as exc:
        raise UsageError(str(exc) if "pip install" in str(exc)
                         else "PyTorch is needed for this (the 'algo' extra): pip install -e .[algo]") from None
    # One thread by default: on a shared 2-core machine more threads only spin.
    torch.set_num_threads(int(os.environ.get("HYFLEXPIM_TORCH_THREADS", "1")))


#: Largest --seed (the data split, torch and NumPy generators all take 0..2**32-1).
MAX_SEED = 2 ** 32 - 1


def check_common(args):
    if args.task not in TASKS:
        raise UsageError(f"task must be one of {', '.join(TASKS)}, not {args.task!r}")
    if args.mode not in ("hardware", "paper"):
        raise UsageError(f"mode must be 'hardware' or 'paper', not {args.mode!r}")
    if args.epochs < 0:
        raise UsageError(f"epochs must be a non-negative integer, not {args.epochs!r}")
    if not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"seed must be an integer in 0..{MAX_SEED}, not {args.seed!r}")


def check_output_file(path, what):
    """Refuse an output file that cannot be written, before any long work: an empty
    name, a folder, a path under a file, a folder without write permission or that
    cannot be created (it is created here), a full file system. (A device that is full
    only on writing, such as /dev/full, shows when the file is written; the CLI reports
    that as one line too.)"""
    from pathlib import Path
    if not str(path).strip():
        raise UsageError(f"{what} must name a file, not {str(path)!r}")
    p = Path(path)
    if p.is_dir() or str(path).endswith(("/", os.sep)):
        raise UsageError(f"{what} {p} is a folder, not a file")
    parent = p.parent
    while not parent.exists():      # the nearest existing folder above (created later)
        if parent.is_symlink():
            raise UsageError(f"{what} {p}: {parent} is a broken symbolic link")
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{what} {p}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {p}: no permission to write in {parent}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{what} {p}: cannot create the folder {p.parent}: "
                         f"{exc.strerror or exc}") from None
    try:
        free = os.statvfs(p.parent)
        if free.f_bavail == 0 and free.f_blocks:
            raise UsageError(f"{what} {p}: no space left on the device of {p.parent}")
    except (OSError, AttributeError):
        pass
    try:
        os.stat(p)
    except FileNotFoundError:
        pass
    except OSError as exc:          # a symbolic link loop, a name too long, ...
        raise UsageError(f"{what} {p}: {exc.strerror}") from None
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{what} {p}: no permission to write the file")
    return p


def run(args):
    check_common(args)
    if args.policy not in POLICIES:
        raise UsageError(f"policy must be one of {', '.join(POLICIES)}, not {args.policy!r}")
    if not 0 <= args.slc <= 100:
        raise UsageError(f"SLC rate k must be in [0, 100], not {args.slc!r}")
    if args.rank_select not in RANK_SELECT:
        raise UsageError(f"rank-select must be one of {', '.join(RANK_SELECT)}, "
                         f"not {args.rank_select!r}")
    check_output_file(args.out, "--out")
    load_algo()
    rs, soft = rank_config(args)
    from ...models.algo_tasks import get_task
    from ...models.accuracy import prepare, mapping_for
    from ...models.redistribute import save_mapping
    task = get_task(args.task, small=args.small, seed=args.seed)
    prep = prepare(task, args.mode, ft_epochs=args.epochs, cache=not args.no_cache,
                   rank_select=rs, soft=soft)
    f = prep.figures
    print(f"{args.task} ({args.mode}): {task.metric_name} base {f['base']:.4f}, truncated "
          f"{f['truncated']:.4f}, fine-tuned {f['finetuned']:.4f}; top-10% score share "
          f"{f['top10_before']:.3f} before, {f['top10_after']:.3f} after fine-tuning",
          file=sys.stderr)
    if rs == "soft-threshold":
        print(f"soft-threshold ranks: {', '.join(f'{n} {r}' for n, r in f['ranks'].items())}; "
              f"parameters {f['params_hard']} (budget {f['params_budget']}, fixed-rank "
              f"{f['params_fixed']}, original {f['params_dense']}); {task.metric_name} "
              f"{f['soft_finetuned']:.4f} before the hard threshold", file=sys.stderr)
    mp = mapping_for(prep, args.policy, args.slc, seed=args.seed)
    save_mapping(mp, args.out)
    print(f"wrote {args.out} ({len(mp['matrices'])} matrices, policy {args.policy}, "
          f"SLC {args.slc:g}%)", file=sys.stderr)
    return 0
