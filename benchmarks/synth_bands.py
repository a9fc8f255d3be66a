"""Print (or, with --update, record) the area bands of the synthesis regression guard.

    .venv/bin/python benchmarks/synth_bands.py [--update] [--tolerance 0.03]
                                               [--missing | BLOCK ...]

Synthesizes the registered blocks in their small configuration with the OSU 0.18 um
liberty and writes constraints/area_bands.json: for each block the area and cell
count +- tolerance. Update on purpose, when a block's hardware changed intentionally.
With block names (or ``--missing``: the blocks that have no band yet) only those are
measured, and ``--update`` keeps the other blocks' bands as recorded.
"""

import argparse
import json
import time
from pathlib import Path

from hyflexpim.sim.blocks import all_blocks
from hyflexpim.sim.synth import find_liberty, synth_all

ROOT = Path(__file__).resolve().parent.parent
BANDS = ROOT / "constraints" / "area_bands.json"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("blocks", nargs="*", metavar="BLOCK", help="only these blocks")
    ap.add_argument("--missing", action="store_true", help="only blocks without a band")
    ap.add_argument("--update", action="store_true", help="write constraints/area_bands.json")
    ap.add_argument("--tolerance", type=float, default=0.03, help="relative band half-width")
    args = ap.parse_args()
    if find_liberty() is None:
        raise SystemExit("no liberty: run scripts/setup.d/20-liberty.sh first")
    if args.missing and args.blocks:
        raise SystemExit("give --missing or block names, not both")
    old = json.loads(BANDS.read_text()) if BANDS.exists() else {}
    names = args.blocks or None
    if args.missing:
        names = sorted(set(all_blocks()) - set(old))
        if not names:
            print("every registered block has a band")
            return
    tol = args.tolerance
    bands = dict(old) if names else {}
    for name in names or sorted(all_blocks()):
        t0 = time.perf_counter()
        r, = synth_all(small=True, outdir=ROOT / "build" / "synth_bands", timing=False,
                       names=[name])
        bands[r.block] = {
            "params": r.params,
            "area_um2": [round(r.area_um2 * (1 - tol), 1), round(r.area_um2 * (1 + tol), 1)],
            "cells": [int(r.cells * (1 - tol)), int(r.cells * (1 + tol)) + 1],
            "measured": {"area_um2": r.area_um2, "cells": r.cells, "flip_flops": r.flip_flops},
        }
        print(f"{r.block:16s} {r.area_um2:12,.0f} um^2 {r.cells:7d} cells "
              f"{r.flip_flops:6d} FFs  {time.perf_counter() - t0:6.1f} s", flush=True)
        if args.update:                                  # after each block: long runs
            BANDS.write_text(json.dumps(bands, indent=1, sort_keys=True) + "\n")
    if args.update:
        print(f"wrote {BANDS}")


if __name__ == "__main__":
    main()
