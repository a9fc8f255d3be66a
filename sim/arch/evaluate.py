"""Throughput, latency, energy and area of a :class:`~.mapper.Plan` (the PIM designs).

Energy is activity based: every event (ADC conversion, WL pulse, array read, S&A add,
NOR product, SFU input, bus bit) is counted and multiplied by its energy from
:mod:`.params`; copies of a matrix do not change the events per token. Linear-layer
energy (the static matrices: ADC, WL drivers, arrays, registers, S&A and their inner-bus
traffic) is reported beside the end-to-end energy.

Time: see :mod:`.schedule` for one layer and one sequence. The layers form a pipeline
over the PUs of a chip and the chips of a pipeline; ``period`` = the slowest layer's
period, or the chip's global bus (hidden-state hand-over, tensor-parallel partial sums),
or the PCIe link between chips, whichever is longest; ``tokens_per_s = pipelines * tokens
/ period``. Decoder generation: token by token, ``batch`` sequences interleaved; each
step costs ``max(token latency, batch x per-token occupancy)``.
"""

import math

import numpy as np

from .baselines import evaluate_baseline
from .counts import attention_counts, pairs, sfu_inputs_per_token
from .mapper import plan as make_plan, tp_bytes_per_token, PIM_DESIGNS, DESIGNS
from .schedule import layer_busy, layer_latency, layer_period, RESOURCES
from .timing import query_cycles

__all__ = ["ENERGY_KEYS", "LINEAR_KEYS", "linear_energy", "layer_linear_energy", "evaluate_plan",
           "evaluate", "bottleneck_of"]

ENERGY_KEYS = ("adc", "wl_drivers", "arrays", "registers", "shift_add", "digital_pim", "sfu",
               "bus", "chip_link")
#: Components of the linear-layer energy (the static matrices and their inner-bus traffic).
LINEAR_KEYS = ("adc", "wl_drivers", "arrays", "registers", "shift_add", "bus")


def _zero(keys=ENERGY_KEYS):
    return {k: 0.0 for k in keys}


def _add(acc, other, scale=1.0):
    for k, v in other.items():
        acc[k] = acc.get(k, 0.0) + v * scale
    return acc


def linear_energy(group, p, input_bits=None):
    """Energy (J) by component of one input vector through one tile group; and its bus bytes."""
    planes = p.input_bits if input_bits is None else input_bits
    conv = planes * group.conversions_per_plane
    e = _zero(LINEAR_KEYS)
    e["adc"] = conv * p.e_conversion(group.mode)
    e["wl_drivers"] = planes * group.wl_pulses_per_plane * p.e_wl_pulse * p.wl_activity
    e["arrays"] = planes * group.arrays * p.e_array_read
    e["registers"] = planes * group.arrays * p.e_registers_plane + conv * p.e_sample_hold
    e["shift_add"] = conv * p.e_shift_add + group.partial_adds * p.e_digital_add
    nbytes = group.bus_bytes
    e["bus"] = nbytes * 8 * p.bus_j_per_bit
    return e, nbytes


def layer_linear_energy(layer_map, p, input_bits=None):
    """Per-token energy by component and bus bytes of all static matrices of a layer."""
    e, nbytes = _zero(LINEAR_KEYS), 0
    for mm in layer_map.matrices.values():
        for g in mm.groups:
            ge, gb = linear_energy(g, p, input_bits)
            _add(e, ge)
            nbytes += gb
    return e, nbytes


def _attention_energy(counts, p, cost=1.0):
    e = _zero()
    e["digital_pim"] = counts["products"] * cost * (p.e_product + p.e_digital_add)
    e["sfu"] = counts["sfu_inputs"] * p.e_sfu_input
    e["bus"] = counts["bus_bytes"] * 8 * p.bus_j_per_bit
    return e


def bottleneck_of(busy, period):
    """The resource of the longest busy time (``busy``: resource -> seconds)."""
    return max(busy, key=lambda k: busy[k]) if period > 0 else "none"


def _generation(pl, n_pre, G, p):
    """Time of ``G`` generated tokens after ``n_pre`` prompt tokens, the busy seconds per
    resource (or, when most steps wait for one token's path through the layers, the
    seconds of that path per resource), and whether the latency binds."""
    model, L, P, B = pl.model, pl.model.layers, pl.pus_per_layer, pl.batch
    spec = pl.spec
    ctx = np.arange(n_pre + 1, n_pre + G + 1)
    modules = P * p.digital_modules_per_pu
    per_module = math.ceil(model.heads / modules)
    split = max(1, modules // model.heads)
    A = p.digital_arrays_per_module
    cyc = np.array([query_cycles(int(k), model.head_dim, A, p.digital_cols,
                                 p.digital_command_lanes) for k in ctx], dtype=np.float64)
    dig_tok = per_module * np.ceil(cyc * spec.attention_cost / split) / p.f_clk
    sfu_in = model.heads * ctx + sfu_inputs_per_token(model)
    sfu_tok = np.ceil(sfu_in / (p.sfu_inputs_per_cycle * p.digital_modules_per_pu * P)) / p.f_clk
    st0 = pl.stages[0]
    lin_bytes = max(lm.bus_bytes("qkv") + lm.bus_bytes("post") for lm in pl.layers)
    bus_tok = (lin_bytes + (model.d_q + 2 * model.d_kv) + 4 * model.d_q + 5 * sfu_in) / (p.bus_bw * P)
    depth = max(lm.depth("qkv") + lm.depth("post") for lm in pl.layers)
    glob_tok = (tp_bytes_per_token(model, P) + model.hidden) / p.bus_bw
    links = pl.chips_per_pipeline - 1
    each = np.ones_like(dig_tok)                   # per generated token
    path = {"analog": L * depth * st0.t_first * each, "digital_pim": L * dig_tok,
            "sfu": L * sfu_tok, "global_bus": L * glob_tok * each,
            "chip_link": links * (p.link_latency + model.hidden / p.link_bw) * each}
    tok_lat = sum(path.values())
    c_min = min(min(c["qkv"], c["post"]) for c in pl.copies)
    analog_tok = math.ceil(B / c_min) * st0.t_vec
    occ = np.maximum(np.maximum(analog_tok, B * dig_tok), np.maximum(B * sfu_tok, B * bus_tok))
    glob_chip = B * min(L, pl.layers_per_chip) * glob_tok
    link_occ = B * model.hidden / p.link_bw if links else 0.0
    rate = np.maximum(occ, max(glob_chip, link_occ))
    step = np.maximum(tok_lat, rate)
    busy = {"analog": analog_tok * G, "digital_pim": float((B * dig_tok).sum()),
            "sfu": float((B * sfu_tok).sum()), "inner_bus": float((B * bus_tok).sum()),
            "global_bus": glob_chip * G, "chip_link": link_occ * G}
    lat_bound = tok_lat >= rate
    if lat_bound.sum() * 2 > G:
        # most steps wait for one token's path through the layers: name its longest part
        busy = {k: float(np.sum(v[lat_bound])) for k, v in path.items()}
    return float(step.sum()), busy, bool(lat_bound.sum() * 2 > G)


def evaluate_plan(pl):
    """Result dict of a plan (see :func:`evaluate` for the keys)."""
    p, model, S, G = pl.params, pl.model, pl.seq, pl.gen
    spec = pl.spec
    L, P = model.layers, pl.pus_per_layer
    n_pre = S - G
    keep = spec.token_keep
    n = pl.stages[0].n                              # query rows of the prefill pass (pruned)
    keys = n if model.causal else max(1, math.ceil(S * keep))
    tokens_lin = n + (math.ceil(G * keep) if G else 0)   # tokens through the static matrices
    sched = pl.schedule

    # ---- energy ------------------------------------------------------------------
    lin = _zero(LINEAR_KEYS)
    cache = {}
    for lm in pl.layers:
        if id(lm) not in cache:
            cache[id(lm)] = layer_linear_energy(lm, p, spec.input_bits)
        _add(lin, cache[id(lm)][0], tokens_lin)
    e_tot = _zero()
    _add(e_tot, lin)
    pre = attention_counts(model, n, pairs(n, keys, model.causal))
    _add(e_tot, _attention_energy(pre, p, spec.attention_cost), L)
    if G:
        ctx_sum = G * n_pre + G * (G + 1) // 2
        dec = attention_counts(model, G, ctx_sum)
        _add(e_tot, _attention_energy(dec, p, spec.attention_cost), L * keep)
    glob_tok = tp_bytes_per_token(model, P) + model.hidden      # per token and layer
    e_tot["bus"] += L * tokens_lin * glob_tok * 8 * p.bus_j_per_bit
    links = pl.chips_per_pipeline - 1
    e_tot["chip_link"] += links * tokens_lin * model.hidden * 8 * p.link_j_per_bit

    # ---- encoder / prefill timing ------------------------------------------------
    per = [layer_period(st, c["qkv"], c["post"], sched) for st, c in zip(pl.stages, pl.copies)]
    worst = int(np.argmax(per))
    lat_pre = sum(layer_latency(st, c["qkv"], c["post"]) for st, c in zip(pl.stages, pl.copies))
    lat_pre += L * model.hidden / p.bus_bw                                 # hand-over of a token
    lat_pre += links * (p.link_latency + n * model.hidden / p.link_bw)
    lpc = pl.layers_per_chip
    glob_chip = min(L, lpc) * n * glob_tok / p.bus_bw
    link_occ = n * model.hidden / p.link_bw if links else 0.0
    period = max(max(per), glob_chip, link_occ)
    pre_tps = pl.pipelines * n_pre / period if n_pre else 0.0
    busy = layer_busy(pl.stages[worst], pl.copies[worst]["qkv"], pl.copies[worst]["post"], sched)
    busy.update(global_bus=glob_chip, chip_link=link_occ)
    pre_busy = dict(busy)

    # ---- decoder generation ------------------------------------------------------
    if G:
        gen_time, busy, latency_bound = _generation(pl, n_pre, G, p)
        gen_tps = pl.pipelines * pl.batch * G / gen_time
        tokens_per_s = gen_tps
        latency = lat_pre + gen_time
        span = gen_time
    else:
        gen_time, gen_tps, latency_bound = 0.0, 0.0, False
        tokens_per_s = pre_tps
        latency = lat_pre
        span = period
    bottleneck = bottleneck_of(busy, span)

    tokens = S
    breakdown = {k: v / tokens for k, v in e_tot.items()}
    lin_breakdown = {k: v / tokens for k, v in lin.items()}
    area = pl.chips * p.chip_area
    summ = pl.summary()
    return {
        "design": pl.design, "model": model.name, "kind": model.kind, "seq": S,
        "slc": None, "batch": pl.batch,
        "tokens_per_s": tokens_per_s, "latency_s": latency,
        "energy_per_token_j": sum(breakdown.values()), "energy_breakdown_j": breakdown,
        "linear_energy_per_token_j": sum(lin_breakdown.values()),
        "linear_energy_breakdown_j": lin_breakdown,
        "area_mm2": area, "area_efficiency": tokens_per_s / area,
        "chips": pl.chips, "pus_per_layer": P, "pipelines": pl.pipelines,
        "prefill_tokens": n_pre, "generated_tokens": G,
        "prefill_tokens_per_s": pre_tps, "prefill_latency_s": lat_pre,
        "generation_time_s": gen_time,
        "period_s": period, "bottleneck": bottleneck, "schedule": sched,
        "bound": "token latency" if latency_bound else "throughput",
        "utilisation": _utilisation(summ, busy, span, pl),
        "prefill_busy_s": pre_busy,
        "mapping": summ,
    }


def _utilisation(summ, busy, span, pl):
    """Per module kind: arrays holding weights, and the busy share of each resource."""
    u = {"analog_arrays_placed": summ["array_utilisation"],
         "digital_pim_capacity": pl.digital["used_fraction"]}
    for k in RESOURCES:
        u[f"{k}_busy"] = min(1.0, busy.get(k, 0.0) / span) if span > 0 else 0.0
    return u


def evaluate(model, seq, slc=0.1, design="hyflexpim", *, slc_map=None, svd=True, chips=None,
             pus_per_layer=None, batch=1, gen=None, params=None, schedule=None):
    """Evaluate one design point; returns a dict with at least ``tokens_per_s``,
    ``latency_s``, ``energy_per_token_j``, ``linear_energy_per_token_j``, ``area_mm2``,
    ``area_efficiency`` (tokens/s/mm^2), ``energy_breakdown_j`` and ``bottleneck``.

    ``design``: one of :data:`~.mapper.DESIGNS`. The PIM designs (hyflexpim, slc-only,
    asadi, asadi-dagger) are placed by the mapper; the digital ones (sprint, non-pim,
    nmp) get the chip count HyFlexPIM needs for the same model and SLC rate (or
    ``chips``) as their hardware budget (:mod:`.baselines`).
    """
    if design in PIM_DESIGNS:
        pl = make_plan(model, seq, slc, design, slc_map=slc_map, svd=svd, chips=chips,
                       pus_per_layer=pus_per_layer, batch=batch, gen=gen, params=params,
                       schedule=schedule)
        res = evaluate_plan(pl)
        res["slc"] = slc if design == "hyflexpim" else 1.0
        return res
    if design in DESIGNS:
        if pus_per_layer is not None:
            raise ValueError(f"pus_per_layer applies to the PIM designs ({', '.join(PIM_DESIGNS)}), "
                             f"not {design}")
        return evaluate_baseline(model, seq, slc=slc, design=design, slc_map=slc_map, svd=svd,
                                 chips=chips, batch=batch, gen=gen, params=params, schedule=schedule)
    raise ValueError(f"design must be one of {', '.join(DESIGNS)}, not {design!r}")
