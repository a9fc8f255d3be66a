"""Parameters of the architecture model and the per-event energies derived from them.

The numbers live in ``constraints/hyflexpim_params.json`` (HyFlexPIM, each with its
source) and ``constraints/baselines.json`` (the comparison designs). This module reads
them and turns published *powers* into *energies per event* with the published timing
(the formulas are repeated in the JSON under ``_derivations`` and in
docs/architecture.md):

* ADC: ``P_adc / n_adc / f_sample`` is the energy of one conversion at the reference
  resolution (``adc_reference_bits``, the 7-bit MLC mode). The law ``adc_law`` gives the
  other resolutions: ``"doubling"`` (default; one more bit doubles the energy, Kull et al.
  JSSC 2013, Murmann's ADC survey) or ``"linear"`` (energy proportional to the SAR steps).
* WL driver: ``P_wl / n_wl * t_read`` per driver pulse (one driver, one read).
* Array: ``P_arrays / n_arrays * t_read`` per array per bit-plane read.
* Registers (IR, OR): ``(P_ir + P_or) / n_arrays * t_read`` per array per plane.
* S&H: ``P_sh / n_sh / f_sample`` per sampled column.
* S&A: ``P_sa / n_sa / f_sample`` per ADC code added.
* Digital PIM: ``(P_arrays + P_wl + P_ir + P_or + P_sh) / n_arrays * t_step`` per array
  per row step; divided by the NORs of a row step (``floor(cols / 3)``) it is one NOR.
* Digital accumulate: ``P_sa / n_sa / f_clk`` per INT32 add.
* SFU: ``P_sfu / (256 * f_clk)`` per FP16 input.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from ...base import check_choice, check_float, check_int

__all__ = ["PARAMS_FILE", "BASELINES_FILE", "ADC_LAWS", "SCHEDULES", "Params", "load_params",
           "default_params", "read_json", "read_text"]

_CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints"
PARAMS_FILE = _CONSTRAINTS / "hyflexpim_params.json"
BASELINES_FILE = _CONSTRAINTS / "baselines.json"

ADC_LAWS = ("doubling", "linear")
SCHEDULES = ("sequence", "overlap")

_ANALOG_PARTS = ("rram_arrays", "ir", "or", "wl_drivers", "adc", "shift_add", "sample_hold")
_DIGITAL_PARTS = ("rram_arrays", "ir", "or", "wl_drivers", "shift_add", "sample_hold", "sfu")


def read_text(path, what, missing=None):
    """The UTF-8 text of ``path``; one-line errors naming ``what`` and the file.

    Raises:
        FileNotFoundError: no such file (``missing``: its message, default
            "<what> not found: <path>").
        ValueError: a directory, unreadable, or not UTF-8.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory, not a file")
    if not path.exists():
        raise FileNotFoundError(missing or f"{what} not found: {path}")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ValueError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None


def read_json(path, what):
    """The JSON object in ``path``; one-line errors naming ``what`` and the file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a directory, unreadable, not UTF-8, not valid JSON, or not an object.
    """
    text = read_text(path, what)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path}: top level must be a JSON object")
    return data


def _value(group, key, where):
    try:
        entry = group[key]
    except (KeyError, TypeError):
        raise ValueError(f"parameter file: missing {where}.{key}") from None
    v = entry["value"] if isinstance(entry, dict) and "value" in entry else entry
    try:
        return check_float(f"parameter file: {where}.{key}", v, 0.0)
    except ValueError:
        raise ValueError(f"parameter file: {where}.{key} must be a non-negative number, not {v!r}") from None


def _text(group, key, where, choices, default):
    entry = group.get(key, default) if isinstance(group, dict) else default
    v = entry["value"] if isinstance(entry, dict) and "value" in entry else entry
    return check_choice(f"parameter file: {where}.{key}", v, choices)


def _int(v, where, hi=1 << 30):
    if float(v) != int(v):
        raise ValueError(f"parameter file: {where} must be an integer, not {v!r}")
    return check_int(f"parameter file: {where}", int(v), 1, hi)


def _part(group, key, where):
    try:
        e = group[key]
        a, p, c = e["area_mm2"], e["power_mw"], e["count"]
    except (KeyError, TypeError):
        raise ValueError(f"parameter file: {where}.{key} needs area_mm2, power_mw and count") from None
    a = check_float(f"parameter file: {where}.{key}.area_mm2", a, 0.0)
    p = check_float(f"parameter file: {where}.{key}.power_mw", p, 0.0)
    c = check_int(f"parameter file: {where}.{key}.count", c, 1)
    return {"area_mm2": a, "power_w": p * 1e-3, "count": c}


@dataclass(frozen=True)
class Params:
    """All model parameters (SI units) and derived per-event energies (joules)."""
    raw: dict = field(repr=False, compare=False)
    # timing
    t_read: float
    f_sample: float
    f_clk: float
    input_bits: int
    slc_steps: int
    mlc_steps: int
    rtl_read_cycles: int
    # organisation
    pus_per_chip: int
    analog_modules_per_pu: int
    digital_modules_per_pu: int
    arrays_per_module: int
    rows: int
    cols: int
    digital_arrays_per_module: int
    digital_rows: int
    digital_cols: int
    nors_per_product: int
    cols_per_nor: int
    cycles_per_row_step: int
    rows_per_step: int
    sfu_inputs_per_cycle: int
    digital_command_lanes: int
    bus_bw: float
    link_bw: float
    link_latency: float
    # parts
    analog: dict
    digital: dict
    # activity and laws
    wl_activity: float
    bus_j_per_bit: float
    link_j_per_bit: float
    adc_law: str
    adc_reference_bits: int
    schedule: str
    baselines: dict

    # ---- derived timing -------------------------------------------------------------
    @property
    def f_cmp(self):
        """SAR comparison clock: one comparison per clock, a 7-step conversion at f_sample."""
        return self.f_sample * self.mlc_steps

    @property
    def read_cycles_physical(self):
        """The 100 ns crossbar read expressed in comparison-clock cycles (896)."""
        return round(self.t_read * self.f_cmp)

    def steps(self, mode):
        return {"slc": self.slc_steps, "mlc": self.mlc_steps}[mode]

    @property
    def arrays_per_pu(self):
        return self.analog_modules_per_pu * self.arrays_per_module

    @property
    def digital_arrays_per_pu(self):
        return self.digital_modules_per_pu * self.digital_arrays_per_module

    @property
    def digital_bits_per_pu(self):
        return self.digital_arrays_per_pu * self.digital_rows * self.digital_cols

    @property
    def nors_per_row_step(self):
        return self.digital_cols // self.cols_per_nor

    @property
    def t_row_step(self):
        return self.cycles_per_row_step / self.f_clk

    @property
    def products_per_s_per_pu(self):
        """INT8 products per second of one PU's digital PIM (published accounting)."""
        return (self.digital_arrays_per_pu * self.rows_per_step * self.nors_per_row_step
                / self.nors_per_product / self.t_row_step)

    @property
    def sfu_inputs_per_s_per_pu(self):
        return self.digital_modules_per_pu * self.sfu_inputs_per_cycle * self.f_clk

    # ---- derived energies (J) -------------------------------------------------------
    def _per(self, table, part, per_s):
        p = table[part]
        return p["power_w"] / p["count"] / per_s

    @property
    def e_conversion_reference(self):
        """One conversion at ``adc_reference_bits`` (the published ADC power at full rate)."""
        return self._per(self.analog, "adc", self.f_sample)

    def e_conversion_bits(self, bits):
        """One conversion of ``bits`` resolution under :attr:`adc_law`."""
        ref = self.e_conversion_reference
        if self.adc_law == "doubling":
            return ref * 2.0 ** (bits - self.adc_reference_bits)
        return ref * bits / self.adc_reference_bits

    def e_conversion(self, mode):
        return self.e_conversion_bits(self.steps(mode))

    @property
    def e_wl_pulse(self):
        return self._per(self.analog, "wl_drivers", 1.0 / self.t_read)

    @property
    def e_array_read(self):
        return self._per(self.analog, "rram_arrays", 1.0 / self.t_read)

    @property
    def e_registers_plane(self):
        a = self.analog
        n = a["rram_arrays"]["count"]
        return (a["ir"]["power_w"] + a["or"]["power_w"]) / n * self.t_read

    @property
    def e_sample_hold(self):
        return self._per(self.analog, "sample_hold", self.f_sample)

    @property
    def e_shift_add(self):
        return self._per(self.analog, "shift_add", self.f_sample)

    @property
    def e_digital_row_step(self):
        d = self.digital
        p = sum(d[k]["power_w"] for k in ("rram_arrays", "wl_drivers", "ir", "or", "sample_hold"))
        return p / d["rram_arrays"]["count"] * self.t_row_step

    @property
    def e_nor(self):
        return self.e_digital_row_step / (self.rows_per_step * self.nors_per_row_step)

    @property
    def e_product(self):
        return self.nors_per_product * self.e_nor

    @property
    def e_digital_add(self):
        return self._per(self.digital, "shift_add", self.f_clk)

    @property
    def e_sfu_input(self):
        d = self.digital["sfu"]
        return d["power_w"] / (d["count"] * self.sfu_inputs_per_cycle * self.f_clk)

    # ---- area (mm^2) ----------------------------------------------------------------
    @property
    def analog_module_area(self):
        return sum(self.analog[k]["area_mm2"] for k in _ANALOG_PARTS)

    @property
    def digital_module_area(self):
        return sum(self.digital[k]["area_mm2"] for k in _DIGITAL_PARTS)

    @property
    def pu_area(self):
        return (self.analog_modules_per_pu * self.analog_module_area
                + self.digital_modules_per_pu * self.digital_module_area)

    @property
    def chip_area(self):
        return self.pus_per_chip * self.pu_area

    # ---- baselines ------------------------------------------------------------------
    def baseline(self, key):
        """A number of constraints/baselines.json by ``group.key`` (or a top-level key)."""
        try:
            return self.baselines[key]
        except KeyError:
            raise ValueError(f"baseline parameter file: missing {key}") from None

    @property
    def e_int8_mac_baseline(self):
        b = self.baseline
        return (b("digital.int8_mult_pj_45nm") + b("digital.int32_add_pj_45nm")) \
            * b("technology.energy_scale_45_to_65") * 1e-12

    @property
    def int8_mac_area_mm2(self):
        b = self.baseline
        return (b("digital.int8_mult_area_um2_45nm") + b("digital.int32_add_area_um2_45nm")) \
            * b("technology.area_scale_45_to_65") * 1e-6


def _flatten_baselines(raw):
    out = {}
    for group, entries in raw.items():
        if group.startswith("_") or not isinstance(entries, dict):
            continue
        for key, entry in entries.items():
            if key.startswith("_"):
                continue
            out[f"{group}.{key}"] = _value(entries, key, f"{group}")
    return out


def load_params(path=None, baselines_path=None):
    """Read a parameter file (default constraints/hyflexpim_params.json) and the baseline
    file (default constraints/baselines.json) into :class:`Params`.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: a file is a directory, not UTF-8 or not JSON, or a value is missing
            or out of range (the message names it).
    """
    path = Path(path) if path is not None else PARAMS_FILE
    raw = read_json(path, "parameter file")
    braw = read_json(Path(baselines_path) if baselines_path is not None else BASELINES_FILE,
                     "baseline parameter file")
    t = raw.get("timing", {})
    o = raw.get("organisation", {})
    act = raw.get("activity", {})
    en = raw.get("energy", {})
    sch = raw.get("schedule", {})
    gt = lambda k: _value(t, k, "timing")
    go = lambda k: _value(o, k, "organisation")
    steps_hi = 16
    return Params(
        raw=raw,
        t_read=check_float("parameter file: timing.crossbar_read_s", gt("crossbar_read_s"), 0.0, lo_open=True),
        f_sample=check_float("parameter file: timing.adc_sample_rate_hz", gt("adc_sample_rate_hz"), 0.0, lo_open=True),
        f_clk=check_float("parameter file: timing.digital_clock_hz", gt("digital_clock_hz"), 0.0, lo_open=True),
        input_bits=_int(gt("input_bits"), "timing.input_bits", 64),
        slc_steps=_int(gt("slc_sar_steps"), "timing.slc_sar_steps", steps_hi),
        mlc_steps=_int(gt("mlc_sar_steps"), "timing.mlc_sar_steps", steps_hi),
        rtl_read_cycles=_int(gt("rtl_read_cycles"), "timing.rtl_read_cycles"),
        pus_per_chip=_int(go("pus_per_chip"), "organisation.pus_per_chip", 4096),
        analog_modules_per_pu=_int(go("analog_modules_per_pu"), "organisation.analog_modules_per_pu", 4096),
        digital_modules_per_pu=_int(go("digital_modules_per_pu"), "organisation.digital_modules_per_pu", 4096),
        arrays_per_module=_int(go("arrays_per_analog_module"), "organisation.arrays_per_analog_module", 1 << 16),
        rows=_int(go("analog_rows"), "organisation.analog_rows", 1 << 16),
        cols=_int(go("analog_cols"), "organisation.analog_cols", 1 << 16),
        digital_arrays_per_module=_int(go("arrays_per_digital_module"), "organisation.arrays_per_digital_module", 1024),
        digital_rows=_int(go("digital_rows"), "organisation.digital_rows", 1 << 16),
        digital_cols=_int(go("digital_cols"), "organisation.digital_cols", 4096),
        nors_per_product=_int(go("nors_per_int8_product"), "organisation.nors_per_int8_product"),
        cols_per_nor=_int(go("columns_per_nor"), "organisation.columns_per_nor"),
        cycles_per_row_step=_int(go("cycles_per_row_step"), "organisation.cycles_per_row_step"),
        rows_per_step=_int(go("rows_per_step"), "organisation.rows_per_step"),
        sfu_inputs_per_cycle=_int(go("sfu_inputs_per_cycle"), "organisation.sfu_inputs_per_cycle"),
        digital_command_lanes=_int(go("digital_command_lanes"), "organisation.digital_command_lanes", 1024),
        bus_bw=check_float("parameter file: organisation.onchip_bus_bytes_per_s", go("onchip_bus_bytes_per_s"), 0.0, lo_open=True),
        link_bw=check_float("parameter file: organisation.chip_link_bytes_per_s", go("chip_link_bytes_per_s"), 0.0, lo_open=True),
        link_latency=go("chip_link_latency_s"),
        analog={k: _part(raw.get("analog_module", {}), k, "analog_module") for k in _ANALOG_PARTS},
        digital={k: _part(raw.get("digital_module", {}), k, "digital_module") for k in _DIGITAL_PARTS},
        wl_activity=check_float("parameter file: activity.wl_activity", _value(act, "wl_activity", "activity"), 0.0, 1.0),
        bus_j_per_bit=_value(act, "bus_energy_pj_per_bit", "activity") * 1e-12,
        link_j_per_bit=_value(act, "chip_link_energy_pj_per_bit", "activity") * 1e-12,
        adc_law=_text(en, "adc_law", "energy", ADC_LAWS, "doubling"),
        adc_reference_bits=_int(_value(en, "adc_reference_bits", "energy"), "energy.adc_reference_bits", steps_hi),
        schedule=_text(sch, "pu_schedule", "schedule", SCHEDULES, "sequence"),
        baselines=_flatten_baselines(braw),
    )


_DEFAULT = None


def default_params():
    """The parameters of the constraints/ files (read once)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_params()
    return _DEFAULT
