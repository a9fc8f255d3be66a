"""The whole flow: train, factor, fine-tune, score, map, evaluate under noise, sweep.

Two noise modes, side by side (DESIGN.md 5):

``hardware`` (this project's)
    SVD variant ``ab`` (A = U_r S_r, B = V_r^T) of Q, K, V, proj, FFN1, FFN2 (head kept
    in float), rank score ``grad`` (accumulated over fine-tuning), INT8 weights per
    output channel and activations per vector, noise per cell from the device
    (:func:`~.device.load_device`, default the NeuRRAM one-day fit at the MLC BER
    4.04%: state-dependent, so SLC cells are far more precise), executed by the golden
    array model (``faithful``, default) or the emulated noisy weights (``fast``, the
    same per-cell statistics).
``paper`` (the authors' simulator)
    SVD variant ``usv`` with the head factored too, score ``grad_last_s`` (|dL/dS| of
    the last fine-tuning batch), per-tensor INT8 with the second-largest clip, 2-bit
    group noise std 0.025 on MLC ranks (two's complement groups, the authors' masks),
    float activations. Every paper-mode row carries ``paper_ber``, the 2-bit BER its
    std implies (:func:`~.noise.paper_ber`; 1.6e-12 at std 0.025).

The ``magnitude`` policy uses the unfactored base model in both modes.
"""

import copy
import functools
import csv
import time
from pathlib import Path

import numpy as np

from ._torch import torch
from . import datasets as ds
from .crossbar import DEFAULT_MLC_BER
from .noise import paper_ber
from .quant import to_hardware, set_noise
from .redistribute import build_mapping, check_policy, check_slc_percent, POLICIES
from .svd import (factorize_model, svd_layers, static_linears, RankScores, finetune,
                  score_pass, evaluate, top_share)
from . import soft_rank as sr

__all__ = ["NOISE_MODES", "MODE_SETTINGS", "Prepared", "prepare", "mapping_for",
           "evaluate_mapping", "sweep", "write_csv", "plot_sweep", "smallest_k", "KS"]

NOISE_MODES = ("hardware", "paper")
KS = (0, 5, 10, 20, 30, 50, 100)
MODE_SETTINGS = {
    "hardware": dict(variant="ab", include_head=False, score="grad", backend="faithful"),
    "paper": dict(variant="usv", include_head=True, score="grad_last_s", backend="paper"),
}
PAPER_STD = 0.025


def check_mode(mode):
    if mode not in NOISE_MODES:
        raise ValueError(f"noise mode must be one of {', '.join(NOISE_MODES)}, not {mode!r}")
    return mode


class Prepared:
    """Base and factored+fine-tuned models of one task and noise mode, with figures."""

    def __init__(self, task, mode, base, factored, scores, figures):
        self.task, self.mode = task, mode
        self.base, self.factored = base, factored
        self.scores, self.figures = scores, figures


def prepare(task, mode="hardware", ft_epochs=2, cache=True, quiet=False, score_batches=None,
            rank_select="fixed", soft=None):
    """Train (or load) the base model, factor, fine-tune with scores; :class:`Prepared`.

    ``figures``: metric of the base, truncated and fine-tuned models (float), the top
    5% / 10% score shares (mean over matrices) before and after fine-tuning (one scoring
    pass over the training data each, lr 0), wall times.

    ``rank_select``: ``fixed`` (r = floor(mn/(m+n)) per matrix) or ``soft-threshold``
    (per-layer rank learned during fine-tuning, :mod:`.soft_rank`, knobs ``soft``, a
    :class:`~.soft_rank.SoftRankConfig`); figures then add the kept ranks per matrix,
    parameter counts and the metric of the soft model before the hard threshold.
    """
    check_mode(mode)
    sr.check_rank_select(rank_select)
    soft = soft or sr.SoftRankConfig()
    st = MODE_SETTINGS[mode]
    t0 = time.time()
    base, t_train = task.trained_model(cache=cache, quiet=quiet)
    fig = dict(task=task.name, mode=mode, metric=task.metric_name, train_s=t_train,
               rank_select=rank_select)
    ev = lambda m: evaluate(m, task.eval, task.metric)  # noqa: E731
    fig["base"] = ev(base)
    key = f"{task.key()}-{mode}-ft{ft_epochs}"
    if rank_select != "fixed":
        d = soft.as_dict()
        key += "-soft-" + "-".join(f"{d[k]:g}" if d[k] is not None else "fixed"
                                   for k in sorted(d))
    path = ds.cache_dir() / "checkpoints" / f"{key}.pt"
    factored = copy.deepcopy(base)
    factorize_model(factored, st["variant"], include_head=st["include_head"])
    fig["truncated"] = ev(factored)
    nb = score_batches
    if cache and path.is_file() and task.name != "tiny":
        blob = torch.load(path, weights_only=False)
        if blob.get("ranks"):
            factored = copy.deepcopy(base)
            factorize_model(factored, st["variant"], include_head=st["include_head"],
                            ranks=blob["ranks"])
        factored.load_state_dict(blob["model"])
        scores, extra = blob["scores"], blob["figures"]
        fig.update(extra)
    else:
        t = time.time()
        pre = score_pass(factored, task.train, task.loss, max_batches=nb)
        extra = {}
        kw = {}
        if rank_select == "soft-threshold":
            fixed_layers = svd_layers(factored)
            factored = copy.deepcopy(base)
            sr.factorize_soft(factored, st["variant"], include_head=st["include_head"],
                              temperature=soft.temperature)
            soft_l = sr.soft_layers(factored)
            budget = sr.budget_for(soft_l, soft.budget)
            kw = dict(penalty=lambda: sr.budget_penalty(soft_l, budget, soft.penalty),
                      param_groups=sr.threshold_groups(factored, soft, task.ft_lr, 0.01))
            extra.update(params_dense=sr.dense_params(soft_l),
                         params_fixed=sr.fixed_budget(soft_l), params_budget=budget,
                         ranks_fixed={n: l.rank for n, l in fixed_layers.items()})
        scores = RankScores(factored)
        finetune(factored, task.train, task.loss, epochs=ft_epochs, lr=task.ft_lr,
                 scores=scores, quiet=quiet, desc=f"fine-tune {task.name} ({mode})", **kw)
        if rank_select == "soft-threshold":
            extra["soft_finetuned"] = ev(factored)
            with torch.no_grad():
                extra["params_soft"] = float(sum(sr.rank_cost(l) * l.soft_rank()
                                                 for l in soft_l.values()))
            keep = sr.harden(factored, budget)
            for kind in ("grad", "grad_last_s"):
                src = getattr(scores, kind)
                for n, idx in keep.items():
                    if n in src:
                        src[n] = src[n][idx]
            scores.layers = svd_layers(factored)
            hard = svd_layers(factored)
            extra["ranks"] = {n: l.rank for n, l in hard.items()}
            extra["params_hard"] = sum(l.rank * sr.rank_cost(l) for l in hard.values())
        post = score_pass(factored, task.train, task.loss, max_batches=nb)
        extra.update(finetune_s=time.time() - t, ft_epochs=ft_epochs)
        for tag, sc in (("before", pre), ("after", post), ("during", scores)):
            g = sc.as_numpy("grad")
            for f in (0.05, 0.10):
                extra[f"top{int(f * 100)}_{tag}"] = float(np.mean([top_share(v, f) for v in g.values()]))
        scores = {"grad": scores.as_numpy("grad"),
                  "grad_last_s": scores.as_numpy("grad_last_s") if st["variant"] == "usv" else None}
        fig.update(extra)
        if cache and task.name != "tiny":
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(dict(model=factored.state_dict(), scores=scores, figures=extra,
                            ranks=extra.get("ranks")), path)
    fig["finetuned"] = ev(factored)
    fig["prepare_s"] = time.time() - t0
    prep = Prepared(task, mode, base, factored.eval(), scores, fig)
    prep.rank_select, prep.soft = rank_select, soft
    return prep


def mapping_for(prep, policy, k, seed=0):
    """The mapping of ``policy`` at ``k`` percent for a :class:`Prepared`."""
    st = MODE_SETTINGS[prep.mode]
    check_policy(policy)
    if policy == "magnitude":
        layers = static_linears(prep.base, include_head=st["include_head"])
        return build_mapping(policy, k, layers=layers, seed=seed, task=prep.task.name,
                             variant=None, extra=dict(noise_mode=prep.mode))
    extra = dict(noise_mode=prep.mode)
    rs = getattr(prep, "rank_select", "fixed")
    extra["rank_select"] = rs
    if rs != "fixed":
        extra["soft_threshold"] = prep.soft.as_dict()
    return build_mapping(policy, k, layers=svd_layers(prep.factored),
                         scores=prep.scores.get(st["score"]), seed=seed, task=prep.task.name,
                         score_kind=st["score"], variant=st["variant"], extra=extra)


def evaluate_mapping(prep, mapping, *, seed=0, noise=True, backend=None, ber=DEFAULT_MLC_BER,
                     paper_std=PAPER_STD, stats=None, device=None, offset="reference",
                     read_noise=None, paper_split="twos-complement"):
    """Metric of the model under ``mapping`` with one noise programming ``seed``.

    Hardware mode: ``device`` (default the NeuRRAM one-day fit) re-calibrated to
    ``ber`` (``None`` keeps the device's own scale), ``offset`` and ``read_noise`` as in
    :func:`~.array.program_matrix`. Paper mode: ``paper_std`` and ``paper_split``."""
    st = MODE_SETTINGS[prep.mode]
    be = backend or st["backend"]
    model = prep.base if mapping["policy"] == "magnitude" else prep.factored
    hw = to_hardware(model, mapping, be, include_head=st["include_head"])
    if be == "paper":
        set_noise(hw, seed=seed, paper_std=paper_std if noise else 0.0, paper_split=paper_split)
    elif noise:
        if device is None and ber is None:
            device = "neurram-1d"
        set_noise(hw, seed=seed, ber=ber, stats=stats, device=device, offset=offset,
                  read_noise=read_noise)
    else:
        set_noise(hw, seed=seed, stats=stats)
    return evaluate(hw, prep.task.eval, prep.task.metric)


def _dev_name(device):
    if device is None:
        return "neurram-1d"
    return str(getattr(device, "name", device))


def smallest_k(rows, ref, higher_is_better, tol=0.01):
    """Smallest k whose mean metric is within ``tol`` of ``ref`` (absolute for
    accuracy, relative for a loss); None if none is."""
    ok = []
    for k, v in rows:
        good = v >= ref - tol if higher_is_better else v <= ref * (1 + tol)
        if good:
            ok.append(k)
    return min(ok) if ok else None


@functools.lru_cache(maxsize=4)
def _prepared(spec, mode, ft_epochs, cache, rank_select, soft):
    from .algo_tasks import Task
    return prepare(Task(**dict(spec)), mode, ft_epochs=ft_epochs, cache=cache, quiet=True,
                   rank_select=rank_select, soft=sr.SoftRankConfig(**dict(soft)))


def sweep_point(*, task, mode, ft_epochs, cache, rank_select, soft, policy, k, seed, **noise):
    """One point of :func:`sweep`, runnable in another process: the task made again from
    its ``spec`` (``task``), prepared as :func:`prepare` does (a checkpoint of the cache
    loaded, or the same seeded training again; kept for the process's next points),
    ``policy``'s mapping at ``k``, its metric with noise ``seed`` (:func:`evaluate_mapping`
    with ``noise``: backend, ber, paper_std, device, offset, read_noise, paper_split)."""
    prep = _prepared(tuple(sorted(task.items())), mode, ft_epochs, cache, rank_select,
                     tuple(sorted(soft.items())))
    return evaluate_mapping(prep, mapping_for(prep, policy, k, seed=seed), seed=seed, **noise)


def sweep(task, *, modes=NOISE_MODES, policies=POLICIES, ks=KS, seeds=(0, 1, 2), ft_epochs=2,
          hw_backend="faithful", cache=True, quiet=False, log=print, ber=DEFAULT_MLC_BER,
          paper_std=PAPER_STD, rank_select="fixed", soft=None, device=None, offset="reference",
          read_noise=None, paper_split="twos-complement", run_points=None):
    """Metric vs SLC rate for each mode x policy x k x seed. Returns (rows, summary).

    ``rank_select`` / ``soft``: as in :func:`prepare`; the noise arguments as in
    :func:`evaluate_mapping`. ``run_points(fn, points)`` evaluates the points of a mode
    (``fn(**point)`` for each keyword dict, :func:`sweep_point`) and returns their
    metrics in order: None evaluates them here, one after the other with the model
    prepared once; ``hyflexpim accuracy --sweep --scheduler`` passes one that runs them
    as Dask tasks (the same metrics: every random choice comes from the point's seed)."""
    from tqdm import tqdm
    for p in policies:
        check_policy(p)
    for k in ks:
        check_slc_percent(k)
    rows, summary = [], {}
    hw_ber = ber
    if "hardware" in modes and not (hw_backend == "int8"):
        from .device import load_device
        hw_ber = load_device(device, ber=ber).ber("mlc")    # the BER the rows report
    for mode in modes:
        prep = prepare(task, mode, ft_epochs=ft_epochs, cache=cache, quiet=quiet,
                       rank_select=rank_select, soft=soft)
        be = hw_backend if mode == "hardware" else "paper"
        summary[mode] = dict(prep.figures)
        refs = {}
        for kind, pol in (("factored", "gradient"), ("base", "magnitude")):
            m = mapping_for(prep, pol, 0)
            refs[kind] = evaluate_mapping(prep, m, noise=False, backend="int8" if be != "paper" else be)
        summary[mode]["int8_factored"] = refs["factored"]
        summary[mode]["int8_base"] = refs["base"]
        log(f"[{task.name}/{mode}] base {prep.figures['base']:.4f} truncated "
            f"{prep.figures['truncated']:.4f} fine-tuned {prep.figures['finetuned']:.4f} "
            f"INT8 noise-free: factored {refs['factored']:.4f} base {refs['base']:.4f}")
        jobs = [(p, k, s) for p in policies for k in ks for s in seeds]
        noise = dict(backend=be, ber=ber, paper_std=paper_std, device=device, offset=offset,
                     read_noise=read_noise, paper_split=paper_split)
        t = time.time()
        if run_points is None:
            values = []
            for pol, k, s in tqdm(jobs, desc=f"{task.name} {mode} sweep", leave=False,
                                  disable=quiet):
                values.append(evaluate_mapping(prep, mapping_for(prep, pol, k, seed=s),
                                               seed=s, **noise))
        else:
            common = dict(task=dict(task.spec), mode=mode, ft_epochs=ft_epochs, cache=cache,
                          rank_select=rank_select, soft=(soft or sr.SoftRankConfig()).as_dict(),
                          **noise)
            values = run_points(sweep_point, [dict(common, policy=p, k=k, seed=s)
                                              for p, k, s in jobs])
        for (pol, k, s), v in zip(jobs, values):
            rows.append(dict(task=task.name, mode=mode, backend=be, policy=pol, k=k, seed=s,
                             metric=v, metric_name=task.metric_name,
                             noise=paper_std if mode == "paper" else hw_ber,
                             device="paper" if mode == "paper" else _dev_name(device),
                             paper_ber=paper_ber(paper_std) if mode == "paper" else None))
        summary[mode]["sweep_s"] = time.time() - t
        if mode == "paper":
            summary[mode].update(paper_std=paper_std, paper_ber=paper_ber(paper_std),
                                 paper_split=paper_split)
        else:
            summary[mode].update(device=_dev_name(device), ber=hw_ber, offset=offset,
                                 read_noise=read_noise)
        for pol in policies:
            ref = refs["base" if pol == "magnitude" else "factored"]
            means = [(k, float(np.mean([r["metric"] for r in rows if r["mode"] == mode
                                        and r["policy"] == pol and r["k"] == k]))) for k in ks]
            summary[mode][f"smallest_k_{pol}"] = smallest_k(means, ref, task.higher_is_better)
            summary[mode][f"means_{pol}"] = means
    return rows, summary


def write_csv(rows, path):
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    return p


def plot_sweep(rows, path, summary=None):
    """Metric vs k per policy (mean, min-max band), one panel per noise mode."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    modes = sorted({r["mode"] for r in rows}, key=NOISE_MODES.index)
    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        sub = [r for r in rows if r["mode"] == mode]
        for pol in [p for p in POLICIES if any(r["policy"] == p for r in sub)]:
            ks = sorted({r["k"] for r in sub if r["policy"] == pol})
            vals = [[r["metric"] for r in sub if r["policy"] == pol and r["k"] == k] for k in ks]
            mean = [np.mean(v) for v in vals]
            ax.plot(ks, mean, marker="o", label=pol)
            ax.fill_between(ks, [min(v) for v in vals], [max(v) for v in vals], alpha=0.15)
        if summary and mode in summary:
            ax.axhline(summary[mode]["int8_factored"], ls="--", c="k", lw=0.8,
                       label="INT8 noise-free (factored)")
            ax.axhline(summary[mode]["int8_base"], ls=":", c="gray", lw=0.8,
                       label="INT8 noise-free (base)")
        ax.set_xlabel("SLC rate k (%)")
        ax.set_ylabel(sub[0]["metric_name"])
        ax.set_title(f"{sub[0]['task']}: {mode} noise ({sub[0]['backend']})")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p
