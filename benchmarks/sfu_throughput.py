"""Throughput and latency of the SFU function units, measured on the generated Verilog.

    .venv/bin/python benchmarks/sfu_throughput.py [--rows 8] [--configs softmax:64:4 ...]

Runs the cocotb throughput tests of ``tb/sfu_tb.py`` (Icarus, no input gaps, sink
always ready, every result checked bit-exact against the golden model) and prints
results per cycle per lane. A config is ``KIND:N:LANES[:SLOTS]`` for the row units
(softmax, layernorm; slots default 4) or ``KIND::LANES`` for the element-wise units
(exp, gelu).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from hyflexpim.sim.cocotb_runner import run_block

UNITS = ("exp", "gelu", "softmax", "layernorm")
DEFAULT = ["softmax:64:2", "softmax:64:4", "softmax:16:2", "layernorm:64:2",
           "layernorm:64:4", "layernorm:16:4", "exp::2", "gelu::2"]


def measure(kind, n, lanes, rows, slots=4):
    params = {"lanes": lanes}
    if kind in ("softmax", "layernorm"):
        params.update(n=n, slots=slots)
        test = "rows_throughput"
    else:
        test = "elementwise_throughput"
    with tempfile.TemporaryDirectory() as tmp:
        rep = Path(tmp) / "report.jsonl"
        run_block(f"sfu_{kind}", test_module="hyflexpim.tb.sfu_tb", params=params,
                  extra_env={"HYFLEXPIM_REPORT": rep, "HYFLEXPIM_ROWS": rows},
                  testcase=[test], quiet=True)
        return json.loads(rep.read_text().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8, help="rows per row-unit run")
    ap.add_argument("--configs", nargs="*", default=DEFAULT, metavar="KIND:N:LANES")
    args = ap.parse_args()
    print(f"{'unit':10s} {'n':>4s} {'lanes':>5s} {'slots':>5s} {'first out':>9s} {'cycles/row':>10s} "
          f"{'results/cycle/lane':>18s} {'wall s':>6s}")
    for cfg in args.configs:
        try:
            kind, n, lanes, *slots = cfg.split(":")
            if kind not in UNITS or len(slots) > 1:
                raise ValueError
            n, lanes, slots = (int(n) if n else 0), int(lanes), int(slots[0]) if slots else 4
        except ValueError:
            raise SystemExit(f"config must be KIND:N:LANES[:SLOTS] with KIND in "
                             f"{sorted(UNITS)}, not {cfg!r}") from None
        t0 = time.perf_counter()
        r = measure(kind, n, lanes, args.rows, slots)
        per_row = r.get("cycles_per_row")
        print(f"{kind:10s} {n or '-':>4} {lanes:5d} {slots if n else '-':>5} {r['first_out']:9d} "
              f"{per_row if per_row is not None else '-':>10} "
              f"{r['per_cycle_per_lane']:18.3f} {time.perf_counter() - t0:6.1f}", flush=True)


if __name__ == "__main__":
    main()
