"""Bus fabric figures: saturation throughput, fairness, transfer latency, whole-layer cycles.

Runs the cocotb testbenches (Icarus) of ``tb/bus_tb.py`` and ``tb/pu_tb.py`` and prints
what they measure:

* bus words per cycle with every port always sending and every output always ready
  (random destinations, and a hot spot where every port sends to port 0), against the
  ideal of one word per cycle per bus;
* fairness: the most grants to other ports that a continuously ready port waited,
  against the bound ``n_ports - 1``;
* latency of an uncontended transfer, and the median / max latency under saturation;
* cycles of a whole linear layer through the PU (arrays, bus, aggregation), with and
  without the digital module's SFU path (dequantisation, GELU, requantisation to INT8),
  against the architecture model's array timing
  (:func:`hyflexpim.sim.arch.timing.array_cycles`) for the same configuration;
* cycles of two layers on two PUs of the chip top (PU 0 -> global bus -> PU 1), against
  the same model for a two-stage pipeline.

    .venv/bin/python benchmarks/bus_fabric.py                       # bus sweep + small layer + chip
    .venv/bin/python benchmarks/bus_fabric.py --full                # + the 128 x 64 layer on 64 x 128 arrays
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path


def _run_bus(cls_name, params, seed):
    from hyflexpim.sim.cocotb_runner import run_block
    kw = dict(params)
    if cls_name != "inner":
        kw["n_pus"] = kw.pop("n_ports") - 1
    with tempfile.TemporaryDirectory() as tmp:
        rep = Path(tmp) / "report.jsonl"
        run_block("inner_bus" if cls_name == "inner" else "global_bus", toplevel="shared_bus",
                  test_module="hyflexpim.tb.bus_tb", params=kw, small=False,
                  extra_env={"HYFLEXPIM_SEED": seed, "COCOTB_LOG_LEVEL": "WARNING",
                             "HYFLEXPIM_BUS_REPORT": str(rep)},
                  testcase=["saturation_throughput_and_fairness", "uncontended_latency"])
        return [json.loads(line) for line in rep.read_text().splitlines()]


def _run_pu(pu_params, layer, seed):
    from hyflexpim.sim.cocotb_runner import run_block
    with tempfile.TemporaryDirectory() as tmp:
        rep = Path(tmp) / "report.jsonl"
        run_block("pu", test_module="hyflexpim.tb.pu_tb", params=pu_params, small=False,
                  tb_params=layer,
                  extra_env={"HYFLEXPIM_SEED": seed, "HYFLEXPIM_PU_REPORT": str(rep),
                             "COCOTB_LOG_LEVEL": "WARNING"},
                  testcase=["layer_noise_off", "sfu_noise_off"])
        return [json.loads(line) for line in rep.read_text().splitlines()]


def _run_chip(chip_params, layers, seed):
    from hyflexpim.sim.cocotb_runner import run_block
    with tempfile.TemporaryDirectory() as tmp:
        rep = Path(tmp) / "report.jsonl"
        run_block("chip", test_module="hyflexpim.tb.chip_tb", params=chip_params, small=False,
                  tb_params=layers,
                  extra_env={"HYFLEXPIM_SEED": seed, "HYFLEXPIM_CHIP_REPORT": str(rep),
                             "COCOTB_LOG_LEVEL": "WARNING"},
                  testcase=["two_layers_noise_off"])
        return [json.loads(line) for line in rep.read_text().splitlines()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true",
                    help="also run the 128 x 64 layer on 64 x 128 arrays (about a minute)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-bus", action="store_true", help="skip the bus saturation sweep")
    args = ap.parse_args(argv)
    from hyflexpim.sim.arch.timing import array_cycles

    print("## Bus under saturation (all ports send every cycle, all outputs ready)\n")
    print("| bus | ports | FIFO depth | traffic | words | words/cycle | max wait (grants) | bound "
          "| latency median / max | uncontended latency |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    sweep = () if args.skip_bus else (("inner", 4, 4), ("inner", 4, 2), ("global", 3, 4),
                                      ("inner", 8, 4), ("inner", 34, 4))
    for cls_name, n, depth in sweep:
        rows = _run_bus(cls_name, dict(n_ports=n, data_width=32, fifo_depth=depth, tag_width=8),
                        args.seed)
        lat = next(r for r in rows if r["test"] == "uncontended_latency")["latency_cycles"]
        for r in rows:
            if r["test"].startswith("saturation"):
                traffic = "random dest." if r["test"].endswith("destinations") else "all to port 0"
                med = f'{r["latency_median"]} / {r["latency_max"]}' if "latency_median" in r \
                    else f'- / {r["latency_max"]}'
                print(f'| {cls_name} | {n} | {depth} | {traffic} | {r["words"]} | '
                      f'{r["words_per_cycle"]:.3f} | {r["max_wait"]} | {r["wait_bound"]} | '
                      f'{med} | {lat} |')
        sys.stdout.flush()

    print("\n## Whole layer through the PU (arrays + inner bus + aggregation [+ SFU path]), "
          "noise off\n")
    print("| layer | output | arrays (rows x cols) | PU | vectors | first-vector latency | "
          "total cycles | arch model (slowest array) | overhead |")
    print("|---|---|---|---|---|---|---|---|---|")
    cases = [(dict(n_modules=2, arrays_per_module=2, rows=16, cols=32, slc_bits=6, mlc_bits=7,
                   read_cycles=2, data_width=32, fifo_depth=4, tag_width=6, max_parts=4),
              dict(m=32, n=12, n_slc=4, vectors=4))]
    if args.full:
        cases.append((dict(n_modules=3, arrays_per_module=2, rows=64, cols=128, slc_bits=6,
                           mlc_bits=7, read_cycles=4, data_width=32, fifo_depth=4, tag_width=8,
                           max_parts=4),
                      dict(m=128, n=64, n_slc=16, vectors=2)))
    for pu, layer in cases:
        model = array_cycles(layer["vectors"], "mlc", cols=pu["cols"],
                             read_cycles=pu["read_cycles"])
        for r in _run_pu(pu, layer, args.seed):
            out = "INT8 (GELU)" if r["sfu"] else "INT32"
            print(f'| {layer["m"]} x {layer["n"]} ({layer["n_slc"]} SLC) | {out} | {r["arrays"]} '
                  f'({pu["rows"]} x {pu["cols"]}) | {pu["n_modules"]} x {pu["arrays_per_module"]} | '
                  f'{layer["vectors"]} | {r["first_vector_latency"]} | {r["total_cycles"]} | '
                  f'{model} | {r["total_cycles"] - model} '
                  f'({100 * (r["total_cycles"] - model) / model:.1f} %) |')
        sys.stdout.flush()

    print("\n## Two layers on two PUs (chip top, global bus), noise off, INT8 out\n")
    print("| layers | arrays (rows x cols) | vectors | first-vector latency | model: 2 x one "
          "vector | total cycles | model: 2-stage pipeline | overhead |")
    print("|---|---|---|---|---|---|---|---|")
    chip = dict(n_pus=2, n_modules=2, arrays_per_module=2, rows=16, cols=32, slc_bits=6,
                mlc_bits=7, read_cycles=2, data_width=32, fifo_depth=4, tag_width=6,
                max_parts=4, n_digital=1)
    layers = dict(m1=32, n1=12, n2=12, n_slc1=4, n_slc2=4, vectors=4)
    r = _run_chip(chip, layers, args.seed)[0]
    one = array_cycles(1, "mlc", cols=chip["cols"], read_cycles=chip["read_cycles"])
    # two pipeline stages, each one array-vector time per vector: V + 1 vector times
    pipe = array_cycles(layers["vectors"] + 1, "mlc", cols=chip["cols"],
                        read_cycles=chip["read_cycles"])
    print(f'| {layers["m1"]} x {layers["n1"]} (GELU) -> {layers["n1"]} x {layers["n2"]} (GELU) | '
          f'{r["arrays1"]} + {r["arrays2"]} ({chip["rows"]} x {chip["cols"]}) | {layers["vectors"]} | '
          f'{r["first_vector_latency"]} | {2 * one} | {r["total_cycles"]} | {pipe} | '
          f'{r["total_cycles"] - pipe} ({100 * (r["total_cycles"] - pipe) / pipe:.1f} %) |')
    return 0


if __name__ == "__main__":
    sys.exit(main())
