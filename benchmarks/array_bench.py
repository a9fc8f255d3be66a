"""Benchmarks of the analog array: golden-model speed, RTL cycles, RTL simulation speed.

    .venv/bin/python benchmarks/array_bench.py            # everything
    .venv/bin/python benchmarks/array_bench.py --golden   # golden model only
    .venv/bin/python benchmarks/array_bench.py --rtl      # RTL cycles and simulation speed

Golden model workload: a 768 x 768 INT8 layer times 128 tokens, tiled over 64 x 128
arrays, bit-serial inputs, bit-sliced weights, saturating SAR ADCs, on two data sets:
``realistic`` (Gaussian weights quantized per output column, Gaussian activations
quantized per token, as INT8 layers are) and ``uniform`` (uniform random INT8); with
``--data saturating``, non-negative weights and small negative inputs, whose top-slice
bitlines exceed the ADC range in most reads (the ideal path's worst case; the count of
clipped conversions is printed). For
each mode, ideal and noisy (the default device at BER 4.04%, and with 1% read noise),
it prints the run time, the time of one float32 GEMM doing the same multiply-
accumulates as the bit-serial model (8 * tokens x m times m x n * slices, measured in
the same process, interleaved with the runs) and their ratio (``GEMM / run``: 1.0 is
as fast as that GEMM; on CPU time, then on wall time), whether the ideal run equals ``x @ W``, the bytes kept per cell
(``nbytes / cells``) and, with ``--before DIR``, the same runs of another checkout of
the package (``DIR/hyflexpim``) for the before/after figures. Two diagnostics in
brackets: the time of the same multiply-accumulates as 64-row GEMMs in blocks of 256
columns (what one array row group's GEMMs cost against the one big GEMM), and the ratio
that a run could reach at most if it did nothing but those GEMMs and, per block, the
three passes an exact conversion needs (rounding, the plane combination's GEMV, the
slice combination). Timings are the best of
``--repeat`` runs, one thread (``--threads all`` for every core).

Reference figures for Sandia CrossSim 3.2 on the same bit-sliced workload on this kind
of machine, one thread: 0.84 s (SLC) and 0.46 s (MLC) (from the issue that set the
target; CrossSim is not installed here).
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
CASES = [("ideal", {}), ("BER 4.04%", dict(ber=0.0404, seed=1)),
         ("+read 1%", dict(ber=0.0404, read_noise=0.01, seed=1))]


def workload(kind, m=768, n=768, tokens=128, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.integers(-128, 128, (m, n)), rng.integers(-128, 128, (tokens, m))
    if kind == "saturating":
        # non-negative weights and small negative inputs (most bits set): the top slices'
        # bitlines exceed the ADC range in most reads
        w = np.abs(rng.standard_normal((m, n)))
        W = np.rint(w / w.max(axis=0) * 127).astype(np.int64)
        return W, -rng.integers(1, 9, (tokens, m))
    w = rng.standard_normal((m, n))
    W = np.rint(w / np.abs(w).max(axis=0) * 127).astype(np.int64)
    a = rng.standard_normal((tokens, m))
    x = np.rint(a / np.abs(a).max(axis=1, keepdims=True) * 127).astype(np.int64)
    return W, x


def deep_nbytes(obj):
    """Bytes of every numpy array reachable from ``obj`` (attributes, lists, dicts), each
    memory buffer counted once: what a programmed matrix keeps, whatever its layout."""
    import numpy as np
    seen, bufs, stack = set(), {}, [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, (str, bytes, int, float, type(None))):
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            base = o
            while isinstance(base.base, np.ndarray):
                base = base.base
            bufs[id(base)] = base.nbytes
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set)):
            stack.extend(o)
        elif hasattr(o, "__dict__") and type(o).__module__.startswith("hyflexpim"):
            stack.extend(vars(o).values())
    return sum(bufs.values())


def golden_child(label, repeat, kinds, cases):
    import numpy as np
    from hyflexpim.models import program_matrix
    from hyflexpim.models import encoding as enc
    rows = []
    for kind in kinds:
        W, x = workload(kind)
        exact = x @ W
        for mode in ("slc", "mlc"):
            S = enc.slices_per_weight(mode)
            rng = np.random.default_rng(1)
            P = rng.integers(0, 2, (8 * x.shape[0], W.shape[0])).astype(np.float32)
            H = rng.integers(-4096, 4096, (W.shape[0], W.shape[1] * S)).astype(np.float32)
            # the same multiply-accumulates as the model's GEMMs: per 64-row group, in
            # blocks of 256 columns (a diagnostic: what K = 64 costs against one GEMM)
            Pg = [np.ascontiguousarray(P[:, r:r + 64]) for r in range(0, W.shape[0], 64)]
            Hg = [np.ascontiguousarray(H[r:r + 64]) for r in range(0, W.shape[0], 64)]
            buf = np.empty((P.shape[0], 256), dtype=np.float32)

            def gemm64():
                for p, h in zip(Pg, Hg):
                    for c in range(0, h.shape[1], 256):
                        np.matmul(p, h[:, c:c + 256], out=buf)
            g64 = float("inf")
            for _ in range(repeat):
                c0 = time.process_time()
                gemm64()
                g64 = min(g64, time.process_time() - c0)
            # the passes every conversion needs besides its GEMM, on the same blocks: the
            # rounding, the plane combination (a GEMV with the 8 plane weights) and the
            # slice combination (S column weights): with the 64-row GEMMs, the floor of a
            # bit-serial run that converts every read exactly (a diagnostic)
            pw = np.array([enc.plane_weight(b) for b in range(8)], dtype=np.float32)
            cw = np.array([enc.column_weight(mode, k) for k in range(S)], dtype=np.float32)
            ob = np.empty(buf.size // 8, dtype=np.float32)
            nblocks = len(Hg) * -(-Hg[0].shape[1] // 256)

            def passes():
                for _ in range(nblocks):
                    np.rint(buf, out=buf)
                    np.matmul(pw, buf.reshape(8, -1), out=ob)
                    ob.reshape(-1, S) @ cw
            buf[:] = 0.0
            gp = float("inf")
            for _ in range(repeat):
                c0 = time.process_time()
                passes()
                gp = min(gp, time.process_time() - c0)
            for name, kw in CASES:
                if name not in cases:
                    continue
                t0 = time.perf_counter()
                pm = program_matrix(W, mode, **kw)
                prog = time.perf_counter() - t0
                best = gemm = best_cpu = gemm_cpu = float("inf")
                for _ in range(repeat):
                    t0, c0 = time.perf_counter(), time.process_time()
                    P @ H
                    gemm = min(gemm, time.perf_counter() - t0)
                    gemm_cpu = min(gemm_cpu, time.process_time() - c0)
                    t0, c0 = time.perf_counter(), time.process_time()
                    y = pm.run(x)
                    best = min(best, time.perf_counter() - t0)
                    best_cpu = min(best_cpu, time.process_time() - c0)
                per_cell = deep_nbytes(pm) / (pm.arrays * 64 * 128)
                sat = pm.saturated(x) if kind == "saturating" else None
                rows.append(dict(label=label, data=kind, mode=mode, case=name, saturated=sat,
                                 arrays=pm.arrays, program_s=prog, run_s=best, gemm_s=gemm,
                                 run_cpu=best_cpu, gemm_cpu=gemm_cpu, gemm64_cpu=g64,
                                 passes_cpu=gp,
                                 bytes_per_cell=per_cell,
                                 exact=bool(np.array_equal(y, exact)) if not kw else None))
    print(json.dumps(rows))


def bench_golden(repeat, threads, before, kinds, cases):
    print("Golden model: 768 x 768 INT8 layer x 128 tokens (bit-serial, bit-sliced, SAR ADC)")
    print("(run s and GEMM s: wall time; GEMM/run: their ratio on CPU time, which other "
          "processes on a shared machine disturb less, and on wall time)")
    print(f"{'code':>6} {'data':>9} {'mode':>4} {'case':>10} {'program s':>9} {'run s':>7} "
          f"{'GEMM s':>7} {'GEMM/run':>13} {'B/cell':>6} {'vs CrossSim':>11} {'== x@W':>7}")
    env = dict(os.environ)
    if threads != "all":
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = threads
    runs = [("after", None)] + ([("before", before)] if before else [])
    for label, root in runs:
        e = dict(env)
        if root:
            e["PYTHONPATH"] = str(Path(root).resolve())
        out = subprocess.run([sys.executable, __file__, "--golden-child", label,
                              "--repeat", str(repeat), "--data", ",".join(kinds),
                              "--cases", ",".join(cases)],
                             env=e, capture_output=True, text=True, check=True,
                             cwd="/" if root else None).stdout
        for r in json.loads(out.strip().splitlines()[-1]):
            ex = "" if r["exact"] is None else ("yes" if r["exact"] else "no")
            if r.get("saturated") is not None:
                ex += f" ({r['saturated']} clipped)"
            if r.get("gemm64_cpu"):
                ex += f"  [64-row GEMMs: {r['gemm64_cpu'] / r['gemm_cpu']:.2f} x one GEMM"
                if r.get("passes_cpu") is not None:
                    floor = r["gemm_cpu"] / (r["gemm64_cpu"] + r["passes_cpu"])
                    ex += f"; with rounding and combination passes, ratio at most {floor:.2f}"
                ex += "]"
            print(f"{label:>6} {r['data']:>9} {r['mode']:>4} {r['case']:>10} "
                  f"{r['program_s']:>9.3f} {r['run_s']:>7.4f} {r['gemm_s']:>7.4f} "
                  f"{r['gemm_cpu'] / r['run_cpu']:>6.2f} {r['gemm_s'] / r['run_s']:>6.2f} "
                  f"{r['bytes_per_cell']:>6.2f} "
                  f"{CROSSSIM_S[r['mode']] / r['run_s']:>10.1f}x {ex:>7}")


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
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", default="1", help="BLAS threads: a number or 'all'")
    ap.add_argument("--before", help="folder holding another checkout as hyflexpim/")
    ap.add_argument("--data", default="realistic,uniform")
    ap.add_argument("--cases", default=",".join(c for c, _ in CASES))
    ap.add_argument("--vectors", type=int, default=8)
    ap.add_argument("--golden-child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    kinds, cases = a.data.split(","), a.cases.split(",")
    if a.golden_child:
        return golden_child(a.golden_child, a.repeat, kinds, cases)
    both = not (a.golden or a.rtl)
    if a.golden or both:
        bench_golden(a.repeat, a.threads, a.before, kinds, cases)
    if a.rtl or both:
        bench_rtl(a.vectors)


if __name__ == "__main__":
    main()
