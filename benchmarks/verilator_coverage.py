"""Line and toggle coverage of the generated Verilog under a block's cocotb regression.

    .venv/bin/python benchmarks/verilator_coverage.py [BLOCK ...] [--out build/coverage]

Builds each block's Verilog with Verilator's ``--coverage-line --coverage-toggle``
(through ``HYFLEXPIM_VERILATOR_ARGS``), runs its cocotb regression (the same testbench,
parameters and test cases as ``tests/test_verilator.py`` / the block's cocotb test,
quick where the testbench has it), reads ``coverage.dat`` (Verilator's
``SystemC::Coverage-3`` text: one ``C '<key>' <count>`` per point, the key's fields ``f``
file, ``l`` line, ``page`` ``v_line/<module>`` or ``v_toggle/<module>``, ``o`` point,
``h`` hierarchy) and prints, for the block's own Verilog: line points hit / total,
toggle points hit / total (every bit, both directions), and the source lines of the
first line points never hit.

The block's own Verilog is the file ``<toplevel>.v`` that Amaranth writes: the block's
top module and every module generated under it (a PU's inner bus, bridge, aggregator,
analog modules and digital module; the chip's global bus and PUs), each instance's
points counted. The simulation-only files are left out: the top around the design
(``<toplevel>_sim.v``: clock, S&H bank wiring) and the S&H bank model
(``hyflexpim_sh_bank.v``). A block without a cocotb testbench of its own is measured
inside one that has one (:data:`INSIDE`): the points of its instance's subtree of the
hierarchy (``h``) only, e.g. the partial-sum aggregator inside the PU's regression.
"""

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from hyflexpim.sim.cocotb_runner import BUILD_ROOT, run_block

#: block -> (testbench module, block parameters, testbench parameters, other keywords of
#: ``run_block``: ``toplevel``, ``testcase``, ``extra_env``)
RUNS = {
    "analog_array": ("hyflexpim.tb.analog_tb", dict(slc_bits=4, mlc_bits=5, read_cycles=2), {},
                     {}),
    "digital_pim": ("hyflexpim.tb.digital_pim_tb",
                    dict(arrays=2, rows=32, cols=32, head_dim=4, max_seq=16, heads=1, lanes=4),
                    {"quick": True}, {}),
    **{f"fp16_{op}": ("hyflexpim.tb.fp16_tb", {}, {"set": "quick"}, {})
       for op in ("add", "mul", "div", "sqrt", "cmp", "from_int32", "to_int8")},
    # tests/test_bus_cocotb.py: the small inner bus (4 ports, 3-bit addresses: unknown
    # destinations), the small global bus (3 ports) with wide words and shallow FIFOs
    "inner_bus": ("hyflexpim.tb.bus_tb", dict(addr_width=3), {}, dict(toplevel="shared_bus")),
    "global_bus": ("hyflexpim.tb.bus_tb", dict(data_width=64, fifo_depth=2, tag_width=5), {},
                   dict(toplevel="shared_bus",
                        testcase=["random_traffic_random_backpressure",
                                  "uncontended_latency"])),
    # tests/test_sfu_cocotb.py
    **{f"sfu_{kind}": ("hyflexpim.tb.sfu_tb", dict(lanes=2), {},
                       dict(testcase=["elementwise_bit_exact", "elementwise_throughput"],
                            extra_env={"HYFLEXPIM_COUNT": 300}))
       for kind in ("exp", "gelu")},
    "sfu_softmax": ("hyflexpim.tb.sfu_tb", dict(n=16, lanes=2, slots=4), {},
                    dict(testcase=["rows_bit_exact", "rows_throughput"],
                         extra_env={"HYFLEXPIM_COUNT": 96})),
    "sfu_layernorm": ("hyflexpim.tb.sfu_tb", dict(n=16, lanes=4, slots=2), {},
                      dict(testcase=["rows_bit_exact", "rows_throughput"],
                           extra_env={"HYFLEXPIM_COUNT": 96})),
    # tests/test_pu_cocotb.py: the small PU (2 modules x 2 arrays of 16 x 32), quick;
    # its layer tests (INT32 results, then through the digital module to INT8)
    "pu": ("hyflexpim.tb.pu_tb", dict(read_cycles=2, max_parts=4, ext_addr_width=2),
           dict(m=32, n=12, n_slc=4, vectors=2),
           dict(testcase=["layer_noise_off", "layer_noise_on", "sfu_noise_off",
                          "sfu_noise_on", "sfu_gelu_off"])),
    # tests/test_chip_cocotb.py: the small chip (two small PUs), quick; two layers on two
    # PUs and one layer split over both
    "chip": ("hyflexpim.tb.chip_tb", dict(read_cycles=2, max_parts=4),
             dict(m1=32, n1=12, n2=12, n_slc1=4, n_slc2=4, m=64, n=12, n_slc=4, vectors=2),
             {}),
}

#: block -> (the block of RUNS whose regression exercises it, its instance there): the
#: blocks without a cocotb testbench of their own on Verilator. (The digital module's own,
#: tests/test_layer_cocotb.py, needs the layer engine: that build with coverage compiled
#: 13 of its 99 C++ files in 4 min 50 s at one make job, so it is not run here.)
INSIDE = {
    "psum_agg": ("pu", "aggregator"),
    "digital_module": ("pu", "digital_0"),
    "analog_module": ("pu", "module_0"),
}


def _under(hier, instance):
    """Whether the dotted hierarchy path ``hier`` is instance ``instance`` (a dotted
    instance path, matched at any depth) or inside it."""
    parts, want = hier.split("."), instance.split(".")
    return any(parts[i:i + len(want)] == want for i in range(len(parts) - len(want) + 1))


def parse(path, verilog, instance=None):
    """``{kind: (hit, total)}`` and the never-hit line points ``[(line, point)]`` of the
    coverage points in ``verilog`` (a file name); with ``instance`` (a dotted instance
    path matched at any depth of the hierarchy: ``"aggregator"`` is the aggregator of
    every PU of a chip, ``"pu_0.aggregator"`` that of PU 0), only those of that instance
    and of the instances under it."""
    hit, total = defaultdict(int), defaultdict(int)
    missed = []
    for raw in Path(path).read_text(errors="replace").splitlines():
        if not raw.startswith("C '"):
            continue
        key, count = raw[3:].rsplit("' ", 1)
        fields = dict(f.split("\x02", 1) for f in key.split("\x01") if "\x02" in f)
        if Path(fields.get("f", "")).name != verilog:
            continue
        if instance is not None and not _under(fields.get("h", ""), instance):
            continue
        kind = fields.get("page", "").split("/")[0].removeprefix("v_")
        total[kind] += 1
        if int(count):
            hit[kind] += 1
        elif kind == "line":
            missed.append((int(fields.get("l", 0)), fields.get("o", "")))
    return {k: (hit[k], total[k]) for k in total}, sorted(missed)


def run(block, out):
    """Run ``block`` of :data:`RUNS` with coverage: ``(tests passed, coverage.dat, the
    block's Verilog file, seconds)``."""
    tb, params, tbp, kw = RUNS[block]
    kw = dict(kw)
    bdir = Path(out) / block
    (bdir / "coverage.dat").unlink(missing_ok=True)
    t0 = time.time()
    passed, _ = run_block(block, test_module=tb, params=params, tb_params=tbp,
                          simulator="verilator", build_dir=bdir, quiet=True,
                          extra_env={"HYFLEXPIM_SEED": 1, **kw.pop("extra_env", {})}, **kw)
    verilog = bdir / f"{kw.get('toplevel', block)}.v"
    return passed, bdir / "coverage.dat", verilog, time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = list(RUNS) + list(INSIDE)
    ap.add_argument("blocks", nargs="*", default=names, metavar="BLOCK",
                    help=f"blocks (default all: {', '.join(names)})")
    ap.add_argument("--out", default=str(BUILD_ROOT / "coverage"))
    a = ap.parse_args()
    bad = [b for b in a.blocks if b not in names]
    if bad:
        print(f"verilator_coverage: unknown block {bad[0]!r}; one of {', '.join(names)}",
              file=sys.stderr)
        return 2
    os.environ["HYFLEXPIM_VERILATOR_ARGS"] = "--coverage-line --coverage-toggle"
    print("| block | tests passed | line points hit | toggle points hit | seconds |")
    print("|---|---|---|---|---|")
    notes = []
    done = {}
    for block in a.blocks:
        host, instance = INSIDE.get(block, (block, None))
        if host not in done:
            done[host] = run(host, a.out)
        passed, dat, verilog, seconds = done[host]
        cov, missed = parse(dat, verilog.name, instance)
        cells = []
        for kind in ("line", "toggle"):
            h, t = cov.get(kind, (0, 0))
            cells.append(f"{h:,} / {t:,} ({h / t:.1%})" if t else "none")
        name = block if instance is None else f"{block} (in {host}: {instance})"
        print(f"| {name} | {passed} | {cells[0]} | {cells[1]} | {seconds:.0f} |")
        src = verilog.read_text().splitlines()
        lines = sorted({ln for ln, _ in missed})
        notes.append(f"{block}: {len(lines)} source lines with a line point never hit"
                     + "".join(f"\n    {ln}: {src[ln - 1].strip()[:90]}" for ln in lines[:8]))
    print()
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
