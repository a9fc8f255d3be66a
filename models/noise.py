"""Noise on INT8 weights: the crossbar emulation (``fast``) and the authors' ``paper`` mode.

``effective_weights`` (fast mode)
    What one programming of the arrays does to an INT8 weight, without the ADC. With
    the offset-binary encoding (:mod:`.encoding`) a weight ``w`` is stored as slices
    ``l_k`` of ``u = w + 128`` (8 SLC slices of 1 bit or 4 MLC slices of 2 bits, column
    weight ``c_k``). The crossbar model (:mod:`.crossbar`) gives each cell the
    conductance ``(g0 + l_k) dG (1 + sigma e_k)`` and subtracts a reference cell
    ``g0 dG (1 + sigma e_ref)`` shared by all columns of one row of one array, with
    ``g0 = G_off / dG`` (1/149 in SLC, 3/149 in MLC). Read through the ideal shift-and-add
    this is the real-valued weight::

        w' = w + sigma * sum_k c_k (g0 + l_k) e_k  -  sigma * g0 * 255 * e_ref

    with every ``e`` an independent N(0, 1) drawn per programming, ``e_ref`` per (row,
    array). Not modelled here (the hardware-faithful mode has them): rounding of each
    bitline sum by the ADC, ADC saturation, clipping of negative conductances (at
    sigma = 0.157 a 6-sigma event) and the 2**-10 LSB grid.

``paper_group_noise`` (paper mode, DESIGN.md 5)
    An INT8 weight ``q`` (symmetric, |q| <= 127) is taken as sign and magnitude; the
    magnitude is cut into four 2-bit groups (bits 7-6, 5-4, 3-2, 1-0), each group's value
    ``((|q| >> 2j) & 3) * 4**j`` is multiplied by ``1 + std * N(0, 1)`` where the weight
    belongs to an MLC rank (SLC weights are exact), and the groups are summed and the sign
    put back. Sign-magnitude is this project's reading of the description (a two's
    complement split would put a large group on every small negative weight).
"""

import numpy as np

from . import encoding as enc
from .crossbar import conductance_levels

__all__ = ["column_tiles", "effective_weights", "paper_quantize", "paper_group_noise",
           "second_largest_clip"]


def _g0(mode):
    g = conductance_levels(mode)
    return g[0] / (g[1] - g[0])


def column_tiles(modes, cols=128):
    """Array index of each column when columns of each mode are packed in order."""
    modes = list(modes)
    out = np.zeros(len(modes), dtype=np.int64)
    seen = {m: 0 for m in enc.MODES}
    base = {"slc": 0, "mlc": 1 << 30}
    for j, m in enumerate(modes):
        out[j] = base[m] + seen[m] // enc.neurons_per_array(m, cols)
        seen[m] += 1
    return out


def effective_weights(q, sigma, rng, col_modes=None, row_modes=None, slc_mask=None, cols=128):
    """Real-valued weights after one noisy programming of the INT8 matrix ``q`` (m x n).

    Exactly one of ``col_modes`` (n modes), ``row_modes`` (m modes) or ``slc_mask``
    (bool m x n; SLC and MLC parts on separate arrays) gives the cell modes. ``rng`` is a
    ``numpy.random.Generator``. ``sigma = 0`` returns ``q`` as float.
    """
    q = enc.check_int8(q, "q", ndim=2)
    m, n = q.shape
    out = q.astype(np.float64)
    if sigma == 0:
        return out
    given = [a is not None for a in (col_modes, row_modes, slc_mask)]
    if sum(given) != 1:
        raise ValueError("give exactly one of col_modes, row_modes, slc_mask")
    if col_modes is not None:
        cm = np.array([enc.check_mode(x) for x in col_modes], dtype=object)
        if cm.shape != (n,):
            raise ValueError(f"col_modes must have {n} entries, not {cm.shape[0]}")
        is_slc = np.broadcast_to(cm == "slc", (m, n))
        tile = np.broadcast_to(column_tiles(cm, cols), (m, n))
    elif row_modes is not None:
        rm = np.array([enc.check_mode(x) for x in row_modes], dtype=object)
        if rm.shape != (m,):
            raise ValueError(f"row_modes must have {m} entries, not {rm.shape[0]}")
        is_slc = np.broadcast_to((rm == "slc")[:, None], (m, n))
        j = np.arange(n)
        tile = np.where(is_slc, j // enc.neurons_per_array("slc", cols),
                        (1 << 30) + j // enc.neurons_per_array("mlc", cols))
    else:
        is_slc = np.asarray(slc_mask, dtype=bool)
        if is_slc.shape != (m, n):
            raise ValueError(f"slc_mask must have shape {(m, n)}, not {is_slc.shape}")
        # both parts are programmed in full (zeros included) on their own arrays
        parts = []
        for md, sel in (("slc", is_slc), ("mlc", ~is_slc)):
            part = np.where(sel, q, 0)
            parts.append(effective_weights(part, sigma, rng, col_modes=[md] * n, cols=cols))
        return parts[0] + parts[1]
    u = q + enc.WEIGHT_OFFSET
    for md in enc.MODES:
        sel = is_slc if md == "slc" else ~is_slc
        if not sel.any():
            continue
        bpc, S = enc.bits_per_cell(md), enc.slices_per_weight(md)
        g0 = _g0(md)
        noise = np.zeros((m, n))
        for k in range(S):
            lk = (u >> (bpc * k)) & ((1 << bpc) - 1)
            noise += enc.column_weight(md, k) * (g0 + lk) * rng.standard_normal((m, n))
        tiles_md = np.unique(tile[sel])
        ref = rng.standard_normal((m, len(tiles_md)))
        idx = np.searchsorted(tiles_md, np.where(sel, tile, tiles_md[0]))
        ref_full = np.take_along_axis(ref, idx, axis=1)
        noise -= g0 * (2 ** enc.INPUT_BITS - 1) * ref_full
        out += sigma * np.where(sel, noise, 0.0)
    return out


def second_largest_clip(w):
    """The paper's clipping value: second-largest ``|w|`` (the largest if only one)."""
    a = np.sort(np.abs(np.asarray(w, dtype=np.float64)).ravel())
    if a.size == 0:
        raise ValueError("cannot quantise an empty tensor")
    c = a[-2] if a.size > 1 else a[-1]
    return c if c > 0 else (a[-1] if a[-1] > 0 else 1.0)


def paper_quantize(w):
    """Symmetric INT8 with the paper's clip: (q int64, scale) with ``w ~ q / scale``."""
    w = np.asarray(w, dtype=np.float64)
    scale = 127.0 / second_largest_clip(w)
    return np.clip(np.rint(w * scale), -127, 127).astype(np.int64), scale


def paper_group_noise(q, mlc_mask, std, rng):
    """Noisy real-valued INT8 weights of the paper mode (module doc)."""
    q = np.asarray(q, dtype=np.int64)
    mlc = np.broadcast_to(np.asarray(mlc_mask, dtype=bool), q.shape)
    sign = np.sign(q)
    a = np.abs(q)
    out = np.zeros(q.shape)
    for j in range(4):
        g = ((a >> (2 * j)) & 3) * (4 ** j)
        noise = 1.0 + std * rng.standard_normal(q.shape)
        out += np.where(mlc, g * noise, g)
    return sign * out
