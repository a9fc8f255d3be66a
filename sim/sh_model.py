"""Simulation-only HDL: a model of the arrays' analog side, a clock, and the top that
wires them to a design.

The analog circuits of an array (crossbar, sample-and-hold bank, 128:1 multiplexer, DAC,
comparator) are outside the RTL: the array talks to them through a
:class:`~hyflexpim.rtl.analog.CrossbarSignature` port group. A testbench can answer the
comparator from Python on every cycle (:class:`hyflexpim.tb.lib.CrossbarBank` without a
model), or, with this model, once per sampled bit-plane:

* ``hdl/hyflexpim_sh_bank.v`` (module ``hyflexpim_sh_bank``) holds one word per
  column and answers ``cmp`` combinationally (see the file). At each sampling edge it
  latches the wordlines and counts the sample; the testbench, woken by the count, loads
  the held values of that read from the crossbar model
  (:meth:`hyflexpim.models.crossbar.Crossbar.held_values`, read noise included) into
  its ``held`` input before the next edge.
* :func:`write_sim_top` writes a top module ``<toplevel>_sim`` around the design's own
  Verilog (unchanged, module ``<toplevel>``): every port of the design except the
  crossbar groups, one bank per group, and per group ``<prefix>__held`` (input),
  ``<prefix>__wl_q`` and ``<prefix>__count`` (outputs). Inside, the group's wires keep
  the design's port names (``<prefix>__wl``, ``__sample``, ``__sel``, ``__trial``,
  ``__cmp``), so waves show them as before.
* With ``clock=True`` the top also makes the clock: ``clk`` is a register of the top
  (no port), toggled by the simulator itself every ``hyflexpim_clk_half`` picoseconds
  (an input) from the rise of the input ``hyflexpim_clk_run``, high for the first half
  period as cocotb's ``Clock``. :class:`hyflexpim.tb.lib.TbClock` starts it. No
  callback into cocotb per edge: under Verilator that alone is 2.4 times faster than
  cocotb's clock (1.5 M against 0.6 M cycles per CPU second on a counter).

Held words are :func:`held_width` bits, clamped to :func:`held_range` (the clamp
changes no comparison: every DAC level lies inside it) and packed by :func:`pack_held`.
"""

import re
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np

from ..models.crossbar import FRAC_BITS, ONE_LSB
from ..rtl.analog import CrossbarSignature

__all__ = ["BANK_SOURCE", "BANK_MODULE", "CLOCK_HALF", "CLOCK_RUN", "CrossbarPort",
           "crossbar_ports", "held_width", "held_range", "pack_held", "verilog_ports",
           "sim_top_verilog", "write_sim_top"]

BANK_SOURCE = Path(__file__).parent / "hdl" / "hyflexpim_sh_bank.v"
BANK_MODULE = "hyflexpim_sh_bank"
_FIELDS = ("wl", "sample", "sel", "trial", "cmp")


@dataclass(frozen=True)
class CrossbarPort:
    """One crossbar port group of a design: its Verilog ``prefix`` and geometry."""
    prefix: str
    rows: int
    cols: int
    adc_bits: int


def crossbar_ports(component):
    """The :class:`CrossbarPort` of every ``CrossbarSignature`` group in the signature of
    ``component``, in signature order (port arrays element by element: ``xbar__0``...)."""
    found = []

    def walk(members, path):
        for name, member in members.items():
            if not member.is_signature:
                continue
            for idx in product(*(range(d) for d in member.dimensions)):
                sub = path + [name] + [str(i) for i in idx]
                sig = member.signature
                if isinstance(sig, CrossbarSignature):
                    found.append(CrossbarPort("__".join(sub), sig.rows, sig.cols, sig.adc_bits))
                else:
                    walk(sig.members, sub)

    walk(component.signature.members, [])
    return found


def held_width(adc_bits):
    """Bits of one held word: the DAC range ``adc_bits`` + ``FRAC_BITS`` + 2 (sign, margin)."""
    return adc_bits + FRAC_BITS + 2


def held_range(adc_bits):
    """``(lo, hi)``: held values are clamped to it before loading. ``lo = -1 LSB`` lies
    below the lowest DAC level (-1/2 LSB), ``hi = 2**adc_bits LSB`` above the highest."""
    return -ONE_LSB, (1 << adc_bits) * ONE_LSB


def pack_held(held, adc_bits):
    """The integer driven on a bank's ``held`` input for held values ``held`` (one per
    column, grid units): clamped words of :func:`held_width` bits, column 0 lowest."""
    w = held_width(adc_bits)
    lo, hi = held_range(adc_bits)
    words = np.clip(np.asarray(held, dtype=np.int64), lo, hi)
    bits = (words[:, None] >> np.arange(w)) & 1          # two's complement, LSB first
    return int.from_bytes(np.packbits(bits.astype(np.uint8).ravel(), bitorder="little")
                          .tobytes(), "little")


_DECL = re.compile(r"^\s*(input|output|inout)\s+(?:\[(\d+):(\d+)\]\s+)?(\S+)\s*;", re.M)


def verilog_ports(text, module):
    """``[(direction, width, name)]`` of the ports of ``module`` in Verilog ``text`` as
    Amaranth (Yosys) writes it: a port list, then one ``input [h:l] name;`` per port."""
    m = re.search(rf"^module\s+{re.escape(module)}\s*\(([^)]*)\);", text, re.M)
    if m is None:
        raise ValueError(f"module {module} not found in the Verilog")
    names = [n.strip() for n in m.group(1).split(",") if n.strip()]
    end = text.index("endmodule", m.end())
    decls = {}
    for d in _DECL.finditer(text, m.end(), end):
        direction, hi, lo, name = d.groups()
        decls[name] = (direction, abs(int(hi) - int(lo)) + 1 if hi is not None else 1)
    missing = [n for n in names if n not in decls]
    if missing:
        raise ValueError(f"module {module}: no declaration of port(s) {', '.join(missing)}")
    return [(decls[n][0], decls[n][1], n) for n in names]


def _range(width):
    return f"[{width - 1}:0] " if width > 1 else ""


CLOCK_HALF = "hyflexpim_clk_half"
CLOCK_RUN = "hyflexpim_clk_run"


def sim_top_verilog(core_text, core, top, groups, clock=False):
    """Verilog of module ``top``: module ``core`` (its Verilog ``core_text``) with a
    ``hyflexpim_sh_bank`` on each crossbar group of ``groups`` (:class:`CrossbarPort`)
    and, with ``clock``, the clock generator (module documentation)."""
    ports = verilog_ports(core_text, core)
    width = {name: w for _, w, name in ports}
    inner = {f"{g.prefix}__{f}" for g in groups for f in _FIELDS}
    need = set(inner) | ({"clk", "rst"} if groups else set()) | ({"clk"} if clock else set())
    absent = sorted(n for n in need if n not in width)
    if absent:
        raise ValueError(f"module {core} has no port(s) {', '.join(absent)}")
    outer = [(d, w, n) for d, w, n in ports if n not in inner and not (clock and n == "clk")]
    for g in groups:
        outer += [("input", g.cols * held_width(g.adc_bits), f"{g.prefix}__held"),
                  ("output", g.rows, f"{g.prefix}__wl_q"),
                  ("output", 32, f"{g.prefix}__count")]
    if clock:
        outer += [("input", 32, CLOCK_HALF), ("input", 1, CLOCK_RUN)]
    lines = ["// Simulation-only top (hyflexpim.sim.sh_model): the design with a model of",
             "// each array's S&H bank and comparator, and its clock. Not hardware.",
             "`timescale 1ps/1ps",
             f"module {top}({', '.join(n for _, _, n in outer)});"]
    for d, w, n in outer:
        lines.append(f"  {d} wire {_range(w)}{n};")
    for n in sorted(inner):
        lines.append(f"  wire {_range(width[n])}{n};")
    if clock:
        lines += [
            "  // the clock, from the rise of the run input: high first, half periods in ps",
            "  reg clk = 1'b0;",
            f"  always @(posedge {CLOCK_RUN}) begin",
            "    clk = 1'b1;",
            "    forever begin",
            f"      #({CLOCK_HALF}) clk = 1'b0;",
            f"      #({CLOCK_HALF}) clk = 1'b1;",
            "    end",
            "  end"]
    conns = ",\n".join(f"    .{n}({n})" for _, _, n in ports)
    lines.append(f"  {core} core (\n{conns}\n  );")
    for g in groups:
        p = g.prefix
        params = (f".ROWS({g.rows}), .COLS({g.cols}), .SEL_BITS({width[p + '__sel']}), "
                  f".ADC_BITS({g.adc_bits}), .FRAC_BITS({FRAC_BITS})")
        pins = [("clk", "clk"), ("rst", "rst")] + [(f, f"{p}__{f}") for f in _FIELDS] + [
            ("held", f"{p}__held"), ("wl_q", f"{p}__wl_q"), ("count", f"{p}__count")]
        body = ", ".join(f".{a}({b})" for a, b in pins)
        lines.append(f"  {BANK_MODULE} #({params}) {p}__sh ({body});")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def write_sim_top(core_source, core, groups, build_dir, clock=False):
    """Write ``<core>_sim.v`` (:func:`sim_top_verilog`) into ``build_dir`` for the
    design Verilog file ``core_source`` (top module ``core``). Returns ``(sources,
    top)``: the files to build, in order, and the top module's name."""
    top = f"{core}_sim"
    path = Path(build_dir) / f"{top}.v"
    path.write_text(sim_top_verilog(Path(core_source).read_text(), core, top, groups, clock))
    return [Path(core_source)] + ([BANK_SOURCE] if groups else []) + [path], top
