"""Behavioural model of one RRAM crossbar array, its sample-and-hold and its comparator.

Device (DESIGN.md 2, 4; :mod:`.device`)
    1T1R cells, ``R_on = 6 kOhm``, on/off ratio 150: ``G_on = 1/6 kOhm``,
    ``G_off = G_on / 150``. A cell at level ``l`` of ``L`` levels has the nominal
    conductance ``G_off + l * dG / (L - 1)`` with ``dG = G_on - G_off``.

Programming noise
    Given by a :class:`~.device.Device` (per-level mean and sigma, in units of dG),
    drawn once per programming from ``rng`` (cells first, then the reference column):
    ``G' = max(G_off + mean_l + sigma_l N(0, 1), 0)``. The default device is the
    NeuRRAM one-day fit calibrated to the 4.04% 2-bit MLC BER (state-dependent: the
    intermediate MLC states spread the most). The models this project used first stay
    available: ``sigma=`` with ``noise="multiplicative"`` (``G' = G (1 + sigma N)``,
    the default meaning of a bare ``sigma``) or ``noise="additive"``
    (``G' = G + sigma G_on N``); :func:`sigma_from_ber` / :func:`ber_from_sigma`
    calibrate those.

Bit error rate (the definition used for the calibration)
    Program a cell to a level drawn uniformly from the ``L`` levels, read it back with
    thresholds at the mid-points between adjacent level means, and count the bits
    (natural binary code of the level) that differ; BER is the expected number of
    wrong bits divided by the bits per cell.

G_off floor (``offset``)
    Every cell, even at level 0, conducts ``G_off``. ``offset="reference"`` (as built):
    each array has one reference column whose cells are all programmed to level 0
    (with the same programming noise), driven by the same wordlines, and the
    sample-and-hold holds the difference ``I_bitline - I_reference``; its noise is
    common to every column of the array. ``offset="nominal"``: the nominal floor
    ``G_off`` per active row is subtracted digitally (noiseless, but blind to the
    device's own level-0 spread and drift). Both remove the floor exactly in ideal mode.

Read noise (optional, off by default)
    Per read (one bit-plane of one input vector), each active cell adds
    ``read_sigma_l N(0, 1)``. The sum over a column is drawn as one Gaussian of the
    summed variance, ``z * sqrt(sum_active read_var)``, with ``z`` from a counter-based
    generator keyed by (``read_key``, vector, plane, column) (:func:`counter_normal`);
    the reference column is column ``cols``. The per-cell variances are integers on the
    grid (squared), ``sqrt`` and the product are correctly rounded, so the vectorised
    golden model and a cycle-by-cycle testbench get the same integers whatever the
    batch shape: :meth:`Crossbar.held_values` with ``vector=`` and ``plane=``.

Held values and the comparator (exact integers)
    Held values are expressed in ADC least-significant bits, where one LSB is the
    mode's level spacing ``dG / (L - 1)`` times the read voltage, and quantised to a
    fixed-point grid of ``2**-FRAC_BITS`` LSB (``FRAC_BITS = 10``): each programmed
    conductance is rounded to that grid once, at programming, so that every bitline sum
    is an exact integer whatever the order of summation. That is what lets the golden
    model (vectorised) and the RTL testbench (one comparison at a time) agree bit for
    bit with noise on. The DAC level of trial code ``t`` is ``t - 1/2`` LSB, so a
    conversion returns ``round(held)`` clamped to the code range; the comparator
    answers ``held >= dac_level(t)``.
"""

from functools import lru_cache
from statistics import NormalDist

import numpy as np

from ..base import check_float, check_int
from .device import (R_ON, ON_OFF_RATIO, G_ON, G_OFF, DEFAULT_MLC_BER, MAX_SIGMA, NOISE_MODELS,
                     check_ber, check_noise, nominal_levels, check_offset, legacy_device, load_device)
from .encoding import check_mode, levels_per_cell

__all__ = [
    "R_ON", "ON_OFF_RATIO", "G_ON", "G_OFF", "FRAC_BITS", "ONE_LSB", "DEFAULT_MLC_BER",
    "NOISE_MODELS", "check_noise",
    "conductance_levels", "ber_from_sigma", "sigma_from_ber", "check_sigma", "check_ber",
    "dac_level", "counter_normal", "counter_hash", "normal_from_hash", "counter_normal_grid", "read_key", "Crossbar",
    "share_storage",
]

FRAC_BITS = 10
ONE_LSB = 1 << FRAC_BITS
_M64 = (1 << 64) - 1


def conductance_levels(mode):
    """Nominal conductances (siemens) of the levels of ``mode``, lowest first."""
    return G_OFF + nominal_levels(mode) * (G_ON - G_OFF)


def check_sigma(sigma):
    """Return ``sigma`` as a float if it is a number in [0, 1000]; else ``ValueError``."""
    return check_float("sigma", sigma, 0, MAX_SIGMA)


def ber_from_sigma(sigma, mode="mlc", noise="multiplicative"):
    """Bit error rate of a ``mode`` cell under the legacy ``noise`` model's ``sigma``."""
    return legacy_device(check_noise(noise), check_sigma(sigma)).ber(check_mode(mode))


def sigma_from_ber(ber=DEFAULT_MLC_BER, mode="mlc", noise="multiplicative"):
    """The legacy ``noise`` model's sigma at which a ``mode`` cell shows BER ``ber``.

    Inverse of :func:`ber_from_sigma` (increasing in sigma), by bisection to a relative
    precision of 1e-12.
    """
    return legacy_device(check_noise(noise), 1.0).calibration_factor(ber, check_mode(mode))


def dac_level(code):
    """DAC level of trial ``code`` on the held-value grid: ``code - 1/2`` LSB (integer)."""
    return np.asarray(code, dtype=np.int64) * ONE_LSB - ONE_LSB // 2


# ---- counter-based normal numbers for read noise ----------------------------------

_TABLE_BITS = 16


@lru_cache(maxsize=1)
def _normal_table():
    nd = NormalDist()
    n = 1 << _TABLE_BITS
    return np.array([nd.inv_cdf((i + 0.5) / n) for i in range(n)])


def _mix(h):
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def counter_hash(key, *counters, h=None):
    """The 64-bit hash behind :func:`counter_normal`: ``key`` (or a hash ``h`` already
    chained over leading counters, which gives the same result) chained with each
    counter in turn by SplitMix64. Hashing the leading counters once and the last one per
    element is how the golden model draws a whole read of columns at the cost of one
    mix per column."""
    arrs = np.broadcast_arrays(*[np.asarray(c, dtype=np.int64) for c in counters])
    gold = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        if h is None:
            h = np.full(arrs[0].shape if arrs else (), np.uint64(int(key) & _M64), dtype=np.uint64)
        for c in arrs:
            h = _mix((h + gold) ^ c.astype(np.uint64))
    return h


def normal_from_hash(h):
    """N(0, 1) numbers of :func:`counter_hash` values: the top 16 bits pick the quantile."""
    return _normal_table()[(h >> np.uint64(64 - _TABLE_BITS)).astype(np.intp)]


def _mix_inplace(h, tmp=None):
    """:func:`_mix` in place (the same bits), for large arrays (``tmp``: a buffer of
    h's shape and dtype)."""
    tmp = np.empty_like(h) if tmp is None else tmp
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, None)):
        np.right_shift(h, np.uint64(shift), out=tmp)
        np.bitwise_xor(h, tmp, out=h)
        if mult is not None:
            np.multiply(h, np.uint64(mult), out=h)
    return h


def counter_normal_grid(keys, vector, plane, columns, work=None):
    """``counter_normal(keys[t], vector[r], plane[r], columns[c])`` for every read ``r``,
    key ``t`` and column ``c``: an array (reads, keys, columns), the same numbers,
    with the (key, vector, plane) part hashed once per read and key. ``work``: optional
    (hash, scratch, result) buffers of that shape (uint64, uint64, float64), reused."""
    gold = np.uint64(0x9E3779B97F4A7C15)
    k = np.array([int(x) & _M64 for x in keys], dtype=np.uint64)[None, :]
    v = np.asarray(vector, dtype=np.int64).astype(np.uint64)[:, None]
    b = np.asarray(plane, dtype=np.int64).astype(np.uint64)[:, None]
    with np.errstate(over="ignore"):
        h = _mix((k + gold) ^ v)
        h = _mix((h + gold) ^ b)
        cols = np.asarray(columns, dtype=np.int64).astype(np.uint64)
        shape = h.shape + cols.shape
        hh, tmp, z = work if work is not None else (np.empty(shape, dtype=np.uint64), None,
                                                   np.empty(shape))
        np.bitwise_xor((h + gold)[:, :, None], cols, out=hh)
        _mix_inplace(hh, tmp)
    np.right_shift(hh, np.uint64(64 - _TABLE_BITS), out=hh)
    return np.take(_normal_table(), hh.view(np.int64), out=z, mode="clip")   # all in range


def counter_normal(key, *counters):
    """Standard normal numbers, one per element of the broadcast ``counters``, that
    depend only on ``key`` and the counter values (not on order or batch shape).

    Each element's counters are hashed (SplitMix64) with ``key``; the top 16 bits pick
    the quantile ``(i + 1/2) / 2**16`` of N(0, 1) (so ``|z| <= 4.33``). Integer
    operations and a table look-up only: bit-identical on every call.
    """
    return normal_from_hash(counter_hash(key, *counters))


def read_key(seed, tile):
    """The read-noise key of array ``tile`` of a matrix programmed with ``seed``."""
    with np.errstate(over="ignore"):
        h = _mix(np.array([int(seed) & _M64], dtype=np.uint64) ^ np.uint64(0xD1B54A32D192ED03))
        h = _mix(h + np.uint64(int(tile) & _M64))
    return int(h[0])


class Crossbar:
    """One programmed array: ``levels`` (rows x cols, integer cell levels) in ``mode``.

    The noise comes from ``device`` (a :class:`~.device.Device` or a name for
    :func:`~.device.load_device`), or, as before devices existed, from ``sigma`` of the
    legacy model ``noise`` (``"multiplicative"``, the default, or ``"additive"``);
    neither: ideal. ``rng`` (a ``numpy.random.Generator``) is used once, here, for the
    cells and then the reference column. ``offset``: ``"reference"`` (reference column,
    as built) or ``"nominal"`` (digital subtraction of the nominal G_off floor).
    ``read_key``: key of the read noise, if the device has any (:func:`read_key`).

    ``held`` is the (rows x cols) integer matrix, in grid units, of what each cell adds
    to its held bitline value when its wordline is on (without read noise).

    Storage (``nbytes``): an array whose every cell holds exactly ``levels * ONE_LSB``
    (the ideal case) keeps only its levels, 1 byte per cell; otherwise each cell is one
    16-bit word ``held * 2**bits_per_cell + level`` (``held`` within +-8 LSB in MLC,
    +-16 LSB in SLC: every named device at any usable BER), or 32 / 64 bits when some
    cell is beyond that. ``levels``, ``held``, ``read_var`` and ``read_var_ref`` are
    decoded from it on request.
    """

    def __init__(self, levels, mode, *, sigma=0.0, rng=None, noise="multiplicative",
                 device=None, offset="reference", read_key=0):
        self.mode = check_mode(mode)
        self.sigma = check_sigma(sigma)
        self.noise = check_noise(noise)
        self.offset = check_offset(offset)
        if device is not None and self.sigma > 0:
            raise ValueError("give either device or sigma, not both")
        if device is None:
            device = legacy_device(self.noise, self.sigma) if self.sigma > 0 else load_device("ideal")
        self.device = load_device(device)
        lv = np.asarray(levels)
        if lv.ndim != 2:
            raise ValueError(f"levels must be a 2-D array, not shape {lv.shape}")
        L = levels_per_cell(self.mode)
        if lv.size and (lv.min() < 0 or lv.max() >= L):
            raise ValueError(f"cell levels of mode {self.mode!r} must lie in 0..{L - 1}")
        lv8 = lv.astype(np.uint8)
        rows, cols = lv.shape
        dev = self.device
        mu, sg = dev.levels(self.mode), dev.sigmas(self.mode)
        li = lv8.astype(np.intp)
        scale = (L - 1) * ONE_LSB       # dG -> grid units
        G = mu[li]                       # above the floor, in dG
        Gref = np.full(rows, mu[0])
        if sg.any():
            if rng is None:
                raise ValueError("a noisy crossbar needs an rng (numpy.random.Generator)")
            G = np.maximum(G + sg[li] * rng.standard_normal(G.shape), -dev.g_off)
            Gref = np.maximum(Gref + sg[0] * rng.standard_normal(rows), -dev.g_off)
        held = np.rint(G * scale).astype(np.int64)
        if self.offset == "reference":
            held -= np.rint(Gref * scale).astype(np.int64)[:, None]
        self._bpc = L.bit_length() - 1
        self._levels, self._word = self._pack(held, lv8, self._bpc)
        self.read_key = int(read_key)
        rs = dev.read_sigmas(self.mode)
        if dev.has_read_noise:
            self._rv = np.rint((rs * scale) ** 2)                # per level, squared grid
            self._rv_ref = float(self._rv[0]) if self.offset == "reference" else 0.0
        else:
            self._rv = None

    @staticmethod
    def _pack(held, lv8, bpc):
        """(levels, None) when every cell is ideal, else (None, packed words)."""
        if np.array_equal(held, lv8.astype(np.int64) * ONE_LSB):
            return lv8, None
        for dt in (np.int16, np.int32, np.int64):
            lim = 1 << (np.iinfo(dt).bits - 1 - bpc)
            if held.min() >= -lim and held.max() < lim:
                return None, held.astype(dt) * dt(1 << bpc) + lv8.astype(dt)
        raise ValueError("held values beyond the int64 grid")      # refused by MAX_SIGMA

    @property
    def levels(self):
        """Cell levels (rows x cols, uint8)."""
        if self._word is None:
            return self._levels
        return (self._word & ((1 << self._bpc) - 1)).astype(np.uint8)

    @property
    def held(self):
        """Held contribution of each cell, grid units (rows x cols, int64)."""
        if self._word is None:
            return self._levels.astype(np.int64) * ONE_LSB
        return (self._word >> self._bpc).astype(np.int64)

    @property
    def is_ideal(self):
        """True when every cell holds exactly ``level * ONE_LSB`` and there is no read
        noise (then only the levels are stored)."""
        return self._word is None and self._rv is None

    def held_as(self, dtype, rows=None):
        """``held`` (its first ``rows`` rows) in ``dtype`` without an int64 copy."""
        sl = slice(None) if rows is None else slice(0, rows)
        if self._word is None:
            return np.multiply(self._levels[sl], ONE_LSB, dtype=dtype)
        return (self._word[sl] >> self._bpc).astype(dtype)

    @property
    def nbytes(self):
        """Bytes of the cell storage (levels or packed words)."""
        return (self._levels if self._word is None else self._word).nbytes

    @property
    def read_var_levels(self):
        """Per-read noise variance of each level (squared grid units), ``None`` when off."""
        return None if self._rv is None else self._rv.copy()

    @property
    def read_var(self):
        """Per-read noise variance of each cell (squared grid units), ``None`` when off."""
        return None if self._rv is None else self._rv[self.levels.astype(np.intp)]

    @property
    def read_var_ref(self):
        """Per-read noise variance of each reference cell, ``None`` when off."""
        if self._rv is None:
            return None
        return np.full(self.shape[0], self._rv_ref)

    @property
    def shape(self):
        return (self._levels if self._word is None else self._word).shape

    @property
    def has_read_noise(self):
        return self._rv is not None

    def _check_wl(self, wl):
        wl = np.asarray(wl)
        if wl.shape[-1] != self.shape[0]:
            raise ValueError(f"wordline vector must have {self.shape[0]} bits, "
                             f"not {wl.shape[-1]}")
        return wl

    def read_noise(self, wl, vector, plane):
        """Read noise (grid units, int64, shape (..., cols)) of the reads with wordline
        bits ``wl`` (..., rows) of input ``vector`` and bit-plane ``plane`` (integers or
        arrays broadcasting to ``wl.shape[:-1]``). Zeros without read noise."""
        wl = self._check_wl(wl)
        cols = self.shape[1]
        if not self.has_read_noise:
            return np.zeros(wl.shape[:-1] + (cols,), dtype=np.int64)
        w = wl.astype(np.float64)
        v = np.broadcast_to(np.asarray(vector, dtype=np.int64), wl.shape[:-1])[..., None]
        b = np.broadcast_to(np.asarray(plane, dtype=np.int64), wl.shape[:-1])[..., None]
        z = counter_normal(self.read_key, v, b, np.arange(cols + 1))
        sd = np.sqrt(w @ self.read_var)
        n = np.rint(z[..., :cols] * sd).astype(np.int64)
        if self.offset == "reference":
            sd_ref = np.sqrt(w @ self.read_var_ref)
            n -= np.rint(z[..., cols] * sd_ref).astype(np.int64)[..., None]
        return n

    def held_values(self, wl, vector=None, plane=None):
        """Held bitline values (grid units, int64) for wordline bits ``wl`` (..., rows).

        With read noise on, ``vector`` (index of the input vector) and ``plane`` (its
        bit-plane, 0..7) are required: the noise of that read is added
        (:meth:`read_noise`); the golden model numbers vectors 0, 1, ... in the order
        of ``run(x, first_vector=...)``.
        """
        wl = self._check_wl(wl)
        h = wl.astype(np.int64) @ self.held
        if self.has_read_noise:
            if vector is None or plane is None:
                raise ValueError("this crossbar has read noise: held_values needs vector= "
                                 "and plane= (the read's input vector and bit-plane)")
            check_int("plane", int(np.max(plane)) if np.size(plane) else 0, 0, 7)
            h = h + self.read_noise(wl, vector, plane)
        return h

    @staticmethod
    def compare(held, code):
        """The comparator: ``held >= dac_level(code)`` (elementwise)."""
        return np.asarray(held) >= dac_level(code)


def share_storage(crossbars):
    """Lay the cell storage of ``crossbars`` (same shape, mode and kind: all ideal or all
    packed words of one dtype) side by side in one array, each crossbar keeping a view of
    its own columns, so that a row of arrays decodes in one operation. Returns the array
    and whether it holds levels (ideal) or packed words, or ``None`` (nothing shared)
    when the crossbars differ in kind."""
    if not crossbars:
        return None
    kinds = {(xb._word is None, (xb._levels if xb._word is None else xb._word).dtype,
              xb.shape, xb._bpc) for xb in crossbars}
    if len(kinds) != 1:
        return None
    ideal = crossbars[0]._word is None
    name = "_levels" if ideal else "_word"
    stacked = np.concatenate([getattr(xb, name) for xb in crossbars], axis=1)
    c = crossbars[0].shape[1]
    for i, xb in enumerate(crossbars):
        setattr(xb, name, stacked[:, i * c:(i + 1) * c])
    return stacked, ideal
