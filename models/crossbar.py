"""Behavioural model of one RRAM crossbar array, its sample-and-hold and its comparator.

Device (DESIGN.md 2, 4)
    1T1R cells, ``R_on = 6 kOhm``, on/off ratio 150: ``G_on = 1/6 kOhm``,
    ``G_off = G_on / 150``. A cell at level ``l`` of ``L`` levels has the nominal
    conductance ``G_off + l * dG`` with ``dG = (G_on - G_off) / (L - 1)``.

Programming noise
    Multiplicative Gaussian (the specification's model, the default), drawn once per
    programming: ``G' = G * (1 + sigma * N(0,1))``, clipped at 0 (a conductance cannot
    be negative). ``sigma`` is a property of the device: :func:`sigma_from_ber`
    calibrates it from the bit error rate measured on 2-bit MLC cells (default 4.04%);
    SLC arrays of the same chip use the same sigma.
    ``noise="additive"`` selects a state-independent alternative,
    ``G' = G + sigma * G_on * N(0,1)``, calibrated the same way. The two differ in what
    they predict for analog MACs: with multiplicative noise the conductance error is
    proportional to the stored value, so a bitline sum carries about the same error in
    the value domain whether the weight is stored in SLC or MLC cells (SLC only wins
    on single-cell read-back); with additive noise every cell carries the same absolute
    error and MLC, whose levels are 3x closer, is about 3x noisier per value.

Bit error rate (the definition used for the calibration)
    Program a cell to a level drawn uniformly from the ``L`` levels, read it back with
    thresholds at the mid-points between adjacent nominal conductances, and count the
    bits (natural binary code of the level) that differ; BER is the expected number of
    wrong bits divided by the bits per cell.

G_off floor
    Every cell, even at level 0, conducts ``G_off``. Each array has one reference
    column whose cells are all programmed to level 0 (with the same programming noise);
    it is driven by the same wordlines, and the sample-and-hold holds the difference
    ``I_bitline - I_reference``. In ideal mode this removes the floor exactly; with
    noise a small residue remains, as in a real array.

Held values and the comparator (exact integers)
    Held values are expressed in ADC least-significant bits, where one LSB is ``dG``
    times the read voltage, and quantised to a fixed-point grid of ``2**-FRAC_BITS`` LSB
    (``FRAC_BITS = 10``): each programmed conductance is rounded to that grid once,
    at programming, so that every bitline sum is an exact integer whatever the order
    of summation. That is what lets the golden model (vectorised) and the RTL
    testbench (one comparison at a time) agree bit for bit with noise on.
    The DAC level of trial code ``t`` is ``t - 1/2`` LSB, so a conversion returns
    ``round(held)`` clamped to the code range; the comparator answers
    ``held >= dac_level(t)``.
"""

import math

import numpy as np

from .encoding import check_mode, levels_per_cell, bits_per_cell

__all__ = [
    "R_ON", "ON_OFF_RATIO", "G_ON", "G_OFF", "FRAC_BITS", "ONE_LSB", "DEFAULT_MLC_BER",
    "NOISE_MODELS", "check_noise",
    "conductance_levels", "ber_from_sigma", "sigma_from_ber", "check_sigma", "check_ber",
    "dac_level", "Crossbar",
]

R_ON = 6e3
ON_OFF_RATIO = 150.0
G_ON = 1.0 / R_ON
G_OFF = G_ON / ON_OFF_RATIO
FRAC_BITS = 10
ONE_LSB = 1 << FRAC_BITS
DEFAULT_MLC_BER = 0.0404
NOISE_MODELS = ("multiplicative", "additive")


def check_noise(noise):
    """Return ``noise`` if it names a noise model; else ``ValueError``."""
    if noise not in NOISE_MODELS:
        raise ValueError(f"noise must be 'multiplicative' or 'additive', not {noise!r}")
    return noise


def _noise_std(sigma, g, noise):
    return sigma * g if noise == "multiplicative" else sigma * G_ON * np.ones_like(g)


def conductance_levels(mode):
    """Nominal conductances (siemens) of the levels of ``mode``, lowest first."""
    L = levels_per_cell(mode)
    return G_OFF + np.arange(L) * (G_ON - G_OFF) / (L - 1)


def _phi(z):
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def check_sigma(sigma):
    """Return ``sigma`` as a float if it is a finite number >= 0; else ``ValueError``."""
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"sigma must be a non-negative number, not {sigma!r}") from None
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"sigma must be a finite number >= 0, not {sigma!r}")
    return s


def check_ber(ber):
    """Return ``ber`` as a float if it lies in (0, 0.5); else ``ValueError``."""
    try:
        b = float(ber)
    except (TypeError, ValueError):
        raise ValueError(f"ber must be a number in (0, 0.5), not {ber!r}") from None
    if not (0.0 < b < 0.5):
        raise ValueError(f"ber must be in (0, 0.5), not {ber!r}")
    return b


def ber_from_sigma(sigma, mode="mlc", noise="multiplicative"):
    """Bit error rate of a ``mode`` cell under programming noise ``sigma`` (module doc)."""
    sigma = check_sigma(sigma)
    mode = check_mode(mode)
    check_noise(noise)
    g = conductance_levels(mode)
    std = _noise_std(sigma, g, noise)
    L, bpc = len(g), bits_per_cell(mode)
    if sigma == 0:
        return 0.0
    thr = np.concatenate([[-np.inf], (g[:-1] + g[1:]) / 2, [np.inf]])
    wrong_bits = 0.0
    for lv in range(L):
        s = std[lv]
        for rd in range(L):
            if rd == lv:
                continue
            p = _phi((thr[rd + 1] - g[lv]) / s) - _phi((thr[rd] - g[lv]) / s)
            wrong_bits += p * bin(lv ^ rd).count("1")
    return wrong_bits / (L * bpc)


def sigma_from_ber(ber=DEFAULT_MLC_BER, mode="mlc", noise="multiplicative"):
    """The noise ``sigma`` at which a ``mode`` cell shows bit error rate ``ber``.

    Inverse of :func:`ber_from_sigma` (which is increasing in sigma), by bisection to
    a relative precision of 1e-12.
    """
    ber = check_ber(ber)
    mode = check_mode(mode)
    check_noise(noise)
    lo, hi = 0.0, 1.0
    while ber_from_sigma(hi, mode, noise) < ber:
        hi *= 2
        if hi > 1e6:
            raise ValueError(f"ber {ber!r} cannot be reached in mode {mode!r}")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if ber_from_sigma(mid, mode, noise) < ber:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


def dac_level(code):
    """DAC level of trial ``code`` on the held-value grid: ``code - 1/2`` LSB (integer)."""
    return np.asarray(code, dtype=np.int64) * ONE_LSB - ONE_LSB // 2


class Crossbar:
    """One programmed array: ``levels`` (rows x cols, integer cell levels) in ``mode``.

    ``sigma`` is the programming noise (0: ideal) of model ``noise``; ``rng`` a
    ``numpy.random.Generator`` used once, here, for the cells and then the reference
    column. ``held`` is the (rows x cols) integer matrix, in grid units, of what each
    cell adds to its held bitline value when its wordline is on.
    """

    def __init__(self, levels, mode, *, sigma=0.0, rng=None, noise="multiplicative"):
        self.mode = check_mode(mode)
        self.sigma = check_sigma(sigma)
        self.noise = check_noise(noise)
        lv = np.asarray(levels)
        if lv.ndim != 2:
            raise ValueError(f"levels must be a 2-D array, not shape {lv.shape}")
        L = levels_per_cell(self.mode)
        if lv.size and (lv.min() < 0 or lv.max() >= L):
            raise ValueError(f"cell levels of mode {self.mode!r} must lie in 0..{L - 1}")
        self.levels = lv.astype(np.uint8)
        rows, cols = lv.shape
        g = conductance_levels(self.mode)
        dg = g[1] - g[0]
        G = g[self.levels.astype(np.intp)]
        Gref = np.full(rows, G_OFF)
        if self.sigma > 0:
            if rng is None:
                raise ValueError("a noisy crossbar needs an rng (numpy.random.Generator)")
            G = np.maximum(G + _noise_std(self.sigma, G, noise) * rng.standard_normal(G.shape), 0.0)
            Gref = np.maximum(Gref + _noise_std(self.sigma, Gref, noise) * rng.standard_normal(rows),
                              0.0)
        q = np.rint(G / dg * ONE_LSB).astype(np.int64)
        qref = np.rint(Gref / dg * ONE_LSB).astype(np.int64)
        self.held = q - qref[:, None]

    @property
    def shape(self):
        return self.levels.shape

    def held_values(self, wl):
        """Held bitline values (grid units, int64) for wordline bits ``wl`` (..., rows)."""
        wl = np.asarray(wl)
        if wl.shape[-1] != self.levels.shape[0]:
            raise ValueError(f"wordline vector must have {self.levels.shape[0]} bits, "
                             f"not {wl.shape[-1]}")
        return wl.astype(np.int64) @ self.held

    @staticmethod
    def compare(held, code):
        """The comparator: ``held >= dac_level(code)`` (elementwise)."""
        return np.asarray(held) >= dac_level(code)
