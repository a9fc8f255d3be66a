"""``hyflexpim perf --report``: every comparison of the published evaluation (DESIGN.md s6).

Rows (:func:`report_rows`, the ``--json`` output and ``report.csv``)::

    {"metric": "speedup" | "linear_energy_efficiency" | "energy_efficiency"
               | "area_efficiency" | "scaling",
     "model": ..., "workload": "glue" | "wikitext2" | "ptb" | "cifar10", "seq": int,
     "slc": float, "baseline": "asadi" | "asadi_dagger" | "sprint" | "nmp" | "non_pim"
               | "1pu" | "2chips", "design": ..., "value": float}

``value`` is HyFlexPIM's figure over the baseline's (throughput, tokens per joule, tokens
per second and mm^2); for ``scaling`` the configuration's throughput over the baseline
configuration's, ``design`` naming it ("2pu", "4chips", "8chips").

Hardware budgets: HyFlexPIM and a baseline of a speed-up or energy row run on the same
chips (the larger of what HyFlexPIM and the SLC-only mapping need: ASADI's "same memory
capacity"); area efficiency puts each design on the chips it needs itself (the digital
designs on the area of the chips HyFlexPIM needs: their equal-area budget). Decoders run
their workload's way: all tokens of a sequence at once (``gen = 0``).
"""

import time
from pathlib import Path

from .evaluate import evaluate, ENERGY_KEYS
from .mapper import FitError, plan
from .sweep import write_csv
from .workloads import MODEL_WORKLOAD, WORKLOADS

__all__ = ["REPORT_MODELS", "REPORT_SEQS", "REPORT_SLC", "ENERGY_BASELINES", "report_rows",
           "slc_only_rows", "breakdown_rows", "run_report", "budget"]

REPORT_MODELS = ("bert-base", "bert-large", "gpt2", "llama-3.2-1b", "vit-base")
REPORT_SEQS = (128, 256, 512, 1024, 2048, 4096, 8192)
REPORT_SLC = (0.05, 0.1, 0.2)
#: Baseline key of the rows -> design name of :func:`.evaluate.evaluate`.
ENERGY_BASELINES = {"asadi": "asadi", "asadi_dagger": "asadi-dagger", "sprint": "sprint",
                    "nmp": "nmp", "non_pim": "non-pim"}
SPEEDUP_BASELINES = ("asadi_dagger", "sprint")


def budget(model, seq, slc, schedule=None):
    """Chips of the comparison: the larger of what HyFlexPIM and SLC-only need."""
    need = [plan(model, seq, s, d, gen=0, schedule=schedule).chips_per_pipeline
            for d, s in (("hyflexpim", slc), ("slc-only", 1.0))]
    return max(need)


def _eval(model, seq, slc, design, chips=None, **kw):
    kw.setdefault("gen", 0)
    return evaluate(model, seq, slc, design, chips=chips, **kw)


def _row(metric, model, seq, slc, baseline, design, value):
    return {"metric": metric, "model": model, "workload": MODEL_WORKLOAD[model], "seq": seq,
            "slc": slc, "baseline": baseline, "design": design, "value": float(value)}


def report_rows(models=REPORT_MODELS, seqs=REPORT_SEQS, slcs=REPORT_SLC, schedule=None, skipped=None):
    """Every row of the report (see the module docstring); points that do not fit are
    left out and, when ``skipped`` is a list, appended to it as ``(what, reason)``."""
    skipped = [] if skipped is None else skipped
    rows = []
    kw = dict(schedule=schedule)
    for m in models:
        wl_seq = WORKLOADS[MODEL_WORKLOAD[m]].seq
        for f in slcs:
            # speed-up vs sequence length
            for s in seqs:
                try:
                    chips = budget(m, s, f, schedule)
                    hy = _eval(m, s, f, "hyflexpim", chips, **kw)
                    for b in SPEEDUP_BASELINES:
                        r = _eval(m, s, f, ENERGY_BASELINES[b], chips, **kw)
                        rows.append(_row("speedup", m, s, f, b, "hyflexpim",
                                         hy["tokens_per_s"] / r["tokens_per_s"]))
                except FitError as exc:
                    skipped.append((f"speedup {m} seq {s} SLC {f:.0%}", str(exc)))
            # energy and area at the workload's sequence length
            try:
                chips = budget(m, wl_seq, f, schedule)
                hy = _eval(m, wl_seq, f, "hyflexpim", chips, **kw)
                for b, d in ENERGY_BASELINES.items():
                    try:
                        r = _eval(m, wl_seq, f, d, None if b == "asadi" else chips, **kw)
                    except FitError as exc:
                        skipped.append((f"energy {m} {b} SLC {f:.0%}", str(exc)))
                        continue
                    rows.append(_row("energy_efficiency", m, wl_seq, f, b, "hyflexpim",
                                     r["energy_per_token_j"] / hy["energy_per_token_j"]))
                    rows.append(_row("linear_energy_efficiency", m, wl_seq, f, b, "hyflexpim",
                                     r["linear_energy_per_token_j"] / hy["linear_energy_per_token_j"]))
                own = _eval(m, wl_seq, f, "hyflexpim", **kw)
                for b, d in ENERGY_BASELINES.items():    # each on the chips it needs itself
                    r = _eval(m, wl_seq, f, d, **kw)
                    rows.append(_row("area_efficiency", m, wl_seq, f, b, "hyflexpim",
                                     own["area_efficiency"] / r["area_efficiency"]))
            except FitError as exc:
                skipped.append((f"energy/area {m} SLC {f:.0%}", str(exc)))
    for f in slcs:
        if "gpt2" in models:
            s = WORKLOADS["wikitext2"].seq
            one = _eval("gpt2", s, f, "hyflexpim", 1, pus_per_layer=1, **kw)
            two = _eval("gpt2", s, f, "hyflexpim", 1, pus_per_layer=2, **kw)
            rows.append(_row("scaling", "gpt2", s, f, "1pu", "2pu", two["tokens_per_s"] / one["tokens_per_s"]))
        if "llama-3.2-1b" in models:
            s = WORKLOADS["ptb"].seq
            try:
                base = _eval("llama-3.2-1b", s, f, "hyflexpim", 2, **kw)
                for c in (4, 8):
                    r = _eval("llama-3.2-1b", s, f, "hyflexpim", c, **kw)
                    rows.append(_row("scaling", "llama-3.2-1b", s, f, "2chips", f"{c}chips",
                                     r["tokens_per_s"] / base["tokens_per_s"]))
            except FitError as exc:
                skipped.append((f"scaling llama-3.2-1b SLC {f:.0%}", str(exc)))
    return rows


def slc_only_rows(models=REPORT_MODELS, seqs=REPORT_SEQS, slcs=REPORT_SLC):
    """HyFlexPIM over the SLC-only mapping (same chips), both schedules."""
    out = []
    for m in models:
        for s in seqs:
            for f in slcs:
                row = {"model": m, "seq": s, "slc": f}
                for sch in ("sequence", "overlap"):
                    try:
                        chips = budget(m, s, f, sch)
                        hy = _eval(m, s, f, "hyflexpim", chips, schedule=sch)
                        so = _eval(m, s, f, "slc-only", chips, schedule=sch)
                        row[f"speedup_{sch}"] = hy["tokens_per_s"] / so["tokens_per_s"]
                        row[f"bottleneck_{sch}"] = hy["bottleneck"]
                        if sch == "sequence":
                            row.update(chips=chips, hyflexpim_tokens_per_s=hy["tokens_per_s"],
                                       slc_only_tokens_per_s=so["tokens_per_s"],
                                       copies=f"{hy['mapping']['copies_qkv']}/{hy['mapping']['copies_post']}"
                                              f" vs {so['mapping']['copies_qkv']}/{so['mapping']['copies_post']}")
                    except FitError as exc:
                        row[f"speedup_{sch}"] = None
                        row[f"bottleneck_{sch}"] = str(exc)
                out.append(row)
    return out


def breakdown_rows(models=("bert-large", "gpt2"), seqs=REPORT_SEQS, slc=0.1, schedule=None):
    """HyFlexPIM's energy per token by component across sequence lengths."""
    out = []
    for m in models:
        for s in seqs:
            try:
                r = _eval(m, s, slc, "hyflexpim", schedule=schedule)
            except FitError:
                continue
            row = {"model": m, "seq": s, "slc": slc, "total_j": r["energy_per_token_j"],
                   "linear_j": r["linear_energy_per_token_j"]}
            row.update({k: r["energy_breakdown_j"][k] for k in ENERGY_KEYS})
            out.append(row)
    return out


def _fmt(v):
    return "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))


def _markdown(rows, so_rows, bd_rows, skipped, seconds):
    lines = ["# HyFlexPIM architecture model: the published evaluation's comparisons", "",
             "Generated by `hyflexpim perf --report` (model time "
             f"{seconds:.1f} s). Values are HyFlexPIM's figure over the baseline's. "
             "Parameters and their sources: constraints/hyflexpim_params.json, "
             "constraints/baselines.json; method: docs/architecture.md.", ""]

    def table(metric, baseline):
        sel = [r for r in rows if r["metric"] == metric and r["baseline"] == baseline]
        if not sel:
            return []
        models = list(dict.fromkeys(r["model"] for r in sel))
        seqs = sorted({r["seq"] for r in sel})
        slcs = sorted({r["slc"] for r in sel})
        out = [f"| model | SLC | " + " | ".join(str(s) for s in seqs) + " |",
               "|---|---|" + "---|" * len(seqs)]
        for m in models:
            for f in slcs:
                vals = {r["seq"]: r["value"] for r in sel if r["model"] == m and r["slc"] == f}
                out.append(f"| {m} | {f:.0%} | " + " | ".join(_fmt(vals.get(s)) for s in seqs) + " |")
        return out + [""]

    for b in SPEEDUP_BASELINES:
        lines += [f"## Speed-up over {b} vs sequence length", ""] + table("speedup", b)
    lines += ["## HyFlexPIM over the SLC-only mapping (same chips)", "",
              "| model | seq | SLC | chips | tokens/s HyFlexPIM | tokens/s SLC-only | copies qkv/post | "
              "speed-up (sequence) | bottleneck | speed-up (overlap) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in so_rows:
        lines.append(f"| {r['model']} | {r['seq']} | {r['slc']:.0%} | {_fmt(r.get('chips'))} | "
                     f"{_fmt(r.get('hyflexpim_tokens_per_s'))} | {_fmt(r.get('slc_only_tokens_per_s'))} | "
                     f"{r.get('copies', '-')} | {_fmt(r.get('speedup_sequence'))} | "
                     f"{r.get('bottleneck_sequence')} | {_fmt(r.get('speedup_overlap'))} |")
    lines.append("")
    for metric, title in (("energy_efficiency", "End-to-end energy efficiency"),
                          ("linear_energy_efficiency", "Linear-layer energy efficiency"),
                          ("area_efficiency", "Area efficiency (tokens/s/mm^2, each design on its own chips)")):
        sel = [r for r in rows if r["metric"] == metric]
        if not sel:
            continue
        bases = list(dict.fromkeys(r["baseline"] for r in sel))
        lines += [f"## {title} (workload sequence lengths)", "",
                  "| model | workload | seq | SLC | " + " | ".join(bases) + " |",
                  "|---|---|---|---|" + "---|" * len(bases)]
        keys = list(dict.fromkeys((r["model"], r["slc"]) for r in sel))
        for m, f in keys:
            vals = {r["baseline"]: r for r in sel if r["model"] == m and r["slc"] == f}
            any_r = next(iter(vals.values()))
            lines.append(f"| {m} | {any_r['workload']} | {any_r['seq']} | {f:.0%} | "
                         + " | ".join(_fmt(vals[b]["value"] if b in vals else None) for b in bases) + " |")
        lines.append("")
    lines += ["## Energy per token by component (HyFlexPIM, SLC 10%, uJ)", "",
              "| model | seq | total | linear | " + " | ".join(ENERGY_KEYS) + " |",
              "|---|---|---|---|" + "---|" * len(ENERGY_KEYS)]
    for r in bd_rows:
        lines.append(f"| {r['model']} | {r['seq']} | {r['total_j'] * 1e6:.4g} | {r['linear_j'] * 1e6:.4g} | "
                     + " | ".join(f"{r[k] * 1e6:.3g}" for k in ENERGY_KEYS) + " |")
    lines.append("")
    sc = [r for r in rows if r["metric"] == "scaling"]
    if sc:
        lines += ["## Scaling", "", "| model | seq | SLC | configuration | over | throughput ratio |",
                  "|---|---|---|---|---|---|"]
        for r in sc:
            lines.append(f"| {r['model']} | {r['seq']} | {r['slc']:.0%} | {r['design']} | {r['baseline']} | "
                         f"{r['value']:.3g} |")
        lines.append("")
    if skipped:
        lines += ["## Points left out (do not fit)", ""] + [f"* {w}: {why}" for w, why in skipped] + [""]
    return "\n".join(lines)


def _plots(outdir, rows, bd_rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []
    for b in SPEEDUP_BASELINES:
        sel = [r for r in rows if r["metric"] == "speedup" and r["baseline"] == b]
        models = list(dict.fromkeys(r["model"] for r in sel))
        if not models:
            continue
        fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.2), squeeze=False)
        for ax, m in zip(axes[0], models):
            for f in sorted({r["slc"] for r in sel}):
                pts = sorted((r["seq"], r["value"]) for r in sel if r["model"] == m and r["slc"] == f)
                ax.plot(*zip(*pts), marker="o", label=f"SLC {f:.0%}")
            ax.axhline(1.0, color="grey", lw=0.5)
            ax.set_xscale("log", base=2)
            ax.set_title(m, fontsize=9)
            ax.set_xlabel("sequence length")
        axes[0][0].set_ylabel(f"speed-up over {b}")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        name = f"speedup_{b}.png"
        fig.savefig(outdir / name, dpi=100)
        plt.close(fig)
        files.append(name)
    models = list(dict.fromkeys(r["model"] for r in bd_rows))
    if models:
        fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.5), squeeze=False)
        for ax, m in zip(axes[0], models):
            sel = [r for r in bd_rows if r["model"] == m]
            x = list(range(len(sel)))
            bottom = [0.0] * len(sel)
            for k in ENERGY_KEYS:
                v = [r[k] * 1e6 for r in sel]
                ax.bar(x, v, bottom=bottom, label=k)
                bottom = [a + c for a, c in zip(bottom, v)]
            ax.set_xticks(x)
            ax.set_xticklabels([str(r["seq"]) for r in sel], fontsize=7)
            ax.set_title(f"{m}, SLC 10%", fontsize=9)
            ax.set_xlabel("sequence length")
            ax.set_ylabel("uJ per token")
        axes[0][0].legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(outdir / "energy_breakdown.png", dpi=100)
        plt.close(fig)
        files.append("energy_breakdown.png")
    return files


def run_report(outdir, models=REPORT_MODELS, seqs=REPORT_SEQS, slcs=REPORT_SLC, plots=True,
               schedule=None):
    """Write report.md, report.csv, report.json, slc_only.csv, energy_breakdown.csv and
    (``plots``) PNG figures into ``outdir``; return the rows and the file paths."""
    import json
    outdir = Path(outdir)
    t0 = time.perf_counter()
    skipped = []
    rows = report_rows(models, seqs, slcs, schedule, skipped)
    so = slc_only_rows(models, seqs, slcs)
    bd = breakdown_rows(tuple(m for m in ("bert-large", "gpt2") if m in models), seqs, schedule=schedule)
    seconds = time.perf_counter() - t0
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "report.md").write_text(_markdown(rows, so, bd, skipped, seconds))
    write_csv(outdir / "report.csv", rows, ())
    (outdir / "report.json").write_text(json.dumps(rows))
    write_csv(outdir / "slc_only.csv", so, ())
    write_csv(outdir / "energy_breakdown.csv", bd, ())
    files = ["report.md", "report.csv", "report.json", "slc_only.csv", "energy_breakdown.csv"]
    if plots:
        files += _plots(outdir, rows, bd)
    return {"rows": rows, "seconds": seconds, "files": [str(outdir / f) for f in files]}
