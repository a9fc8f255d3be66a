"""Golden model of the analog PIM arrays: bit-exact with the RTL.

One array (``rows`` x ``cols``, default 64 x 128) computes, for one INT8 input vector
and each bit-plane ``b``, the held bitline values of the crossbar model
(:mod:`hyflexpim.models.crossbar`), converts every column with a SAR ADC of
``slc_bits`` / ``mlc_bits`` bits (codes above ``2**bits - 1`` saturate) and
shift-adds the codes with the encoding of :mod:`hyflexpim.models.encoding`.
Matrices larger than one array are tiled: 64-row chunks whose INT32 partial sums are
added digitally, and 16 (SLC) or 32 (MLC) output neurons per array.

The SAR conversion is evaluated in closed form: a binary search over monotone DAC
levels ``t - 1/2`` returns ``clamp(floor(held / LSB + 1/2), 0, 2**bits - 1)``;
:func:`sar_search` is the step-by-step search, and the tests check that both agree
over the whole range.
"""

import warnings
from dataclasses import dataclass

import numpy as np

from ..base import check_int
from . import encoding as enc
from .crossbar import (Crossbar, ONE_LSB, sigma_from_ber, check_sigma, check_noise, dac_level,
                       read_key)
from .device import check_offset, legacy_device, load_device

__all__ = [
    "ArrayParams", "ProgrammedMatrix", "program_matrix", "sar_search", "sar_codes",
    "max_bitline", "saturation_possible", "saturating_conversions", "integer_reference",
    "SaturationWarning", "saturates_on_most_inputs", "typical_bitline", "resolve_device",
]


@dataclass(frozen=True)
class ArrayParams:
    """Structural parameters of one analog array, shared by the golden model and RTL.

    rows      wordlines (inputs per array), 1..1024
    cols      bitlines, a multiple of 8 in 8..1024 (SLC needs 8 columns per neuron)
    slc_bits  SAR steps in SLC mode, 1..mlc_bits (the top mlc_bits - slc_bits
              comparisons are skipped; their code bits are 0)
    mlc_bits  SAR steps in MLC mode (the ADC's full resolution), 1..16
    """
    rows: int = 64
    cols: int = 128
    slc_bits: int = 6
    mlc_bits: int = 7

    def __post_init__(self):
        check_int("rows", self.rows, 1, 1024)
        check_int("cols", self.cols, 8, 1024)
        if self.cols % 8:
            raise ValueError(f"cols must be a multiple of 8 in 8..1024, not {self.cols!r}")
        check_int("mlc_bits", self.mlc_bits, 1, 16)
        check_int("slc_bits", self.slc_bits, 1, self.mlc_bits)

    def adc_bits(self, mode):
        return self.slc_bits if enc.check_mode(mode) == "slc" else self.mlc_bits

    def max_code(self, mode):
        return (1 << self.adc_bits(mode)) - 1

    def neurons(self, mode):
        return enc.neurons_per_array(mode, self.cols)

    def result_range(self):
        """(min, max) of any array result the shift-and-add can produce (any codes)."""
        lo = hi = 0
        for mode in enc.MODES:
            c = self.max_code(mode) * sum(enc.column_weight(mode, k)
                                          for k in range(enc.slices_per_weight(mode)))
            pos = (2 ** (enc.INPUT_BITS - 1) - 1) * c + 128 * 128 * self.rows
            neg = -(2 ** (enc.INPUT_BITS - 1)) * c - 128 * 127 * self.rows
            lo, hi = min(lo, neg), max(hi, pos)
        return lo, hi

    def min_result_width(self):
        """Smallest signed width that holds every result (see :meth:`result_range`)."""
        lo, hi = self.result_range()
        w = 1
        while not (-(1 << (w - 1)) <= lo and hi < (1 << (w - 1))):
            w += 1
        return w


def max_bitline(rows, mode):
    """Largest ideal bitline value (in levels): ``rows * (levels - 1)``."""
    return rows * (enc.levels_per_cell(mode) - 1)


def saturation_possible(params, mode):
    """True when some input and weight can drive an ideal bitline above the ADC range.

    With the published 64 x 128 array: SLC 6-bit saturates only at 64 (every row
    active with slice bit 1); MLC 7-bit saturates whenever a bitline exceeds 127 of
    its 0..192 range.
    """
    return max_bitline(params.rows, mode) > params.max_code(mode)


def sar_search(held, bits, hw_bits=None):
    """Step-by-step SAR conversion of integer held values (grid units), MSB first.

    ``hw_bits`` is the ADC's resolution; in a mode with fewer ``bits`` the top
    ``hw_bits - bits`` comparisons are skipped (those code bits stay 0). Returns the
    codes and the list of trial codes tried per step.
    """
    held = np.asarray(held, dtype=np.int64)
    hw_bits = bits if hw_bits is None else hw_bits
    code = np.zeros_like(held)
    trials = []
    for bit in range(bits - 1, -1, -1):
        trial = code | (1 << bit)
        trials.append(trial)
        code = np.where(held >= dac_level(trial), trial, code)
    return code, trials


def sar_codes(held, max_code):
    """Closed form of :func:`sar_search`: ``clamp(floor(held/LSB + 1/2), 0, max_code)``."""
    return np.clip(np.floor_divide(held + ONE_LSB // 2, ONE_LSB), 0, max_code)


def integer_reference(x, w, mode, params=ArrayParams()):
    """Ideal pipeline in plain integers (no crossbar, no floats): for tests and docs.

    Bitline value = number of active rows times cell levels, code = min(value, max),
    then shift-and-add and offset correction, tiled over ``params.rows``-row chunks.
    """
    x = enc.check_int8(x, "x", ndim=2)
    lv = enc.encode_weights(w, mode).astype(np.int64)
    planes = enc.bit_planes(x).astype(np.int64)
    m = lv.shape[0]
    s = enc.slices_per_weight(mode)
    y = np.zeros((x.shape[0], lv.shape[1] // s), dtype=np.int64)
    mc = params.max_code(mode)
    cw = np.array([enc.column_weight(mode, k) for k in range(s)])
    for r0 in range(0, m, params.rows):
        part = enc.offset_correction(x[:, r0:r0 + params.rows])[:, None]
        for b in range(enc.INPUT_BITS):
            bl = planes[b][:, r0:r0 + params.rows] @ lv[r0:r0 + params.rows]
            codes = np.minimum(bl, mc).reshape(x.shape[0], -1, s)
            part = part + enc.plane_weight(b) * (codes * cw).sum(-1)
        y += part
    return y


class _Tile:
    """One physical array: which matrix rows feed it, which outputs its slots produce."""

    def __init__(self, mode, rows_idx, out_idx, crossbar):
        self.mode = mode
        self.rows_idx = rows_idx      # matrix rows on wordlines 0..len-1 (rest unused)
        self.out_idx = out_idx        # matrix column of neuron slot j (len <= neurons)
        self.crossbar = crossbar


class SaturationWarning(UserWarning):
    """A geometry whose ADC saturates on most inputs (see :func:`program_matrix`)."""


def typical_bitline(rows, mode):
    """The bitline value (in levels) of uniformly random INT8 inputs and weights: half
    the rows active, mean level ``(L - 1) / 2``."""
    return rows * (enc.levels_per_cell(mode) - 1) / 4


def saturates_on_most_inputs(params, mode):
    """True when random inputs and weights drive a typical bitline above the ADC range:
    then most conversions of such data clip (the published 64 x 128 array: no)."""
    return typical_bitline(params.rows, mode) > params.max_code(mode)


INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


class ProgrammedMatrix:
    """An INT8 matrix programmed onto analog arrays; ``run(x)`` gives the INT32 outputs.

    Built by :func:`program_matrix`. Attributes: ``shape`` (m, n), ``params``,
    ``device`` (the :class:`~.device.Device`, ``None`` when ideal), ``sigma`` and
    ``noise`` (the legacy model's, when used; else 0.0 and ``"device"``), ``offset``,
    ``seed``, ``tiles`` (list of tiles in programming order, each with ``mode``,
    ``rows_idx``, ``out_idx`` and its ``crossbar``), ``column_modes`` (n,) and
    ``row_modes`` (m,) as strings.
    """

    def __init__(self, shape, params, sigma, noise, groups, column_modes, row_modes,
                 device=None, offset="reference", seed=0):
        self.shape = shape
        self.params = params
        self.sigma = sigma
        self.noise = noise
        self.device = device
        self.offset = offset
        self.seed = seed
        self._groups = groups
        self.column_modes = column_modes
        self.row_modes = row_modes
        self.tiles = [t for g in groups for t in g["tiles"]]
        self.read_noise = any(t.crossbar.has_read_noise for t in self.tiles)

    @property
    def arrays(self):
        """Number of physical arrays used."""
        return len(self.tiles)

    def _check_x(self, x):
        x = enc.check_int8(x, "x", ndim=(1, 2))
        single = x.ndim == 1
        x2 = x[None, :] if single else x
        if x2.shape[1] != self.shape[0]:
            raise ValueError(f"x must have {self.shape[0]} columns (one per matrix row), "
                             f"not shape {x.shape}")
        return x2, single

    def max_exact_rows(self):
        """Largest m for which every result of this geometry fits INT32, whatever the
        inputs, weights, noise and saturation (:meth:`ArrayParams.result_range` per
        row chunk)."""
        lo, hi = self.params.result_range()
        chunks = min(INT32_MAX // hi, INT32_MIN // lo)
        return chunks * self.params.rows

    def run(self, x, *, first_vector=0, wide=False):
        """Outputs of the hardware for inputs ``x`` (batch, m) INT8: (batch, n) int32.

        ``first_vector``: index of ``x[0]`` in the read-noise counter (vectors are
        numbered ``first_vector``, ``first_vector + 1``, ...; no effect without read
        noise). ``wide=True`` returns int64 (the digital sum of many row chunks can
        exceed INT32); otherwise a result outside INT32 is an error, never wrapped.
        """
        x2, single = self._check_x(x)
        fv = check_int("first_vector", first_vector, 0, (1 << 62))
        y = np.zeros((x2.shape[0], self.shape[1]), dtype=np.int64)
        if x2.shape[0]:
            planes = enc.bit_planes(x2).astype(np.float32)
            for g in self._groups:
                self._run_group(g, x2, planes, y, fv)
        if not wide and y.size and (y.min() < INT32_MIN or y.max() > INT32_MAX):
            raise ValueError(
                f"the result overflows INT32 (range [{int(y.min())}, {int(y.max())}]) for a "
                f"matrix of m = {self.shape[0]} rows: split it (every result fits for "
                f"m <= {self.max_exact_rows()}) or call run(x, wide=True) for int64")
        y = y if wide else y.astype(np.int32)
        return y[0] if single else y

    def saturated(self, x, *, first_vector=0):
        """Number of ADC conversions of used neuron slots that clipped at the top code,
        for inputs ``x`` (padding slots of a partly filled array are not counted)."""
        x2, _ = self._check_x(x)
        fv = check_int("first_vector", first_vector, 0, (1 << 62))
        if not x2.shape[0]:
            return 0
        planes = enc.bit_planes(x2).astype(np.float32)
        total = 0
        for g in self._groups:
            used = g["used_cols"]
            for _, codes in self._codes(g, x2, planes, fv):
                total += int((codes[:, used] > g["maxcode"][used]).sum())
        return total

    def _held(self, g, planes):
        """Held values, in LSB, plus 1/2, of every column of the group: (8*B, cols).

        The group's H is scaled to LSB units and has a last row of 1/2 driven by a
        constant 1, so ``floor()`` of the product is the SAR closed form of
        :func:`sar_codes`. All values are dyadic rationals that the dtype holds
        exactly, whatever the order of summation.
        """
        B = planes.shape[1]
        ridx = g["rows_idx"]
        sl = g["rows_slice"]
        sub = planes[:, :, sl] if sl is not None else planes[:, :, ridx]
        p = np.empty((enc.INPUT_BITS * B, len(ridx) + 1), dtype=g["H"].dtype)
        p[:, :-1] = sub.reshape(enc.INPUT_BITS * B, len(ridx))
        p[:, -1] = 1.0
        return p

    def _read_noise(self, g, p, r0, r1, B, fv):
        """Read noise of rows r0..r1 of the group's (plane-major) reads, in LSB."""
        nrow = len(g["rows_idx"])
        wl = np.zeros((r1 - r0, self.params.rows), dtype=np.uint8)
        wl[:, :nrow] = p[r0:r1, :nrow]
        idx = np.arange(r0, r1)
        plane, vec = idx // B, fv + idx % B
        parts = [t.crossbar.read_noise(wl, vec, plane) for t in g["tiles"]]
        return np.concatenate(parts, axis=1) / ONE_LSB

    def _codes(self, g, x, planes, fv):
        """Unclipped codes ``floor(held + 1/2)`` of the group, by blocks of reads:
        yields (first read, (reads, cols) array)."""
        B = x.shape[0]
        p = self._held(g, planes)
        H = g["H"]
        # Blocks of rows small enough for the codes to stay in cache.
        blk = max(8, (1 << 19) // max(H.shape[1], 1))
        for r0 in range(0, p.shape[0], blk):
            codes = p[r0:r0 + blk] @ H
            if g["read_noise"]:
                codes += self._read_noise(g, p, r0, min(r0 + blk, p.shape[0]), B, fv)
            np.floor(codes, out=codes)
            yield r0, codes

    def _run_group(self, g, x, planes, y, fv):
        B = x.shape[0]
        H = g["H"]
        spans = g["spans"]
        nreads = enc.INPUT_BITS * B
        per_plane = [np.empty((nreads, (c1 - c0) // len(cw)), dtype=H.dtype)
                     for _, (c0, c1), _, cw in spans]
        for r0, codes in self._codes(g, x, planes, fv):
            for out, (md, (c0, c1), _, cw) in zip(per_plane, spans):
                span = codes[:, c0:c1]
                np.clip(span, 0, self.params.max_code(md), out=span)
                out[r0:r0 + len(codes)] = span.reshape(codes.shape[0], -1, len(cw)) @ cw
        pw = np.array([enc.plane_weight(b) for b in range(enc.INPUT_BITS)], dtype=H.dtype)
        corr = enc.offset_correction(x[:, g["rows_idx"]])[:, None]
        for out, (_, _, slot_out, _) in zip(per_plane, spans):
            res = np.tensordot(pw, out.reshape(enc.INPUT_BITS, B, -1), axes=1)
            used = slot_out >= 0
            y[:, slot_out[used]] += res[:, used].astype(np.int64) + corr


def _mode_vector(spec, length, name):
    if isinstance(spec, str):
        return np.array([enc.check_mode(spec)] * length, dtype=object)
    if not isinstance(spec, (list, tuple, np.ndarray)):
        raise ValueError(f"{name} must be 'slc', 'mlc' or a sequence of {length} of them, "
                         f"not {spec!r}")
    arr = list(spec)
    if len(arr) != length:
        raise ValueError(f"{name} must have {length} entries, not {len(arr)}")
    return np.array([enc.check_mode(m) for m in arr], dtype=object)


def resolve_device(device=None, ber=None, sigma=None, noise=None, read_noise=None):
    """The :class:`~.device.Device` that ``program_matrix``'s noise arguments select
    (``None``: ideal arrays); returns (device, legacy sigma, noise label)."""
    if ber is not None and sigma is not None:
        raise ValueError("give either ber or sigma, not both")
    if noise is not None:
        check_noise(noise)
        if device is not None:
            raise ValueError("give either device or noise (a legacy model), not both")
    elif sigma is not None and device is not None:
        raise ValueError("give either device or sigma (the legacy model's), not both")
    if noise is not None or sigma is not None:
        model = noise or "multiplicative"
        if sigma is not None:
            s = check_sigma(sigma)
        elif ber is not None:
            s = sigma_from_ber(ber, "mlc", model)
        else:
            s = 0.0
        dev = legacy_device(model, s) if s > 0 else None
        if read_noise:
            dev = (dev or load_device("ideal")).with_read_noise(read_noise)
        return dev, s, model
    if device is None and ber is None and not read_noise:
        return None, 0.0, "device"
    dev = load_device(device, ber=ber, read_noise=read_noise)
    return (None if dev.is_ideal else dev), 0.0, "device"


SATURATION = ("warn", "allow", "error")


def program_matrix(weights, mode, *, ber=None, seed=0, sigma=None, row_modes=None,
                   rows=64, cols=128, slc_bits=6, mlc_bits=7, noise=None, device=None,
                   offset="reference", read_noise=None, saturation="warn"):
    """Program an m x n INT8 matrix ``weights`` (y = x @ W) onto analog arrays.

    mode       ``"slc"`` or ``"mlc"`` for every array, or a sequence of n modes, one per
               output column: SLC columns are packed 16 per array (128 columns), MLC
               columns 32 per array, each in their original order.
    row_modes  instead of per-column modes: a sequence of m modes, one per input row
               (for the second SVD factor, whose ranks are its rows); ``mode`` must
               then be ``"slc"`` or ``"mlc"`` and is ignored. Rows of each mode are
               tiled into their own 64-row chunks and the partial sums are added.
    device     the RRAM device (:func:`~hyflexpim.models.device.load_device`): a
               :class:`~hyflexpim.models.device.Device`, a name or a JSON table. When
               ``ber`` is given without a device, the default device (NeuRRAM one-day
               fit) is used.
    ber        the device's 2-bit MLC bit error rate, a float in (0, 0.5): the
               device's programming-noise scale is re-calibrated to it (SLC cells of
               the same device scale alike). With neither ``device``, ``ber``,
               ``sigma`` nor ``read_noise``: ideal, noise-free arrays.
    sigma, noise  the legacy models, kept: ``noise="multiplicative"`` (``G' = G (1 +
               sigma N)``, also what a bare ``sigma`` means) or ``"additive"`` (``G' =
               G + sigma G_on N``); ``ber`` with ``noise`` calibrates that model's sigma
               (:func:`~hyflexpim.models.crossbar.sigma_from_ber`). Not with ``device``.
    offset     removal of the G_off floor: ``"reference"`` (a reference column per
               array, as built; its noise is common to the array's columns) or
               ``"nominal"`` (digital subtraction of the nominal floor, noiseless).
    read_noise per-read noise sigma as a fraction of G_on (e.g. 0.01), off by default;
               drawn per (seed, array, vector, plane, column) by a counter-based
               generator (:mod:`hyflexpim.models.crossbar`).
    seed       seed of the programming noise (drawn once, here) and the read noise.
    rows, cols, slc_bits, mlc_bits: the array geometry, see :class:`ArrayParams`.
    saturation what to do when the geometry saturates on most inputs
               (:func:`saturates_on_most_inputs`, e.g. MLC with 1024 rows and a 7-bit
               ADC): ``"warn"`` (a :class:`SaturationWarning`), ``"allow"`` (silent:
               saturation is part of the hardware's behaviour) or ``"error"``.

    Unused neuron slots of a partly filled array hold weight 0; unused rows get input 0.
    """
    params = ArrayParams(rows=rows, cols=cols, slc_bits=slc_bits, mlc_bits=mlc_bits)
    w = enc.check_int8(weights, "weights", ndim=2)
    m, n = w.shape
    if m == 0 or n == 0:
        raise ValueError(f"weights must not be empty, got shape {w.shape}")
    seed = check_int("seed", seed, 0, (1 << 63) - 1)
    if saturation not in SATURATION:
        raise ValueError(f"saturation must be 'warn', 'allow' or 'error', not {saturation!r}")
    offset = check_offset(offset)
    dev, s, noise_label = resolve_device(device, ber, sigma, noise, read_noise)
    rng = np.random.default_rng(seed) if dev is not None else None

    if row_modes is not None:
        enc.check_mode(mode)
        rmodes = _mode_vector(row_modes, m, "row_modes")
        cmodes = None
        chunks = []
        for md in enc.MODES:
            ridx = np.flatnonzero(rmodes == md)
            chunks += [(ridx[i:i + rows], {md: np.arange(n)}) for i in range(0, len(ridx), rows)]
    else:
        cmodes = _mode_vector(mode, n, "mode")
        rmodes = None
        by_mode = {md: np.flatnonzero(cmodes == md) for md in enc.MODES}
        chunks = [(np.arange(r0, min(r0 + rows, m)), by_mode) for r0 in range(0, m, rows)]
    used_modes = sorted(set(cmodes if cmodes is not None else rmodes))
    heavy = [md for md in used_modes if saturates_on_most_inputs(params, md)]
    if heavy and saturation != "allow":
        md = heavy[0]
        msg = (f"{md.upper()} arrays of {rows} rows with a {params.adc_bits(md)}-bit ADC "
               f"saturate on most inputs (a typical bitline of {typical_bitline(rows, md):g} "
               f"levels, codes up to {params.max_code(md)}); pass saturation='allow' to "
               f"accept it")
        if saturation == "error":
            raise ValueError(msg)
        warnings.warn(msg, SaturationWarning, stacklevel=2)

    groups = []
    for ridx, outs_by_mode in chunks:
        tiles, H_parts, maxcode, spans, used_cols, col = [], [], [], [], [], 0
        for md in enc.MODES:
            outs = outs_by_mode.get(md, np.array([], dtype=np.int64))
            if len(outs) == 0:
                continue
            npa = params.neurons(md)
            S = enc.slices_per_weight(md)
            span_start = col
            slot_out = []
            for j0 in range(0, len(outs), npa):
                oidx = outs[j0:j0 + npa]
                wt = np.zeros((rows, npa), dtype=np.int64)
                wt[:len(ridx), :len(oidx)] = w[np.ix_(ridx, oidx)]
                xb = Crossbar(enc.encode_weights(wt, md), md, device=dev, rng=rng,
                              offset=offset, read_key=read_key(seed, len(groups) * (1 << 20)
                                                               + len(tiles)))
                tiles.append(_Tile(md, ridx, oidx, xb))
                H_parts.append(xb.held)
                slot_out.append(np.concatenate([oidx, -np.ones(npa - len(oidx), dtype=np.int64)]))
                maxcode.append(np.full(cols, params.max_code(md)))
                used_cols.append(np.arange(cols) < len(oidx) * S)
                col += cols
            spans.append((md, (span_start, col), np.concatenate(slot_out)))
        H = np.concatenate(H_parts, axis=1)
        has_read = any(t.crossbar.has_read_noise for t in tiles)
        # Integer-valued floats are exact while every partial sum stays below 2**24
        # (float32): bitline sums, and shift-and-add results up to 255 * max code * sum(cw).
        sa_max = max(255 * params.max_code(md) * (1 << enc.INPUT_BITS) for md in enc.MODES)
        exact32 = (np.abs(H).sum(axis=0).max(initial=0) + ONE_LSB < 2 ** 24 and sa_max < 2 ** 24
                   and not has_read)
        dtype = np.float32 if exact32 else np.float64
        spans = [(md, c, so, np.array([enc.column_weight(md, k)
                                       for k in range(enc.slices_per_weight(md))], dtype=dtype))
                 for md, c, so in spans]
        contiguous = len(ridx) > 0 and np.array_equal(ridx, np.arange(ridx[0], ridx[0] + len(ridx)))
        Hs = np.concatenate([H[:len(ridx)] / ONE_LSB, np.full((1, H.shape[1]), 0.5)]).astype(dtype)
        groups.append(dict(rows_idx=ridx, tiles=tiles, H=Hs, read_noise=has_read,
                           rows_slice=slice(ridx[0], ridx[0] + len(ridx)) if contiguous else None,
                           maxcode=np.concatenate(maxcode).astype(dtype), spans=spans,
                           used_cols=np.concatenate(used_cols)))
    return ProgrammedMatrix((m, n), params, s, noise_label, groups,
                            None if cmodes is None else [str(c) for c in cmodes],
                            None if rmodes is None else [str(r) for r in rmodes],
                            device=dev, offset=offset, seed=seed)


def saturating_conversions(x, weights, mode, params=ArrayParams()):
    """Number of ideal conversions that would exceed the ADC range (0 means exact)."""
    return program_matrix(weights, mode, rows=params.rows, cols=params.cols,
                          slc_bits=params.slc_bits, mlc_bits=params.mlc_bits,
                          saturation="allow").saturated(x)
