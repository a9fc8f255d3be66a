"""Cycle and time accounting of one analog array, the digital PIM and the SFU.

One analog array, one INT8 input vector (DESIGN.md s3, ARRAY_IFACE.md):

* 8 bit-planes; each plane is one crossbar read (``read_cycles``) whose 128 bitlines
  are caught by the S&H and converted by ONE SAR ADC, one comparison per clock,
  ``steps`` comparisons per column (6 SLC, 7 MLC).
* Two-stage pipeline: plane ``b + 1`` is read while plane ``b`` is converted, so one
  plane costs ``max(read_cycles, cols * steps)`` cycles in steady state and the first
  result comes ``read_cycles + latency`` cycles after the last conversion of the first
  vector would have ended without the read.

:func:`array_cycles` counts comparison-clock cycles for ``n`` vectors::

    read_cycles + latency + n * planes * max(read_cycles, cols * steps)

With the RTL's parameters (read_cycles = 4) this is ``n * 8 * cols * steps + 4 + latency``
(6144 / 7168 per 64 x 128 vector). With the published ones the comparison clock is
``1.28 GS/s * 7 = 8.96 GHz`` and a 100 ns read is 896 cycles >= 128 * 7, so every plane
takes 100 ns in both modes: :func:`vector_time` is 800 ns.

Digital PIM (attention): :func:`head_cycles` counts the module cycles of one head's
``Q K^T`` and ``P V`` command by command with :mod:`hyflexpim.models.digital_pim` (the
golden model the RTL controller is checked against, cycle for cycle: the K/V append,
per query one SCORES and one CONTEXT command, each with its operand beats, its product
run with the operand-fetch reads, idle arrays when a head has fewer keys than arrays,
the drain, the reduction and the result beats); :func:`run_head_cycles` is the product
runs alone;
:func:`published_head_cycles` is the published accounting (273 products per cycle, all
arrays busy) for comparison; :func:`attention_time` spreads the heads round robin over
the modules.
"""

import functools
import math

from ...base import check_choice, check_float, check_int
from ...models import digital_pim as _dp
from .counts import pairs
from .params import default_params

__all__ = ["array_cycles", "plane_cycles", "vector_time", "first_result_time",
           "digital_products_time", "sfu_time", "transfer_time", "head_cycles",
           "published_head_cycles", "run_head_cycles", "attention_time", "query_cycles"]


def plane_cycles(mode, cols=128, read_cycles=4, slc_steps=6, mlc_steps=7):
    """Steady-state cycles per bit-plane: ``max(read_cycles, cols * steps(mode))``."""
    check_choice("mode", mode, ("slc", "mlc"))
    steps = {"slc": slc_steps, "mlc": mlc_steps}[mode]
    check_int("cols", cols, 1, 1 << 16)
    check_int("read_cycles", read_cycles, 0)
    return max(read_cycles, cols * steps)


def array_cycles(n_vectors, mode, cols=128, read_cycles=4, latency=0, planes=8,
                 slc_steps=6, mlc_steps=7):
    """Cycles for one array to return ``n_vectors`` results (from the first input accepted).

    ``latency`` is the constant extra latency of the implementation (registers between
    the stages); the RTL comparison passes the measured value.
    """
    check_int("n_vectors", n_vectors, 0)
    check_int("latency", latency, 0)
    check_int("planes", planes, 1, 64)
    if n_vectors == 0:
        return 0
    per_plane = plane_cycles(mode, cols, read_cycles, slc_steps, mlc_steps)
    return read_cycles + latency + n_vectors * planes * per_plane


def vector_time(mode, cols_used=None, params=None, input_bits=None):
    """Steady-state seconds per input vector of one array with the published timing."""
    p = params or default_params()
    cols_used = p.cols if cols_used is None else cols_used
    bits = p.input_bits if input_bits is None else input_bits
    cyc = plane_cycles(mode, cols_used, p.read_cycles_physical, p.slc_steps, p.mlc_steps)
    return bits * cyc / p.f_cmp


def first_result_time(mode, cols_used=None, params=None, input_bits=None):
    """Seconds from an input vector to its result (one read before the first conversion)."""
    p = params or default_params()
    cols_used = p.cols if cols_used is None else cols_used
    bits = p.input_bits if input_bits is None else input_bits
    return array_cycles(1, mode, cols_used, p.read_cycles_physical, 0, bits,
                        p.slc_steps, p.mlc_steps) / p.f_cmp


def digital_products_time(products, pus=1, params=None):
    """Seconds for ``products`` INT8 x INT8 NOR products on the digital PIM of ``pus`` PUs
    with the published accounting (all arrays busy): one row step (5 cycles) performs
    ``floor(1024 / 3) = 341`` NORs in one row of each array; a product needs 64 NORs.
    """
    p = params or default_params()
    check_float("products", products, 0.0)
    nors = products * p.nors_per_product
    per_step = p.digital_arrays_per_pu * pus * p.rows_per_step * p.nors_per_row_step
    return math.ceil(nors / per_step) * p.t_row_step


def published_head_cycles(queries, keys, head_dim, causal, arrays=256, cols=1024,
                          nors_per_product=64, cycles_per_step=5):
    """Module cycles of one head's ``Q K^T`` plus ``P V`` by the published accounting:
    every array does ``floor(cols / 3)`` NORs per 5-cycle row step, all arrays busy."""
    n = pairs(queries, keys, causal)
    per_step = arrays * (cols // 3)
    return 2 * math.ceil(n * head_dim * nors_per_product / per_step) * cycles_per_step


@functools.lru_cache(maxsize=4096)
def head_cycles(queries, keys, head_dim, causal=False, arrays=256, cols=1024, lanes=64):
    """Module cycles of one head: the last ``queries`` of ``keys`` tokens (``causal``:
    query ``i`` sees keys ``0..i``) on one digital PIM module, command by command as the
    RTL controller runs them: the APPEND of the new tokens' K and V rows, then per query
    its SCORES and CONTEXT commands (operand beats of ``lanes`` INT8, product run,
    shift-and-add drain, the reduction of the arrays' partial vectors, result beats).

    :func:`hyflexpim.models.digital_pim.head_command_cycles`, whose per-command counts
    the cocotb regression measures on the controller; the product runs alone are
    ``scores_cycles + context_cycles`` (:func:`run_head_cycles`).
    """
    check_int("queries", queries, 0, keys)
    check_int("keys", keys, 1)
    check_int("head_dim", head_dim, 1, 1024)
    return _dp.head_command_cycles(queries, keys, head_dim, causal, arrays=arrays, cols=cols,
                                   lanes=lanes)


def run_head_cycles(queries, keys, head_dim, causal=False, arrays=256, cols=1024):
    """The product runs of :func:`head_cycles` alone (no operand beats, drain, reduction
    or result beats): ``scores_cycles + context_cycles``."""
    return (_dp.scores_cycles(queries, keys, head_dim, causal, arrays=arrays, cols=cols)
            + _dp.context_cycles(queries, keys, head_dim, causal, arrays=arrays, cols=cols))


@functools.lru_cache(maxsize=65536)
def query_cycles(keys, head_dim, arrays=256, cols=1024, lanes=64):
    """Module cycles of one generated token of a head over ``keys`` keys: the APPEND of
    its K and V rows to a cache of ``keys - 1``, its SCORES and CONTEXT commands."""
    return head_cycles(1, keys, head_dim, False, arrays, cols, lanes)


def attention_time(heads, queries, keys, head_dim, causal, modules, params=None, cost=1.0):
    """Seconds of ``heads`` heads' attention products on ``modules`` digital PIM modules.

    Heads go round robin over the modules (``ceil(heads / modules)`` per module, as in
    ``models.digital_pim.writes_per_inference``); with more modules than heads, the
    queries of a head are split over ``modules // heads`` modules that each hold a copy
    of its K and V. ``cost`` multiplies the cycles (an FP32 baseline, a sparse one).
    """
    p = params or default_params()
    check_int("modules", modules, 1)
    if heads == 0 or queries == 0:
        return 0.0
    per_module = math.ceil(heads / modules)
    split = max(1, modules // heads)
    cyc = head_cycles(queries, keys, head_dim, causal, p.digital_arrays_per_module, p.digital_cols,
                      p.digital_command_lanes)
    return per_module * math.ceil(cyc * cost / split) / p.f_clk


def sfu_time(inputs, pus=1, params=None):
    """Seconds for ``inputs`` FP16 inputs through the SFUs of ``pus`` PUs (256 per cycle each)."""
    p = params or default_params()
    per_cycle = p.sfu_inputs_per_cycle * p.digital_modules_per_pu * pus
    return math.ceil(inputs / per_cycle) / p.f_clk


def transfer_time(nbytes, bandwidth):
    """Seconds to move ``nbytes`` at ``bandwidth`` bytes per second."""
    return nbytes / bandwidth
