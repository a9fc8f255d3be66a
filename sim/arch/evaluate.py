"""Throughput, latency, energy and area of a :class:`~.mapper.Plan` (HyFlexPIM, SLC-only).

Energy is activity based: every event (ADC comparison, WL pulse, array read, S&A add,
NOR, SFU input, bus bit) is counted and multiplied by its energy from
:mod:`.params`. Time uses resource occupancy:

* an analog matrix processes one vector per ``vector_time`` (800 ns) per replica;
* the digital PIM of a PU does ``products_per_s_per_pu`` INT8 products per second;
* the SFUs of a PU take 8 x 256 inputs per cycle; each PU has an inner bus of
  1000 GB/s, each chip a global bus of 1000 GB/s, chips are linked at 128 GB/s.

Encoder (and decoder prefill): a stream of sequences flows through the layer pipeline;
throughput = ``pipelines * seq / period``, ``period`` = the busiest resource's time per
sequence; latency = one sequence through all layers (pipeline fills, attention after
Q/K/V, the SVD factors A then B in series). Decoder generation: token by token, ``batch``
sequences interleaved in the pipeline; each step costs ``max(token latency,
batch * period per token)``.
"""

import math

import numpy as np

from .mapper import plan as make_plan
from .timing import vector_time, first_result_time, digital_products_time, sfu_time

__all__ = ["ENERGY_KEYS", "linear_energy", "layer_linear_energy", "attention_counts",
           "evaluate_plan", "evaluate"]

ENERGY_KEYS = ("adc", "wl_drivers", "arrays", "registers", "shift_add", "digital_pim", "sfu",
               "bus", "chip_link")


def _zero():
    return {k: 0.0 for k in ENERGY_KEYS}


def _add(acc, other, scale=1.0):
    for k, v in other.items():
        acc[k] = acc.get(k, 0.0) + v * scale
    return acc


def linear_energy(group, p):
    """Energy (J) by component of one input vector through one tile group; and its bus bytes."""
    planes = p.input_bits
    conv = planes * group.conversions_per_plane
    e = _zero()
    e["adc"] = conv * p.e_conversion(group.mode)
    e["wl_drivers"] = planes * group.wl_pulses_per_plane * p.e_wl_pulse * p.wl_activity
    e["arrays"] = planes * group.arrays * p.e_array_read
    e["registers"] = planes * group.arrays * p.e_registers_plane + conv * p.e_sample_hold
    e["shift_add"] = conv * p.e_shift_add + group.partial_adds * p.e_digital_add
    nbytes = group.rows + 4 * group.neurons      # INT8 inputs in, INT32 results out
    e["bus"] = nbytes * 8 * p.bus_j_per_bit
    return e, nbytes


def layer_linear_energy(layer_map, p):
    """Per-token energy by component and bus bytes of all static matrices of a layer."""
    e, nbytes = _zero(), 0
    for mm in layer_map.matrices.values():
        for g in mm.groups:
            ge, gb = linear_energy(g, p)
            _add(e, ge)
            nbytes += gb
    return e, nbytes


def attention_counts(model, queries, keys_per_query):
    """Counts for ``queries`` query rows over ``keys_per_query`` keys (summed over rows).

    ``keys_per_query`` is the total number of (query, key) pairs. Returns INT8 products
    (QK^T and SV), SFU inputs (softmax, two norms, FFN activation) and bus bytes.
    """
    pairs = keys_per_query
    products = 2 * model.heads * pairs * model.head_dim
    act = (2 if model.ffn_act == "swiglu" else 1) * model.ffn
    sfu = model.heads * pairs + queries * (2 * model.hidden + act)
    # Q/K/V into the digital PIM, SV results out (INT32), SFU traffic: INT32 in, INT8 back
    nbytes = queries * (model.d_q + 2 * model.d_kv) + 4 * queries * model.d_q + 5 * sfu
    return {"products": products, "sfu_inputs": sfu, "bus_bytes": nbytes}


def _pairs_prefill(n, causal):
    return n * (n + 1) // 2 if causal else n * n


def _attention_energy(counts, p):
    e = _zero()
    e["digital_pim"] = counts["products"] * (p.e_product + p.e_digital_add)
    e["sfu"] = counts["sfu_inputs"] * p.e_sfu_input
    e["bus"] = counts["bus_bytes"] * 8 * p.bus_j_per_bit
    return e


def _step_depths(model, lm):
    out = []
    for st in model.steps():
        if st == "attention":
            continue
        out.append(max(lm.matrices[r].depth for r in st))
    return out


def evaluate_plan(pl, gen=None):
    """Result dict of a plan (see :func:`evaluate` for the keys)."""
    p, model, S = pl.params, pl.model, pl.seq
    t_vec = vector_time("mlc", params=p)       # 800 ns in both modes (read-bound planes)
    t_first = first_result_time("mlc", params=p)
    g, K, P = pl.g, pl.copies, pl.pus_per_layer
    ppc = P / K                                    # PUs per copy (digital PIM, SFUs, buses)
    L = model.layers
    causal = model.causal
    if causal:
        G = S // 2 if gen is None else gen
    else:
        G = 0
    n_pre = S - G                                  # tokens processed in parallel (prefill / encoder)

    # ---- energy ------------------------------------------------------------------
    e_tot = _zero()
    lin_bytes = []
    cache = {}
    for lm in pl.layers:
        if id(lm) not in cache:
            cache[id(lm)] = layer_linear_energy(lm, p)
        le, lb = cache[id(lm)]
        _add(e_tot, le, S)                         # every token passes every static matrix once
        lin_bytes.append(lb)
    pre = attention_counts(model, n_pre, _pairs_prefill(n_pre, causal))
    _add(e_tot, _attention_energy(pre, p), L)
    ctx = np.arange(n_pre + 1, S + 1, dtype=np.float64)     # contexts of the generated tokens
    if G:
        dec = attention_counts(model, G, int(ctx.sum()))
        _add(e_tot, _attention_energy(dec, p), L)
    # global bus: hidden state handed from layer to layer; copies exchange K/V; TP all-reduces
    glob_per_layer = S * model.hidden + (K - 1) * S * 2 * model.d_kv + S * 2 * (ppc - 1) * model.hidden * 4
    e_tot["bus"] += L * glob_per_layer * 8 * p.bus_j_per_bit
    links = pl.chips_per_pipeline - 1
    e_tot["chip_link"] += links * S * model.hidden * 8 * p.link_j_per_bit

    # ---- encoder / prefill timing ------------------------------------------------
    rows = math.ceil(n_pre / K)                    # query rows per copy
    period_layers, lat_pre = [], 0.0
    for lm, rep, lb in zip(pl.layers, pl.replicas, lin_bytes):
        per_rep = math.ceil(rows / rep)
        analog = per_rep * t_vec
        att = attention_counts(model, rows, _pairs_prefill(n_pre, causal) * rows // max(1, n_pre))
        dig = digital_products_time(att["products"], pus=ppc, params=p)
        sfu = sfu_time(att["sfu_inputs"], pus=ppc, params=p)
        inner = (rows * lb + att["bus_bytes"]) / (p.bus_bw * ppc)
        period_layers.append(max(analog, dig, sfu, inner))
        depths = _step_depths(model, lm)
        softmax = sfu_time(model.heads * _pairs_prefill(n_pre, causal) * rows // max(1, n_pre), pus=ppc, params=p)
        lat_pre += (sum(depths) * t_first + 2 * (per_rep - 1) * t_vec + dig + softmax
                    + glob_per_layer * n_pre / S / p.bus_bw)
    lat_pre += links * n_pre * model.hidden / p.link_bw
    lpc = pl.layers_per_chip
    glob_chip = min(L, lpc) * glob_per_layer * (n_pre / S) / p.bus_bw
    link_occ = n_pre * model.hidden / p.link_bw if links else 0.0
    period = max(max(period_layers), glob_chip, link_occ)
    pre_tps = pl.pipelines * n_pre / period if n_pre else 0.0
    bottleneck = ("analog" if max(period_layers) == period and period_layers else "global_bus")
    if period == link_occ and links:
        bottleneck = "chip_link"

    # ---- decoder generation ------------------------------------------------------
    if G:
        t_lin_tok = sum(sum(_step_depths(model, lm)) * t_first for lm in pl.layers)
        heads_split = P                            # decode: heads over all PUs of the layer
        prods = 2 * model.heads * ctx * model.head_dim
        nors_step = p.digital_arrays_per_pu * heads_split * p.rows_per_step * p.nors_per_row_step
        dig_tok = np.ceil(prods * p.nors_per_product / nors_step) * p.t_row_step
        act = (2 if model.ffn_act == "swiglu" else 1) * model.ffn
        sfu_in = model.heads * ctx + 2 * model.hidden + act
        sfu_tok = np.ceil(sfu_in / (p.sfu_inputs_per_cycle * p.digital_modules_per_pu * heads_split)) / p.f_clk
        bus_tok = (max(lin_bytes) + (model.d_q + 2 * model.d_kv) + 4 * model.d_q + 5 * sfu_in) / (p.bus_bw * P)
        tok_lat = (t_lin_tok + L * (dig_tok + sfu_tok + model.hidden / p.bus_bw)
                   + links * model.hidden / p.link_bw)
        tok_period = np.maximum(np.maximum(t_vec, dig_tok), np.maximum(sfu_tok, bus_tok))
        step = np.maximum(tok_lat, pl.batch * tok_period)
        gen_time = float(step.sum())
        gen_tps = pl.pipelines * pl.batch * G / gen_time
        tokens_per_s = gen_tps
        latency = lat_pre + gen_time
    else:
        gen_time, gen_tps = 0.0, 0.0
        tokens_per_s = pre_tps
        latency = lat_pre

    tokens = S
    breakdown = {k: v / tokens for k, v in e_tot.items()}
    area = pl.chips * p.chip_area
    res = {
        "design": pl.design, "model": model.name, "kind": model.kind, "seq": S,
        "slc": None, "batch": pl.batch,
        "tokens_per_s": tokens_per_s, "latency_s": latency,
        "energy_per_token_j": sum(breakdown.values()), "energy_breakdown_j": breakdown,
        "area_mm2": area, "chips": pl.chips, "pus_per_layer": P, "pipelines": pl.pipelines,
        "prefill_tokens": n_pre, "generated_tokens": G,
        "prefill_tokens_per_s": pre_tps, "prefill_latency_s": lat_pre,
        "generation_time_s": gen_time,
        "period_s": period, "bottleneck": bottleneck,
        "utilisation": {
            "arrays": pl.summary()["array_utilisation"],
            "analog_busy": (max(math.ceil(rows / r) for r in pl.replicas) * t_vec) / period if n_pre else 0.0,
            "digital_pim_capacity": pl.digital["used_fraction"],
        },
        "mapping": pl.summary(),
    }
    return res


def evaluate(model, seq, slc=0.1, design="hyflexpim", *, slc_map=None, svd=True, chips=None,
             pus_per_layer=None, batch=1, gen=None, params=None):
    """Evaluate one design point; returns a dict with at least ``tokens_per_s``,
    ``latency_s``, ``energy_per_token_j``, ``area_mm2`` and ``energy_breakdown_j``.

    ``design``: "hyflexpim", "slc-only", "non-pim" or "nmp". For the baselines the
    hardware budget is the chips HyFlexPIM needs for the same model and SLC rate (or
    ``chips``).
    """
    if design in ("non-pim", "nmp"):
        from .baselines import evaluate_baseline
        return evaluate_baseline(model, seq, slc=slc, design=design, slc_map=slc_map, svd=svd,
                                 chips=chips, batch=batch, gen=gen, params=params)
    if design not in ("hyflexpim", "slc-only"):
        raise ValueError(f"design must be one of hyflexpim, slc-only, non-pim, nmp, not {design!r}")
    pl = make_plan(model, seq, slc, design, slc_map=slc_map, svd=svd, chips=chips,
                   pus_per_layer=pus_per_layer, batch=batch, gen=gen, params=params)
    res = evaluate_plan(pl, gen=gen)
    res["slc"] = slc if design == "hyflexpim" else 1.0
    return res
