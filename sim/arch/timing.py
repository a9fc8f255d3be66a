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
"""

import math

from .params import default_params

__all__ = ["array_cycles", "plane_cycles", "vector_time", "first_result_time",
           "digital_products_time", "sfu_time", "transfer_time"]


def _nonneg_int(name, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {v!r}")
    return v


def _pos_int(name, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive integer, not {v!r}")
    return v


def plane_cycles(mode, cols=128, read_cycles=4, slc_steps=6, mlc_steps=7):
    """Steady-state cycles per bit-plane: ``max(read_cycles, cols * steps(mode))``."""
    steps = {"slc": slc_steps, "mlc": mlc_steps}.get(mode)
    if steps is None:
        raise ValueError(f"mode must be 'slc' or 'mlc', not {mode!r}")
    _pos_int("cols", cols)
    _nonneg_int("read_cycles", read_cycles)
    return max(read_cycles, cols * steps)


def array_cycles(n_vectors, mode, cols=128, read_cycles=4, latency=0, planes=8,
                 slc_steps=6, mlc_steps=7):
    """Cycles for one array to return ``n_vectors`` results (from the first input accepted).

    ``latency`` is the constant extra latency of the implementation (registers between
    the stages); the lead's RTL comparison passes the measured value.
    """
    _nonneg_int("n_vectors", n_vectors)
    _nonneg_int("latency", latency)
    _pos_int("planes", planes)
    if n_vectors == 0:
        return 0
    per_plane = plane_cycles(mode, cols, read_cycles, slc_steps, mlc_steps)
    return read_cycles + latency + n_vectors * planes * per_plane


def vector_time(mode, cols_used=None, params=None):
    """Steady-state seconds per input vector of one array with the published timing."""
    p = params or default_params()
    cols_used = p.cols if cols_used is None else cols_used
    cyc = plane_cycles(mode, cols_used, p.read_cycles_physical, p.slc_steps, p.mlc_steps)
    return p.input_bits * cyc / p.f_cmp


def first_result_time(mode, cols_used=None, params=None):
    """Seconds from an input vector to its result (one read before the first conversion)."""
    p = params or default_params()
    cols_used = p.cols if cols_used is None else cols_used
    return array_cycles(1, mode, cols_used, p.read_cycles_physical, 0, p.input_bits,
                        p.slc_steps, p.mlc_steps) / p.f_cmp


def digital_products_time(products, pus=1, params=None):
    """Seconds for ``products`` INT8 x INT8 NOR products on the digital PIM of ``pus`` PUs.

    One row step (5 cycles) performs ``floor(1024 / 3) = 341`` NORs in one row of each
    array; a product needs 64 NORs; the work is spread evenly over all arrays.
    """
    p = params or default_params()
    if products < 0:
        raise ValueError(f"products must be non-negative, not {products!r}")
    nors = products * p.nors_per_product
    per_step = p.digital_arrays_per_pu * pus * p.rows_per_step * p.nors_per_row_step
    return math.ceil(nors / per_step) * p.t_row_step


def sfu_time(inputs, pus=1, params=None):
    """Seconds for ``inputs`` FP16 inputs through the SFUs of ``pus`` PUs (256 per cycle each)."""
    p = params or default_params()
    per_cycle = p.sfu_inputs_per_cycle * p.digital_modules_per_pu * pus
    return math.ceil(inputs / per_cycle) / p.f_clk


def transfer_time(nbytes, bandwidth):
    """Seconds to move ``nbytes`` at ``bandwidth`` bytes per second."""
    return nbytes / bandwidth
