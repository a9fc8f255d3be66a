"""First-order non-PIM and near-memory (HBM bank-level) baselines (DESIGN.md s6).

Both run the same transformer (unfactored INT8 weights, INT8 attention) on the same
hardware budget as HyFlexPIM: the number of chips HyFlexPIM needs for that model and
SLC rate (or ``chips``). Parameters: ``baselines`` in constraints/hyflexpim_params.json.

non-pim
    INT8 MAC units filling ``mac_area_fraction`` of the HyFlexPIM silicon area
    (``chips * chip_area``), one MAC per unit per 1 GHz cycle, operands from SRAM
    (each fetched byte feeds ``sram_operand_reuse`` MACs), weights streamed from DRAM
    (4 x DDR4-3200) into SRAM once per sequence (encoder, prefill) or once per
    generation step shared by the batch; the KV cache is read from DRAM every step.
    Time per phase = max(MAC time, DRAM time, SFU time) (roofline).
nmp
    ``nmp_stacks_per_chip`` HBM-PIM stacks per chip of budget; bank units see
    ``nmp_internal_bw_factor`` x 256 GB/s per stack and do one MAC per byte of it; a
    weight read from a bank serves ``nmp_token_reuse`` tokens; SFU work on the host
    side with the same SFU throughput/energy as HyFlexPIM, its operands crossing the
    external HBM interface.
"""

import math

import numpy as np

from .evaluate import _pairs_prefill
from .mapper import plan as make_plan
from .models import get_model
from .params import default_params

__all__ = ["evaluate_baseline"]


def _sfu_inputs(model, queries, pairs):
    act = (2 if model.ffn_act == "swiglu" else 1) * model.ffn
    return model.heads * pairs + queries * (2 * model.hidden + act)


def evaluate_baseline(model, seq, slc=0.1, design="non-pim", *, slc_map=None, svd=True, chips=None,
                      batch=1, gen=None, params=None):
    p = params or default_params()
    model = get_model(model)
    ref = make_plan(model, seq, slc, "hyflexpim", slc_map=slc_map, svd=svd, chips=chips,
                    batch=batch, gen=gen, params=p)
    chips = ref.chips
    b = p.baseline
    L, S = model.layers, seq
    G = (S // 2 if gen is None else gen) if model.causal else 0
    n_pre = S - G
    W = L * model.weights_per_layer()                  # INT8 weight bytes = MACs per token
    kv_tok = L * 2 * model.d_kv                        # KV bytes per token of context
    ctx = np.arange(n_pre + 1, S + 1, dtype=np.float64)
    pre_pairs = _pairs_prefill(n_pre, model.causal)
    att_pre = L * 2 * model.heads * pre_pairs * model.head_dim
    att_dec = L * 2 * model.heads * ctx * model.head_dim
    sfu_pre = L * _sfu_inputs(model, n_pre, pre_pairs)
    sfu_dec = L * (model.heads * ctx + (_sfu_inputs(model, 1, 0)))
    sfu_rate = chips * p.pus_per_chip * p.sfu_inputs_per_s_per_pu
    e_mac = p.e_int8_mac_baseline
    area = chips * p.chip_area
    if design == "non-pim":
        n_mac = math.floor(b("mac_area_fraction") * area / p.int8_mac_area_mm2)
        mac_rate = n_mac * p.f_clk
        bw, e_bit = b("dram_bytes_per_s"), b("dram_pj_per_bit") * 1e-12
        e_sram_bit = b("sram_pj_per_bit_45nm") * b("tech_energy_scale") * 1e-12
        reuse = b("sram_operand_reuse")
        macs_pre = n_pre * W + att_pre
        bytes_pre = W + n_pre * kv_tok                  # weights once; K/V written out
        t_pre = max(macs_pre / mac_rate, bytes_pre / bw, sfu_pre / sfu_rate)
        macs_dec = batch * (W + att_dec)
        bytes_dec = W + batch * kv_tok * (ctx + 1)      # weights once per step; K/V read + written
        t_dec = np.maximum(np.maximum(macs_dec / mac_rate, bytes_dec / bw), batch * sfu_dec / sfu_rate)
        # per-sequence energy (a step's weight traffic is shared by the batch)
        macs = macs_pre + float((W + att_dec).sum())
        dram_bytes = bytes_pre + float((W / batch + kv_tok * (ctx + 1)).sum())
        sram_bits = (2 * macs / reuse + dram_bytes) * 8
        e = {"mac": macs * e_mac, "dram": dram_bytes * 8 * e_bit, "sram": sram_bits * e_sram_bit,
             "sfu": (sfu_pre + float(sfu_dec.sum())) * p.e_sfu_input}
        extra = {"mac_units": n_mac, "dram_bytes_per_s": bw}
    elif design == "nmp":
        stacks = chips * b("nmp_stacks_per_chip")
        ext_bw = stacks * b("hbm_stack_bytes_per_s")
        int_bw = ext_bw * b("nmp_internal_bw_factor")
        mac_rate = int_bw * b("nmp_macs_per_byte")
        reuse = b("nmp_token_reuse")
        e_int, e_ext = b("nmp_internal_pj_per_bit") * 1e-12, b("hbm_pj_per_bit") * 1e-12
        macs_pre = n_pre * W + att_pre
        int_pre = W * math.ceil(n_pre / reuse) + kv_tok * n_pre * math.ceil(n_pre / reuse) / 2 \
            if model.causal else W * math.ceil(n_pre / reuse) + kv_tok * n_pre * math.ceil(n_pre / reuse)
        ext_pre = 5 * sfu_pre
        t_pre = max(macs_pre / mac_rate, int_pre / int_bw, ext_pre / ext_bw, sfu_pre / sfu_rate)
        macs_dec = batch * (W + att_dec)
        int_dec = W * math.ceil(batch / reuse) + batch * kv_tok * ctx
        ext_dec = 5 * batch * sfu_dec
        t_dec = np.maximum(np.maximum(macs_dec / mac_rate, int_dec / int_bw),
                           np.maximum(ext_dec / ext_bw, batch * sfu_dec / sfu_rate))
        macs = macs_pre + float((W + att_dec).sum())
        int_bytes = int_pre + float((W * math.ceil(batch / reuse) / batch + kv_tok * ctx).sum())
        ext_bytes = ext_pre + float((5 * sfu_dec).sum())
        e = {"mac": macs * e_mac, "dram": int_bytes * 8 * e_int + ext_bytes * 8 * e_ext,
             "sfu": (sfu_pre + float(sfu_dec.sum())) * p.e_sfu_input}
        extra = {"hbm_stacks": stacks, "internal_bytes_per_s": int_bw}
    else:
        raise ValueError(f"design must be 'non-pim' or 'nmp', not {design!r}")
    gen_time = float(np.sum(t_dec)) if G else 0.0
    pre_tps = n_pre / t_pre if n_pre else 0.0
    tps = batch * G / gen_time if G else pre_tps
    breakdown = {k: v / S for k, v in e.items()}
    return {
        "design": design, "model": model.name, "kind": model.kind, "seq": S, "slc": None,
        "batch": batch, "tokens_per_s": tps, "latency_s": t_pre + gen_time,
        "energy_per_token_j": sum(breakdown.values()), "energy_breakdown_j": breakdown,
        "area_mm2": area, "chips": chips, "pus_per_layer": None, "pipelines": 1,
        "prefill_tokens": n_pre, "generated_tokens": G, "prefill_tokens_per_s": pre_tps,
        "prefill_latency_s": t_pre, "generation_time_s": gen_time,
        "budget": "same chips as HyFlexPIM: " + ", ".join(f"{k}={v:.4g}" for k, v in extra.items()),
    }
