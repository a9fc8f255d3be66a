"""``hyflexpim perf``: throughput, latency, energy and area of a model on HyFlexPIM.

Examples::

    hyflexpim perf --model bert-large --seq 512 --slc 0.1
    hyflexpim perf --workload glue --model bert-base --design asadi-dagger --json
    hyflexpim perf --model my_model.toml --seq 1024 --slc-map ranks.json
    hyflexpim perf --sweep --out build/perf
    hyflexpim perf --report --out build/report [--json]
"""

import json
import sys

NAME = "perf"
HELP = "architecture model: tokens/s, latency, energy per token and area of a transformer"

#: Upper bounds the CLI states (the Python API checks the same).
LIMITS = "seq 1..1048576, batch 1..65536, chips 1..65536, layers 1..1024"


def add_arguments(p):
    from ..arch.mapper import DESIGNS
    from ..arch.params import ADC_LAWS, SCHEDULES
    from ..arch.workloads import WORKLOADS
    p.add_argument("--model", default=None,
                   help="preset (bert-base, bert-large, gpt2, llama-3.2-1b, vit-base) or a "
                        ".json/.toml config file (default: bert-large, or the workload's model)")
    p.add_argument("--workload", default=None, help=f"{' | '.join(WORKLOADS)}: the published "
                   "evaluation's model, sequence length and all-tokens-at-once processing")
    p.add_argument("--seq", type=int, default=None,
                   help="sequence length (default 128, or the workload's; at most 1048576)")
    p.add_argument("--slc", type=float, default=0.1, help="SLC rate in [0, 1] (default 0.1)")
    p.add_argument("--design", default="hyflexpim", help=" | ".join(DESIGNS))
    p.add_argument("--slc-map", metavar="FILE", help="per-matrix SLC ranks/fractions (JSON, see docs)")
    p.add_argument("--no-svd", action="store_true",
                   help="map W unfactored, SLC share = output neurons (weight-magnitude baseline)")
    p.add_argument("--chips", type=int, help="chips of the hardware budget (default: as needed)")
    p.add_argument("--pus-per-layer", type=int,
                   help="PUs per layer (default: the one of the highest throughput on the chips)")
    p.add_argument("--batch", type=int, default=1, help="decoder sequences in flight (default 1)")
    p.add_argument("--gen", type=int,
                   help="decoder: tokens generated one by one within --seq (default seq/2; 0 with --workload)")
    p.add_argument("--schedule", default=None, help=f"{' | '.join(SCHEDULES)} (default: the parameter file's)")
    p.add_argument("--adc-law", default=None, help=f"{' | '.join(ADC_LAWS)} (default: the parameter file's)")
    p.add_argument("--params", metavar="FILE", help="parameter file (default constraints/hyflexpim_params.json)")
    p.add_argument("--baselines", metavar="FILE", help="baseline parameter file (default constraints/baselines.json)")
    p.add_argument("--placement", metavar="FILE", help="write the tile placement (JSON) of pipeline 0")
    p.add_argument("--json", action="store_true", help="print JSON (one object; with --report the row list)")
    p.add_argument("--sweep", action="store_true",
                   help="5 models x 7 lengths x 7 SLC rates x all designs + scaling: CSV and plots")
    p.add_argument("--report", action="store_true",
                   help="every comparison of the published evaluation: Markdown, CSV, JSON, plots")
    p.add_argument("--out", default=None, help="output folder of --sweep / --report "
                   "(default build/perf, build/report)")
    p.add_argument("--no-plots", action="store_true", help="--sweep / --report: no PNG plots")


def _check(args):
    from ...base import check_choice, check_float, check_int
    from ..arch.mapper import DESIGNS, MAX_BATCH, MAX_CHIPS, MAX_SEQ
    from ..arch.params import ADC_LAWS, SCHEDULES
    check_choice("design", args.design, DESIGNS)
    if args.seq is not None:
        check_int("seq", args.seq, 1, MAX_SEQ)
    try:
        check_float("slc", args.slc, 0.0, 1.0)
    except ValueError:
        raise ValueError(f"slc must be in [0, 1], not {args.slc}") from None
    for name, hi in (("chips", MAX_CHIPS), ("pus_per_layer", None), ("batch", MAX_BATCH)):
        v = getattr(args, name)
        if v is not None:
            check_int(name.replace("_", "-"), v, 1, hi)
    if args.gen is not None:
        check_int("gen", args.gen, 0)
    if args.schedule is not None:
        check_choice("schedule", args.schedule, SCHEDULES)
    if args.adc_law is not None:
        check_choice("adc-law", args.adc_law, ADC_LAWS)
    if args.sweep and args.report:
        raise ValueError("--sweep and --report are separate runs; give one")


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
            ("energy per token", f"{_fmt(r['energy_per_token_j'], 'J')} (linear layers "
                                 f"{_fmt(r['linear_energy_per_token_j'], 'J')})"),
            ("area", f"{r['area_mm2']:.1f} mm^2 ({r['chips']} chip(s)), "
                     f"{_fmt(r['area_efficiency'], 'tokens/s/mm^2')}")]
    if r.get("generated_tokens"):
        rows.append(("prefill / generated", f"{r['prefill_tokens']} / {r['generated_tokens']} tokens, "
                     f"prefill {_fmt(r['prefill_latency_s'], 's')}"))
    if r.get("pus_per_layer"):
        mp = r["mapping"]
        rows.append(("mapping", f"{mp['arrays_per_layer_copy']} arrays/layer copy "
                     f"({mp['arrays_slc']} SLC + {mp['arrays_mlc']} MLC in all, copies included), "
                     f"{r['pus_per_layer']} PU(s)/layer, copies qkv {mp['copies_qkv']} / post "
                     f"{mp['copies_post']}, {mp['chips_per_pipeline']} chip(s)/pipeline, "
                     f"{r['pipelines']} pipeline(s), schedule {r['schedule']}"))
        u = r["utilisation"]
        rows.append(("utilisation", f"arrays placed {u['analog_arrays_placed']:.1%}, busy: analog "
                     f"{u['analog_busy']:.1%}, digital PIM {u['digital_pim_busy']:.1%}, SFU "
                     f"{u['sfu_busy']:.1%}, inner bus {u['inner_bus_busy']:.1%}, global bus "
                     f"{u['global_bus_busy']:.1%}, chip link {u['chip_link_busy']:.1%}; digital "
                     f"PIM capacity {u['digital_pim_capacity']:.2%}"))
        rows.append(("bottleneck", r["bottleneck"]))
    if r.get("budget"):
        rows.append(("budget", r["budget"]))
    w = max(len(a) for a, _ in rows)
    lines += [f"  {a:<{w}}  {b}" for a, b in rows]
    lines.append("  energy per token by component:")
    tot = r["energy_per_token_j"] or 1.0
    for k, v in sorted(r["energy_breakdown_j"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    {k:<14} {_fmt(v, 'J'):>12}  {v / tot:6.1%}")
    return "\n".join(lines)


def _emit(text):
    """Print ``text`` to stdout; a closed pipe or a full device becomes one error line."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except OSError as exc:
        import os
        try:   # nothing more may reach the broken stdout, also not at interpreter exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        what = "broken pipe" if isinstance(exc, BrokenPipeError) else (exc.strerror or str(exc))
        raise ValueError(f"cannot write the output to stdout ({what})") from None


def _out_dir(path):
    """Create the output folder ``path``; one-line errors for a file in the way, no
    permission, a full disk."""
    from pathlib import Path
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"output folder {p} exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the output folder {p}: {exc.strerror or exc}") from None
    return p


def _writing(what, path, fn):
    """Run ``fn()`` (which writes ``path``) with OS errors turned into one line."""
    try:
        return fn()
    except OSError as exc:
        where = exc.filename or path
        raise ValueError(f"cannot write {what} {where}: {exc.strerror or exc}") from None


def _write_file(path, text):
    from pathlib import Path
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"placement file {p} is a directory")

    def go():
        if not p.parent.exists():
            p.parent.mkdir(parents=True)
        with open(p, "w") as fh:
            fh.write(text)
            fh.flush()
    _writing("the placement file", p, go)


def _params(args):
    import dataclasses
    from ..arch import load_params
    if args.params is None and args.baselines is None and args.adc_law is None:
        return None
    p = load_params(args.params, args.baselines)
    if args.adc_law is not None:
        p = dataclasses.replace(p, adc_law=args.adc_law)
    return p


def run(args):
    from ..arch import evaluate, run_sweep, plan, run_report
    from ..arch.mapper import PIM_DESIGNS
    from ..arch.workloads import workload
    _check(args)
    params = _params(args)
    if args.sweep or args.report:
        if params is not None or args.schedule is not None and args.sweep:
            raise ValueError("--params, --baselines, --adc-law and (with --sweep) --schedule apply "
                             "to single design points and --report's schedule only")
        out = _out_dir(args.out or ("build/perf" if args.sweep else "build/report"))
        if args.sweep:
            res = _writing("the sweep into", out, lambda: run_sweep(out, plots=not args.no_plots))
            _emit(f"sweep: {res['rows']} design points + {res['scaling_rows']} scaling points, model "
                  f"{res['model_seconds']:.2f} s, total {res['seconds']:.2f} s\n"
                  + "\n".join(f"  wrote {f}" for f in res["files"]))
            return 0
        res = _writing("the report into", out,
                       lambda: run_report(out, plots=not args.no_plots, schedule=args.schedule))
        if args.json:
            _emit(json.dumps(res["rows"]))
        else:
            _emit(f"report: {len(res['rows'])} rows, model {res['seconds']:.2f} s\n"
                  + "\n".join(f"  wrote {f}" for f in res["files"]))
        return 0
    model, seq, gen = args.model, args.seq, args.gen
    if args.workload is not None:
        wl = workload(args.workload)
        model = model or wl.models[0]
        seq = wl.seq if seq is None else seq
        gen = wl.gen if gen is None else gen
    model = model or "bert-large"
    seq = 128 if seq is None else seq
    kw = dict(slc_map=args.slc_map, svd=not args.no_svd, chips=args.chips, batch=args.batch,
              gen=gen, params=params, schedule=args.schedule)
    if args.design in PIM_DESIGNS:
        kw["pus_per_layer"] = args.pus_per_layer
    elif args.pus_per_layer is not None:
        raise ValueError(f"pus-per-layer applies to {', '.join(PIM_DESIGNS)}, not {args.design}")
    r = evaluate(model, seq, args.slc, args.design, **kw)
    if args.placement:
        if args.design not in PIM_DESIGNS:
            raise ValueError(f"placement applies to {', '.join(PIM_DESIGNS)} only")
        pl = plan(model, seq, args.slc, args.design, **kw)
        _write_file(args.placement, json.dumps({"summary": pl.summary(), **pl.placement()}))
        print(f"wrote {args.placement}", file=sys.stderr)
    _emit(json.dumps(r, sort_keys=True) if args.json else _table(r))
    return 0
