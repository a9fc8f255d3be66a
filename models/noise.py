"""Noise on INT8 weights: the crossbar emulation (``fast``) and the authors' ``paper`` mode.

``effective_weights`` (fast mode)
    What one programming of the arrays does to an INT8 weight, without the ADC, for any
    :class:`~.device.Device`. With the offset-binary encoding (:mod:`.encoding`) a
    weight ``w`` is stored as slices ``l_k`` of ``u = w + 128`` (8 SLC slices of 1 bit
    or 4 MLC slices of 2 bits, column weight ``c_k``). Each cell gets the conductance of
    the crossbar model (:mod:`.crossbar`), in units of dG above the floor,
    ``G_k = max(mean(l_k) + sigma(l_k) e_k, -g_off)``, and with ``offset="reference"``
    a reference cell ``G_ref = max(mean(0) + sigma(0) e_ref, -g_off)`` shared by all
    columns of one row of one array is subtracted. Read through the ideal
    shift-and-add this is the real-valued weight::

        w' = sum_k c_k (L - 1) (G_k - G_ref) - 128          (G_ref = 0 with "nominal")

    with every ``e`` an independent N(0, 1) drawn per programming, ``e_ref`` per (row,
    array): the same per-cell statistics as the crossbar model, clipping included. Not
    modelled here (the hardware-faithful mode has them): rounding of each bitline sum
    by the ADC, ADC saturation and the 2**-10 LSB grid. Read noise, when the device
    has it, is added to the outputs by :func:`read_noise_outputs` (exact per-output
    variance, without the correlation the shared reference column gives).

``paper_group_noise`` (paper mode, DESIGN.md 5)
    An INT8 weight ``q`` in two's complement is split with the masks 0xC0, 0x30, 0x0C,
    0x03 (the authors' ``uniform_quantization``); the top group keeps the sign (-128,
    -64, 0 or 64), so a small negative weight carries the groups -64, 48, 12, 3. Each
    group of a weight in an MLC rank is multiplied by ``1 + std * N(0, 1)`` (SLC
    weights are exact) and the groups are summed. ``split="sign-magnitude"`` is the
    variant this project used first: the magnitude ``|q|`` cut into 2-bit groups and
    the sign put back.
    :func:`paper_ber` gives the 2-bit BER that a group std implies (a cell at level
    ``l`` of 0..3 read as ``l (1 + std N)`` against mid-point thresholds) and
    :func:`paper_std_for_ber` the std that implies a given BER.
"""

import numpy as np

from . import encoding as enc
from .device import Device, check_offset, legacy_device, load_device, nominal_levels

__all__ = ["column_tiles", "effective_weights", "read_noise_outputs", "paper_quantize",
           "paper_group_noise", "paper_ber", "paper_std_for_ber", "second_largest_clip",
           "PAPER_SPLITS", "as_device", "paper_groups"]

PAPER_SPLITS = ("twos-complement", "sign-magnitude")


def as_device(noise):
    """A :class:`~.device.Device` from a Device, a device name, or a legacy
    multiplicative sigma (a number); ``None``, 0 or an ideal device give ``None``."""
    if noise is None or isinstance(noise, (int, float, np.floating)) and not isinstance(noise, bool):
        s = float(noise or 0.0)
        return legacy_device("multiplicative", s) if s > 0 else None
    dev = load_device(noise)
    return None if dev.is_ideal else dev


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


def _cell_modes(q, col_modes, row_modes, slc_mask, cols):
    """(is_slc (m, n) bool, tile (m, n) int) of every weight, or None for a mask."""
    m, n = q.shape
    given = [a is not None for a in (col_modes, row_modes, slc_mask)]
    if sum(given) != 1:
        raise ValueError("give exactly one of col_modes, row_modes, slc_mask")
    if col_modes is not None:
        cm = np.array([enc.check_mode(x) for x in col_modes], dtype=object)
        if cm.shape != (n,):
            raise ValueError(f"col_modes must have {n} entries, not {cm.shape[0]}")
        return np.broadcast_to(cm == "slc", (m, n)), np.broadcast_to(column_tiles(cm, cols), (m, n))
    if row_modes is not None:
        rm = np.array([enc.check_mode(x) for x in row_modes], dtype=object)
        if rm.shape != (m,):
            raise ValueError(f"row_modes must have {m} entries, not {rm.shape[0]}")
        is_slc = np.broadcast_to((rm == "slc")[:, None], (m, n))
        j = np.arange(n)
        return is_slc, np.where(is_slc, j // enc.neurons_per_array("slc", cols),
                                (1 << 30) + j // enc.neurons_per_array("mlc", cols))
    is_slc = np.asarray(slc_mask, dtype=bool)
    if is_slc.shape != (m, n):
        raise ValueError(f"slc_mask must have shape {(m, n)}, not {is_slc.shape}")
    return None


def effective_weights(q, sigma, rng, col_modes=None, row_modes=None, slc_mask=None, cols=128,
                      *, offset="reference"):
    """Real-valued weights after one noisy programming of the INT8 matrix ``q`` (m x n).

    ``sigma``: the device (a :class:`~.device.Device` or a name), or a number, the
    legacy multiplicative sigma; 0 or ``None``: ``q`` as float. Exactly one of
    ``col_modes`` (n modes), ``row_modes`` (m modes) or ``slc_mask`` (bool m x n; SLC
    and MLC parts on separate arrays) gives the cell modes. ``rng`` is a
    ``numpy.random.Generator``; ``offset`` as in :func:`~.array.program_matrix`.
    """
    q = enc.check_int8(q, "q", ndim=2)
    check_offset(offset)
    m, n = q.shape
    out = q.astype(np.float64)
    dev = as_device(sigma)
    if dev is None:
        return out
    cm = _cell_modes(q, col_modes, row_modes, slc_mask, cols)
    if cm is None:
        # both parts are programmed in full (zeros included) on their own arrays
        is_slc = np.asarray(slc_mask, dtype=bool)
        parts = []
        for md, sel in (("slc", is_slc), ("mlc", ~is_slc)):
            part = np.where(sel, q, 0)
            parts.append(effective_weights(part, dev, rng, col_modes=[md] * n, cols=cols,
                                           offset=offset))
        return parts[0] + parts[1]
    is_slc, tile = cm
    u = q + enc.WEIGHT_OFFSET
    for md in enc.MODES:
        sel = is_slc if md == "slc" else ~is_slc
        if not sel.any():
            continue
        bpc, S = enc.bits_per_cell(md), enc.slices_per_weight(md)
        L1 = enc.levels_per_cell(md) - 1
        mu, sg, nom = dev.levels(md), dev.sigmas(md), nominal_levels(md)
        dev_w = np.zeros((m, n))
        for k in range(S):
            lk = (u >> (bpc * k)) & ((1 << bpc) - 1)
            G = np.maximum(mu[lk] + sg[lk] * rng.standard_normal((m, n)), -dev.g_off)
            dev_w += enc.column_weight(md, k) * L1 * (G - nom[lk])
        if offset == "reference":
            tiles_md = np.unique(tile[sel])
            ref = np.maximum(mu[0] + sg[0] * rng.standard_normal((m, len(tiles_md))), -dev.g_off)
            idx = np.searchsorted(tiles_md, np.where(sel, tile, tiles_md[0]))
            ref_full = np.take_along_axis(ref, idx, axis=1)
            cw_sum = sum(enc.column_weight(md, k) for k in range(S))
            dev_w -= cw_sum * L1 * ref_full
        out += np.where(sel, dev_w, 0.0)
    return out


def _read_variance(q, dev, col_modes, row_modes, slc_mask, cols, offset):
    """Read-noise variance, in output units squared, that each weight's cells add to
    its output when its input bit is 1: (m, n)."""
    cm = _cell_modes(q, col_modes, row_modes, slc_mask, cols)
    if cm is None:
        is_slc = np.asarray(slc_mask, dtype=bool)
        n = q.shape[1]
        return sum(_read_variance(np.where(sel, q, 0), dev, [md] * n, None, None, cols, offset)
                   for md, sel in (("slc", is_slc), ("mlc", ~is_slc)))
    is_slc, _ = cm
    u = q + enc.WEIGHT_OFFSET
    var = np.zeros(q.shape)
    for md in enc.MODES:
        sel = is_slc if md == "slc" else ~is_slc
        bpc, S = enc.bits_per_cell(md), enc.slices_per_weight(md)
        L1 = enc.levels_per_cell(md) - 1
        rs = dev.read_sigmas(md)
        v = np.zeros(q.shape)
        cws = 0
        for k in range(S):
            lk = (u >> (bpc * k)) & ((1 << bpc) - 1)
            cw = enc.column_weight(md, k)
            v += (cw * L1 * rs[lk]) ** 2
            cws += cw
        if offset == "reference":
            v += (cws * L1 * rs[0]) ** 2
        var += np.where(sel, v, 0.0)
    return var


def read_noise_outputs(xq, q, dev, rng, col_modes=None, row_modes=None, slc_mask=None,
                       cols=128, *, offset="reference"):
    """Read noise of the products ``xq @ q`` (B x n) through the device ``dev``: per
    output a Gaussian with the variance the per-cell read noise of every read gives,
    ``sum_b pw_b**2 (bits_b(x) @ var)``. Zeros when ``dev`` has no read noise."""
    xq = enc.check_int8(np.asarray(xq, dtype=np.int64), "xq", ndim=2)
    dev = as_device(dev)
    if dev is None or not dev.has_read_noise:
        return np.zeros((xq.shape[0], q.shape[1]))
    var = _read_variance(enc.check_int8(q, "q", ndim=2), dev, col_modes, row_modes, slc_mask,
                         cols, offset)
    planes = enc.bit_planes(xq).astype(np.float64)
    tot = sum(enc.plane_weight(b) ** 2 * (planes[b] @ var) for b in range(enc.INPUT_BITS))
    return np.sqrt(tot) * rng.standard_normal(tot.shape)


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


def paper_groups(q, split="twos-complement"):
    """The four 2-bit groups of INT8 ``q`` as real-valued contributions (4, ...),
    least significant first, summing to ``q`` (module doc)."""
    if split not in PAPER_SPLITS:
        raise ValueError(f"split must be 'twos-complement' or 'sign-magnitude', not {split!r}")
    q = np.asarray(q, dtype=np.int64)
    if split == "sign-magnitude":
        a, sign = np.abs(q), np.sign(q)
        return np.stack([sign * (((a >> (2 * j)) & 3) << (2 * j)) for j in range(4)])
    u = q & 0xFF
    g = [u & 0x03, u & 0x0C, u & 0x30, (u & 0xC0) - ((u & 0x80) << 1)]
    return np.stack(g)


def paper_group_noise(q, mlc_mask, std, rng, split="twos-complement"):
    """Noisy real-valued INT8 weights of the paper mode (module doc)."""
    q = np.asarray(q, dtype=np.int64)
    mlc = np.broadcast_to(np.asarray(mlc_mask, dtype=bool), q.shape)
    out = np.zeros(q.shape)
    for g in paper_groups(q, split):
        noise = 1.0 + std * rng.standard_normal(q.shape)
        out += np.where(mlc, g * noise, g)
    return out


def _paper_device(std):
    lv = {md: nominal_levels(md) for md in enc.MODES}
    return Device("paper", lv, {md: std * lv[md] for md in enc.MODES}, g_off=0.0)


def paper_ber(std):
    """2-bit BER implied by the paper mode's group noise ``std`` (module doc)."""
    from ..base import check_float
    return _paper_device(check_float("std", std, 0, 1000)).ber("mlc")


def paper_std_for_ber(ber):
    """The paper-mode group std whose implied 2-bit BER is ``ber``."""
    return _paper_device(1.0).calibration_factor(ber)
