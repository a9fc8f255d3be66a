"""The digital comparison designs of DESIGN.md s6: SPRINT, non-PIM and the near-memory
baseline (TransPIM). ASADI and ASADI-dagger are PIM designs and are placed by the
mapper (:func:`.mapper.pim_design`).

All run the same transformer (unfactored INT8 weights, INT8 attention) on the hardware
budget HyFlexPIM needs for that model and SLC rate (its chip count, or ``chips``).
Parameters: constraints/baselines.json (every figure with its source).

sprint
    INT8 MAC units filling ``digital.mac_area_fraction`` of the budget's silicon area,
    one MAC per unit per cycle, operands from SRAM (``sram_operand_reuse`` MACs per
    byte fetched); weights read from on-chip RRAM storage once per sequence (encoder,
    prefill) or once per generation step; attention pruned in memory: every (query,
    key) pair gets a 4-bit x 4-bit dot product inside RRAM arrays that hold the 4 MSBs
    of K (energy from HyFlexPIM's own array, ADC and S&A figures, the same technology),
    and only ``1 - attention_sparsity`` of the pairs are computed exactly on the MACs.
non-pim
    The same MAC units; weights streamed from DRAM into SRAM once per sequence or
    generation step; the KV cache in DRAM. Time = max(MAC, DRAM, SFU) (roofline).
nmp (TransPIM)
    ``stacks_per_chip`` HBM-PIM stacks per chip of budget; bank units see
    ``internal_bw_factor`` x 256 GB/s per stack and do one MAC per byte of it; a weight
    read from a bank serves ``token_reuse`` tokens; SFU work on the host with
    HyFlexPIM's SFU throughput and energy, its operands crossing the HBM interface.
"""

import math

import numpy as np

from .counts import pairs, sfu_inputs_per_token
from .mapper import plan as make_plan
from .models import get_model
from .params import default_params

__all__ = ["evaluate_baseline", "DIGITAL_BASELINES", "prune_pair_energy"]

DIGITAL_BASELINES = ("sprint", "non-pim", "nmp")
#: Energy components of the digital baselines that belong to the linear layers.
_LINEAR_PARTS = ("mac_linear", "weights", "sram_linear")


def prune_pair_energy(head_dim, p):
    """Energy (J) of SPRINT's in-memory 4-bit x 4-bit dot product of one (query, key)
    pair over ``head_dim``, on HyFlexPIM's RRAM arrays (64 x 128, SLC): K's 4 MSBs take
    4 columns per key (32 keys per array), the query's 4 MSBs are 4 bit-planes; per
    plane every row chunk converts the key's 4 columns and reads its array (shared by
    32 keys)."""
    bits = int(p.baseline("sprint.prune_bits"))
    chunks = math.ceil(head_dim / p.rows)
    keys_per_array = p.cols // bits
    conv = bits * bits * chunks
    per_array = bits * chunks * (p.e_array_read + p.e_registers_plane
                                 + min(head_dim, p.rows) * p.e_wl_pulse * p.wl_activity)
    return conv * (p.e_conversion("slc") + p.e_shift_add + p.e_sample_hold) + per_array / keys_per_array


def _work(model, S, G):
    """Counts per sequence of the whole model: weights (bytes = MACs per token), attention
    products (prefill, and per generation step), SFU inputs, contexts."""
    L = model.layers
    n_pre = S - G
    ctx = np.arange(n_pre + 1, S + 1, dtype=np.float64)
    pre_pairs = pairs(n_pre, n_pre, model.causal)
    return {
        "W": L * model.weights_per_layer(),
        "kv_tok": L * 2 * model.d_kv,
        "ctx": ctx, "n_pre": n_pre,
        "pairs_pre": L * model.heads * pre_pairs, "pairs_dec": L * model.heads * ctx,
        "att_pre": L * 2 * model.heads * pre_pairs * model.head_dim,
        "att_dec": L * 2 * model.heads * ctx * model.head_dim,
        "softmax_pre": L * model.heads * pre_pairs, "softmax_dec": L * model.heads * ctx,
        "sfu_tok": L * sfu_inputs_per_token(model),
    }


def evaluate_baseline(model, seq, slc=0.1, design="non-pim", *, slc_map=None, svd=True, chips=None,
                      batch=1, gen=None, params=None, schedule=None):
    """One design point of a digital baseline; the keys of :func:`.evaluate.evaluate`."""
    p = params or default_params()
    model = get_model(model)
    if design not in DIGITAL_BASELINES:
        raise ValueError(f"design must be one of {', '.join(DIGITAL_BASELINES)}, not {design!r}")
    ref = make_plan(model, seq, slc, "hyflexpim", slc_map=slc_map, svd=svd, chips=chips,
                    batch=batch, gen=gen, params=p, schedule=schedule)
    chips = ref.chips
    b = p.baseline
    S, G = seq, ref.gen
    w = _work(model, S, G)
    W, kv_tok, ctx, n_pre = w["W"], w["kv_tok"], w["ctx"], w["n_pre"]
    sfu_rate = chips * p.pus_per_chip * p.sfu_inputs_per_s_per_pu
    e_mac = p.e_int8_mac_baseline
    area = chips * p.chip_area
    n_mac = math.floor(b("digital.mac_area_fraction") * area / p.int8_mac_area_mm2)
    mac_rate = n_mac * b("digital.clock_hz")
    e_sram_bit = b("digital.sram_pj_per_bit_45nm") * b("technology.energy_scale_45_to_65") * 1e-12
    reuse = b("digital.sram_operand_reuse")
    lin_macs = n_pre * W + G * W                       # every token through every static matrix
    if design == "sprint":
        kept = 1.0 - b("sprint.attention_sparsity")
        e_pair = prune_pair_energy(model.head_dim, p)
        e_read = b("sprint.rram_read_pj_per_bit") * 1e-12
        e_write = b("sprint.rram_write_pj_per_bit") * 1e-12 * b("sprint.prune_bits")
        sfu_pre = kept * w["softmax_pre"] + n_pre * w["sfu_tok"]
        sfu_dec = kept * w["softmax_dec"] + w["sfu_tok"]
        wbw = chips * b("sprint.weight_bytes_per_s")
        macs_pre = n_pre * W + kept * w["att_pre"]
        roof = {"mac": macs_pre / mac_rate, "weights": W / wbw, "sfu": sfu_pre / sfu_rate}
        macs_dec = batch * (W + kept * w["att_dec"])
        roof_dec = {"mac": macs_dec / mac_rate, "weights": W / wbw, "sfu": batch * sfu_dec / sfu_rate}
        att_macs = kept * (w["att_pre"] + float(w["att_dec"].sum()))
        weight_reads = (1 + G / batch) * W              # once per sequence, once per step per batch
        e = {"mac_linear": lin_macs * e_mac, "mac_attention": att_macs * e_mac,
             "weights": weight_reads * 8 * e_read,
             "sram_linear": 2 * lin_macs / reuse * 8 * e_sram_bit,
             "sram_attention": 2 * att_macs / reuse * 8 * e_sram_bit,
             "prune": (w["pairs_pre"] + float(w["pairs_dec"].sum())) * e_pair
             + S * model.layers * model.d_kv * e_write,
             "sfu": (sfu_pre + float(sfu_dec.sum())) * p.e_sfu_input}
        extra = {"mac_units": n_mac, "kept_attention": kept, "weight_bytes_per_s": wbw}
    elif design == "non-pim":
        bw, e_bit = b("non_pim.dram_bytes_per_s"), b("non_pim.dram_pj_per_bit") * 1e-12
        sfu_pre = w["softmax_pre"] + n_pre * w["sfu_tok"]
        sfu_dec = w["softmax_dec"] + w["sfu_tok"]
        macs_pre = n_pre * W + w["att_pre"]
        bytes_pre = W + n_pre * kv_tok                  # weights once; K/V written out
        roof = {"mac": macs_pre / mac_rate, "dram": bytes_pre / bw, "sfu": sfu_pre / sfu_rate}
        macs_dec = batch * (W + w["att_dec"])
        bytes_dec = W + batch * kv_tok * (ctx + 1)      # weights once per step; K/V read + written
        roof_dec = {"mac": macs_dec / mac_rate, "dram": bytes_dec / bw, "sfu": batch * sfu_dec / sfu_rate}
        att_macs = w["att_pre"] + float(w["att_dec"].sum())
        w_bytes = W * (1 + G / batch)
        kv_bytes = n_pre * kv_tok + float((kv_tok * (ctx + 1)).sum())
        e = {"mac_linear": lin_macs * e_mac, "mac_attention": att_macs * e_mac,
             "weights": w_bytes * 8 * e_bit, "kv_dram": kv_bytes * 8 * e_bit,
             "sram_linear": (2 * lin_macs / reuse + w_bytes) * 8 * e_sram_bit,
             "sram_attention": (2 * att_macs / reuse + kv_bytes) * 8 * e_sram_bit,
             "sfu": (sfu_pre + float(sfu_dec.sum())) * p.e_sfu_input}
        extra = {"mac_units": n_mac, "dram_bytes_per_s": bw}
    else:  # nmp
        stacks = chips * b("nmp.stacks_per_chip")
        ext_bw = stacks * b("nmp.hbm_stack_bytes_per_s")
        int_bw = ext_bw * b("nmp.internal_bw_factor")
        mac_rate = int_bw * b("nmp.macs_per_byte")
        reuse = b("nmp.token_reuse")
        e_int, e_ext = b("nmp.internal_pj_per_bit") * 1e-12, b("nmp.hbm_pj_per_bit") * 1e-12
        sfu_pre = w["softmax_pre"] + n_pre * w["sfu_tok"]
        sfu_dec = w["softmax_dec"] + w["sfu_tok"]
        macs_pre = n_pre * W + w["att_pre"]
        kv_pass = kv_tok * n_pre * math.ceil(n_pre / reuse) / (2 if model.causal else 1)
        w_int_pre = W * math.ceil(n_pre / reuse)
        ext_pre = 5 * sfu_pre
        roof = {"mac": macs_pre / mac_rate, "dram": (w_int_pre + kv_pass) / int_bw,
                "host_io": ext_pre / ext_bw, "sfu": sfu_pre / sfu_rate}
        macs_dec = batch * (W + w["att_dec"])
        int_dec = W * math.ceil(batch / reuse) + batch * kv_tok * ctx
        ext_dec = 5 * batch * sfu_dec
        roof_dec = {"mac": macs_dec / mac_rate, "dram": int_dec / int_bw, "host_io": ext_dec / ext_bw,
                    "sfu": batch * sfu_dec / sfu_rate}
        att_macs = w["att_pre"] + float(w["att_dec"].sum())
        w_int = w_int_pre + G * W * math.ceil(batch / reuse) / batch
        kv_int = kv_pass + float((kv_tok * ctx).sum())
        ext_bytes = ext_pre + float((5 * sfu_dec).sum())
        e = {"mac_linear": lin_macs * e_mac, "mac_attention": att_macs * e_mac,
             "weights": w_int * 8 * e_int, "kv_dram": kv_int * 8 * e_int,
             "host_io": ext_bytes * 8 * e_ext,
             "sfu": (sfu_pre + float(sfu_dec.sum())) * p.e_sfu_input}
        extra = {"hbm_stacks": stacks, "internal_bytes_per_s": int_bw}
    t_pre = max(roof.values())
    roof_dec = {k: np.broadcast_to(v, ctx.shape) for k, v in roof_dec.items()}
    t_dec = np.maximum.reduce(list(roof_dec.values()))
    gen_time = float(np.sum(t_dec)) if G else 0.0
    if G:   # the resource that bounds most of the generation time
        roof = {k: float(np.sum(np.where(v >= t_dec, t_dec, 0.0))) for k, v in roof_dec.items()}
    pre_tps = n_pre / t_pre if n_pre else 0.0
    tps = batch * G / gen_time if G else pre_tps
    breakdown = {k: v / S for k, v in e.items()}
    lin = {k: v for k, v in breakdown.items() if k in _LINEAR_PARTS}
    return {
        "design": design, "model": model.name, "kind": model.kind, "seq": S, "slc": None,
        "batch": batch, "tokens_per_s": tps, "latency_s": t_pre + gen_time,
        "energy_per_token_j": sum(breakdown.values()), "energy_breakdown_j": breakdown,
        "linear_energy_per_token_j": sum(lin.values()), "linear_energy_breakdown_j": lin,
        "area_mm2": area, "area_efficiency": tps / area,
        "chips": chips, "pus_per_layer": None, "pipelines": 1,
        "prefill_tokens": n_pre, "generated_tokens": G, "prefill_tokens_per_s": pre_tps,
        "prefill_latency_s": t_pre, "generation_time_s": gen_time,
        "period_s": t_pre, "bottleneck": max(roof, key=roof.get),
        "schedule": None,
        "budget": "same chips as HyFlexPIM: " + ", ".join(f"{k}={v:.4g}" for k, v in extra.items()),
    }
