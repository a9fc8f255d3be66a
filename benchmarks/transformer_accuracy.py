"""Accuracy of a task's model through the chip (models/transformer.py): float, today's
linears-only INT8 path, the chip noise off and with noise, and one operation at a time
swapped back to float.

    .venv/bin/python benchmarks/transformer_accuracy.py [--task minilm] [--limit 1000]
        [--policy gradient] [--k 10] [--runs float,int8,int8-noise,int8-noise-faithful,
        chip,chip-noise,chip-noise-faithful,ablation] [--faithful-limit 100] [--ablation-limit 300]
        [--ber 0.0404] [--out build/transformer_accuracy.json]

Every row: metric, correct / count, 95% Wilson interval, wall seconds. The chip runs
share one programming per configuration (noise seed 0). ``chip-noise`` uses the fast
analog engine (noisy effective weights, a statistical stand-in: the faithful array
model takes ~10 s per review on the shared machine); ``chip-noise-faithful`` the golden
array model on the first ``--faithful-limit`` examples, and ``int8-noise-faithful``
the linears-only path with the golden array model on the same examples. The ablation rows (noise off,
first ``--ablation-limit`` examples) name the operation run in float; ``changed`` is
the number of examples whose prediction differs from the all-chip run on the same
examples (the paired difference that the binomial intervals hide). Results are written
after each row, so a run cut short keeps what it measured.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from hyflexpim.models.stats import wilson

RUNS = ("float", "int8", "int8-noise", "int8-noise-faithful", "chip", "chip-noise",
        "chip-noise-faithful", "ablation")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="minilm")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--limit", type=int, default=1000, help="test examples (default all 1000)")
    ap.add_argument("--full-test", action="store_true",
                    help="with --small: evaluate the small-trained model on the full task's "
                         "test split (1000 reviews; its first 200 are the small split's, and "
                         "no test review is in either training set)")
    ap.add_argument("--policy", default="gradient")
    ap.add_argument("--k", type=float, default=10.0, help="SLC rate in percent")
    ap.add_argument("--runs", default=",".join(RUNS))
    ap.add_argument("--faithful-limit", type=int, default=100)
    ap.add_argument("--ablation-limit", type=int, default=300)
    ap.add_argument("--ber", type=float, default=0.0404)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", default="build/transformer_accuracy.json")
    a = ap.parse_args()
    runs = [r for r in a.runs.split(",") if r]
    bad = [r for r in runs if r not in RUNS]
    if bad or a.limit < 1:
        sys.exit(f"runs must be of {', '.join(RUNS)} and limit >= 1")

    import torch
    torch.set_num_threads(1)
    from hyflexpim.models import accuracy as acc
    from hyflexpim.models import transformer as T, transformer_model as TM
    from hyflexpim.models.algo_tasks import get_task

    t0 = time.time()
    task = get_task(a.task, small=a.small, eval_limit=a.limit)
    prep = acc.prepare(task, "hardware", quiet=True)
    mp = acc.mapping_for(prep, a.policy, a.k)
    model = prep.base if a.policy == "magnitude" else prep.factored
    x = torch.cat([b[0] for b in task.eval()])
    y = torch.cat([b[1] for b in task.eval()]).numpy()
    if a.full_test and a.small:
        full = get_task(a.task, small=False, eval_limit=a.limit)
        xf = torch.cat([b[0] for b in full.eval()])
        yf = torch.cat([b[1] for b in full.eval()]).numpy()
        m = min(len(y), len(yf))
        assert torch.equal(xf[:m], x[:m]) and (yf[:m] == y[:m]).all(), "test splits differ"
        xtr = {tuple(r) for r in full._xt.tolist()} | {tuple(r) for r in task._xt.tolist()}
        overlap = sum(tuple(r) in xtr for r in xf.tolist())
        print(f"full test split: {len(yf)} reviews, {overlap} identical to a training review",
              file=sys.stderr)
        x, y = xf, yf
    print(f"{a.task}: {len(y)} test examples, {a.policy} k={a.k:g}, prepared in "
          f"{time.time() - t0:.0f} s", file=sys.stderr)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    res = dict(task=a.task, examples=len(y), policy=a.policy, k=a.k, ber=a.ber,
               figures={k: v for k, v in prep.figures.items()
                        if isinstance(v, (int, float, str))}, rows=[])
    preds = {}

    def row(name, pred, n, secs, **extra):
        k = int((pred == y[:n]).sum())
        lo, hi = wilson(k, n)
        r = dict(run=name, accuracy=k / n, correct=k, n=n, ci95=[lo, hi], seconds=secs, **extra)
        res["rows"].append(r)
        out.write_text(json.dumps(res, indent=1))
        print(f"{name:32s} {k / n:.4f} ({k}/{n}, 95% CI {lo:.3f}-{hi:.3f}) "
              f"{secs:.0f} s {extra or ''}", flush=True)

    def progress(tag):
        t = time.time()

        def cb(done, total):
            el = time.time() - t
            print(f"\r  {tag}: {done}/{total} ({el:.0f} s, ETA {el / done * (total - done):.0f} s)",
                  end="", file=sys.stderr, flush=True)
            if done == total:
                print(file=sys.stderr)
        return cb

    def run_chip(name, n, formats, noise, **extra):
        t = time.time()
        chip = TM.from_torch(model, mp, formats=formats, noise=noise)
        o = TM.outputs(chip, x[:n], batch_size=a.batch, progress=progress(name))
        p = o.argmax(-1)
        row(name, p, n, time.time() - t, nonfinite=chip.stats.get("nonfinite", 0), **extra)
        return p

    fmt = T.ChipFormats(attention_engine="integer")
    if "float" in runs:
        for name, mdl in (("float base", prep.base), ("float factored", prep.factored)):
            t = time.time()
            row(name, TM.outputs(mdl, x, batch_size=a.batch).argmax(-1), len(y), time.time() - t)
    from hyflexpim.models.quant import to_hardware, set_noise
    nf = min(a.faithful_limit, len(y))
    for run, name, be, n in (("int8", "linears-only INT8", "int8", len(y)),
                             ("int8-noise", "linears-only INT8 + noise (fast)", "fast", len(y)),
                             ("int8-noise-faithful", "linears-only INT8 + noise (faithful)",
                              "faithful", nf)):
        if run not in runs:
            continue
        t = time.time()
        hw = to_hardware(model, mp, be)
        set_noise(hw, seed=0, ber=a.ber if be != "int8" else None)
        p = TM.outputs(hw, x[:n], batch_size=a.batch, progress=progress(name)).argmax(-1)
        row(name, p, n, time.time() - t)
    if "chip" in runs:
        preds["chip"] = run_chip("chip, noise off", len(y), fmt, T.Noise())
    if "chip-noise" in runs:
        run_chip("chip, noise (fast arrays)", len(y), T.ChipFormats(
            attention_engine="integer", analog_engine="fast"), T.Noise(ber=a.ber))
    if "chip-noise-faithful" in runs:
        n = min(a.faithful_limit, len(y))
        run_chip("chip, noise (faithful arrays)", n, fmt, T.Noise(ber=a.ber))
    if "ablation" in runs:
        n = min(a.ablation_limit, len(y))
        base = preds.get("chip")
        base = base[:n] if base is not None else run_chip("chip, noise off (ablation base)",
                                                          n, fmt, T.Noise())
        for op in T.OPS + ("all",):
            f = fmt.with_float(*(T.OPS if op == "all" else (op,)))
            t = time.time()
            chip = TM.from_torch(model, mp, formats=f, noise=T.Noise())
            p = TM.outputs(chip, x[:n], batch_size=a.batch,
                           progress=progress(f"float {op}")).argmax(-1)
            row(f"chip, {op} in float", p, n, time.time() - t, changed=int((p != base).sum()))
    res["wall_s"] = time.time() - t0
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out} ({res['wall_s']:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
