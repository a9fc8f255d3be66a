"""The hybrid SLC/MLC claim, measured: accuracy vs SLC rate k, policy and noise level.

    .venv/bin/python benchmarks/claim_sweep.py --task minilm --small [--eval-limit N]
        [--parts default,noise,paper,control,faithful] [--dir build/claim/TASK]
        [--ks 0,5,10,20,30,50,100] [--seeds 3] [--bers 0.001,0.0025,0.005,0.01,0.02,0.0404]
        [--noise-ks 0,10,30,100] [--noise-seeds 1] [--paper-stds 0.025,matched]
        [--report-only]

Parts (DESIGN.md 5; issue 13):

``default``  hardware mode, the default device (NeuRRAM one-day fit at its own 2-bit
             BER 4.04%), fast backend, every policy x k x seed.
``noise``    the same device re-calibrated to each BER of ``--bers`` (gradient, rank,
             magnitude; ``--noise-ks``).
``paper``    the authors' noise (two's-complement 2-bit groups, multiplicative std on MLC
             ranks only) at each std of ``--paper-stds`` (``matched``: the std whose
             implied 2-bit BER is 4.04%, :func:`~hyflexpim.models.noise.paper_std_for_ber`).
             ``--paper-prep paper`` (default for the small tasks) uses the paper's own
             preparation (U, S, V factors, head factored, |dL/dS| of the last batch);
             ``hardware`` reuses the hardware-mode factored model and its scores (for
             MiniLM, where a second fine-tune does not fit the budget).
``control``  the unfactored model fine-tuned for the same extra epochs as the factored
             one, evaluated like the ``magnitude`` policy (float, INT8, noisy at k).
``faithful`` spot checks: a few points through the golden array model on the first
             ``--faithful-limit`` examples beside the fast backend on the same examples.

Every point is appended to ``DIR/points.jsonl`` as soon as it is measured; a rerun skips
the points already there (so a long sweep spans several runs). At the end (or with
``--report-only``) ``DIR/claim.csv``, ``DIR/claim.json`` and PNGs are written. Accuracy
is reported with correct / count and the 95% Wilson interval over test examples, and the
spread (min, max, std) over noise seeds.

MiniLM evaluation batches are sorted by length and trimmed to their longest review
(attention masks with -inf and masked mean pooling make the trailing padding exactly
inert; checked by ``--check-trim``).
"""

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from hyflexpim.models.stats import wilson

PARTS = ("default", "noise", "paper", "control", "faithful")
ALL_POLICIES = ("gradient", "rank", "magnitude", "random")


def floats(text):
    return [float(x) for x in text.split(",") if x.strip()]


def trimmed_eval(task, limit=None):
    """``task.eval`` replaced by batches sorted by token count, each trimmed to its
    longest sequence (token id 0 is padding)."""
    import torch
    xs, ys = zip(*task.eval())
    x, y = torch.cat(xs), torch.cat(ys)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    lens = (x != 0).sum(1)
    order = torch.argsort(lens, stable=True)
    x, y, lens = x[order], y[order], lens[order]
    bs = task.bs if hasattr(task, "bs") else 16
    batches = []
    for i in range(0, len(y), bs):
        L = max(1, int(lens[i:i + bs].max()))
        batches.append((x[i:i + bs, :L].contiguous(), y[i:i + bs]))

    def gen():
        yield from batches
    return gen


class Store:
    """Points of one sweep directory, one JSON line each."""

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "points.jsonl"
        self.points = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    self.points[r["key"]] = r

    def has(self, key):
        return key in self.points

    def add(self, row):
        self.points[row["key"]] = row
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="minilm")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--eval-limit", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (default 2)")
    ap.add_argument("--score-batches", type=int, default=None,
                    help="batches of the before/after score figures (default all)")
    ap.add_argument("--parts", default="default,noise,paper,control")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--policies", default=",".join(ALL_POLICIES))
    ap.add_argument("--ks", default="0,5,10,20,30,50,100")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--bers", default="0.001,0.0025,0.005,0.01,0.02,0.0404")
    ap.add_argument("--noise-policies", default="gradient,rank,magnitude")
    ap.add_argument("--noise-ks", default="0,10,30,100")
    ap.add_argument("--noise-seeds", type=int, default=1)
    ap.add_argument("--paper-stds", default="0.025,matched")
    ap.add_argument("--paper-policies", default="gradient,rank,magnitude")
    ap.add_argument("--paper-ks", default="0,10,30,100")
    ap.add_argument("--paper-prep", default=None, help="paper or hardware (see module doc)")
    ap.add_argument("--control-ks", default="0,10,30,100")
    ap.add_argument("--faithful-limit", type=int, default=50)
    ap.add_argument("--faithful-points", default="gradient:0,gradient:100,rank:10")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check-trim", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    parts = [p for p in a.parts.split(",") if p]
    if any(p not in PARTS for p in parts):
        sys.exit(f"parts must be of {', '.join(PARTS)}")
    d = Path(a.dir or f"build/claim/{a.task}{'-small' if a.small else ''}")
    store = Store(d)
    if not a.report_only:
        run_points(a, parts, store)
    report(store, d)


def run_points(a, parts, store):
    import torch
    torch.set_num_threads(a.threads)
    from hyflexpim.models import accuracy as acc
    from hyflexpim.models.algo_tasks import get_task
    from hyflexpim.models.device import load_device, DEFAULT_MLC_BER
    from hyflexpim.models.noise import paper_std_for_ber, paper_ber
    from hyflexpim.models.svd import evaluate, finetune
    from hyflexpim.models import datasets as ds

    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    task = get_task(a.task, small=a.small, eval_limit=a.eval_limit)
    t0 = time.time()
    prep = acc.prepare(task, "hardware", ft_epochs=a.epochs, quiet=True,
                       score_batches=a.score_batches)
    log(f"prepared in {time.time() - t0:.0f} s: {prep.figures}")
    minilm = a.task == "minilm"
    full_eval = task.eval
    if minilm:
        if a.check_trim:
            t = time.time()
            v0 = evaluate(prep.factored, full_eval, task.metric)
            t1 = time.time() - t
            task.eval = trimmed_eval(task)
            t = time.time()
            v1 = evaluate(prep.factored, task.eval, task.metric)
            log(f"trim check: untrimmed {v0:.4f} ({t1:.0f} s), trimmed {v1:.4f} "
                f"({time.time() - t:.0f} s)")
            store.add(dict(key="trim-check", part="check", untrimmed=v0, trimmed=v1,
                           untrimmed_s=t1, trimmed_s=time.time() - t))
        else:
            task.eval = trimmed_eval(task)
    n = sum(len(b[1]) for b in task.eval())
    higher = task.higher_is_better

    def point(key, fn, **meta):
        if store.has(key):
            return store.points[key]["metric"]
        t = time.time()
        v = fn()
        row = dict(key=key, metric=v, n=meta.pop("n", n), seconds=time.time() - t, **meta)
        if higher:
            row["correct"] = int(round(v * row["n"]))
        store.add(row)
        log(f"{key}: {v:.4f} ({row['seconds']:.0f} s)")
        return v

    ev = lambda m: evaluate(m, task.eval, task.metric)  # noqa: E731
    point("ref|float-base", lambda: ev(prep.base), part="ref")
    point("ref|float-factored", lambda: ev(prep.factored), part="ref")
    for kind, pol in (("factored", "gradient"), ("base", "magnitude")):
        mp = acc.mapping_for(prep, pol, 0)
        point(f"ref|int8-{kind}", lambda: acc.evaluate_mapping(prep, mp, noise=False,
                                                               backend="int8"), part="ref")
    store.add(dict(key="meta", part="meta", task=a.task, small=a.small, n=n,
                   eval_limit=a.eval_limit, epochs=a.epochs, figures=prep.figures,
                   default_ber=DEFAULT_MLC_BER))

    def hw(part, pol, k, s, dev, ber, backend="fast", prep_=None, tag=""):
        p = prep_ or prep
        key = f"{part}|{pol}|k{k:g}|ber{ber:g}|s{s}{tag}"
        mp = acc.mapping_for(p, pol, k, seed=s)
        point(key, lambda: acc.evaluate_mapping(p, mp, seed=s, backend=backend, ber=None,
                                                device=dev),
              part=part, policy=pol, k=k, seed=s, ber=ber, backend=backend)

    pols = [p for p in a.policies.split(",") if p]
    ks = floats(a.ks)
    if "default" in parts:
        dev = load_device(None)
        for pol in pols:
            for k in ks:
                for s in range(a.seeds):
                    hw("default", pol, k, s, dev, dev.ber("mlc"))
    if "noise" in parts:
        for ber in floats(a.bers):
            dev = load_device(None, ber=ber)
            for pol in [p for p in a.noise_policies.split(",") if p]:
                for k in floats(a.noise_ks):
                    for s in range(a.noise_seeds):
                        if math.isclose(ber, DEFAULT_MLC_BER) and store.has(
                                f"default|{pol}|k{k:g}|ber{dev.ber('mlc'):g}|s{s}"):
                            continue            # the default part measured it
                        hw("noise", pol, k, s, dev, ber)
    if "control" in parts:
        path = ds.cache_dir() / "checkpoints" / f"{task.key()}-control-ft{a.epochs}.pt"
        ctrl = copy.deepcopy(prep.base)
        if path.is_file():
            ctrl.load_state_dict(torch.load(path, weights_only=True))
        else:
            t = time.time()
            finetune(ctrl, task.train, task.loss, epochs=a.epochs, lr=task.ft_lr, quiet=True,
                     desc="control")
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(ctrl.state_dict(), path)
            log(f"control fine-tuned in {time.time() - t:.0f} s")
        cprep = copy.copy(prep)
        cprep.base = ctrl.eval()
        point("ref|float-control", lambda: ev(cprep.base), part="ref")
        mp0 = acc.mapping_for(cprep, "magnitude", 0)
        point("ref|int8-control", lambda: acc.evaluate_mapping(cprep, mp0, noise=False,
                                                               backend="int8"), part="ref")
        dev = load_device(None)
        for k in floats(a.control_ks):
            for s in range(a.seeds):
                hw("control", "magnitude", k, s, dev, dev.ber("mlc"), prep_=cprep)
    if "paper" in parts:
        pmode = a.paper_prep or ("hardware" if a.task == "minilm" else "paper")
        pprep = prep if pmode == "hardware" else acc.prepare(
            task, "paper", ft_epochs=a.epochs, quiet=True, score_batches=a.score_batches)
        for kind, pol in (("factored", "gradient"), ("base", "magnitude")):
            mp = acc.mapping_for(pprep, pol, 0)
            point(f"ref|paper-int8-{kind}", lambda: acc.evaluate_mapping(
                pprep, mp, noise=False, backend="paper"), part="ref")
        for std_txt in [x for x in a.paper_stds.split(",") if x]:
            std = paper_std_for_ber(DEFAULT_MLC_BER) if std_txt == "matched" else float(std_txt)
            for pol in [p for p in a.paper_policies.split(",") if p]:
                for k in floats(a.paper_ks):
                    for s in range(a.seeds):
                        key = f"paper|{pol}|k{k:g}|std{std:.4g}|s{s}"
                        mp = acc.mapping_for(pprep, pol, k, seed=s)
                        point(key, lambda: acc.evaluate_mapping(pprep, mp, seed=s,
                                                                backend="paper", paper_std=std),
                              part="paper", policy=pol, k=k, seed=s, std=std,
                              paper_ber=paper_ber(std), prep=pmode)
    if "faithful" in parts:
        lim = a.faithful_limit
        full = task.eval
        task.eval = trimmed_eval(task, lim) if minilm else _limited(task, lim)
        nf = sum(len(b[1]) for b in task.eval())
        dev = load_device(None)
        for spec in a.faithful_points.split(","):
            pol, k = spec.split(":")
            for be in ("fast", "faithful"):
                key = f"faithful|{pol}|k{float(k):g}|{be}|n{nf}"
                mp = acc.mapping_for(prep, pol, float(k), seed=0)
                point(key, lambda: acc.evaluate_mapping(prep, mp, seed=0, backend=be, ber=None,
                                                        device=dev),
                      part="faithful", policy=pol, k=float(k), seed=0, backend=be, n=nf,
                      ber=dev.ber("mlc"))
        task.eval = full


def _limited(task, lim):
    import torch
    xs, ys = zip(*task.eval())
    x, y = torch.cat(xs)[:lim], torch.cat(ys)[:lim]

    def gen():
        for i in range(0, len(y), 64):
            yield x[i:i + 64], y[i:i + 64]
    return gen


def _agg(rows, higher):
    v = np.array([r["metric"] for r in rows])
    out = dict(mean=float(v.mean()), std=float(v.std(ddof=1)) if len(v) > 1 else 0.0,
               min=float(v.min()), max=float(v.max()), seeds=len(v))
    if higher:
        c, nn = sum(r["correct"] for r in rows), sum(r["n"] for r in rows)
        out["correct"], out["count"] = c, nn
        out["ci95"] = list(wilson(c, nn))          # pooled over seeds
        r0 = rows[0]
        out["ci95_one_seed"] = list(wilson(r0["correct"], r0["n"]))
    return out


def report(store, d):
    P = store.points
    meta = P.get("meta", {})
    higher = "correct" in next((r for r in P.values() if r.get("part") == "default"), {"correct": 1})
    refs = {k.split("|", 1)[1]: v["metric"] for k, v in P.items() if v.get("part") == "ref"}
    groups = {}
    for r in P.values():
        if r.get("part") in ("default", "noise", "control"):
            g = ("hardware", r["part"] if r["part"] == "control" else "device", r["ber"],
                 r["policy"], r["k"])
        elif r.get("part") == "paper":
            g = ("paper", r.get("prep"), r["std"], r["policy"], r["k"])
        else:
            continue
        groups.setdefault(g, []).append(r)
    summary = {"meta": meta, "refs": refs, "points": []}
    rows_csv = []
    for g in sorted(groups, key=lambda g: tuple(str(x) for x in g[:3]) + (g[3], g[4])):
        mode, kind, level, pol, k = g
        agg = _agg(groups[g], higher)
        ref_name = ("int8-control" if kind == "control" else
                    ("paper-int8-" if mode == "paper" else "int8-")
                    + ("base" if pol == "magnitude" else "factored"))
        e = dict(mode=mode, kind=kind, level=level, policy=pol, k=k, ref=ref_name,
                 paper_ber=groups[g][0].get("paper_ber"),
                 ref_metric=refs.get(ref_name), **agg)
        summary["points"].append(e)
        rows_csv.append({k2: (json.dumps(v) if isinstance(v, list) else v) for k2, v in e.items()})
    # the region where the hybrid matters, lowest k within 1 point, per level and policy
    findings = []
    levels = sorted({(e["mode"], e["kind"], e["level"]) for e in summary["points"]},
                    key=lambda t: tuple(str(x) for x in t))
    for mode, kind, level in levels:
        for pol in ALL_POLICIES:
            es = sorted([e for e in summary["points"] if (e["mode"], e["kind"], e["level"],
                         e["policy"]) == (mode, kind, level, pol)], key=lambda e: e["k"])
            if not es or es[0]["ref_metric"] is None:
                continue
            ref = es[0]["ref_metric"]
            at0 = next((e["mean"] for e in es if e["k"] == 0), None)
            ok = [e["k"] for e in es if e["mean"] >= ref - 0.01]
            at100 = next((e["mean"] for e in es if e["k"] == 100), None)
            ok100 = [e["k"] for e in es if at100 is not None and e["mean"] >= at100 - 0.01]
            findings.append(dict(mode=mode, kind=kind, level=level, policy=pol, ref=ref,
                                 all_mlc=at0, all_mlc_loss=None if at0 is None else ref - at0,
                                 hybrid_matters=(at0 is not None and ref - at0 > 0.01
                                                 and any(k > 0 for k in ok)),
                                 lowest_k_within_1pt=min(ok) if ok else None,
                                 all_slc=at100,
                                 lowest_k_within_1pt_of_all_slc=min(ok100) if ok100 else None,
                                 ks=[e["k"] for e in es]))
    summary["findings"] = findings
    summary["checks"] = {k: v for k, v in P.items() if v.get("part") in ("check", "faithful")}
    (d / "claim.json").write_text(json.dumps(summary, indent=1))
    if rows_csv:
        import csv
        with (d / "claim.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows_csv[0]))
            w.writeheader()
            w.writerows(rows_csv)
    plot(summary, d)
    (d / "claim.md").write_text(markdown(summary))
    print(f"wrote {d / 'claim.json'}, {d / 'claim.csv'}, {d / 'claim.md'} and "
          f"{d / 'claim.png'}", file=sys.stderr)


def markdown(summary):
    """Tables of the sweep: per level a policy x k table of mean (min-max over seeds),
    the pooled 95% Wilson interval at k = 0 and 100; findings; checks."""
    pts, out = summary["points"], []
    meta = summary.get("meta", {})
    out.append(f"task {meta.get('task')}{' --small' if meta.get('small') else ''}, "
               f"n = {meta.get('n')} test examples per seed")
    out.append("")
    out.append("| reference | metric |")
    out.append("|---|---|")
    for k, v in summary["refs"].items():
        out.append(f"| {k} | {v:.4f} |")
    levels = sorted({(e["mode"], e["kind"], e["level"]) for e in pts},
                    key=lambda t: (t[0], str(t[1]), float(t[2])))
    for mode, kind, level in levels:
        es = [e for e in pts if (e["mode"], e["kind"], e["level"]) == (mode, kind, level)]
        ks = sorted({e["k"] for e in es})
        pb = es[0].get("paper_ber")
        name = (f"paper std {float(level):.4g} (implied 2-bit BER {pb:.3g})"
                if mode == "paper" else f"{kind} BER {float(level):.4g}")
        out += ["", f"**{name}** (mean over {es[0]['seeds']} seeds, min-max; CI: pooled "
                    f"95% Wilson over seeds x examples)", "",
                "| policy | " + " | ".join(f"k={k:g}" for k in ks) + " | ref |",
                "|---|" + "---|" * (len(ks) + 1)]
        for pol in ALL_POLICIES:
            row = {e["k"]: e for e in es if e["policy"] == pol}
            if not row:
                continue
            cells = []
            for k in ks:
                e = row.get(k)
                if e is None:
                    cells.append("")
                    continue
                c = f"{e['mean']:.3f} ({e['min']:.3f}-{e['max']:.3f})"
                if "ci95" in e and k in (ks[0], ks[-1]):
                    c += f" [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]"
                cells.append(c)
            ref = next(iter(row.values()))["ref_metric"]
            out.append(f"| {pol} | " + " | ".join(cells) + f" | {ref:.3f} |")
    out += ["", "| level | policy | ref (INT8, noise-free) | all-MLC | loss | all-SLC | hybrid "
                "matters | lowest k within 1 pt of ref | of all-SLC |",
            "|---|---|---|---|---|---|---|---|---|"]
    for f in summary["findings"]:
        out.append(f"| {f['mode']} {f['kind']} {float(f['level']):.4g} | {f['policy']} | "
                   f"{f['ref']:.3f} | {f['all_mlc'] if f['all_mlc'] is None else round(f['all_mlc'], 3)} | "
                   f"{'' if f['all_mlc_loss'] is None else round(f['all_mlc_loss'], 3)} | "
                   f"{'' if f['all_slc'] is None else round(f['all_slc'], 3)} | "
                   f"{'yes' if f['hybrid_matters'] else 'no'} | {f['lowest_k_within_1pt']} | "
                   f"{f['lowest_k_within_1pt_of_all_slc']} |")
    if summary["checks"]:
        out += ["", "| check | value |", "|---|---|"]
        for k, v in summary["checks"].items():
            val = {x: y for x, y in v.items() if x not in ("key", "part")}
            out.append(f"| {k} | {json.dumps(val)} |")
    return "\n".join(out) + "\n"


def plot(summary, d):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pts = summary["points"]
    levels = sorted({(e["mode"], e["kind"], e["level"]) for e in pts},
                    key=lambda t: (t[0], str(t[1]), float(t[2])))
    if not levels:
        return
    cols = min(4, len(levels))
    rows = math.ceil(len(levels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (mode, kind, level) in zip(axes.flat, levels):
        for pol in ALL_POLICIES:
            es = sorted([e for e in pts if (e["mode"], e["kind"], e["level"], e["policy"])
                         == (mode, kind, level, pol)], key=lambda e: e["k"])
            if not es:
                continue
            ks = [e["k"] for e in es]
            m = [e["mean"] for e in es]
            line, = ax.plot(ks, m, marker="o", ms=3, label=pol)
            if "ci95" in es[0]:
                ax.fill_between(ks, [e["ci95_one_seed"][0] for e in es],
                                [e["ci95_one_seed"][1] for e in es], alpha=0.12,
                                color=line.get_color())
            ax.vlines(ks, [e["min"] for e in es], [e["max"] for e in es],
                      color=line.get_color(), lw=2, alpha=0.6)
        refs = summary["refs"]
        for name, ls in ((("paper-int8-factored" if mode == "paper" else "int8-factored"), "--"),
                         (("paper-int8-base" if mode == "paper" else
                           ("int8-control" if kind == "control" else "int8-base")), ":")):
            if name in refs:
                ax.axhline(refs[name], ls=ls, c="k", lw=0.8, label=name)
        if mode == "paper":
            title = f"paper noise std {float(level):.3g} ({kind} prep)"
        else:
            title = f"{'control (unfactored+ft)' if kind == 'control' else 'device'} BER {float(level):.3%}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("SLC rate k (%)")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(levels):]:
        ax.axis("off")
    meta = summary.get("meta", {})
    fig.suptitle(f"{meta.get('task')}{' (small)' if meta.get('small') else ''}: n = "
                 f"{meta.get('n')} test examples; bars: min-max over seeds, band: 95% "
                 f"Wilson of one seed", fontsize=9)
    fig.tight_layout()
    fig.savefig(d / "claim.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
