"""Benchmarks of the analog array: golden-model speed, RTL cycles, RTL simulation speed.

    .venv/bin/python benchmarks/array_bench.py            # everything
    .venv/bin/python benchmarks/array_bench.py --golden   # golden model only
    .venv/bin/python benchmarks/array_bench.py --rtl      # RTL cycles and simulation speed

Golden model workload: a 768 x 768 INT8 layer times 128 tokens, tiled over 64 x 128
arrays, bit-serial inputs, bit-sliced weights, saturating SAR ADCs. Reference figures
for Sandia CrossSim 3.2 on the same bit-sliced workload on this kind of machine, one
thread: 0.84 s (SLC) and 0.46 s (MLC) (from the issue that set the target; CrossSim is
not installed here). Timings are the best of ``--repeat`` runs.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

CROSSSIM_S = {"slc": 0.84, "mlc": 0.46}


def golden_child(threads_label, repeat):
    import numpy as np
    from hyflexpim.models import program_matrix
    rng = np.random.default_rng(0)
    W = rng.integers(-128, 128, (768, 768))
    x = rng.integers(-128, 128, (128, 768))
    exact = x @ W
    rows = []
    for mode in ("slc", "mlc"):
        for ber in (None, 0.0404):
            t0 = time.perf_counter()
            pm = program_matrix(W, mode, ber=ber, seed=1)
            prog = time.perf_counter() - t0
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                y = pm.run(x)
                best = min(best, time.perf_counter() - t0)
            rows.append(dict(threads=threads_label, mode=mode, ber=ber, arrays=pm.arrays,
                             program_s=prog, run_s=best,
                             exact=bool(np.array_equal(y, exact)) if ber is None else None))
    print(json.dumps(rows))


def bench_golden(repeat):
    print("Golden model: 768 x 768 INT8 layer x 128 tokens (bit-serial, bit-sliced, SAR ADC)")
    print(f"{'threads':>8} {'mode':>4} {'noise':>10} {'arrays':>6} {'program s':>9} {'run s':>7} "
          f"{'vs CrossSim':>11} {'== x@W':>7}")
    for label, env_threads in (("1", "1"), ("all", None)):
        env = dict(os.environ)
        if env_threads:
            env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = env_threads
        out = subprocess.run([sys.executable, __file__, "--golden-child", label,
                              "--repeat", str(repeat)], env=env, capture_output=True,
                             text=True, check=True).stdout
        for r in json.loads(out.strip().splitlines()[-1]):
            noise = "ideal" if r["ber"] is None else f"BER {r['ber']}"
            speedup = CROSSSIM_S[r["mode"]] / r["run_s"]
            ex = "" if r["exact"] is None else ("yes" if r["exact"] else "NO")
            print(f"{label:>8} {r['mode']:>4} {noise:>10} {r['arrays']:>6} {r['program_s']:>9.3f} "
                  f"{r['run_s']:>7.3f} {speedup:>10.1f}x {ex:>7}")


def bench_rtl(vectors):
    from hyflexpim.sim.cocotb_runner import run_block
    params = dict(rows=64, cols=128, slc_bits=6, mlc_bits=7, result_width=32, read_cycles=4)
    out = Path("build/bench/array_rtl")
    out.mkdir(parents=True, exist_ok=True)
    report = (out / "report.json").resolve()
    t0 = time.perf_counter()
    run_block("analog_array", test_module="hyflexpim.tb.analog_tb", params=params, small=False,
              testcase="stream_throughput", build_dir=out / "sim", quiet=True,
              extra_env={"HYFLEXPIM_REPORT": str(report), "HYFLEXPIM_STREAM_VECTORS": vectors})
    wall = time.perf_counter() - t0
    r = json.loads(report.read_text())
    print(f"RTL (Icarus + cocotb), array 64 x 128, stream of {vectors} vectors per mode")
    print(f"{'mode':>4} {'ideal 8*cols*steps':>18} {'first result':>12} {'steady/vector':>13} {'ratio':>6}")
    for mode, v in r.items():
        print(f"{mode:>4} {v['ideal']:>18} {v['latency']:>12.0f} {v['cycles_per_vector']:>13.1f} "
              f"{v['ratio']:>6.3f}")
    root = ET.parse(out / "sim" / "results.xml").getroot()
    for case in root.iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        sim_ns = float(props.get("sim_time_duration", "0"))
        real_s = float(case.get("time", "0"))
        if real_s:
            print(f"simulation speed: {sim_ns:.0f} cycles in {real_s:.2f} s = "
                  f"{sim_ns / real_s:,.0f} cycles per wall second (clock 1 ns), "
                  f"{wall:.1f} s with the build")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--golden", action="store_true")
    ap.add_argument("--rtl", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--vectors", type=int, default=8)
    ap.add_argument("--golden-child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.golden_child:
        return golden_child(a.golden_child, a.repeat)
    both = not (a.golden or a.rtl)
    if a.golden or both:
        bench_golden(a.repeat)
    if a.rtl or both:
        bench_rtl(a.vectors)


if __name__ == "__main__":
    main()
