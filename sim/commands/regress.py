"""``hyflexpim regress BLOCK MODULE --seeds N..M``: seeded cocotb regressions on Dask.

Every seed is one task of :func:`hyflexpim.sim.distributed.run_tasks` running
:func:`hyflexpim.sim.distributed.cocotb_regression`: a Dask ``LocalCluster`` of
``--workers`` processes by default, ``--scheduler ADDRESS`` for a running one
(docs/simulation.md: dask-jobqueue on SLURM / PBS / LSF), ``--scheduler serial`` in
this process. Finished seeds are stored in ``--results`` (default
``build/regress/points``) and a second run of the same regression loads them instead
of simulating again (a killed run resumes). One line per seed, then a summary; the
exit status is 1 when a seed failed.
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

from ..blocks import get_block, parse_params

NAME = "regress"
HELP = ("seeded cocotb regressions of a block over seeds N..M on Dask (local cluster, "
        "--scheduler ADDRESS), resumable")

MAX_SEEDS = 100_000


def add_arguments(p):
    p.add_argument("block", help="registry block (hyflexpim verilog --list)")
    p.add_argument("module", help="cocotb test module: hyflexpim.tb.analog_tb, or analog_tb")
    p.add_argument("--seeds", default="1..4", metavar="N..M",
                   help="seeds N to M inclusive, or one seed, or a comma list (default 1..4)")
    p.add_argument("--testcase", action="append", default=[], metavar="NAME",
                   help="run only this cocotb test (repeatable)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="block parameter (repeatable)")
    p.add_argument("--tb-params", metavar="JSON", default="{}",
                   help="the testbench's own parameters (HYFLEXPIM_PARAMS), a JSON object")
    p.add_argument("--full", action="store_true",
                   help="default configuration of the block instead of the small one")
    p.add_argument("--simulator", choices=["icarus", "verilator"],
                   help="default HYFLEXPIM_SIM, else icarus")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask scheduler (tcp://HOST:PORT), or 'serial'; default: a local "
                        "cluster")
    p.add_argument("--workers", type=int, metavar="N",
                   help="workers of the local cluster (default: the number of CPUs)")
    p.add_argument("--results", metavar="DIR",
                   help="folder of the stored seeds (default build/regress/points)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_seeds(text):
    """Seeds of ``N..M`` (inclusive), ``N`` or ``N,M,...``; ``ValueError`` otherwise."""
    text = str(text).strip()

    def one(t):
        t = t.strip()
        if not t.isdigit() or (len(t) > 1 and t[0] == "0") or int(t) > 2**32 - 1:
            raise ValueError(f"--seeds takes integers in 0..4294967295 written N..M, N or "
                             f"N,M,..., not {text!r}")
        return int(t)

    if ".." in text:
        lo, _, hi = text.partition("..")
        lo, hi = one(lo), one(hi)
        if hi < lo:
            raise ValueError(f"--seeds N..M needs N <= M, not {text!r}")
        seeds = range(lo, hi + 1)
    else:
        seeds = [one(t) for t in text.split(",")]
    if len(seeds) > MAX_SEEDS:
        raise ValueError(f"--seeds must name at most {MAX_SEEDS} seeds, not {len(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds names a seed twice: {text!r}")
    return list(seeds)


def _module(name):
    full = name if "." in name else f"hyflexpim.tb.{name}"
    try:
        found = importlib.util.find_spec(full) is not None
    except (ImportError, ValueError):
        found = False
    if not found or not full.replace(".", "").replace("_", "").isalnum():
        raise ValueError(f"test module {name!r} not found (e.g. hyflexpim.tb.analog_tb)")
    return full


def run(args):
    from .. import cocotb_runner as R
    from ..distributed import SERIAL, Task, TaskFailed, cocotb_regression, run_tasks

    blk = get_block(args.block)
    params = parse_params(blk, args.param)
    module = _module(args.module)
    seeds = parse_seeds(args.seeds)
    try:
        tb_params = json.loads(args.tb_params)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--tb-params must be a JSON object: {exc}") from None
    if not isinstance(tb_params, dict):
        raise ValueError(f"--tb-params must be a JSON object, not {args.tb_params!r}")
    if args.workers is not None and not 1 <= args.workers <= 1024:
        raise ValueError(f"--workers must be in 1..1024, not {args.workers}")
    if args.scheduler is not None and args.scheduler != SERIAL and "://" not in args.scheduler:
        raise ValueError(f"--scheduler must be an address like tcp://HOST:PORT or "
                         f"'serial', not {args.scheduler!r}")
    if args.scheduler is not None and args.workers is not None:
        raise ValueError("--workers is for the local cluster: not with --scheduler")
    sim = R.simulator_name(args.simulator)
    if sim not in R.available_simulators():
        raise ValueError(f"simulator {sim} is not installed here (./dev setup)")
    results = Path(args.results) if args.results else R.BUILD_ROOT / "regress" / "points"
    results.mkdir(parents=True, exist_ok=True)
    build_root = R.BUILD_ROOT.resolve()
    tasks = [Task(cocotb_regression, (args.block, module, s),
                  dict(params=params, small=not args.full, tb_params=tb_params,
                       testcase=args.testcase or None, simulator=sim,
                       build_root=str(build_root)))
             for s in seeds]
    stored = sum(1 for p in (results / f"{t.key()}.pkl" for t in tasks) if p.exists())
    where = (args.scheduler if args.scheduler == SERIAL else
             f"scheduler {args.scheduler}" if args.scheduler else
             f"a local cluster of {args.workers or os.cpu_count() or 1} workers")
    print(f"{args.block} / {module} on {sim}: {len(seeds)} seeds ({stored} stored in "
          f"{results}), on {where}", flush=True)
    try:
        points = run_tasks(tasks, results_dir=results, scheduler=args.scheduler,
                           workers=args.workers, progress=not args.no_progress,
                           desc=f"regress {args.block}")
    except TaskFailed as exc:
        print(f"hyflexpim regress: error: {exc}", file=sys.stderr)
        return 1
    bad = 0
    for r in points:
        if r["failed"]:
            bad += 1
            print(f"seed {r['seed']}: FAILED {r['failed']} of {r['tests']} "
                  f"({', '.join(r['failed_tests'])}); log in {r['log']}")
        else:
            cyc = f", {r['cycles']:,} cycles" if r["cycles"] is not None else ""
            print(f"seed {r['seed']}: {r['tests']} passed{cyc}")
    print(f"{len(points) - bad} of {len(points)} seeds passed"
          + (f"; replay one with HYFLEXPIM_SEED=<seed>" if bad else ""))
    return 1 if bad else 0
