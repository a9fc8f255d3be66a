"""Time of one layer for one sequence on its PUs, given the copies of its analog stages.

A layer's static matrices form two analog *phases* (DESIGN.md s8): ``qkv`` (Q, K, V side
by side, each A then B with SVD) and ``post`` (O -> FFN1 (+ gate) -> FFN2, streamed token
by token through the SFU's residual, norm and activation). Between them the digital PIM
computes attention (``Q K^T``, softmax on the SFU, ``P V``) row by row. A phase whose
tile groups all have ``c`` copies takes the tokens ``c`` at a time:

    stream(n, c, depth) = (ceil(n / c) - 1) * t_vec + depth * t_first

(``depth`` = arrays in series on a token's path; t_vec = 800 ns per vector, t_first =
900 ns to a vector's result). Encoders (bidirectional attention) need the K and V of all
tokens before the first attention row; attention rows then stream into the post phase:

    T = qkv + max(att + depth_post * t_first, att / n + post)

Decoder prefill (causal) streams everything: ``T = max(occupancies) + fills``.
Schedules (``constraints/hyflexpim_params.json``, ``schedule.pu_schedule``):

* ``sequence``: the PUs of a layer hold one sequence at a time; a new sequence enters
  when the previous one leaves: the layer's period is ``T``.
* ``overlap``: consecutive sequences overlap inside the PUs (Q/K/V of sequence i + 1
  while sequence i is in attention or post): the period is the busiest resource's
  occupancy, ``max(ceil(n/c_qkv) t_vec, att, ceil(n/c_post) t_vec, SFU, inner bus)``.

Replicating one phase only shortens ``T`` in the ``sequence`` schedule; in ``overlap``
both phases must gain copies (so a layer that fits a PU once gains nothing from the
arrays MLC frees: docs/architecture.md, "Schedules").
"""

import math
from dataclasses import dataclass

__all__ = ["LayerStage", "stream", "occupancy", "layer_latency", "layer_period", "layer_busy",
           "RESOURCES"]

#: Resources a period can be bound by (the bottleneck label).
RESOURCES = ("analog", "digital_pim", "sfu", "inner_bus", "global_bus", "chip_link")


def stream(n, c, depth, t_vec, t_first):
    """Seconds for ``n`` tokens through a phase of ``c`` copies and ``depth`` stages."""
    if n <= 0:
        return 0.0
    return (math.ceil(n / c) - 1) * t_vec + depth * t_first


def occupancy(n, c, t_vec):
    """Seconds the arrays of a phase are busy with ``n`` tokens over ``c`` copies."""
    return math.ceil(n / c) * t_vec if n > 0 else 0.0


@dataclass(frozen=True)
class LayerStage:
    """Everything but the copies that fixes one layer's time for one sequence pass."""
    n: int                # query rows (tokens) of the pass
    causal: bool          # causal attention (decoder): no barrier after K/V
    depth_qkv: int
    depth_post: int
    t_vec: float
    t_first: float
    att: float            # digital PIM seconds (QK^T and PV of all heads)
    sfu_att: float        # softmax seconds
    sfu_post: float       # norms and activation seconds
    bus_qkv: float        # inner-bus seconds of the qkv phase (linear traffic)
    bus_post: float       # inner-bus seconds of attention and the post phase
    glob_fill: float      # global-bus seconds added to one token's path (TP exchanges)

    def _attention(self):
        return max(self.att, self.sfu_att)


def layer_latency(st, c_qkv, c_post):
    """Seconds from the first token entering the layer to the last leaving it."""
    if st.n <= 0:
        return 0.0
    att = st._attention()
    qkv = max(stream(st.n, c_qkv, st.depth_qkv, st.t_vec, st.t_first), st.bus_qkv)
    post = max(stream(st.n, c_post, st.depth_post, st.t_vec, st.t_first), st.bus_post, st.sfu_post)
    if not st.causal:
        return qkv + max(att + st.depth_post * st.t_first, att / st.n + post) + st.glob_fill
    occ = max(occupancy(st.n, c_qkv, st.t_vec), occupancy(st.n, c_post, st.t_vec), att,
              st.sfu_att + st.sfu_post, st.bus_qkv + st.bus_post)
    return occ + (st.depth_qkv + st.depth_post) * st.t_first + att / st.n + st.glob_fill


def layer_period(st, c_qkv, c_post, schedule):
    """Seconds between sequences entering the layer under ``schedule``."""
    if schedule == "sequence":
        return layer_latency(st, c_qkv, c_post)
    return max(occupancy(st.n, c_qkv, st.t_vec), occupancy(st.n, c_post, st.t_vec),
               st._attention(), st.sfu_att + st.sfu_post, st.bus_qkv + st.bus_post)


def layer_busy(st, c_qkv, c_post, schedule):
    """Busy seconds per resource of the layer per sequence (the bottleneck's evidence).

    ``analog``: the time some analog phase runs (both phases one after the other in an
    encoder under ``sequence``, else the longer one)."""
    q, p = occupancy(st.n, c_qkv, st.t_vec), occupancy(st.n, c_post, st.t_vec)
    analog = q + p if (schedule == "sequence" and not st.causal) else max(q, p)
    return {"analog": analog, "digital_pim": st.att, "sfu": st.sfu_att + st.sfu_post,
            "inner_bus": st.bus_qkv + st.bus_post}
