"""Line and toggle coverage of the generated Verilog under a block's cocotb regression.

    .venv/bin/python benchmarks/verilator_coverage.py [BLOCK ...] [--out build/coverage]

Builds each block's Verilog with Verilator's ``--coverage-line --coverage-toggle``
(through ``HYFLEXPIM_VERILATOR_ARGS``), runs its cocotb regression (the same testbench
and parameters as ``tests/test_verilator.py`` / the block's cocotb test, quick where the
testbench has it), reads ``coverage.dat`` (Verilator's ``SystemC::Coverage-3`` text: one
``C '<key>' <count>`` per point, the key's fields ``f`` file, ``l`` line, ``page``
``v_line/...`` or ``v_toggle/...``, ``o`` point, ``h`` hierarchy) and prints, for the
block's own module (the simulation-only top around it left out): line points hit /
total, toggle points hit / total (every bit, both directions), and the source lines of
the first line points never hit.
"""

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from hyflexpim.sim.cocotb_runner import BUILD_ROOT, run_block

#: block -> (testbench module, block parameters, testbench parameters)
RUNS = {
    "analog_array": ("hyflexpim.tb.analog_tb", dict(slc_bits=4, mlc_bits=5, read_cycles=2), {}),
    "digital_pim": ("hyflexpim.tb.digital_pim_tb",
                    dict(arrays=2, rows=32, cols=32, head_dim=4, max_seq=16, heads=1, lanes=4),
                    {"quick": True}),
    **{f"fp16_{op}": ("hyflexpim.tb.fp16_tb", {}, {"set": "quick"})
       for op in ("add", "mul", "div", "sqrt", "cmp", "from_int32", "to_int8")},
}


def parse(path, verilog):
    """``{kind: (hit, total)}`` and the never-hit line points ``[(line, point)]`` of the
    coverage points in ``verilog`` (a file name)."""
    hit, total = defaultdict(int), defaultdict(int)
    missed = []
    for raw in Path(path).read_text(errors="replace").splitlines():
        if not raw.startswith("C '"):
            continue
        key, count = raw[3:].rsplit("' ", 1)
        fields = dict(f.split("\x02", 1) for f in key.split("\x01") if "\x02" in f)
        if Path(fields.get("f", "")).name != verilog:
            continue
        kind = fields.get("page", "").split("/")[0].removeprefix("v_")
        total[kind] += 1
        if int(count):
            hit[kind] += 1
        elif kind == "line":
            missed.append((int(fields.get("l", 0)), fields.get("o", "")))
    return {k: (hit[k], total[k]) for k in total}, sorted(missed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("blocks", nargs="*", default=list(RUNS), metavar="BLOCK",
                    help=f"blocks (default all: {', '.join(RUNS)})")
    ap.add_argument("--out", default=str(BUILD_ROOT / "coverage"))
    a = ap.parse_args()
    bad = [b for b in a.blocks if b not in RUNS]
    if bad:
        print(f"verilator_coverage: unknown block {bad[0]!r}; one of {', '.join(RUNS)}",
              file=sys.stderr)
        return 2
    os.environ["HYFLEXPIM_VERILATOR_ARGS"] = "--coverage-line --coverage-toggle"
    print("| block | tests passed | line points hit | toggle points hit | seconds |")
    print("|---|---|---|---|---|")
    notes = []
    for block in a.blocks:
        tb, params, tbp = RUNS[block]
        bdir = Path(a.out) / block
        (bdir / "coverage.dat").unlink(missing_ok=True)
        t0 = time.time()
        passed, _ = run_block(block, test_module=tb, params=params, tb_params=tbp,
                              simulator="verilator", build_dir=bdir, quiet=True,
                              extra_env={"HYFLEXPIM_SEED": 1})
        verilog = next(v for v in sorted(bdir.glob("*.v")) if not v.name.endswith("_sim.v"))
        cov, missed = parse(bdir / "coverage.dat", verilog.name)
        cells = []
        for kind in ("line", "toggle"):
            h, t = cov.get(kind, (0, 0))
            cells.append(f"{h:,} / {t:,} ({h / t:.1%})" if t else "none")
        print(f"| {block} | {passed} | {cells[0]} | {cells[1]} | {time.time() - t0:.0f} |")
        src = verilog.read_text().splitlines()
        lines = sorted({ln for ln, _ in missed})
        notes.append(f"{block}: {len(lines)} source lines with a line point never hit"
                     + "".join(f"\n    {ln}: {src[ln - 1].strip()[:90]}" for ln in lines[:8]))
    print()
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
