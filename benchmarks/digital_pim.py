"""Digital PIM figures: products per cycle measured in RTL against the published 273 per
module, and the wear of one inference (BERT-Base at seq 128, GPT-2 at 1024 tokens) with
the lifetime at 10,000 inferences a day for RRAM endurance 1e6 .. 1e12 writes.

    .venv/bin/python benchmarks/digital_pim.py            # everything
    .venv/bin/python benchmarks/digital_pim.py --wear     # wear and lifetime only (no RTL)
    .venv/bin/python benchmarks/digital_pim.py --rtl      # RTL products per cycle only

RTL: the controller with 1024-column arrays, d = 64, ``--arrays`` arrays (default 4) is
simulated (Icarus, cocotb, the array model on the port); every product run's array
operations are counted. The arrays work in lockstep and each array's sequence depends
only on its own products ``M = ceil(n_keys / arrays) * d``, so the per-array rate
measured with 4 arrays is the rate of each of the 256 arrays of the published module at
``n_keys = 256 * M / d`` keys; per module = 256 x per array.

Wear: :func:`hyflexpim.models.digital_pim.writes_per_inference` (the round-robin compute
rows of the most loaded of a PU's 8 modules, one layer per PU), checked against the
array model's counters in tests/test_digital_pim.py. ``flips``: the share of write
pulses that change a cell, measured on the NOR-level model with random operands (the
optimistic bound of the wear).
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from hyflexpim.models import digital_pim as D

MODULE_ARRAYS = 256
DAY = 10_000
ENDURANCE = [10 ** e for e in range(6, 13)]
WORKLOADS = {
    "BERT-Base seq 128": dict(heads=12, head_dim=64, seq=128, causal=False),
    "GPT-2 1024 tokens": dict(heads=12, head_dim=64, seq=1024, causal=True),
}


def rtl_rates(arrays, tokens_per_array):
    """Measured cycles of product runs with ``tokens_per_array`` local tokens each."""
    from hyflexpim.sim.cocotb_runner import run_block

    d, cols = 64, 1024
    max_seq = arrays * max(tokens_per_array)
    region = -(-max(tokens_per_array) * d // (cols // 8))      # K and V region rows
    params = dict(arrays=arrays, rows=2 * region + 8, cols=cols, head_dim=d,
                  max_seq=max_seq, heads=1, lanes=16)
    n_keys = [arrays * u for u in tokens_per_array]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "runs.jsonl"
        run_block("digital_pim", params=params, test_module="hyflexpim.tb.digital_pim_tb",
                  tb_params={"n_keys": n_keys},
                  extra_env={"HYFLEXPIM_REPORT": report, "HYFLEXPIM_SEED": 1},
                  testcase="run_cycles_equal_the_model", quiet=True)
        return [json.loads(line) for line in report.read_text().splitlines()]


def print_rates(arrays):
    peak = MODULE_ARRAYS * (1024 // 3) / 64 / 5
    print(f"== products per cycle (RTL, {arrays} arrays x 1024 columns, d = 64) ==")
    print(f"published: {D.published_products_per_cycle():.2f} per module "
          f"({D.published_products_per_cycle() / MODULE_ARRAYS:.4f} per array); "
          f"peak of 341 NORs per 5-cycle step: {peak:.2f}")
    rows = rtl_rates(arrays, [1, 2, 4, 8, 16])
    print(f"{'run':8} {'tokens/array':>12} {'keys (256 arr.)':>15} {'cycles RTL':>10} "
          f"{'model':>6} {'per array':>9} {'per module':>10} {'vs 273':>7}")
    for r in rows:
        M = r["products_per_array"]
        per_array = M / r["cycles"]
        mod = per_array * MODULE_ARRAYS
        print(f"{r['what']:8} {M // 64:>12} {M // 64 * MODULE_ARRAYS:>15} {r['cycles']:>10} "
              f"{r['model']:>6} {per_array:>9.4f} {mod:>10.1f} "
              f"{mod / D.published_products_per_cycle():>7.1%}")
    return rows


def flip_share():
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (8, 64))
    b = rng.integers(-128, 128, (64, 64))
    _, info = D.matmul(a, b, arrays=4, stats=True)
    bank = info["bank"]
    S = 1024 // 3
    rows = slice(bank.rows - 16, bank.rows)
    share = {}
    for name, cols in (("operand", slice(0, 2 * S)), ("out", slice(2 * S, 3 * S))):
        share[name] = bank.flips[:, rows, cols].sum() / bank.writes[:, rows, cols].sum()
    return share


def print_wear():
    share = flip_share()
    print("== wear per inference (one layer per PU, heads round robin over 8 modules, "
          "256 arrays of 1024 x 1024) ==")
    print(f"flips per write pulse (random operands): OUT cells {share['out']:.3f}, "
          f"A/B cells {share['operand']:.3f}")
    out = {}
    for name, kw in WORKLOADS.items():
        w = D.writes_per_inference(**kw)
        out[name] = w
        print(f"{name}: {w['steps']} row steps per array, {w['compute_rows']} compute rows; "
              f"write pulses per cell and inference: OUT {w['out_writes']}, A/B "
              f"{w['operand_writes']}, KV cache {w['kv_writes']}")
    print(f"lifetime at {DAY} inferences a day (years; write pulses on OUT cells, "
          f"in brackets: flips only)")
    print(f"{'endurance':>10} " + " ".join(f"{n:>26}" for n in WORKLOADS))
    for e in ENDURANCE:
        cells = []
        for name in WORKLOADS:
            per_day = out[name]["out_writes"] * DAY
            years = e / per_day / 365
            flips = e / (per_day * share["out"]) / 365
            cells.append(f"{_years(years):>12} ({_years(flips):>10})")
        print(f"{e:>10.0e} " + " ".join(f"{c:>26}" for c in cells))
    return out


def _years(y):
    if y < 1:
        return f"{y * 365:.1f} d"
    return f"{y:,.1f} y" if y < 1e4 else f"{y:.2e} y"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wear", action="store_true", help="wear and lifetime only")
    ap.add_argument("--rtl", action="store_true", help="RTL products per cycle only")
    ap.add_argument("--arrays", type=int, default=4, help="arrays in the simulated RTL")
    args = ap.parse_args(argv)
    both = not (args.wear or args.rtl)
    if args.rtl or both:
        print_rates(args.arrays)
    if args.wear or both:
        print_wear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
