"""Print (or, with --update, record) the area bands of the synthesis regression guard.

    .venv/bin/python benchmarks/synth_bands.py [--update] [--tolerance 0.03]

Synthesizes every registered block in its small configuration with the OSU 0.18 um
liberty and writes constraints/area_bands.json: for each block the area and cell
count +- tolerance. Update on purpose, when a block's hardware changed intentionally.
"""

import argparse
import json
from pathlib import Path

from hyflexpim.sim.synth import find_liberty, synth_all

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--update", action="store_true", help="write constraints/area_bands.json")
    ap.add_argument("--tolerance", type=float, default=0.03, help="relative band half-width")
    args = ap.parse_args()
    if find_liberty() is None:
        raise SystemExit("no liberty: run scripts/setup.d/20-liberty.sh first")
    tol = args.tolerance
    bands = {}
    for r in synth_all(small=True, outdir=ROOT / "build" / "synth_bands", timing=False):
        bands[r.block] = {
            "params": r.params,
            "area_um2": [round(r.area_um2 * (1 - tol), 1), round(r.area_um2 * (1 + tol), 1)],
            "cells": [int(r.cells * (1 - tol)), int(r.cells * (1 + tol)) + 1],
            "measured": {"area_um2": r.area_um2, "cells": r.cells, "flip_flops": r.flip_flops},
        }
        print(f"{r.block:16s} {r.area_um2:12,.0f} um^2 {r.cells:7d} cells")
    if args.update:
        path = ROOT / "constraints" / "area_bands.json"
        path.write_text(json.dumps(bands, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
