"""``hyflexpim accuracy``: metric of a task's model under RRAM noise; ``--sweep`` over k.

``--backend chip`` runs the whole model through the chip's golden model
(:mod:`hyflexpim.models.transformer`: every block in the chip's formats, analog GEMVs
through ``program_matrix``), one mapping at a time."""

import json
import sys
from pathlib import Path

from ..cli import UsageError
from .redistribute import (TASKS, POLICIES, RANK_SELECT, check_common, load_algo,
                           add_rank_arguments, rank_config)

NAME = "accuracy"
#: --split values and the models.noise.PAPER_SPLITS names they select.
SPLITS = {"two-complement": "twos-complement", "twos-complement": "twos-complement",
          "sign-magnitude": "sign-magnitude"}
OFFSETS = ("reference", "nominal")
BACKENDS = ("faithful", "fast", "chip")
#: Operations the chip backend can run in float (models.transformer.OPS; kept here so
#: that the options are checked before torch is imported).
CHIP_OPS = ("linear", "attention", "softmax", "layernorm", "gelu", "residual", "transport")
HELP = "accuracy (or eval loss) under RRAM noise for a mapping, or a sweep over SLC rates"


def add_arguments(p):
    p.add_argument("--task", required=True, help=f"one of {', '.join(TASKS)}")
    p.add_argument("--mapping", help="mapping JSON from 'hyflexpim redistribute' (single run)")
    p.add_argument("--mode", default="hardware", help="hardware or paper (single run)")
    p.add_argument("--backend", default=None,
                   help="hardware mode: faithful (golden array model, default), fast, or chip "
                        "(the whole model in the chip's formats; --mapping only)")
    p.add_argument("--no-noise", action="store_true",
                   help="single run: evaluate with ideal (noise-free) arrays")
    p.add_argument("--float-ops", default="",
                   help=f"chip backend: comma-separated operations run in float instead "
                        f"({', '.join(CHIP_OPS)})")
    p.add_argument("--sweep", action="store_true",
                   help="sweep k in {0,5,10,20,30,50,100} x policies x seeds, both noise modes")
    p.add_argument("--policies", default=",".join(POLICIES), help="comma-separated policies")
    p.add_argument("--ks", default="0,5,10,20,30,50,100", help="comma-separated SLC rates")
    p.add_argument("--modes", default="hardware,paper", help="noise modes of the sweep")
    p.add_argument("--device", default=None, metavar="NAME|FILE",
                   help="hardware mode: RRAM device, a name of 'hyflexpim device --list' or a "
                        "JSON device table (default neurram-1d, the NeuRRAM one-day fit)")
    p.add_argument("--ber", type=float, default=None,
                   help="hardware mode: re-calibrate the device's noise scale to this 2-bit "
                        "MLC bit error rate (default: the device's own; 0.0404 for neurram-1d)")
    p.add_argument("--offset", default="reference",
                   help="hardware mode: G_off removal, reference (the reference column, as "
                        "built; default) or nominal (digital subtraction of the nominal floor)")
    p.add_argument("--read-noise", type=float, default=None, metavar="SIGMA",
                   help="hardware mode: per-read noise sigma as a fraction of G_on (e.g. "
                        "0.01; default off)")
    p.add_argument("--paper-std", type=float, default=0.025,
                   help="paper mode: noise std per 2-bit group (default 0.025)")
    p.add_argument("--split", default="two-complement",
                   help="paper mode: how an INT8 weight is split into 2-bit groups: "
                        "two-complement (the authors' masks 0xC0/0x30/0x0C/0x03, top group "
                        "signed; default) or sign-magnitude (a variant)")
    p.add_argument("--paper-split", action="store_true",
                   help="same as --split two-complement (the authors' split)")
    p.add_argument("--seeds", type=int, default=3, help="noise seeds (default 3)")
    p.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (default 2)")
    p.add_argument("--seed", type=int, default=0, help="data split seed")
    p.add_argument("--small", action="store_true", help="subsampled data (fast)")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N samples")
    p.add_argument("--no-cache", action="store_true", help="retrain, do not use checkpoints")
    add_rank_arguments(p)
    p.add_argument("--out", default="accuracy", help="output prefix: PREFIX.csv, .png, .json")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="sweep points as Dask tasks: 'local' (a local cluster of --workers "
                        "processes), a scheduler address tcp://HOST:PORT, or 'serial'; "
                        "default: in this process")
    p.add_argument("--workers", type=int, default=None,
                   help="workers of --scheduler local (default: the CPUs)")
    p.add_argument("--points", default=None, metavar="DIR",
                   help="with --scheduler: store each finished point in DIR; a sweep "
                        "started again runs only the points not stored (resumable)")


def _list(text, name, conv=str, empty=False):
    try:
        items = [conv(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{name} must be a comma-separated list, not {text!r}") from None
    if not items and not empty:
        raise UsageError(f"{name} must list at least one value, not {text!r}")
    return items


def _dask_points(args):
    """``run_points`` for :func:`hyflexpim.models.accuracy.sweep`: every point a task of
    :func:`hyflexpim.sim.distributed.run_tasks` on ``--scheduler``, stored in
    ``--points`` when given."""
    from ..distributed import LOCAL, Task, run_tasks

    def run_points(fn, points):
        return run_tasks([Task(fn, kwargs=p) for p in points], results_dir=args.points,
                         scheduler=None if args.scheduler == LOCAL else args.scheduler,
                         workers=args.workers, desc=f"{args.task} sweep")
    return run_points


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
    if args.backend not in (None,) + BACKENDS:
        raise UsageError(f"backend must be one of {', '.join(BACKENDS)}, not {args.backend!r}")
    float_ops = _list(args.float_ops, "float-ops", empty=True)
    for op in float_ops:
        if op not in CHIP_OPS:
            raise UsageError(f"float-ops must name operations of {', '.join(CHIP_OPS)}, "
                             f"not {op!r}")
    if float_ops and args.backend != "chip":
        raise UsageError("--float-ops needs --backend chip")
    if args.backend == "chip" and args.sweep:
        raise UsageError("--backend chip evaluates one mapping (--mapping FILE), not a --sweep")
    if args.backend == "chip" and args.mode != "hardware":
        raise UsageError("--backend chip runs the hardware mode (A = U S, B = V^T), not "
                         f"{args.mode!r}")
    if args.no_noise and args.sweep:
        raise UsageError("--no-noise is for a single run (--mapping FILE); a sweep "
                         "always reports its noise-free INT8 references")
    from ..distributed import check_scheduler
    check_scheduler(args.scheduler, "--scheduler")
    if (args.scheduler or args.workers is not None or args.points) and not args.sweep:
        raise UsageError("--scheduler, --workers and --points are for a --sweep")
    if args.scheduler is None and (args.workers is not None or args.points):
        raise UsageError("--workers and --points need --scheduler")
    if args.workers is not None and (args.scheduler != "local" or args.workers < 1):
        raise UsageError(f"--workers must be a positive integer, with --scheduler local, "
                         f"not {args.workers!r}")
    if args.eval_limit is not None and args.eval_limit < 1:
        raise UsageError(f"eval-limit must be a positive integer, not {args.eval_limit!r}")
    if args.ber is not None and not 0 < args.ber < 0.5:
        raise UsageError(f"ber must be in (0, 0.5), not {args.ber!r}")
    if args.offset not in OFFSETS:
        raise UsageError(f"offset must be one of {', '.join(OFFSETS)}, not {args.offset!r}")
    if args.read_noise is not None and not 0 <= args.read_noise <= 1:
        raise UsageError(f"read-noise must be in [0, 1] (a fraction of G_on), "
                         f"not {args.read_noise!r}")
    if args.split not in SPLITS:
        raise UsageError(f"split must be one of two-complement, sign-magnitude, "
                         f"not {args.split!r}")
    if args.paper_split and SPLITS[args.split] != "twos-complement":
        raise UsageError("--paper-split is the two-complement split; it contradicts "
                         f"--split {args.split}")
    split = SPLITS[args.split]
    device = _device(args)
    if args.sweep:
        from .redistribute import check_output_file
        if str(args.out).endswith(("/", "\\")) or Path(args.out).is_dir():
            raise UsageError(f"--out {args.out} is a folder; give a file prefix "
                             f"(PREFIX.csv, .png, .json are written)")
        for ext in (".csv", ".png", ".json"):
            check_output_file(f"{args.out}{ext}", "--out")
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
        if args.backend == "chip":
            if mode != "hardware":
                raise UsageError(f"mapping file {args.mapping} is for the {mode} mode; "
                                 f"--backend chip runs the hardware mode")
            return _run_chip(args, task, prep, mp, float_ops, device)
        be = args.backend if mode == "hardware" else None
        for s in range(args.seeds):
            v = acc.evaluate_mapping(prep, mp, seed=s, backend=be, ber=None, device=device,
                                     paper_std=args.paper_std, noise=not args.no_noise,
                                     offset=args.offset, read_noise=args.read_noise,
                                     paper_split=split)
            print(f"{args.task} {mode} policy={mp['policy']} k={mp['slc_percent']:g} seed={s}: "
                  f"{task.metric_name} {v:.4f}")
        return 0
    rows, summary = acc.sweep(task, modes=modes, policies=pols, ks=ks,
                              seeds=tuple(range(args.seeds)), ft_epochs=args.epochs,
                              hw_backend=args.backend or "faithful", cache=not args.no_cache,
                              ber=None, device=device, offset=args.offset,
                              read_noise=args.read_noise, paper_split=split,
                              paper_std=args.paper_std, rank_select=rs, soft=soft,
                              log=lambda s: print(s, file=sys.stderr),
                              run_points=_dask_points(args) if args.scheduler else None)
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


def _device(args):
    """The device of --device / --ber / --read-noise (a models.device.Device), checked
    before any long work: an unknown name, a bad table or an unreachable BER is one
    line, exit 2."""
    from ...models.device import load_device, DeviceFileError
    try:
        return load_device(args.device, ber=args.ber, read_noise=args.read_noise or None)
    except DeviceFileError as exc:
        raise UsageError(f"--device {args.device}: {exc}") from None
    except FileNotFoundError:
        raise UsageError(f"--device {args.device}: no such device name or file") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _run_chip(args, task, prep, mp, float_ops, device):
    """The single evaluation of ``--backend chip``: one line per noise seed."""
    from ...models import transformer as tr
    from ...models import transformer_model as tm
    model = prep.base if mp["policy"] == "magnitude" else prep.factored
    fmt = tr.ChipFormats(attention_engine="integer", float_ops=frozenset(float_ops))
    seeds = 1 if args.no_noise else args.seeds
    for s in range(seeds):
        noise = tr.Noise() if args.no_noise else tr.Noise(device=device, seed=s,
                                                          offset=args.offset)
        chip = tm.from_torch(model, mp, formats=fmt, noise=noise)
        tot, cnt = tm.evaluate(chip, task.eval, task.metric)
        extra = f" float-ops={','.join(float_ops)}" if float_ops else ""
        what = "noise off" if args.no_noise else f"seed={s}"
        print(f"{args.task} chip policy={mp['policy']} k={mp['slc_percent']:g}{extra} {what}: "
              f"{task.metric_name} {tot / max(cnt, 1):.4f} ({cnt} samples)")
    return 0
