"""``hyflexpim synth``: synthesis, area and timing of RTL blocks (see :mod:`hyflexpim.sim.synth`).

    hyflexpim synth BLOCK [-p NAME=VALUE ...]   one block
    hyflexpim synth --all [--small]              every registered block
    hyflexpim synth --overhead [--small]         cost of SLC/MLC reconfigurability
    hyflexpim synth --sweep PARAM [--values ...] area and fmax vs a parameter (CSV + PNG)
"""

import os
import sys
import time
from pathlib import Path

from ...base import check_int
from ..blocks import get_block, parse_params
from .. import synth as S
from ..distributed import check_scheduler

NAME = "synth"
HELP = "synthesize RTL blocks (Yosys, OSU 0.18 um cells, OpenSTA): cells, area, fmax"


def add_arguments(p):
    p.add_argument("block", nargs="?", help="block name (hyflexpim verilog --list shows them)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="generator parameter, repeatable")
    p.add_argument("--all", action="store_true", help="every registered block")
    p.add_argument("--small", action="store_true",
                   help="use each block's small configuration (the test configuration)")
    p.add_argument("--overhead", action="store_true",
                   help="reconfigurability overhead: 6/7-bit vs 6-bit SAR, SLC/MLC vs SLC S&A, the "
                        "periphery vs dedicated MLC-only and SLC-only ones")
    p.add_argument("--sweep", choices=sorted(S.SWEEPS), metavar="PARAM",
                   help=f"parameter sweep: one of {', '.join(sorted(S.SWEEPS))}")
    p.add_argument("--values", help="comma-separated values for --sweep")
    p.add_argument("--sweep-block", help="block for --sweep (default: the sweep's own)")
    p.add_argument("-o", "--outdir", default=str(S.DEFAULT_OUTDIR),
                   help="output folder (default: build/synth)")
    p.add_argument("--liberty", help="liberty file (default: the one set-up unpacked)")
    p.add_argument("--generic", action="store_true",
                   help="no liberty: generic CMOS gate and transistor counts")
    p.add_argument("--no-timing", action="store_true", help="skip static timing")
    p.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                   help=f"parallel synthesis runs (default: the cores, here {S.default_jobs()})")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run the blocks as Dask tasks: 'local' (a local cluster of --jobs "
                        "workers), a scheduler address tcp://HOST:PORT (workers sharing "
                        "this file system), or 'serial'; default: a process pool")
    p.add_argument("--no-cache", action="store_true",
                   help="always run the tools (results are cached by default, keyed by the "
                        "generated Verilog and the flow)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="result cache folder (default: $HYFLEXPIM_SYNTH_CACHE or "
                        "~/.cache/hyflexpim/synth)")


def _progress_line(msg):
    """Progress without a terminal (a log): one line per run."""
    print(f"  synth {msg}", file=sys.stderr, flush=True)


def _print_result(r):
    t = r.timing if r.timing.get("available") else {}
    area = f"{r.area_um2:,.0f} um^2" if r.area_um2 is not None else (
        f"{r.transistors} transistors (generic)" if r.transistors else "no area (generic)")
    line = (f"{r.block:14s} cells {r.cells:7,d}  FFs {r.flip_flops:6,d}  depth {r.logic_depth:3d}"
            f"  area {area}")
    if r.scaled_65nm.get("area_um2") is not None:
        line += f"  (65 nm: {r.scaled_65nm['area_um2']:,.0f} um^2)"
    if t:
        line += (f"  crit {t['critical_path_ns']:.3f} ns  fmax {t['fmax_mhz']:.1f} MHz"
                 f"  (65 nm: {r.scaled_65nm['fmax_mhz']:.0f} MHz)")
    print(line)
    if t.get("paths"):
        w = t["paths"][0]
        print(f"{'':14s} critical path {w['from_bit']} -> {w['to_bit']} "
              f"({w['critical_path_ns']:.3f} ns{'' if t['met'] else ', target missed'})")
    if r.published_65nm:
        p = r.published_65nm
        print(f"{'':14s} published 65 nm {p['label']}: {p['per_unit_um2']:,.1f} um^2 per unit; "
              f"this block scaled: {r.scaled_65nm['area_um2']:,.1f} um^2 "
              f"(x{p['scaled_over_published']:.2f})")


def _values(text, name):
    if not text:
        return None
    try:
        vals = [int(v, 0) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--values must be comma-separated integers, not {text!r}") from None
    if not vals:
        raise ValueError(f"--values must name at least one value for {name}")
    return vals


def _cache_option(args):
    if args.no_cache and args.cache_dir:
        raise ValueError("--no-cache and --cache-dir exclude each other")
    if args.no_cache:
        return False
    folder = Path(args.cache_dir) if args.cache_dir else S.synth_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise PermissionError(13, "cache folder is not writable", str(folder))
    return folder if args.cache_dir else True


def _tools_line(jobs, cache):
    tools = S.tool_versions()
    where = "off" if cache is False else (S.synth_cache_dir() if cache is True else cache)
    return (f"{tools['yosys']}, {tools['sta'] or 'no OpenSTA'}; {jobs} job(s); "
            f"cache {where}")


def run(args):
    modes = sum(bool(x) for x in (args.block, args.all, args.overhead, args.sweep))
    if modes != 1:
        raise ValueError("give exactly one of BLOCK, --all, --overhead or --sweep PARAM")
    if args.param and not args.block:
        raise ValueError("-p/--param applies to a single BLOCK only")
    if args.generic and args.liberty:
        raise ValueError("--generic and --liberty exclude each other")
    jobs = S.default_jobs() if args.jobs is None else check_int("--jobs", args.jobs, 1, 256)
    scheduler = check_scheduler(args.scheduler, "--scheduler")
    if scheduler is not None and not (args.all or args.overhead or args.sweep):
        raise ValueError("--scheduler applies to --all, --overhead and --sweep")
    values = _values(args.values, args.sweep) if args.sweep else None
    over = None
    if args.block:
        blk = get_block(args.block)
        over = parse_params(blk, args.param)
    liberty = False if args.generic else S.find_liberty(args.liberty)
    cache = _cache_option(args)
    if liberty is None:
        print("warning: " + S.NO_LIBERTY_NOTE.format(path=S.cache_dir() / S.LIBERTY_RELPATH),
              file=sys.stderr)
    if liberty and not args.no_timing and not S.sta_command():
        print("warning: OpenSTA ('sta') not installed: timing unavailable "
              "(run scripts/setup.d/20-liberty.sh)", file=sys.stderr)
    outdir = Path(args.outdir)
    timing = not args.no_timing
    opts = {"jobs": jobs, "progress": True if sys.stderr.isatty() else _progress_line,
            "cache": cache, "scheduler": scheduler}
    t0 = time.perf_counter()

    if args.sweep:
        blk, rows = S.sweep(args.sweep, values=values, block=args.sweep_block, small=args.small,
                            outdir=outdir, liberty=liberty, timing=timing, **opts)
        paths = S.write_sweep(args.sweep, rows, outdir)
        keys = list(rows[0])
        print(" ".join(f"{k:>14s}" for k in keys))
        for r in rows:
            print(" ".join(f"{'-' if r[k] is None else r[k]!s:>14s}" for k in keys))
        print(f"wrote {', '.join(map(str, paths))} ({time.perf_counter() - t0:.1f} s; "
              f"{_tools_line(jobs, cache)})", file=sys.stderr)
        return 0

    if args.overhead:
        rows = S.overhead(small=args.small, outdir=outdir, liberty=liberty, **opts)
        for r in rows:
            area = (f"area {r['area_um2']:,.0f} vs {r['base_area_um2']:,.0f} um^2 "
                    f"({r['area_pct']:+.1f}%)") if r["area_pct"] is not None else ""
            print(f"{r['label']}: cells {r['cells']} vs {r['base_cells']} "
                  f"({r['cells_pct']:+.1f}%) {area}")
        stem = "overhead_small" if args.small else "overhead"
        import json
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / f"{stem}.json").write_text(json.dumps(rows, indent=1))
        (outdir / f"{stem}.md").write_text(S.overhead_table(rows))
        print(f"wrote {outdir / (stem + '.json')}, {outdir / (stem + '.md')} "
              f"({time.perf_counter() - t0:.1f} s; {_tools_line(jobs, cache)})", file=sys.stderr)
        return 0

    if args.all:
        results = S.synth_all(small=args.small, outdir=outdir, liberty=liberty, timing=timing,
                              **opts)
        stem = "all_small" if args.small else "all"
    else:
        results = [S.synth_block(args.block, over, small=args.small, outdir=outdir,
                                 liberty=liberty, timing=timing, cache=cache)]
        stem = S._run_name(args.block, {**(blk.small if args.small else {}), **over})
    for r in results:
        _print_result(r)
    for n in sorted({n for r in results for n in r.notes}):
        print(f"note: {n}", file=sys.stderr)
    wall = time.perf_counter() - t0
    hits = sum(r.cache == "hit" for r in results)
    j, m = S.write_report(results, outdir, stem,
                          extra={"wall_time_s": round(wall, 2), "jobs": jobs,
                                 "cache_hits": hits})
    print(f"wrote {j}, {m} ({wall:.1f} s wall, {len(results)} block(s), {hits} from the cache, "
          f"{sum(r.runtime_s for r in results if r.cache != 'hit'):.1f} s of synthesis; "
          f"{_tools_line(jobs, cache)})", file=sys.stderr)
    return 0
