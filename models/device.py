"""RRAM device models: per-level conductance statistics of SLC and MLC cells.

A :class:`Device` is a table, per cell mode (``"slc"``: 2 levels, ``"mlc"``: 4 levels),
of each level's mean position and programming sigma, both in units of the conductance
window ``dG = G_on - G_off`` and measured above the device's ``G_off`` floor, lowest
level first; optionally a per-level read-noise sigma (per read, same units). A cell
programmed to level ``l`` of mode ``md`` conducts, once per programming::

    G' = max(G_off + levels(md)[l] + sigmas(md)[l] * N(0, 1), 0)          (in dG)

and, with read noise on, every read adds ``read_sigmas(md)[l] * N(0, 1)`` drawn anew
(:mod:`.crossbar`). Nominal positions are ``l / (L - 1)``: 0, 1 (SLC) and 0, 1/3, 2/3,
1 (MLC). ``g_off`` is the floor ``G_off / dG`` (1/149 on this project's 6 kOhm, 150:1
cells); it matters only for the clipping at ``G >= 0`` and the nominal offset removal.

Named devices (``load_device(name)``, DESIGN.md 4; G in uS, x = position in the window)
    ``neurram-1d`` (the default, alias ``neurram``)
        NeuRRAM HfOx 1T1R one day after programming (Wan et al., Nature 2022, the fit
        of IBM aihwkit's ``ReRamWan2022NoiseModel``): ``sigma(x) = k * p(x) / 40`` with
        ``p(x) = 0.701 + 22.086 x - 50.773 x^2 + 47.095 x^3 - 16.458 x^4`` uS on a
        40 uS window; ``k`` is solved by bisection so that the 2-bit MLC BER is 4.04%
        (``k`` is about 1.09).
    ``neurram-1s``, ``neurram-2d``
        The same chip 1 s and 2 days after programming (the fits of the same source),
        with the same ``k``: the window scale is a property of the chip, not of time.
    ``crosssim-wan``
        CrossSim's ``RRAM_Wan`` (1 s, Wan et al. Extended Data Fig. 3):
        ``sigma = 1.536e-4 G^3 - 1.167e-2 G^2 + 0.2374 G + 1.053`` (>= 0) on
        ``G_max = 39.26`` uS, ``G_min = G_max / 150``.
    ``crosssim-milo``
        CrossSim's ``RRAM_Milo`` (Milo et al., IRPS 2021): ``sigma = -0.009107 G +
        4.782`` on 50..225 uS.
    ``ibm-cmo``, ``ibm-cmo-0.2``
        IBM CMO/HfOx (aihwkit ``ReRamCMONoiseModel``) on 10..90 uS, one day after
        programming: programming sigma ``0.01122 + 0.01129 G`` (2% acceptance) or
        ``0.00081 + 0.00107 G`` (0.2%), relaxation mean ``-0.0890 ln t`` and sigma
        ``0.0420 ln t + 0.4118``, accumulated 1/f noise ``0.0277 log10(G)
        sqrt(ln((t + 1e-6) / 2e-6))``, the three sigmas added in quadrature (aihwkit
        draws them once per inference too, so they are static here).
    ``proportional``
        The model this project used first (NeuroSim's): ``G' = G (1 + s N(0, 1))``,
        i.e. ``sigma_l = s (g_off + x_l)``, ``s`` calibrated to the 4.04% BER (0.157).
    ``additive``
        A constant sigma (CrossSim's "independent" error): ``G' = G + s G_on N(0, 1)``,
        calibrated the same way.
    ``ideal``
        No noise.

Every fit is mapped onto this project's window by position (``x`` in 0..1), so each
device keeps its own ratio of noise to window; ``load_device(name, ber=B)`` scales all
programming sigmas (SLC and MLC by the same factor, read noise untouched) so that the
2-bit MLC BER is ``B``.

Bit error rate (the definition of DESIGN.md 4)
    A level drawn uniformly, read back against thresholds at the mid-points between
    adjacent level means; BER = expected wrong bits of the natural binary level code
    per stored bit (clipping at 0 never changes a read-back level).

User tables (JSON; ``load_device("my_cells.json")``; example in
``constraints/devices/example.json``)::

    {"format": "hyflexpim-device",
     "name": "my cells",                       # optional
     "description": "...",                     # optional
     "g_off": 0.0067,                          # optional: G_off / dG, default 1/149
     "slc": [{"mean": 0.0, "sigma": 0.019}, {"mean": 1.0, "sigma": 0.072}],
     "mlc": [{"offset": 0.0, "sigma": 0.019}, {"offset": 0.01, "sigma": 0.108},
             {"offset": 0.0, "sigma": 0.097}, {"offset": 0.0, "sigma": 0.072}]}

Each level gives ``sigma`` (>= 0) and either ``mean`` (its position) or ``offset``
(position minus the nominal ``l / (L - 1)``), optionally ``read_sigma`` (>= 0); all in
units of dG. Both modes are required, with exactly 2 and 4 levels; means must be
strictly increasing and at or above ``-g_off``. Anything else (a missing level, a NaN
or negative sigma, levels out of order, an unknown key) is refused with a message that
names the file and the entry.
"""

import json
import math
from numbers import Real
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..base import ParameterTypeError, check_choice, check_float
from .encoding import MODES, bits_per_cell, check_mode, levels_per_cell

__all__ = [
    "R_ON", "ON_OFF_RATIO", "G_ON", "G_OFF", "G_OFF_DG", "DEFAULT_MLC_BER", "MAX_SIGMA",
    "DEFAULT_DEVICE", "DEVICE_NAMES", "OFFSETS", "Device", "load_device", "check_ber",
    "check_offset", "check_noise", "NOISE_MODELS", "level_ber", "nominal_levels", "legacy_device", "DeviceFileError",
]

R_ON = 6e3
ON_OFF_RATIO = 150.0
G_ON = 1.0 / R_ON
G_OFF = G_ON / ON_OFF_RATIO
G_OFF_DG = G_OFF / (G_ON - G_OFF)          # 1/149
DEFAULT_MLC_BER = 0.0404
MAX_SIGMA = 1000          # in dG (or relative, legacy): far beyond any device, and safe
MAX_MEAN = 10.0          # for the int64 grid and exact float sums of the crossbar model
DEFAULT_DEVICE = "neurram-1d"
OFFSETS = ("reference", "nominal")
NOISE_MODELS = ("multiplicative", "additive")
FORMAT = "hyflexpim-device"


class DeviceFileError(ValueError):
    """A user device table that cannot be used (the message names file and entry)."""


def check_ber(ber):
    """Return ``ber`` as a float if it lies in (0, 0.5); else ``ValueError``
    (:class:`~hyflexpim.base.ParameterTypeError` for a non-number)."""
    if isinstance(ber, bool) or not isinstance(ber, Real):
        raise ParameterTypeError(f"ber must be a number in (0, 0.5), not {ber!r}")
    if not 0 < ber < 0.5:        # NaN fails too
        raise ValueError(f"ber must be in (0, 0.5), not {ber!r}")
    return float(ber)


def check_offset(offset):
    """Return ``offset`` if it names an offset removal (``reference`` or ``nominal``)."""
    return check_choice("offset", offset, OFFSETS)


def check_noise(noise):
    """Return ``noise`` if it names a legacy noise model (``multiplicative``, ``additive``)."""
    return check_choice("noise", noise, NOISE_MODELS)


def nominal_levels(mode):
    """Nominal level positions of ``mode`` in units of dG: ``l / (L - 1)``."""
    L = levels_per_cell(mode)
    return np.arange(L) / (L - 1)


def _phi(z):
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def level_ber(means, sigmas, bits):
    """BER of a cell with Gaussian levels ``means`` / ``sigmas`` (module doc)."""
    L = len(means)
    thr = [-math.inf] + [(means[i] + means[i + 1]) / 2 for i in range(L - 1)] + [math.inf]
    wrong = 0.0
    for lv in range(L):
        s = float(sigmas[lv])
        for rd in range(L):
            if rd == lv:
                continue
            if s == 0:
                p = 1.0 if thr[rd] <= means[lv] < thr[rd + 1] else 0.0
            else:
                p = _phi((thr[rd + 1] - means[lv]) / s) - _phi((thr[rd] - means[lv]) / s)
            wrong += p * bin(lv ^ rd).count("1")
    return wrong / (L * bits)


class Device:
    """Per-level statistics of one RRAM device (module doc). Immutable.

    ``levels`` and ``sigmas``: dicts mode -> sequence (lowest level first, units of dG);
    ``read_sigmas``: the same for read noise, or ``None``; ``g_off``: ``G_off / dG``;
    ``scale``: the factor the programming sigmas carry relative to the published fit
    (``k`` of the NeuRRAM fits; 1 for a user table).
    """

    def __init__(self, name, levels, sigmas, *, read_sigmas=None, g_off=G_OFF_DG,
                 description="", scale=1.0):
        self.name = str(name)
        self.description = str(description)
        self.g_off = check_float("g_off", g_off, 0.0, MAX_MEAN)
        self.scale = float(scale)
        self._levels, self._sigmas, self._read = {}, {}, None
        for md in MODES:
            mu, sg = _table(self.name, md, levels, sigmas, self.g_off)
            self._levels[md], self._sigmas[md] = mu, sg
        if read_sigmas is not None:
            self._read = {md: _sigma_vector(self.name, md, read_sigmas, "read sigma")
                          for md in MODES}
            if not any(v.any() for v in self._read.values()):
                self._read = None

    # ---- the table ---------------------------------------------------------------
    def levels(self, mode):
        """Mean level positions of ``mode`` in units of dG above G_off, lowest first."""
        return self._levels[check_mode(mode)].copy()

    def sigmas(self, mode):
        """Programming sigmas of ``mode``'s levels in units of dG (before clipping at 0)."""
        return self._sigmas[check_mode(mode)].copy()

    def read_sigmas(self, mode):
        """Per-read noise sigmas of ``mode``'s levels in units of dG (zeros when off)."""
        md = check_mode(mode)
        return (self._read[md] if self._read else np.zeros(levels_per_cell(md))).copy()

    @property
    def has_read_noise(self):
        return self._read is not None

    @property
    def is_ideal(self):
        """No noise at all and nominal level positions."""
        return (not self.has_read_noise and all(
            not self._sigmas[md].any() and np.array_equal(self._levels[md], nominal_levels(md))
            for md in MODES))

    def spacing(self, mode):
        """Nominal level spacing of ``mode`` in units of dG: 1 (SLC), 1/3 (MLC)."""
        return 1.0 / (levels_per_cell(mode) - 1)

    def sigmas_in_spacing(self, mode):
        """Programming sigmas in units of ``mode``'s own level spacing."""
        return self.sigmas(mode) / self.spacing(mode)

    def ber(self, mode="mlc"):
        """Bit error rate of a ``mode`` cell (module doc)."""
        md = check_mode(mode)
        return level_ber(self._levels[md], self._sigmas[md], bits_per_cell(md))

    # ---- derived devices -----------------------------------------------------------
    def _replace(self, **kw):
        d = dict(name=self.name, levels=self._levels, sigmas=self._sigmas,
                 read_sigmas=self._read, g_off=self.g_off, description=self.description,
                 scale=self.scale)
        d.update(kw)
        return Device(d.pop("name"), d.pop("levels"), d.pop("sigmas"), **d)

    def scaled(self, factor):
        """The same device with every programming sigma times ``factor`` (read noise kept)."""
        f = check_float("factor", factor, 0.0)
        return self._replace(sigmas={md: self._sigmas[md] * f for md in MODES},
                             scale=self.scale * f)

    def calibration_factor(self, ber, mode="mlc"):
        """The factor on the programming sigmas at which the ``mode`` BER is ``ber``
        (2-bit MLC unless told), by bisection to a relative precision of 1e-12."""
        ber = check_ber(ber)
        md = check_mode(mode)
        if not self._sigmas[md].any():
            raise ValueError(f"device {self.name!r} has no {md.upper()} programming noise "
                             f"to calibrate to a BER")
        mu, sg = self._levels[md], self._sigmas[md]

        def f(s):
            return level_ber(mu, sg * s, bits_per_cell(md))
        lo, hi = 0.0, 1.0
        while f(hi) < ber:
            hi *= 2
            if hi * sg.max() > MAX_SIGMA:
                raise ValueError(f"ber {ber!r} cannot be reached in mode {md!r} with "
                                 f"device {self.name!r}")
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if f(mid) < ber:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-12 * hi:
                break
        return 0.5 * (lo + hi)

    def calibrated(self, ber):
        """The device scaled so that its 2-bit MLC BER is ``ber``."""
        return self.scaled(self.calibration_factor(ber))

    def with_read_noise(self, read):
        """The device with read noise: a number (sigma as a fraction of G_on, the same
        for every level, e.g. 0.01) or a dict mode -> per-level sigmas in dG; 0 or None
        turns it off."""
        if read is None:
            return self._replace(read_sigmas=None)
        if isinstance(read, dict):
            return self._replace(read_sigmas=read)
        r = check_float("read_noise", read, 0.0, 1.0) * G_ON / (G_ON - G_OFF)
        return self._replace(read_sigmas={md: np.full(levels_per_cell(md), r) for md in MODES})

    # ---- figures -----------------------------------------------------------------
    def weight_error(self, mode, offset="reference"):
        """RMS error of an INT8 weight stored in ``mode`` cells, read through an ideal
        shift-and-add (no ADC), averaged over the 256 weights; programming noise only,
        clipping ignored. ``offset``: with a noisy reference cell (``reference``) or a
        noiseless digital removal of the nominal floor (``nominal``)."""
        from .encoding import column_weight, slices_per_weight
        md, off = check_mode(mode), check_offset(offset)
        S, bpc = slices_per_weight(md), bits_per_cell(md)
        L1 = levels_per_cell(md) - 1
        mu, sg = self._levels[md], self._sigmas[md]
        u = np.arange(256)
        var = np.zeros(256)
        bias = np.zeros(256)
        cw = np.array([column_weight(md, k) for k in range(S)], dtype=float)
        for k in range(S):
            lk = (u >> (bpc * k)) & ((1 << bpc) - 1)
            var += (cw[k] * L1 * sg[lk]) ** 2
            bias += cw[k] * L1 * (mu[lk] - lk / L1 - (mu[0] if off == "reference" else 0.0))
        if off == "reference":
            var += (cw.sum() * L1 * sg[0]) ** 2
        return float(np.sqrt(np.mean(var + bias ** 2)))

    def to_dict(self):
        """The device as a user table (JSON-ready, see the module doc)."""
        d = dict(format=FORMAT, name=self.name, description=self.description,
                 g_off=self.g_off)
        for md in MODES:
            rows = []
            for i, (m, s) in enumerate(zip(self._levels[md], self._sigmas[md])):
                e = dict(mean=float(m), sigma=float(s))
                if self._read:
                    e["read_sigma"] = float(self._read[md][i])
                rows.append(e)
            d[md] = rows
        return d

    def save(self, path):
        """Write :meth:`to_dict` as JSON to ``path``; returns the path."""
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return p

    def __eq__(self, other):
        return isinstance(other, Device) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __repr__(self):
        return (f"Device({self.name!r}, MLC BER {self.ber('mlc'):.4g}, "
                f"read noise {'on' if self.has_read_noise else 'off'})")


# ---- validation -------------------------------------------------------------------

def _sigma_vector(name, md, table, what):
    L = levels_per_cell(md)
    if md not in table:
        raise ValueError(f"device {name!r}: no {what}s for mode {md!r}")
    v = _floats(name, md, table[md], what, L)
    for i, s in enumerate(v):
        if not (0 <= s <= MAX_SIGMA):
            raise ValueError(f"device {name!r}: {md} level {i} {what} must be a number in "
                             f"[0, {MAX_SIGMA:g}], not {s!r}")
    return v


def _floats(name, md, seq, what, L):
    try:
        v = [float(s) for s in seq]
    except (TypeError, ValueError):
        raise ValueError(f"device {name!r}: {md} {what}s must be {L} numbers, not {seq!r}") from None
    if len(v) != L:
        raise ValueError(f"device {name!r}: {md} needs {L} level {what}s, not {len(v)}")
    if not all(math.isfinite(s) for s in v):
        raise ValueError(f"device {name!r}: {md} {what}s must be finite, not {v!r}")
    return np.array(v)


def _table(name, md, levels, sigmas, g_off):
    L = levels_per_cell(md)
    if md not in levels:
        raise ValueError(f"device {name!r}: no levels for mode {md!r}")
    mu = _floats(name, md, levels[md], "level mean", L)
    sg = _sigma_vector(name, md, sigmas, "sigma")
    if np.any(np.diff(mu) <= 0):
        raise ValueError(f"device {name!r}: {md} level means must increase strictly, "
                         f"not {[float(m) for m in mu]}")
    if mu[0] < -g_off or mu[-1] > MAX_MEAN:
        raise ValueError(f"device {name!r}: {md} level means must lie in "
                         f"[-g_off, {MAX_MEAN:g}] = [{-g_off:.4g}, {MAX_MEAN:g}], "
                         f"not {[float(m) for m in mu]}")
    return mu, sg


# ---- named devices ------------------------------------------------------------------

def _poly(coeffs, x):
    return sum(c * x ** i for i, c in enumerate(coeffs))


def _fit_device(name, sigma_us, g_min, g_max, description, scale=1.0):
    """A device whose sigma is a function of G (uS) on a g_min..g_max window."""
    dg = g_max - g_min
    g_off = g_min / dg if g_min > 0 else G_OFF_DG
    lv = {md: nominal_levels(md) for md in MODES}
    sg = {md: np.array([scale * max(sigma_us(g_min + x * dg), 0.0) / dg for x in lv[md]])
          for md in MODES}
    return Device(name, lv, sg, g_off=g_off, description=description, scale=scale)


_NEURRAM = {   # polynomial coefficients (uS on a 40 uS window), x^0 first
    "1s": (0.348, 16.030, -43.853, 45.393, -16.815),
    "1d": (0.701, 22.086, -50.773, 47.095, -16.458),
    "2d": (0.782, 20.274, -43.507, 37.062, -11.934),
}
_NEURRAM_TEXT = {"1s": "1 s", "1d": "one day", "2d": "two days"}


def _neurram(t, k=1.0):
    c = _NEURRAM[t]
    return _fit_device(
        f"neurram-{t}", lambda g: _poly(c, g / 40.0), 0.0, 40.0,
        f"NeuRRAM HfOx 1T1R {_NEURRAM_TEXT[t]} after programming (Wan et al. 2022, "
        f"aihwkit ReRamWan2022NoiseModel fit), k = {k:.4f}", scale=k)


@lru_cache(maxsize=None)
def neurram_k():
    """``k`` of the NeuRRAM fits: the one-day fit's 2-bit MLC BER is 4.04%."""
    return _neurram("1d").calibration_factor(DEFAULT_MLC_BER)


def _neurram_named(t):
    return _neurram(t, neurram_k())


def _cmo(acceptance):
    prog = {"2": (0.0112185391, 0.01129027418), "0.2": (0.00081107, 0.00106879)}[acceptance]
    t = 86400.0

    def sigma(g):
        s_prog = prog[0] + prog[1] * g
        s_relax = 0.04201137 * math.log(t) + 0.41183342
        s_read = 0.0277316483 * math.log10(g) * math.sqrt(math.log((t + 1e-6) / 2e-6))
        return math.sqrt(s_prog ** 2 + s_relax ** 2 + s_read ** 2)
    name = "ibm-cmo" if acceptance == "2" else "ibm-cmo-0.2"
    d = _fit_device(name, sigma, 10.0, 90.0,
                    f"IBM CMO/HfOx (aihwkit ReRamCMONoiseModel), {acceptance}% acceptance, "
                    f"one day after programming, 10..90 uS")
    shift = -0.08900206 * math.log(t) / 80.0
    return d._replace(levels={md: nominal_levels(md) + shift for md in MODES})


def legacy_device(noise, sigma):
    """The models the project used first, as devices: ``multiplicative`` (``G' = G (1 +
    sigma N)``) or ``additive`` (``G' = G + sigma G_on N``); ``sigma`` relative."""
    s = check_float("sigma", sigma, 0, MAX_SIGMA)
    check_noise(noise)
    lv = {md: nominal_levels(md) for md in MODES}
    if noise == "multiplicative":
        sg = {md: s * (G_OFF_DG + lv[md]) for md in MODES}
        text = "proportional (multiplicative) programming error G' = G (1 + s N)"
        name = "proportional"
    else:
        sg = {md: np.full(len(lv[md]), s * G_ON / (G_ON - G_OFF)) for md in MODES}
        text = "additive constant programming error G' = G + s G_on N"
        name = "additive"
    return Device(name, lv, sg, description=f"{text}, s = {s:.4g}", scale=s)


def _legacy_named(noise):
    return legacy_device(noise, legacy_device(noise, 1.0).calibration_factor(DEFAULT_MLC_BER))


_REGISTRY = {
    "neurram-1d": lambda: _neurram_named("1d"),
    "neurram-1s": lambda: _neurram_named("1s"),
    "neurram-2d": lambda: _neurram_named("2d"),
    "crosssim-wan": lambda: _fit_device(
        "crosssim-wan", lambda g: 1.536e-4 * g ** 3 - 1.167e-2 * g ** 2 + 0.2374 * g + 1.053,
        39.26 / ON_OFF_RATIO, 39.26,
        "CrossSim RRAM_Wan: NeuRRAM 1 s cubic fit (Wan et al. Extended Data Fig. 3), "
        "G_max 39.26 uS"),
    "crosssim-milo": lambda: _fit_device(
        "crosssim-milo", lambda g: -0.009107 * g + 4.782321, 50.0, 225.0,
        "CrossSim RRAM_Milo: Milo et al. IRPS 2021 linear fit, 50..225 uS"),
    "ibm-cmo": lambda: _cmo("2"),
    "ibm-cmo-0.2": lambda: _cmo("0.2"),
    "proportional": lambda: _legacy_named("multiplicative"),
    "additive": lambda: _legacy_named("additive"),
    "ideal": lambda: Device("ideal", {md: nominal_levels(md) for md in MODES},
                            {md: np.zeros(levels_per_cell(md)) for md in MODES},
                            description="no noise"),
}
_ALIASES = {"neurram": "neurram-1d", "default": "neurram-1d"}
DEVICE_NAMES = tuple(_REGISTRY)


@lru_cache(maxsize=None)
def _named(name):
    return _REGISTRY[name]()


# ---- user files ----------------------------------------------------------------------

_LEVEL_KEYS = {"mean", "offset", "sigma", "read_sigma"}
_TOP_KEYS = {"format", "name", "description", "g_off", "slc", "mlc"}


def _from_file(path):
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"device file {p} not found")
    if p.is_dir():
        raise DeviceFileError(f"device file {p} is a directory")
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise DeviceFileError(f"device file {p} is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise DeviceFileError(f"device file {p} is not valid JSON: {e}") from None
    except OSError as e:
        raise DeviceFileError(f"device file {p} cannot be read: {e.strerror}") from None
    try:
        return device_from_dict(data, default_name=p.stem)
    except ValueError as e:
        raise DeviceFileError(f"device file {p}: {e}") from None


def device_from_dict(data, default_name="user"):
    """A :class:`Device` from a user table (the JSON schema of the module doc)."""
    if not isinstance(data, dict):
        raise ValueError(f"a device table must be a JSON object, not {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise ValueError(f"'format' must be {FORMAT!r}, not {data.get('format')!r}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_TOP_KEYS))})")
    name = data.get("name", default_name)
    g_off = data.get("g_off", G_OFF_DG)
    if isinstance(g_off, bool) or not isinstance(g_off, (int, float)) or not (
            math.isfinite(g_off) and 0 <= g_off <= MAX_MEAN):
        raise ValueError(f"'g_off' must be a number in [0, {MAX_MEAN:g}], not {g_off!r}")
    levels, sigmas, reads = {}, {}, {}
    for md in MODES:
        L = levels_per_cell(md)
        rows = data.get(md)
        if rows is None:
            raise ValueError(f"missing {md!r}: a list of {L} levels")
        if not isinstance(rows, list) or len(rows) != L:
            n = len(rows) if isinstance(rows, list) else type(rows).__name__
            raise ValueError(f"{md!r} must list {L} levels, lowest first, not {n}")
        mu, sg, rd = [], [], []
        for i, e in enumerate(rows):
            where = f"{md} level {i}"
            if not isinstance(e, dict):
                raise ValueError(f"{where} must be an object with 'sigma' and 'mean' or "
                                 f"'offset', not {e!r}")
            bad = sorted(set(e) - _LEVEL_KEYS)
            if bad:
                raise ValueError(f"{where}: unknown key {bad[0]!r} (allowed: "
                                 f"{', '.join(sorted(_LEVEL_KEYS))})")
            if ("mean" in e) == ("offset" in e):
                raise ValueError(f"{where}: give exactly one of 'mean' and 'offset'")
            vals = {}
            for key in ("mean", "offset", "sigma", "read_sigma"):
                if key in e:
                    v = e[key]
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                        raise ValueError(f"{where}: {key!r} must be a finite number, not {v!r}")
                    vals[key] = float(v)
            if "sigma" not in vals:
                raise ValueError(f"{where}: missing 'sigma'")
            for key in ("sigma", "read_sigma"):
                if key in vals and not 0 <= vals[key] <= MAX_SIGMA:
                    raise ValueError(f"{where}: {key!r} must be in [0, {MAX_SIGMA:g}], "
                                     f"not {vals[key]!r}")
            mu.append(vals["mean"] if "mean" in vals else i / (L - 1) + vals["offset"])
            sg.append(vals["sigma"])
            rd.append(vals.get("read_sigma", 0.0))
        levels[md], sigmas[md], reads[md] = mu, sg, rd
    return Device(name, levels, sigmas, g_off=g_off, description=data.get("description", ""),
                  read_sigmas=reads if any(any(r) for r in reads.values()) else None)


def load_device(name_or_path=None, *, ber=None, read_noise=None):
    """A :class:`Device`: ``None`` (the default, ``neurram-1d``), a name of
    :data:`DEVICE_NAMES` (or ``neurram``), a JSON file (module doc) or a Device.

    ``ber`` re-calibrates the programming-noise scale to that 2-bit MLC BER (``None``
    keeps the device's own). ``read_noise``: per-read sigma as a fraction of G_on (e.g.
    0.01), off by default (a user table's own ``read_sigma`` entries are kept).

    Raises:
        ValueError: an unknown name, a bad file (:class:`DeviceFileError`), a BER
            outside (0, 0.5) or one a noise-free device cannot reach.
        FileNotFoundError: a path that does not exist.
    """
    src = DEFAULT_DEVICE if name_or_path is None else name_or_path
    if isinstance(src, Device):
        dev = src
    elif isinstance(src, Path):
        dev = _from_file(src)
    elif isinstance(src, str):
        key = _ALIASES.get(src.lower(), src.lower())
        if key in _REGISTRY:
            dev = _named(key)
        elif src.lower().endswith(".json") or Path(src).exists():
            dev = _from_file(src)
        else:
            raise ValueError(f"device must be one of {', '.join(DEVICE_NAMES)} or a JSON "
                             f"file, not {src!r}")
    else:
        raise ParameterTypeError(f"device must be a name, a JSON file path or a Device, "
                                 f"not {src!r}")
    if ber is not None and not math.isclose(dev.ber("mlc"), check_ber(ber), rel_tol=1e-9):
        dev = dev.calibrated(ber)
    if read_noise is not None:
        dev = dev.with_read_noise(read_noise if read_noise else None)
    return dev
