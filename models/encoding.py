"""The number encoding shared by the golden model, the crossbar model and the RTL.

This is the single place where the encoding of DESIGN.md section 3 is written down.

Inputs
    Two's complement INT8, applied bit-serially: bit-plane ``b`` (b = 0..7) drives
    every wordline whose input has bit ``b`` set. Plane ``b`` has weight ``2**b``,
    except plane 7, whose weight is ``-2**7``.

Weights (offset binary)
    A signed INT8 weight ``w`` is stored as ``u = w + 128`` (0..255). ``u`` is cut
    into slices, least significant first: SLC stores 8 slices of 1 bit (cell level
    0..1, column weight ``2**k``), 2-bit MLC stores 4 slices of 2 bits (cell level
    0..3, column weight ``4**k``). The slices of one weight occupy adjacent columns of
    one row: physical column ``j * S + k`` holds slice ``k`` of output neuron ``j``,
    with ``S`` slices per weight (8 SLC, 4 MLC).

Reconstruction
    With ``c[b, j*S+k]`` the ADC code of column ``j*S+k`` for plane ``b``::

        y[j] = sum_b pw(b) * sum_k cw(k) * c[b, j*S+k]  -  128 * sum_i x[i]

    The last term removes the offset; the hardware computes ``sum_i x[i]`` digitally
    while loading the input register. Without ADC saturation ``y = x @ w`` exactly.
"""

import numpy as np

__all__ = [
    "INPUT_BITS", "WEIGHT_OFFSET", "MODES", "bits_per_cell", "slices_per_weight",
    "levels_per_cell", "neurons_per_array", "column_weight", "plane_weight",
    "check_mode", "check_int8", "encode_weights", "bit_planes", "offset_correction",
]

INPUT_BITS = 8
WEIGHT_OFFSET = 128
MODES = ("slc", "mlc")
_BPC = {"slc": 1, "mlc": 2}


def check_mode(mode):
    """Return ``mode`` lower-cased if it is ``"slc"`` or ``"mlc"``; else ``ValueError``."""
    if isinstance(mode, str) and mode.lower() in _BPC:
        return mode.lower()
    raise ValueError(f"mode must be 'slc' or 'mlc', not {mode!r}")


def bits_per_cell(mode):
    return _BPC[check_mode(mode)]


def levels_per_cell(mode):
    return 1 << bits_per_cell(mode)


def slices_per_weight(mode):
    return INPUT_BITS // bits_per_cell(mode)


def neurons_per_array(mode, cols):
    return cols // slices_per_weight(mode)


def column_weight(mode, k):
    """Weight of slice ``k`` of a weight: ``2**k`` (SLC) or ``4**k`` (MLC)."""
    return 1 << (k * bits_per_cell(mode))


def plane_weight(b):
    """Weight of input bit-plane ``b``: ``2**b``, and ``-2**7`` for the sign plane."""
    if not 0 <= b < INPUT_BITS:
        raise ValueError(f"bit-plane must be in 0..{INPUT_BITS - 1}, not {b!r}")
    return -(1 << b) if b == INPUT_BITS - 1 else 1 << b


def check_int8(a, name, ndim=None):
    """Return ``a`` as an int64 array after checking dtype, shape rank and INT8 range."""
    arr = np.asarray(a)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array (INT8 values), not dtype {arr.dtype}")
    if ndim is not None and arr.ndim not in ((ndim,) if isinstance(ndim, int) else ndim):
        raise ValueError(f"{name} must have {ndim} dimension(s), not shape {arr.shape}")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < -128 or hi > 127:
            raise ValueError(f"{name} must hold INT8 values in [-128, 127], found [{lo}, {hi}]")
    return arr.astype(np.int64)


def encode_weights(w, mode):
    """Cell levels of an INT8 matrix ``w`` (m x n): an (m, n*S) uint8 array of levels.

    Column ``j*S + k`` holds slice ``k`` (LSB first) of ``w[:, j] + 128``.
    """
    mode = check_mode(mode)
    w = check_int8(w, "weights", ndim=2)
    u = (w + WEIGHT_OFFSET).astype(np.uint16)
    bpc, s = bits_per_cell(mode), slices_per_weight(mode)
    mask = (1 << bpc) - 1
    shifts = np.arange(s) * bpc
    lv = (u[:, :, None] >> shifts[None, None, :]) & mask
    return lv.reshape(w.shape[0], w.shape[1] * s).astype(np.uint8)


def bit_planes(x):
    """Bit-planes of INT8 inputs ``x`` (..., m): a uint8 array (8, ..., m) of 0/1."""
    u = check_int8(x, "x").astype(np.uint8)
    return np.stack([(u >> b) & 1 for b in range(INPUT_BITS)])


def offset_correction(x):
    """The digital correction ``-128 * sum(x)`` over the last axis (int64)."""
    return -WEIGHT_OFFSET * check_int8(x, "x").sum(axis=-1)
