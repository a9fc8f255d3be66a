"""Sweeps: models x sequence lengths x SLC rates x designs, and chip / PU scaling.

Every design point of one (model, seq, slc) row runs on the same hardware budget: the
larger of the chip counts that HyFlexPIM (at that SLC rate) and the SLC-only design
need (ASADI with FP32 weights, which needs about four times the arrays, on the chips it
needs). Decoders generate half of the sequence token by token (``gen = seq / 2``).
Points that do not fit are kept in the CSV with ``status`` = the error.
"""

import csv
import time
from pathlib import Path

from .evaluate import evaluate
from .mapper import plan, FitError, DESIGNS

__all__ = ["SWEEP_MODELS", "SWEEP_SEQS", "SWEEP_SLC", "SWEEP_DESIGNS", "sweep_rows",
           "scaling_rows", "run_sweep", "write_csv"]

SWEEP_MODELS = ("bert-base", "bert-large", "gpt2", "llama-3.2-1b", "vit-base")
SWEEP_SEQS = (128, 256, 512, 1024, 2048, 4096, 8192)
SWEEP_SLC = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
SWEEP_DESIGNS = DESIGNS
BASE_KEYS = ("model", "seq", "slc", "design", "chips", "pus_per_layer", "status", "tokens_per_s",
             "latency_s", "energy_per_token_j", "linear_energy_per_token_j", "area_mm2",
             "area_efficiency", "bottleneck")


def _row(model, seq, slc, design, res=None, status="ok", chips=None):
    row = {"model": model, "seq": seq, "slc": slc, "design": design, "status": status,
           "chips": chips, "pus_per_layer": None}
    if res is not None:
        for k in ("chips", "pus_per_layer", "tokens_per_s", "latency_s", "energy_per_token_j",
                  "linear_energy_per_token_j", "area_mm2", "area_efficiency", "bottleneck"):
            row[k] = res.get(k)
        for k, v in res["energy_breakdown_j"].items():
            row[f"e_{k}"] = v
    return row


def _budget(model, seq, slc):
    need = []
    for d, s in (("hyflexpim", slc), ("slc-only", 1.0)):
        try:
            need.append(plan(model, seq, s, d).chips_per_pipeline)
        except FitError:
            pass
    return max(need) if need else None


def sweep_rows(models=SWEEP_MODELS, seqs=SWEEP_SEQS, slcs=SWEEP_SLC, designs=SWEEP_DESIGNS):
    rows = []
    for m in models:
        for s in seqs:
            for f in slcs:
                try:
                    chips = _budget(m, s, f)
                except FitError as exc:
                    rows += [_row(m, s, f, d, status=str(exc)) for d in designs]
                    continue
                for d in designs:
                    if chips is None:
                        rows.append(_row(m, s, f, d, status="does not fit"))
                        continue
                    try:
                        c = None if d == "asadi" else chips
                        rows.append(_row(m, s, f, d, evaluate(m, s, f, d, chips=c), chips=c))
                    except FitError as exc:
                        rows.append(_row(m, s, f, d, status=str(exc), chips=chips))
    return rows


def scaling_rows(models=SWEEP_MODELS, seq=512, slc=0.1, chips_list=(1, 2, 4, 8), pus=(1, 2)):
    rows = []
    for m in models:
        for c in chips_list:
            for pp in pus:
                for d in ("hyflexpim", "slc-only"):
                    try:
                        pl = plan(m, seq, slc, d)
                        r = evaluate(m, seq, slc, d, chips=c, pus_per_layer=pp * pl.g)
                        row = _row(m, seq, slc, d, r, chips=c)
                    except FitError as exc:
                        row = _row(m, seq, slc, d, status=str(exc), chips=c)
                    row["pus_per_layer_copy_factor"] = pp
                    rows.append(row)
    return rows


def write_csv(path, rows, first=BASE_KEYS):
    """Write ``rows`` (dicts) as CSV: the ``first`` columns, then every other key in order."""
    keys = list(first)
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)


def _plots(outdir, rows, scal):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in rows if r["status"] == "ok"]
    models = sorted({r["model"] for r in ok})
    files = []
    # vs sequence length (hyflexpim at 10% SLC, all designs)
    for metric, label, fname in (("tokens_per_s", "tokens / s", "throughput_vs_seq.png"),
                                 ("energy_per_token_j", "energy per token (J)", "energy_vs_seq.png")):
        fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.5), squeeze=False)
        for ax, m in zip(axes[0], models):
            for d in SWEEP_DESIGNS:
                pts = sorted((r["seq"], r[metric]) for r in ok
                             if r["model"] == m and r["design"] == d and abs(r["slc"] - 0.1) < 1e-9)
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=d)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{m}, SLC 10%")
            ax.set_xlabel("sequence length")
            ax.set_ylabel(label)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(outdir / fname, dpi=100)
        plt.close(fig)
        files.append(fname)
    # vs SLC rate (hyflexpim, seq 512)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for m in models:
        pts = sorted((r["slc"], r["tokens_per_s"], r["energy_per_token_j"]) for r in ok
                     if r["model"] == m and r["design"] == "hyflexpim" and r["seq"] == 512)
        if pts:
            x, t, e = zip(*pts)
            axes[0].plot(x, t, marker="o", label=m)
            axes[1].plot(x, e, marker="o", label=m)
    axes[0].set_ylabel("tokens / s")
    axes[1].set_ylabel("energy per token (J)")
    for ax in axes:
        ax.set_xlabel("SLC rate")
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle("HyFlexPIM vs SLC rate, seq 512")
    fig.tight_layout()
    fig.savefig(outdir / "vs_slc.png", dpi=100)
    plt.close(fig)
    files.append("vs_slc.png")
    # energy breakdown bars (seq 512, SLC 10%)
    keys = sorted({k for r in ok for k in r if k.startswith("e_")})
    labels, stacks = [], {k: [] for k in keys}
    for m in models:
        for d in SWEEP_DESIGNS:
            sel = [r for r in ok if r["model"] == m and r["design"] == d and r["seq"] == 512
                   and abs(r["slc"] - 0.1) < 1e-9]
            if sel:
                labels.append(f"{m}\n{d}")
                for k in keys:
                    stacks[k].append(sel[0].get(k) or 0.0)
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(labels)), 4.5))
    bottom = [0.0] * len(labels)
    for k in keys:
        ax.bar(range(len(labels)), stacks[k], bottom=bottom, label=k[2:])
        bottom = [b + v for b, v in zip(bottom, stacks[k])]
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=90, fontsize=6)
    ax.set_ylabel("energy per token (J)")
    ax.set_title("energy breakdown, seq 512, SLC 10%")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(outdir / "energy_breakdown.png", dpi=100)
    plt.close(fig)
    files.append("energy_breakdown.png")
    # scaling
    sok = [r for r in scal if r["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for m in models:
        for pp in (1, 2):
            pts = sorted((r["chips"], r["tokens_per_s"]) for r in sok if r["model"] == m
                         and r["design"] == "hyflexpim" and r["pus_per_layer_copy_factor"] == pp)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=f"{m} x{pp} PUs/layer")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("chips")
    ax.set_ylabel("tokens / s")
    ax.set_title("HyFlexPIM scaling, seq 512, SLC 10%")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(outdir / "scaling.png", dpi=100)
    plt.close(fig)
    files.append("scaling.png")
    return files


def run_sweep(outdir, models=SWEEP_MODELS, seqs=SWEEP_SEQS, slcs=SWEEP_SLC, plots=True):
    """Write sweep.csv, scaling.csv and (``plots``) PNG figures into ``outdir``.

    Returns ``{"rows": n, "seconds": t, "files": [...]}``.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = sweep_rows(models, seqs, slcs)
    scal = scaling_rows(models)
    t_model = time.perf_counter() - t0
    write_csv(outdir / "sweep.csv", rows)
    write_csv(outdir / "scaling.csv", scal)
    files = ["sweep.csv", "scaling.csv"]
    if plots:
        files += _plots(outdir, rows, scal)
    return {"rows": len(rows), "scaling_rows": len(scal), "model_seconds": t_model,
            "seconds": time.perf_counter() - t0, "files": [str(outdir / f) for f in files]}
