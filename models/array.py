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
from .crossbar import (Crossbar, FRAC_BITS, ONE_LSB, sigma_from_ber, check_sigma, check_noise,
                       dac_level, read_key, counter_normal_grid, share_storage)
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
    """One physical array: which matrix rows feed it, which outputs its slots produce.

    ``rows_idx``: matrix rows on wordlines 0..len-1 (the rest unused); ``out_idx``:
    matrix column of neuron slot j (len <= neurons); both int64 arrays (views of the
    matrix's index arrays, or made on request when they are ranges).
    """

    def __init__(self, mode, rows_idx, out_idx, crossbar, clip_rows):
        self.mode = mode
        self._rows = rows_idx         # an index array or a (start, stop) range
        self._outs = out_idx
        self.crossbar = crossbar
        # The counts of active rows with which some conversion of a used column could
        # reach above the top code, (p_hi, q_hi), or below code 0, (p_lo, q_lo), over
        # the array's used columns ((rows + 1, 0): never): see _thresholds.
        self.p_hi, self.q_hi, self.p_lo, self.q_lo = clip_rows

    @staticmethod
    def _index(ix):
        return np.arange(*ix, dtype=np.int64) if isinstance(ix, tuple) else ix

    @property
    def rows_idx(self):
        return self._index(self._rows)

    @property
    def out_idx(self):
        return self._index(self._outs)

    @property
    def out_sel(self):
        """``out_idx`` as a slice when it is a range (for fast indexing)."""
        ix = self._outs
        return slice(*ix) if isinstance(ix, tuple) else ix

    @property
    def n_out(self):
        ix = self._outs
        return ix[1] - ix[0] if isinstance(ix, tuple) else len(ix)


def _thresholds(held, mc):
    """Per column of ``held`` (active-row contributions, grid units, one row per used
    wordline): the active-row counts with which some read could convert above ``mc``
    (``(p_hi, q_hi)``: from the count at which the largest contributions reach
    ``mc + 1/2`` LSB to the last) and below 0 (``(p_lo, q_lo)``: the smallest reach
    ``-1/2`` LSB); ``(rows + 1, 0)`` when no read can. The sums of the ``p`` largest
    (smallest) contributions are concave (convex) in ``p``, so each set is one range.
    A read whose count of active rows is outside a column's ranges cannot clip in that
    column: that is what lets the fast paths skip the clipping, and the ideal path
    compute only the conversions that can saturate."""
    n, c = held.shape
    if n == 0:
        none = np.full(c, 1, dtype=np.int64), np.zeros(c, dtype=np.int64)
        return none + none
    s = np.sort(held.astype(np.int64), axis=0)
    top = np.cumsum(s[::-1], axis=0) + ONE_LSB // 2 >= (mc + 1) * ONE_LSB
    bot = np.cumsum(s, axis=0) + ONE_LSB // 2 < 0

    def span(hit):
        any_ = hit.any(0)
        first = np.where(any_, hit.argmax(0) + 1, n + 1)
        last = np.where(any_, n - hit[::-1].argmax(0), 0)
        return first, last
    return span(top) + span(bot)


class _Span:
    """The tiles of one mode in a row group, side by side."""

    def __init__(self, mode, tiles, params):
        self.mode = mode
        self.tiles = tiles
        self.S = enc.slices_per_weight(mode)
        self.mc = params.max_code(mode)
        self.cw = np.array([enc.column_weight(mode, k) for k in range(self.S)])
        self.npa = params.neurons(mode)
        self.cols = params.cols
        self._stack = share_storage([t.crossbar for t in tiles])
        self.slots, self.outs = self._outputs()
        self._ranges = {}
        self.bound = 0        # largest column sum of |held| (+ read noise), grid units
        self.eps = 0.0        # the rint rounding's per-cell offset, 0 for add-1/2-floor

    def ranges(self, tb):
        """The clipping ranges (p_hi, q_hi, p_lo, q_lo) of each block of ``tb`` arrays."""
        if tb not in self._ranges:
            self._ranges[tb] = [
                (min(t.p_hi for t in blk), max(t.q_hi for t in blk),
                 min(t.p_lo for t in blk), max(t.q_lo for t in blk))
                for blk in (self.tiles[i:i + tb] for i in range(0, len(self.tiles), tb))]
        return self._ranges[tb]

    def held(self, dtype, rows):
        """The held values of the span's first ``rows`` wordlines, (rows, cols * tiles),
        in ``dtype`` (grid units), decoded from the cell storage."""
        if self._stack is None:
            return np.concatenate([t.crossbar.held_as(dtype, rows) for t in self.tiles], axis=1)
        st, ideal = self._stack
        if ideal:
            return np.multiply(st[:rows], ONE_LSB, dtype=dtype)
        return (st[:rows] >> self.tiles[0].crossbar._bpc).astype(dtype)

    def _outputs(self):
        """(slot index, output column) of every used neuron slot, as slices when both
        are ranges."""
        slots, outs = [], []
        for i, t in enumerate(self.tiles):
            slots.append(np.arange(t.n_out) + i * self.npa)
            outs.append(t.out_idx)
        slots, outs = np.concatenate(slots), np.concatenate(outs)
        if len(outs) and np.array_equal(slots, np.arange(len(slots))) and \
                np.array_equal(outs, np.arange(outs[0], outs[0] + len(outs))):
            return slice(0, len(slots)), slice(int(outs[0]), int(outs[0]) + len(outs))
        return slots, outs


class _Group:
    """One chunk of matrix rows: its tiles (all modes) share the wordlines."""

    def __init__(self, rows_idx, spans, dtype, read_noise):
        self.rows = rows_idx          # an index array or a slice into x's columns
        self.nrows = (rows_idx.stop - rows_idx.start if isinstance(rows_idx, slice)
                      else len(rows_idx))
        self.spans = spans
        self.tiles = [t for sp in spans for t in sp.tiles]
        self.dtype = dtype
        self.read_noise = read_noise


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

DEFAULT_CHUNK = 128
"""Input vectors per batch chunk of :meth:`ProgrammedMatrix.run` (8 reads each)."""

_SCALE = 2.0 ** -FRAC_BITS
_BLOCK = 1 << 18          # elements of one block of conversions (1 MB in float32)
_PW = np.array([enc.plane_weight(b) for b in range(enc.INPUT_BITS)])


def _exact_dtype(bound):
    """float32 when every integer (of the 2**-10 grid, in LSB) up to ``bound`` grid
    units is exact in it, else float64 (exact to 2**53)."""
    if bound < 2 ** 24:
        return np.float32
    if bound < 2 ** 53:
        return np.float64
    raise ValueError("the held values exceed the exact float64 range")


def _planes(x):
    """Bit-planes of INT8 rows ``x`` (B, m): uint8 (8, B, m)."""
    u = x.astype(np.uint8)
    return np.stack([(u >> np.uint8(b)) & np.uint8(1) for b in range(enc.INPUT_BITS)])


class ProgrammedMatrix:
    """An INT8 matrix programmed onto analog arrays; ``run(x)`` gives the INT32 outputs.

    Built by :func:`program_matrix`. Attributes: ``shape`` (m, n), ``params``,
    ``device`` (the :class:`~.device.Device`, ``None`` when ideal), ``sigma`` and
    ``noise`` (the legacy model's, when used; else 0.0 and ``"device"``), ``offset``,
    ``seed``, ``tiles`` (list of tiles in programming order, each with ``mode``,
    ``rows_idx``, ``out_idx`` and its ``crossbar``), ``column_modes`` (n,) and
    ``row_modes`` (m,) as strings, ``nbytes`` (the bytes it keeps).

    How :meth:`run` computes (all exact, the same integers as a read-by-read SAR of
    every crossbar, :meth:`_run_reference`):

    * noisy arrays: per row group, the bitline sums of every bit-plane of every input
      vector of a batch chunk are one GEMM of the plane bits (scaled by 2**-10) with the
      cells' held values (integers of the 2**-10 LSB grid), in float32 when every
      partial sum stays below 2**24 grid units (else float64), by blocks of
      conversions that stay in cache; each block is rounded (``floor(held + 1/2)``),
      clipped only where some read has enough active rows to clip (the per-array
      thresholds of :func:`_thresholds`), and shift-added.
    * ideal arrays: ``x @ W`` (exact in float32 / float64), then, only for the arrays
      and reads whose popcount reaches a column's saturation threshold, the exact
      bitline sums of those conversions and the amount each clips, subtracted.
    """

    def __init__(self, shape, params, sigma, noise, groups, column_modes, row_modes,
                 device=None, offset="reference", seed=0, weights=None, indices=()):
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
        self.tiles = [t for g in groups for t in g.tiles]
        self.read_noise = any(t.crossbar.has_read_noise for t in self.tiles)
        self._w = weights             # INT8 weights (int8), kept for ideal arrays only
        self._indices = indices       # the index arrays tiles and groups hold views of
        self._ideal = weights is not None

    @property
    def arrays(self):
        """Number of physical arrays used."""
        return len(self.tiles)

    @property
    def cells(self):
        """Number of physical cells of the arrays used (``arrays * rows * cols``)."""
        return self.arrays * self.params.rows * self.params.cols

    @property
    def nbytes(self):
        """Bytes of the arrays this matrix keeps: every crossbar's cell storage (1 byte
        per cell ideal, 2 with noise: :class:`~.crossbar.Crossbar`), the INT8 weights
        of an ideal matrix, and any index arrays of non-contiguous tilings."""
        n = sum(t.crossbar.nbytes for t in self.tiles)
        n += 0 if self._w is None else self._w.nbytes
        return n + sum(a.nbytes for a in self._indices)

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

    def run(self, x, *, first_vector=0, wide=False, chunk=DEFAULT_CHUNK):
        """Outputs of the hardware for inputs ``x`` (batch, m) INT8: (batch, n) int32.

        ``first_vector``: index of ``x[0]`` in the read-noise counter (vectors are
        numbered ``first_vector``, ``first_vector + 1``, ...; no effect without read
        noise). ``wide=True`` returns int64 (the digital sum of many row chunks can
        exceed INT32); otherwise a result outside INT32 is an error, never wrapped.
        ``chunk``: input vectors converted at a time (default :data:`DEFAULT_CHUNK`,
        128, the fastest here); the working memory besides the output and the decoded
        held values of one row group is about ``chunk * (40 rows + 32 * tiles * cols /
        S)`` bytes, independent of the batch, and the result does not depend on it.
        """
        x2, single = self._check_x(x)
        fv = check_int("first_vector", first_vector, 0, (1 << 62))
        chunk = check_int("chunk", chunk, 1)
        y = self._convert(x2, fv, chunk, count=False)
        if not wide and y.size and (y.min() < INT32_MIN or y.max() > INT32_MAX):
            raise ValueError(
                f"the result overflows INT32 (range [{int(y.min())}, {int(y.max())}]) for a "
                f"matrix of m = {self.shape[0]} rows: split it (every result fits for "
                f"m <= {self.max_exact_rows()}) or call run(x, wide=True) for int64")
        y = y if wide else y.astype(np.int32)
        return y[0] if single else y

    def saturated(self, x, *, first_vector=0, chunk=DEFAULT_CHUNK):
        """Number of ADC conversions of used neuron slots that clipped at the top code,
        for inputs ``x`` (padding slots of a partly filled array are not counted)."""
        x2, _ = self._check_x(x)
        fv = check_int("first_vector", first_vector, 0, (1 << 62))
        chunk = check_int("chunk", chunk, 1)
        return self._convert(x2, fv, chunk, count=True)

    def _convert(self, x, fv, chunk, count):
        """Results (int64) or, with ``count``, the number of saturated conversions."""
        B = x.shape[0]
        total = 0
        if self._ideal:
            y = None if count else np.zeros((B, self.shape[1]), dtype=np.int64)
            for c0 in range(0, B, chunk):
                xc = x[c0:c0 + chunk]
                if not count:
                    dt = _exact_dtype(self.shape[0] * 128 * 128)
                    y[c0:c0 + chunk] += (xc.astype(dt) @ self._w.astype(dt)).astype(np.int64)
                for g in self._groups:
                    total += self._ideal_saturations(g, xc, None if count else y[c0:c0 + chunk])
            return total if count else y
        # float64 holds every partial sum exactly (|y| < 2**53 for any feasible m)
        acc = None if count else np.zeros((B, self.shape[1]), dtype=np.float64)
        for g in self._groups:
            held = [sp.held(g.dtype, g.nrows) for sp in g.spans]
            for sp, h in zip(g.spans, held):
                h += g.dtype(sp.eps)
            for c0 in range(0, B, chunk):
                c1 = min(c0 + chunk, B)
                total += self._run_group(g, held, x[c0:c1], None if count else acc[c0:c1],
                                         fv + c0)
        if count:
            return total
        y = acc.astype(np.int64)
        y += enc.offset_correction(x)[:, None]      # every row is in exactly one group
        return y

    # ---- ideal arrays ---------------------------------------------------------------
    def _ideal_saturations(self, g, x, y):
        """The saturating conversions of group ``g`` on ideal arrays for inputs ``x``:
        subtracts from ``y`` (int64, unless None) how much their clipping takes off the
        exact product and returns their number. Only the arrays, columns and reads whose
        count of active rows reaches a column's threshold are computed: their bitline
        sums (a float32 GEMM of the plane bits with the levels, exact), the excess over
        the top code, combined over the planes and slices like the codes. (The reads are
        those with at least the array's threshold of active rows, ``p_hi``: below it no
        column of the array can clip.) When most of the group's conversions are flagged,
        the group is converted bit-serially as for noisy arrays instead, and its exact
        product replaced by that."""
        B = x.shape[0]
        bits = _planes(x[:, g.rows]).reshape(-1, g.nrows)
        pc = bits.sum(-1, dtype=np.int64)
        pmax = int(pc.max(initial=0))
        flagged = sum(int((pc >= t.p_hi).sum()) for t in g.tiles if t.p_hi <= pmax)
        if flagged * 2 > len(pc) * len(g.tiles):
            # most conversions may saturate: the whole group bit-serially is cheaper
            held = [sp.held(g.dtype, g.nrows) + g.dtype(sp.eps) for sp in g.spans]
            if y is None:
                return self._run_group(g, held, x, None, 0)
            acc = np.zeros(y.shape, dtype=np.float64)
            self._run_group(g, held, x, acc, 0)
            dt = _exact_dtype(g.nrows * 128 * 128)
            xg = x[:, g.rows]
            wg = self._w[g.rows]
            acc -= xg.astype(dt) @ wg.astype(dt)
            y += acc.astype(np.int64)
            y += enc.offset_correction(xg)[:, None]
            return 0
        count = 0
        for sp in g.spans:
            L1 = enc.levels_per_cell(sp.mode) - 1
            bound = 255 * (g.nrows * L1 - sp.mc) * int(sp.cw.sum())
            pt = np.float32 if bound < 2 ** 24 and g.nrows * L1 < 2 ** 24 else np.float64
            for t in sp.tiles:
                if t.p_hi > pmax:
                    continue
                lv = t.crossbar.levels[:g.nrows, :t.n_out * sp.S].astype(pt)
                reads = np.flatnonzero(pc >= t.p_hi)
                sub = bits[reads].astype(pt) @ lv - pt(sp.mc)
                np.maximum(sub, 0, out=sub)
                count += int(np.count_nonzero(sub))
                if y is None:
                    continue
                if len(reads) == len(pc):
                    excess = sub
                else:
                    excess = np.zeros((len(pc), lv.shape[1]), dtype=pt)
                    excess[reads] = sub
                part = _PW.astype(pt) @ excess.reshape(enc.INPUT_BITS, -1)
                part = part.reshape(B, t.n_out, sp.S) @ sp.cw.astype(pt)
                y[:, t.out_sel] -= part.astype(np.int64)
        return count

    # ---- noisy arrays ---------------------------------------------------------------
    def _run_group(self, g, held, x, y, fv):
        """Conversions of row group ``g`` (``held``: its spans' decoded held values) for
        the chunk ``x``; adds the results, without the offset correction, to ``y``
        (float64), or, with ``y=None``, returns the number of conversions of used slots
        above the top code.

        The reads of the chunk, plane-major (``b * B + v``), are the rows of one GEMM per
        block of arrays, then rounded, clipped where needed, combined over the planes
        (``sum_b pw_b code``, a GEMV over all reads of the block) and shift-added over
        the slices; every value is an integer that the dtype holds exactly.
        """
        B = x.shape[0]
        R = enc.INPUT_BITS * B
        dt = g.dtype
        bits = _planes(x[:, g.rows]).reshape(R, g.nrows)
        pc = bits.sum(-1, dtype=np.int64)
        pcs = (int(pc.min(initial=0)), int(pc.max(initial=0)), pc)
        P = np.multiply(bits, dt(_SCALE), dtype=dt)
        count = 0
        cols = self.params.cols
        work = {}                     # read-noise buffers, reused from block to block
        for sp, H in zip(g.spans, held):
            S, mc = sp.S, dt(sp.mc)
            tb = max(1, _BLOCK // (R * cols))
            nblk = -(-len(sp.tiles) // tb)
            sa_max = 255 * sp.mc * int(sp.cw.sum())
            pt = np.float32 if dt == np.float32 and sa_max < 2 ** 24 else np.float64
            pw, cw = _PW.astype(pt), sp.cw.astype(pt)
            width = min(tb, len(sp.tiles)) * cols
            buf = np.empty((R, width), dtype=dt)
            o = np.empty(B * width, dtype=pt)
            res = np.zeros((nblk, B, width // S), dtype=pt)
            ranges = sp.ranges(tb)
            for i, t0 in enumerate(range(0, len(sp.tiles), tb)):
                blk = sp.tiles[t0:t0 + tb]
                c0, c1 = t0 * cols, (t0 + len(blk)) * cols
                out = buf[:, :c1 - c0]
                np.matmul(P, H[:, c0:c1], out=out)
                if g.read_noise:
                    out += self._read_noise(blk, bits, pc, B, fv, work)
                if sp.eps:
                    np.rint(out, out=out)
                else:
                    out += dt(0.5)
                    np.floor(out, out=out)
                if y is None:
                    for k, t in enumerate(blk):
                        count += int((out[:, k * cols:k * cols + t.n_out * S] > mc).sum())
                    continue
                if g.read_noise:
                    np.clip(out, dt(0), mc, out=out)
                else:
                    self._clip(out, pcs, ranges[i], mc)
                ob = o[:B * (c1 - c0)]
                np.matmul(pw, out.reshape(enc.INPUT_BITS, -1), out=ob)
                if c1 - c0 == width:
                    np.matmul(ob.reshape(-1, S), cw, out=res[i].reshape(-1))
                else:
                    res[i, :, :(c1 - c0) // S] = (ob.reshape(-1, S) @ cw).reshape(B, -1)
            if y is not None:
                res = res.transpose(1, 0, 2).reshape(B, -1)
                y[:, sp.outs] += res[:, sp.slots]
        return count

    @staticmethod
    def _clip(out, pc, blk, mc):
        """Clip the codes ``out`` of a block of arrays to 0..mc where they can leave it
        (``pc``: min, max and every read's count of active rows; ``blk``: the block's
        clipping ranges, :meth:`_Span.ranges`). Above: the reads whose
        count lies in one of the arrays' clipping ranges (:func:`_thresholds`) are
        clipped. Below: the range is wide (a few of the most negative cells) but codes
        under 0 are rare, so when it is reached the block is clipped only if its
        smallest code is negative."""
        p, q, p_lo, q_lo = blk
        if p <= q and pc[0] <= q and pc[1] >= p:
            r = np.flatnonzero((pc[2] >= p) & (pc[2] <= q))
            if len(r) * 4 > len(pc[2]):
                np.clip(out, 0, mc, out=out)
                return
            out[r] = np.clip(out[r], 0, mc)
        if p_lo <= q_lo and pc[0] <= q_lo and pc[1] >= p_lo and out.min() < 0:
            np.clip(out, 0, mc, out=out)

    def _read_noise(self, tiles, bits, pc, B, fv, work):
        """Read noise, in LSB (float64, integers of the grid), of every read (plane-major)
        of the ``tiles`` side by side: exactly :meth:`~.crossbar.Crossbar.read_noise` of
        each (the same normal numbers, variances, square roots and roundings)."""
        R, T, cols = bits.shape[0], len(tiles), self.params.cols
        shape = (R, T, cols)
        if work.get("shape") != shape:
            work.update(shape=shape, hash=(np.empty(shape, dtype=np.uint64),
                                           np.empty(shape, dtype=np.uint64), np.empty(shape)))
        idx = np.arange(R)
        keys = [t.crossbar.read_key for t in tiles]
        vec, plane = fv + idx % B, idx // B
        n = counter_normal_grid(keys, vec, plane, np.arange(cols), work=work["hash"])
        p = pc.astype(np.float64)
        sd = np.empty((R, T, 1))
        sd_ref = np.zeros((R, T))
        for i, t in enumerate(tiles):
            xb = t.crossbar
            rv = xb.read_var_levels
            if np.all(rv == rv[0]):
                sd[:, i, 0] = np.sqrt(p * rv[0])
            else:
                if sd.shape[2] == 1:
                    sd = np.repeat(sd, cols, axis=2)
                sd[:, i] = np.sqrt(bits.astype(np.float64) @ xb.read_var[:bits.shape[1]])
            if xb.offset == "reference":
                sd_ref[:, i] = np.sqrt(p * xb.read_var_ref[0])
        np.multiply(n, sd, out=n)
        np.rint(n, out=n)
        if sd_ref.any():
            ref = counter_normal_grid(keys, vec, plane, [cols])[:, :, 0]
            n -= np.rint(ref * sd_ref)[:, :, None]
        n *= _SCALE
        return n.reshape(R, -1)

    # ---- the reference path ------------------------------------------------------------
    def _run_reference(self, x, first_vector=0):
        """Straightforward path, for tests: per tile, every read's held values from its
        crossbar (int64, read noise included), the SAR closed form, integer
        shift-and-add. Returns int64 (batch, n)."""
        x2, _ = self._check_x(x)
        B = x2.shape[0]
        y = np.zeros((B, self.shape[1]), dtype=np.int64)
        planes = enc.bit_planes(x2)
        for t in self.tiles:
            S = enc.slices_per_weight(t.mode)
            cw = np.array([enc.column_weight(t.mode, k) for k in range(S)])
            ridx = t.rows_idx
            wl = np.zeros((enc.INPUT_BITS, B, self.params.rows), dtype=np.int64)
            wl[:, :, :len(ridx)] = planes[:, :, ridx]
            vec = first_vector + np.arange(B)[None, :]
            pl = np.arange(enc.INPUT_BITS)[:, None]
            held = t.crossbar.held_values(wl, vector=vec, plane=pl) if t.crossbar.has_read_noise \
                else t.crossbar.held_values(wl)
            codes = sar_codes(held, self.params.max_code(t.mode))
            sa = codes.reshape(enc.INPUT_BITS, B, -1, S) @ cw
            part = np.tensordot(_PW, sa, axes=1) + enc.offset_correction(x2[:, ridx])[:, None]
            y[:, t.out_idx] += part[:, :t.n_out]
        return y


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


def _as_range(ix):
    """``(start, stop)`` when the index array ``ix`` is a contiguous range, else ``ix``."""
    if len(ix) and ix[-1] - ix[0] == len(ix) - 1 and np.array_equal(ix, np.arange(ix[0], ix[-1] + 1)):
        return int(ix[0]), int(ix[-1]) + 1
    return ix


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
        all_cols = np.arange(n)
        for md in enc.MODES:
            ridx = np.flatnonzero(rmodes == md)
            chunks += [(ridx[i:i + rows], {md: all_cols}) for i in range(0, len(ridx), rows)]
    else:
        cmodes = _mode_vector(mode, n, "mode")
        rmodes = None
        by_mode = {md: np.flatnonzero(cmodes == md) for md in enc.MODES}
        all_rows = np.arange(m)
        chunks = [(all_rows[r0:r0 + rows], by_mode) for r0 in range(0, m, rows)]
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

    groups, indices = [], {}

    def keep(ix):
        r = _as_range(ix)
        if not isinstance(r, tuple):
            base = ix.base if ix.base is not None else ix
            indices[id(base)] = base
        return r

    for ridx, outs_by_mode in chunks:
        nr = len(ridx)
        spans, bound, k = [], 0, 0
        rows_key = keep(ridx)
        for md in enc.MODES:
            outs = outs_by_mode.get(md, np.array([], dtype=np.int64))
            if len(outs) == 0:
                continue
            npa = params.neurons(md)
            S = enc.slices_per_weight(md)
            mc = params.max_code(md)
            tiles, span_bound = [], 0
            for j0 in range(0, len(outs), npa):
                oidx = outs[j0:j0 + npa]
                wt = np.zeros((rows, npa), dtype=np.int64)
                wt[:nr, :len(oidx)] = w[np.ix_(ridx, oidx)]
                xb = Crossbar(enc.encode_weights(wt, md), md, device=dev, rng=rng,
                              offset=offset, read_key=read_key(seed, len(groups) * (1 << 20) + k))
                held = xb.held_as(np.int64, nr)
                p_hi, q_hi, p_lo, q_lo = _thresholds(held[:, :len(oidx) * S], mc)
                clip_rows = (int(p_hi.min(initial=nr + 1)), int(q_hi.max(initial=0)),
                             int(p_lo.min(initial=nr + 1)), int(q_lo.max(initial=0)))
                tiles.append(_Tile(md, rows_key, keep(oidx), xb, clip_rows))
                colsum = np.abs(held).sum(axis=0).max(initial=0)
                if xb.has_read_noise:
                    # |z| <= 4.34, sd <= sqrt(rows * largest variance), cells and reference
                    colsum += 2 * (4.34 * np.sqrt(nr * xb.read_var_levels.max()) + 1)
                bound = max(bound, colsum + ONE_LSB)
                span_bound = max(span_bound, colsum)
                k += 1
            spans.append(_Span(md, tiles, params))
            spans[-1].bound = span_bound
        has_read = any(t.crossbar.has_read_noise for sp in spans for t in sp.tiles)
        grows = slice(*rows_key) if isinstance(rows_key, tuple) else ridx
        dt = _exact_dtype(bound)
        for sp in spans:
            # Rounding by rint instead of adding 1/2 and flooring: every cell also adds
            # eps = 2**-e grid units with nr * eps < 1, so no sum falls on a tie and
            # rint(held + p eps) = floor(held + 1/2); exact when the sums, now on a grid
            # of 2**-e units, stay within the mantissa.
            e = nr.bit_length()
            mant = 24 if dt == np.float32 else 53
            sp.eps = 2.0 ** -e if sp.bound + 1 < 2 ** (mant - e) else 0.0
        groups.append(_Group(grows, spans, dt, has_read))
    return ProgrammedMatrix((m, n), params, s, noise_label, groups,
                            None if cmodes is None else [str(c) for c in cmodes],
                            None if rmodes is None else [str(r) for r in rmodes],
                            device=dev, offset=offset, seed=seed,
                            weights=w.astype(np.int8) if dev is None else None,
                            indices=list(indices.values()))


def saturating_conversions(x, weights, mode, params=ArrayParams()):
    """Number of ideal conversions that would exceed the ADC range (0 means exact)."""
    return program_matrix(weights, mode, rows=params.rows, cols=params.cols,
                          slc_bits=params.slc_bits, mlc_bits=params.mlc_bits,
                          saturation="allow").saturated(x)
