"""Parameters of the architecture model and the per-event energies derived from them.

The numbers live in ``constraints/hyflexpim_params.json`` (each with its source). This
module reads them and turns published *powers* into *energies per event* with the
published timing (the formulas are repeated in the JSON under ``_derivations`` and in
docs/architecture.md):

* ADC: ``P_adc / n_adc / f_sample`` is the energy of one 7-step (MLC) conversion;
  divided by 7 it is one SAR comparison; an SLC conversion is 6 comparisons.
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
import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PARAMS_FILE", "Params", "load_params", "default_params"]

PARAMS_FILE = Path(__file__).resolve().parents[2] / "constraints" / "hyflexpim_params.json"

_ANALOG_PARTS = ("rram_arrays", "ir", "or", "wl_drivers", "adc", "shift_add", "sample_hold")
_DIGITAL_PARTS = ("rram_arrays", "ir", "or", "wl_drivers", "shift_add", "sample_hold", "sfu")


def _value(group, key, where):
    try:
        entry = group[key]
    except KeyError:
        raise ValueError(f"parameter file: missing {where}.{key}") from None
    v = entry["value"] if isinstance(entry, dict) else entry
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"parameter file: {where}.{key} must be a non-negative number, not {v!r}")
    return v


def _part(group, key, where):
    try:
        e = group[key]
        a, p, c = e["area_mm2"], e["power_mw"], e["count"]
    except (KeyError, TypeError):
        raise ValueError(f"parameter file: {where}.{key} needs area_mm2, power_mw and count") from None
    for name, v in (("area_mm2", a), ("power_mw", p), ("count", c)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"parameter file: {where}.{key}.{name} must be a non-negative number, not {v!r}")
    if c < 1:
        raise ValueError(f"parameter file: {where}.{key}.count must be at least 1, not {c!r}")
    return {"area_mm2": float(a), "power_w": float(p) * 1e-3, "count": int(c)}


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
    bus_bw: float
    link_bw: float
    # parts
    analog: dict
    digital: dict
    # activity
    wl_activity: float
    bus_j_per_bit: float
    link_j_per_bit: float
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
        """INT8 products per second of one PU's digital PIM (fractional, averaged)."""
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
    def e_conversion_mlc(self):
        return self._per(self.analog, "adc", self.f_sample)

    @property
    def e_comparison(self):
        return self.e_conversion_mlc / self.mlc_steps

    def e_conversion(self, mode):
        return self.steps(mode) * self.e_comparison

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

    def baseline(self, key):
        try:
            return self.baselines[key]
        except KeyError:
            raise ValueError(f"parameter file: missing baselines.{key}") from None

    @property
    def e_int8_mac_baseline(self):
        b = self.baseline
        return (b("int8_mult_pj_45nm") + b("int32_add_pj_45nm")) * b("tech_energy_scale") * 1e-12

    @property
    def int8_mac_area_mm2(self):
        b = self.baseline
        return (b("int8_mult_area_um2_45nm") + b("int32_add_area_um2_45nm")) * b("tech_area_scale") * 1e-6


def _int(v, where):
    if float(v) != int(v) or v < 1:
        raise ValueError(f"parameter file: {where} must be a positive integer, not {v!r}")
    return int(v)


def load_params(path=None):
    """Read a parameter file (default: constraints/hyflexpim_params.json) into :class:`Params`."""
    path = Path(path) if path is not None else PARAMS_FILE
    try:
        raw = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"parameter file {path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"parameter file {path}: top level must be a JSON object")
    t = raw.get("timing", {})
    o = raw.get("organisation", {})
    act = raw.get("activity", {})
    base = raw.get("baselines", {})
    gt = lambda k: _value(t, k, "timing")
    go = lambda k: _value(o, k, "organisation")
    return Params(
        raw=raw,
        t_read=gt("crossbar_read_s"), f_sample=gt("adc_sample_rate_hz"), f_clk=gt("digital_clock_hz"),
        input_bits=_int(gt("input_bits"), "timing.input_bits"),
        slc_steps=_int(gt("slc_sar_steps"), "timing.slc_sar_steps"),
        mlc_steps=_int(gt("mlc_sar_steps"), "timing.mlc_sar_steps"),
        rtl_read_cycles=_int(gt("rtl_read_cycles"), "timing.rtl_read_cycles"),
        pus_per_chip=_int(go("pus_per_chip"), "pus_per_chip"),
        analog_modules_per_pu=_int(go("analog_modules_per_pu"), "analog_modules_per_pu"),
        digital_modules_per_pu=_int(go("digital_modules_per_pu"), "digital_modules_per_pu"),
        arrays_per_module=_int(go("arrays_per_analog_module"), "arrays_per_analog_module"),
        rows=_int(go("analog_rows"), "analog_rows"), cols=_int(go("analog_cols"), "analog_cols"),
        digital_arrays_per_module=_int(go("arrays_per_digital_module"), "arrays_per_digital_module"),
        digital_rows=_int(go("digital_rows"), "digital_rows"),
        digital_cols=_int(go("digital_cols"), "digital_cols"),
        nors_per_product=_int(go("nors_per_int8_product"), "nors_per_int8_product"),
        cols_per_nor=_int(go("columns_per_nor"), "columns_per_nor"),
        cycles_per_row_step=_int(go("cycles_per_row_step"), "cycles_per_row_step"),
        rows_per_step=_int(go("rows_per_step"), "rows_per_step"),
        sfu_inputs_per_cycle=_int(go("sfu_inputs_per_cycle"), "sfu_inputs_per_cycle"),
        bus_bw=go("onchip_bus_bytes_per_s"), link_bw=go("chip_link_bytes_per_s"),
        analog={k: _part(raw.get("analog_module", {}), k, "analog_module") for k in _ANALOG_PARTS},
        digital={k: _part(raw.get("digital_module", {}), k, "digital_module") for k in _DIGITAL_PARTS},
        wl_activity=_value(act, "wl_activity", "activity"),
        bus_j_per_bit=_value(act, "bus_energy_pj_per_bit", "activity") * 1e-12,
        link_j_per_bit=_value(act, "chip_link_energy_pj_per_bit", "activity") * 1e-12,
        baselines={k: _value(base, k, "baselines") for k in base if not k.startswith("_")},
    )


_DEFAULT = None


def default_params():
    """The parameters of constraints/hyflexpim_params.json (read once)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_params()
    return _DEFAULT
