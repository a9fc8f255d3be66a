"""``hyflexpim demo``: the main job on the default configuration.

Generates the Verilog of the default analog array (64 x 128, 6/7-bit SAR), programs a
random INT8 weight tile, runs a GEMV over a few input vectors through RTL simulation
(Icarus + cocotb, comparator driven by the crossbar model) and through the golden
model, and prints the word-by-word comparison and the cycle counts.

``--layer``: one transformer encoder layer (hidden 32, 2 heads, 8 tokens, FFN 64) on the
generated Verilog of a digital module with the layer engine (``tb/layer_tb.py``, the
cocotb regression's own test): every output word compared with the golden model
``models.transformer.ChipLayer.forward``, the cycles from START to the last word.
"""

import json
import time
from pathlib import Path

import numpy as np

from ..cocotb_runner import BUILD_ROOT, last_run_summary, run_block
from ..cli import UsageError

NAME = "demo"
#: Largest --seed (NumPy's generators and the crossbar model's seeds take 0..2**32-1).
MAX_SEED = 2 ** 32 - 1
HELP = "generate the default array's Verilog, run a GEMV in RTL simulation and golden model, compare"


def add_arguments(p):
    p.add_argument("--mode", default="mlc", choices=["slc", "mlc"], help="cell mode (default mlc)")
    p.add_argument("--ber", type=float, default=None,
                   help="MLC bit error rate of the device for programming noise (default: ideal)")
    p.add_argument("--vectors", type=int, default=4, help="input vectors (default 4)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--rows", type=int, default=64, help="array rows (default 64)")
    p.add_argument("--cols", type=int, default=128, help="array columns (default 128)")
    p.add_argument("--out", default=str(BUILD_ROOT / "demo"), help="output folder (default build/demo)")
    p.add_argument("--layer", action="store_true",
                   help="run one encoder layer (hidden 32, 2 heads, 8 tokens, FFN 64) on the "
                        "digital module's RTL against the golden model (about 2 minutes); "
                        "takes --ber, --seed, --causal, --out")
    p.add_argument("--causal", action="store_true", help="--layer: a causal (decoder) layer")


def run(args):
    from ...models.crossbar import check_ber
    if not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"seed must be an integer in 0..{MAX_SEED}, not {args.seed!r}")
    if args.layer:
        return run_layer(args)
    if args.causal:
        raise UsageError("--causal needs --layer")
    if args.vectors < 1 or args.vectors > 1000:
        raise UsageError(f"--vectors must be in 1..1000, not {args.vectors}")
    if args.ber is not None:
        check_ber(args.ber)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    params = dict(rows=args.rows, cols=args.cols)
    report_path = out / "demo_report.json"
    cfg = dict(mode=args.mode, ber=args.ber, seed=args.seed, vectors=args.vectors,
               out=str(report_path.resolve()))
    print(f"Array {args.rows} x {args.cols}, mode {args.mode.upper()}, "
          f"{'ideal' if args.ber is None else f'noisy (MLC BER {args.ber})'}, seed {args.seed}")
    t0 = time.time()
    run_block("analog_array", test_module="hyflexpim.tb.demo_tb", params=params, small=False,
              extra_env={"HYFLEXPIM_DEMO": json.dumps(cfg)}, build_dir=out / "sim", quiet=True)
    wall = time.time() - t0
    r = json.loads(report_path.read_text())
    print(f"Verilog: {out / 'sim' / 'analog_array.v'}  (simulator log: {out / 'sim' / 'sim.log'})")
    rtl, gold, exact = (np.array(r[k]) for k in ("rtl", "golden", "exact"))
    words = rtl.size
    mism = int((rtl != gold).sum())
    print(f"\n{'vector':>6} {'words':>5} {'RTL == golden':>14} {'golden == x@W':>14}  first outputs (RTL | golden | exact)")
    for i in range(rtl.shape[0]):
        same = "yes" if np.array_equal(rtl[i], gold[i]) else f"NO ({int((rtl[i] != gold[i]).sum())})"
        ex = "yes" if np.array_equal(gold[i], exact[i]) else f"no ({int((gold[i] != exact[i]).sum())})"
        print(f"{i:>6} {rtl.shape[1]:>5} {same:>14} {ex:>14}  {rtl[i][:3].tolist()} | "
              f"{gold[i][:3].tolist()} | {exact[i][:3].tolist()}")
    print(f"\nRTL vs golden: {words - mism}/{words} words identical"
          + ("  (bit-exact)" if mism == 0 else "  MISMATCH"))
    print(f"golden vs exact integer x @ W: {int((gold == exact).sum())}/{words} words equal; "
          f"{r['saturated']} saturating ADC conversions")
    print(f"cycles: first result after {r['first_result_cycles']:.0f}, all {args.vectors} "
          f"after {r['cycles_total']:.0f}; ideal per vector 8 x {r['cols']} x "
          f"{7 if args.mode == 'mlc' else 6} = {r['ideal_cycles_per_vector']}")
    if r["steady_cycles_per_vector"] is not None:
        print(f"steady state: {r['steady_cycles_per_vector']:.1f} cycles per vector = "
              f"{r['steady_cycles_per_vector'] / r['ideal_cycles_per_vector']:.3f} x ideal")
    print(last_run_summary())
    print(f"simulation wall time {wall:.1f} s; report {report_path}")
    return 0 if mism == 0 else 1


#: The array options that a layer demo does not take, with their defaults.
_ARRAY_ONLY = {"mode": "mlc", "vectors": 4, "rows": 64, "cols": 128}


def run_layer(args):
    """``demo --layer``: the encoder layer of the cocotb regression, printed."""
    from ...models.crossbar import check_ber
    from ..cocotb_runner import CocotbFailure
    from ...rtl.digital import LAYER_MODULE
    for name, default in _ARRAY_ONLY.items():
        if getattr(args, name) != default:
            raise UsageError(f"--{name} applies to the array demo, not to --layer")
    if args.ber is not None:
        check_ber(args.ber)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = out / "layer_report.jsonl"
    report.unlink(missing_ok=True)
    noise = args.ber is not None
    test = "layer_causal" if args.causal else ("layer_noise_on" if noise else "layer_noise_off")
    print(f"Encoder layer{' (causal)' if args.causal else ''}: hidden 32, 2 heads of 16, "
          f"8 tokens, FFN 64; {'ideal arrays' if not noise else f'MLC BER {args.ber}'}, "
          f"seed {args.seed}")
    t0 = time.time()
    try:
        run_block("digital_module", test_module="hyflexpim.tb.layer_tb", params=LAYER_MODULE,
                  small=False, tb_params={"ber": args.ber},
                  extra_env={"HYFLEXPIM_SEED": args.seed,
                             "HYFLEXPIM_LAYER_REPORT": str(report.resolve())},
                  testcase=[test], build_dir=out / "sim_layer", quiet=True)
    except CocotbFailure as e:
        print(f"RTL vs golden: MISMATCH ({e}); simulator log {out / 'sim_layer' / 'sim.log'}")
        return 1
    wall = time.time() - t0
    r = json.loads(report.read_text().splitlines()[-1])
    print(f"Verilog: {out / 'sim_layer' / 'digital_module.v'}  "
          f"(simulator log: {out / 'sim_layer' / 'sim.log'})")
    print(f"RTL vs golden: {r['words']}/{r['words']} output words identical (bit-exact; "
          f"{r['words'] // r['words_per_row']} token rows of {r['words_per_row']} words: "
          f"{r['words_per_row'] - 1} words of INT8 x 4, then the row's scale word)")
    hexes = lambda ws: " ".join(f"{w & 0xFFFFFFFF:08x}" for w in ws)
    print(f"token 0, RTL:    {hexes(r['rtl_first_row'])}")
    print(f"token 0, golden: {hexes(r['golden_first_row'])}")
    print(f"cycles: {r['cycles']:,} from START to the last output word; the first analog "
          f"vector sent after {r['first_send']:,}; {r['analog_vectors']} analog vectors "
          f"(answered {r['analog_delay']} cycles after their last input word), "
          f"{r['pim_ops']:,} digital PIM array operations, {r['instructions']} engine "
          f"instructions")
    print(last_run_summary())
    print(f"simulation wall time {wall:.1f} s; report {report}")
    return 0
