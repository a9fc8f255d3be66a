"""Operation counts of a transformer layer, shared by every design (HyFlexPIM and the
baselines): attention pairs and products, SFU inputs, bytes moved.

Counts are per layer; ``queries`` are the query rows processed, ``pairs`` the
(query, key) pairs they make (``keys`` per query, or the causal triangle).
"""

__all__ = ["pairs", "ffn_act_inputs", "attention_counts", "sfu_inputs_per_token"]


def pairs(queries, keys, causal):
    """(query, key) pairs of the last ``queries`` of ``keys`` tokens (causal: key <= query)."""
    if queries <= 0:
        return 0
    if not causal:
        return queries * keys
    first = keys - queries + 1
    return queries * (first + keys) // 2


def ffn_act_inputs(model):
    """SFU inputs of the FFN activation per token (GELU: ffn; SwiGLU: 2 x ffn)."""
    return (2 if model.ffn_act == "swiglu" else 1) * model.ffn


def sfu_inputs_per_token(model):
    """SFU inputs per token outside softmax: two norms (+ residual) and the activation."""
    return 2 * model.hidden + ffn_act_inputs(model)


def attention_counts(model, queries, n_pairs):
    """Counts of ``queries`` query rows that make ``n_pairs`` (query, key) pairs.

    Returns INT8 products (QK^T and PV), SFU inputs (softmax, two norms, FFN activation)
    and inner-bus bytes (Q/K/V into the digital PIM, the INT32 context out, the SFU
    traffic: INT32 in, INT8 back).
    """
    products = 2 * model.heads * n_pairs * model.head_dim
    softmax = model.heads * n_pairs
    sfu = softmax + queries * sfu_inputs_per_token(model)
    nbytes = queries * (model.d_q + 2 * model.d_kv) + 4 * queries * model.d_q + 5 * sfu
    return {"products": products, "softmax_inputs": softmax, "sfu_inputs": sfu, "bus_bytes": nbytes}
