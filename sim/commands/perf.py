"""``hyflexpim perf``: throughput, latency, energy and area of a model on HyFlexPIM.

Examples::

    hyflexpim perf --model bert-large --seq 512 --slc 0.1
    hyflexpim perf --model bert-large --seq 512 --slc 0.1 --design slc-only --json
    hyflexpim perf --model my_model.toml --seq 1024 --slc-map ranks.json
    hyflexpim perf --sweep --out build/perf
"""

import json
import math
import sys

NAME = "perf"
HELP = "architecture model: tokens/s, latency, energy per token and area of a transformer"

DESIGN_CHOICES = ("hyflexpim", "slc-only", "non-pim", "nmp")


def add_arguments(p):
    p.add_argument("--model", default="bert-large",
                   help="preset (bert-base, bert-large, gpt2, llama-3.2-1b, vit-base) or a "
                        ".json/.toml config file (default: bert-large)")
    p.add_argument("--seq", type=int, default=128, help="sequence length (default 128)")
    p.add_argument("--slc", type=float, default=0.1, help="SLC rate in [0, 1] (default 0.1)")
    p.add_argument("--design", default="hyflexpim", help="hyflexpim | slc-only | non-pim | nmp")
    p.add_argument("--slc-map", metavar="FILE", help="per-matrix SLC ranks/fractions (JSON, see docs)")
    p.add_argument("--no-svd", action="store_true",
                   help="map W unfactored, SLC share = output neurons (weight-magnitude baseline)")
    p.add_argument("--chips", type=int, help="chips of the hardware budget (default: as needed)")
    p.add_argument("--pus-per-layer", type=int,
                   help="PUs per layer (default: the minimum, more when a chip has spare PUs)")
    p.add_argument("--batch", type=int, default=1, help="decoder sequences in flight (default 1)")
    p.add_argument("--gen", type=int, help="decoder: tokens generated within --seq (default seq/2)")
    p.add_argument("--params", metavar="FILE", help="parameter file (default constraints/hyflexpim_params.json)")
    p.add_argument("--placement", metavar="FILE", help="write the tile placement (JSON) of pipeline 0")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--sweep", action="store_true",
                   help="5 models x 7 lengths x 7 SLC rates x 4 designs + scaling: CSV and plots")
    p.add_argument("--out", default="build/perf", help="output folder of --sweep (default build/perf)")
    p.add_argument("--no-plots", action="store_true", help="--sweep: CSV only")


def _check(args):
    if args.design not in DESIGN_CHOICES:
        raise ValueError(f"design must be one of {', '.join(DESIGN_CHOICES)}, not {args.design!r}")
    if args.seq < 1:
        raise ValueError(f"seq must be a positive integer, not {args.seq}")
    if not (math.isfinite(args.slc) and 0.0 <= args.slc <= 1.0):
        raise ValueError(f"slc must be in [0, 1], not {args.slc}")
    for name in ("chips", "pus_per_layer", "batch"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"{name.replace('_', '-')} must be a positive integer, not {v}")


def _fmt(v, unit):
    if v is None:
        return "-"
    for scale, pre in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"),
                       (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
        if abs(v) >= scale:
            return f"{v / scale:.4g} {pre}{unit}"
    return f"{v:.4g} {unit}"


def _table(r):
    lines = [f"{r['model']} ({r['kind']}), seq {r['seq']}, design {r['design']}"
             + (f", SLC {r['slc']:.0%}" if r.get("slc") is not None else "")]
    rows = [("throughput", _fmt(r["tokens_per_s"], "tokens/s")),
            ("latency", _fmt(r["latency_s"], "s")),
            ("energy per token", _fmt(r["energy_per_token_j"], "J")),
            ("area", f"{r['area_mm2']:.1f} mm^2 ({r['chips']} chip(s))")]
    if r.get("generated_tokens"):
        rows.append(("prefill / generated", f"{r['prefill_tokens']} / {r['generated_tokens']} tokens, "
                     f"prefill {_fmt(r['prefill_latency_s'], 's')}"))
    if r.get("pus_per_layer"):
        mp = r["mapping"]
        rows.append(("mapping", f"{mp['arrays_per_layer_copy']} arrays/layer copy "
                     f"({mp['arrays_slc']} SLC + {mp['arrays_mlc']} MLC in all), "
                     f"{r['pus_per_layer']} PU(s)/layer, {mp['layer_copies']} copies x "
                     f"{mp['replicas_per_pu']} replicas/PU, {mp['chips_per_pipeline']} chip(s)/pipeline, "
                     f"{r['pipelines']} pipeline(s)"))
        rows.append(("utilisation", f"arrays {r['utilisation']['arrays']:.1%}, analog busy "
                     f"{r['utilisation']['analog_busy']:.1%}, digital PIM capacity "
                     f"{r['utilisation']['digital_pim_capacity']:.2%}; bottleneck {r['bottleneck']}"))
    if r.get("budget"):
        rows.append(("budget", r["budget"]))
    w = max(len(a) for a, _ in rows)
    lines += [f"  {a:<{w}}  {b}" for a, b in rows]
    lines.append("  energy per token by component:")
    tot = r["energy_per_token_j"] or 1.0
    for k, v in sorted(r["energy_breakdown_j"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    {k:<12} {_fmt(v, 'J'):>12}  {v / tot:6.1%}")
    return "\n".join(lines)


def run(args):
    from ..arch import evaluate, run_sweep, load_params, plan
    if args.sweep:
        res = run_sweep(args.out, plots=not args.no_plots)
        print(f"sweep: {res['rows']} design points + {res['scaling_rows']} scaling points, model "
              f"{res['model_seconds']:.2f} s, total {res['seconds']:.2f} s")
        for f in res["files"]:
            print(f"  wrote {f}")
        return 0
    _check(args)
    params = load_params(args.params) if args.params else None
    kw = dict(slc_map=args.slc_map, svd=not args.no_svd, chips=args.chips, batch=args.batch,
              gen=args.gen, params=params)
    if args.design in ("hyflexpim", "slc-only"):
        kw["pus_per_layer"] = args.pus_per_layer
    elif args.pus_per_layer is not None:
        raise ValueError(f"pus-per-layer applies to hyflexpim and slc-only, not {args.design}")
    r = evaluate(args.model, args.seq, args.slc, args.design, **kw)
    if args.placement:
        if args.design not in ("hyflexpim", "slc-only"):
            raise ValueError("placement applies to hyflexpim and slc-only only")
        kw.pop("params")
        pl = plan(args.model, args.seq, args.slc, args.design, params=params, **kw)
        from pathlib import Path
        Path(args.placement).parent.mkdir(parents=True, exist_ok=True)
        Path(args.placement).write_text(json.dumps({"summary": pl.summary(), "tiles": pl.placement()}))
        print(f"wrote {args.placement}", file=sys.stderr)
    if args.json:
        print(json.dumps(r, sort_keys=True))
    else:
        print(_table(r))
    return 0
