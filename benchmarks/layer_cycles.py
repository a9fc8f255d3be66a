# amaranth: UnusedElaboratable=no
"""Where the cycles of one encoder layer go in RTL, step by step, against the digital PIM
controller's own command cycles.

    .venv/bin/python benchmarks/layer_cycles.py [--causal] [--seed N] [--out DIR]

Runs the layer of ``hyflexpim demo --layer`` (tb/layer_tb.py, hidden 32, 2 heads of 16,
8 tokens, FFN 64, noise off) on the digital module's Verilog with the instruction
profile on (each cycle of the running program charged to its instruction), checks it is
bit-exact as the regression does, and prints

* per layer step (``LayerProgram.phases``): instructions, RTL cycles, share;
* per digital PIM instruction: the RTL cycles of the instruction against
  ``models.digital_pim.command_cycles`` summed over the commands it issues (the
  controller with every beat offered at once), and the engine's element work (operand
  INT8 packed one a cycle into ``pim_lanes`` beats, INT32 results taken one a cycle).
"""

import argparse
import json
import sys
import time
from pathlib import Path

from hyflexpim.models.digital_pim import command_cycles
from hyflexpim.rtl.digital import DigitalModule, Op
from hyflexpim.rtl.digital_pim import Cmd
from hyflexpim.sim.cocotb_runner import BUILD_ROOT, last_run_summary, run_block
from hyflexpim.tb.layer_tb import LAYER_MODULE, LayerProgram, layer_case

TOKENS = 8


def pim_rows(lp, eng):
    """(instruction index, command, commands issued, controller cycles, operand INT8,
    INT32 results) of every PIM instruction of the program."""
    e = eng.params
    A, d, L, T = e["pim_arrays"], e["head_dim"], e["pim_lanes"], e["max_seq"]
    kw = dict(arrays=A, cols=e["pim_cols"], head_dim=d, lanes=L, max_seq=T)
    lay = eng.instr
    length = {}
    out = []
    for k, bits in enumerate(lp.program):
        ins = lay.from_bits(bits)
        if Op(ins.op) != Op.PIM:
            continue
        cmd, head = Cmd(int(ins.aux) & 3), int(ins.aux) >> 2
        n_o, imm = int(ins.n_o), int(ins.imm)
        n = length.get(head, 0)
        if cmd == Cmd.CLEAR:
            out.append((k, "clear", 1, command_cycles("clear", 0, n, **kw), 0, 0))
            length[head] = 0
        elif cmd == Cmd.APPEND:
            out.append((k, f"append {n_o}", 1, command_cycles("append", n_o, n, **kw),
                        2 * n_o * d, 0))
            length[head] = min(T, n + n_o)
        else:
            name = cmd.name.lower()
            cyc = sum(command_cycles(name, imm + (o if ins.flags.arg_step else 0), n, **kw)
                      for o in range(n_o))
            ops = d if cmd == Cmd.SCORES else n
            res = -(-n // A) * A if cmd == Cmd.SCORES else -(-d // A) * A
            out.append((k, f"{name} x {n_o}", n_o, cyc, n_o * ops, n_o * res))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--causal", action="store_true", help="the causal layer")
    ap.add_argument("--seed", type=int, default=1, help="HYFLEXPIM_SEED (default 1)")
    ap.add_argument("--out", default=str(BUILD_ROOT / "layer_cycles"), help="output folder")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    report = out / "layer_report.jsonl"
    report.unlink(missing_ok=True)
    test = "layer_causal" if a.causal else "layer_noise_off"
    t0 = time.time()
    run_block("digital_module", test_module="hyflexpim.tb.layer_tb", params=LAYER_MODULE,
              small=False, tb_params={"profile": True},
              extra_env={"HYFLEXPIM_SEED": a.seed, "HYFLEXPIM_LAYER_REPORT": str(report)},
              testcase=[test], build_dir=out / "sim", quiet=True)
    r = json.loads(report.read_text().splitlines()[-1])
    dig = DigitalModule(**LAYER_MODULE)
    dig._MustUse__silence = True
    eng = dig.make_engine()
    seed = r["seed"]
    layer, _, _, fm = layer_case(seed, False, a.causal)
    lp = LayerProgram(layer, eng, TOKENS, formats=fm)
    if len(lp.program) != r["instructions"]:
        sys.exit(f"the program here has {len(lp.program)} instructions, the run "
                 f"{r['instructions']}: not the same layer")
    ic = r["instr_cycles"]
    running = sum(ic)
    print(f"{test}: {r['words']} words bit-exact; {r['cycles']:,} cycles from START to the "
          f"last output word, {running:,} with the program running; {r['instructions']} "
          f"instructions, {r['analog_vectors']} analog vectors (each answered "
          f"{r['analog_delay']} cycles after its last word), seed {seed}")
    print("\n| step | units | instructions | RTL cycles | share |\n|---|---|---|---|---|")
    for ph in lp.phases:
        cyc = sum(ic[ph["first"]:ph["last"] + 1])
        print(f"| {ph['name']} | {ph['units']} | {ph['last'] - ph['first'] + 1} | "
              f"{cyc:,} | {cyc / running:.1%} |")
    print("\n| PIM instruction | commands | RTL cycles | controller (command_cycles) | "
          "operand INT8 | INT32 results | RTL / controller |\n|---|---|---|---|---|---|---|")
    tot_r = tot_c = 0
    for k, name, n_cmd, cyc, ops, res in pim_rows(lp, eng):
        tot_r += ic[k]
        tot_c += cyc
        print(f"| {k}: {name} | {n_cmd} | {ic[k]:,} | {cyc:,} | {ops:,} | {res:,} | "
              f"{ic[k] / cyc:.2f} |")
    print(f"| all | | {tot_r:,} | {tot_c:,} | | | {tot_r / tot_c:.2f} |")
    print(f"\n{last_run_summary()}; wall {time.time() - t0:.1f} s; report {report}")


if __name__ == "__main__":
    main()
