"""Run a cocotb testbench on the Verilog of an Amaranth component (Icarus Verilog).

Amaranth Verilog has no HDL parameters, so every parameter set is generated into a
build directory of its own. Parameters reach the testbench through environment
variables (``extra_env``); the testbench module is imported by its dotted name, e.g.
``hyflexpim.tb.analog_tb``.

:func:`run_block` builds a registry block and exports what the testbench needs to
rebuild the same component (:func:`hyflexpim.tb.lib.design`): ``HYFLEXPIM_BLOCK`` (its
name), ``HYFLEXPIM_BLOCK_PARAMS`` (JSON, its keyword arguments) and
``HYFLEXPIM_PARAMS`` (JSON, the testbench's own parameters).

Waves: set ``HYFLEXPIM_WAVES=1`` to dump an FST/VCD per run into its build directory.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

from .blocks import get_block
from .verilog import write_verilog

__all__ = ["BUILD_ROOT", "build_dir_for", "run_cocotb", "run_block", "CocotbFailure"]

BUILD_ROOT = Path(os.environ.get("HYFLEXPIM_BUILD", Path.cwd() / "build"))


class CocotbFailure(AssertionError):
    """A cocotb run reported failing tests (or none at all)."""


def build_dir_for(toplevel, params, design=None):
    """A build directory unique to ``toplevel``, its parameter dict and design parameters."""
    key = json.dumps([params, design] if design is not None else params, sort_keys=True,
                     default=str)
    key = hashlib.sha1(key.encode()).hexdigest()[:10]
    return BUILD_ROOT / "cocotb" / f"{toplevel}-{key}"


def run_cocotb(component, *, toplevel, test_module, params=None, extra_env=None,
               testcase=None, build_dir=None, quiet=False, design=None):
    """Generate ``component`` as ``toplevel``, build it with Icarus and run ``test_module``.

    Returns ``(passed, failed)`` counts; raises :class:`CocotbFailure` when a test
    failed or none ran. ``params`` only names the build directory (and is exported to
    the testbench as ``HYFLEXPIM_PARAMS``, JSON). ``quiet`` sends the simulator's
    output to ``sim.log`` in the build directory instead of the console. ``design``
    (the component's parameters, when known) also names the build directory.
    """
    from cocotb_tools.runner import get_runner, get_results

    if shutil.which("iverilog") is None:
        raise FileNotFoundError("iverilog not found: run ./dev setup (installs Icarus Verilog)")
    params = dict(params or {})
    bdir = Path(build_dir) if build_dir else build_dir_for(toplevel, params, design)
    bdir.mkdir(parents=True, exist_ok=True)
    src = write_verilog(component, toplevel, bdir / f"{toplevel}.v")
    waves = os.environ.get("HYFLEXPIM_WAVES", "") not in ("", "0")
    runner = get_runner("icarus")
    logs = dict(log_file=bdir / "sim.log") if quiet else {}
    # Icarus in its default -g2012 mode never evaluates an ``always @*`` block whose
    # inputs keep their initial values, leaving outputs that depend only on it at X;
    # Amaranth emits such blocks for constant logic. -g2005 (given last, it wins)
    # evaluates them once at time 0, though not the never-assigned bits of a partly
    # assigned signal (rtl/fp16.py builds its flag words from Cat for that reason).
    runner.build(sources=[src], hdl_toplevel=toplevel, build_dir=bdir, build_args=["-g2005"],
                 timescale=("1ns", "1ps"), waves=waves, always=True, **logs)
    env = {"HYFLEXPIM_PARAMS": json.dumps(params, default=str)}
    env.update({k: str(v) for k, v in (extra_env or {}).items()})
    kw = {}
    if testcase:
        kw["testcase"] = testcase
    try:
        results = runner.test(hdl_toplevel=toplevel, test_module=test_module, build_dir=bdir,
                              test_dir=bdir, extra_env=env, waves=waves, **kw, **logs)
    except SystemExit:
        results = bdir / "results.xml"
        if not results.exists():
            raise CocotbFailure(f"cocotb run of {test_module} did not finish (see {bdir})") from None
    total, failed = get_results(results)
    if total == 0:
        raise CocotbFailure(f"cocotb ran no test from {test_module} (see {bdir})")
    if failed:
        raise CocotbFailure(f"{failed} of {total} cocotb tests failed in {test_module} (see {bdir})")
    return total - failed, failed


def run_block(name, *, test_module, params=None, small=True, tb_params=None, toplevel=None,
              extra_env=None, **kw):
    """Build registry block ``name`` and run ``test_module`` on it (:func:`run_cocotb`).

    The component gets the block's small configuration (``small``; else its defaults),
    updated by ``params`` (which may also name constructor keywords the registry does not
    list). The testbench rebuilds it from ``HYFLEXPIM_BLOCK`` / ``HYFLEXPIM_BLOCK_PARAMS``
    and reads ``tb_params`` from ``HYFLEXPIM_PARAMS``. Other keywords go to
    :func:`run_cocotb`; the top module is ``toplevel`` (default: the block name).
    """
    blk = get_block(name)
    params = dict(params or {})
    known = {k: v for k, v in params.items() if k in blk.params}
    design = dict(blk.resolve(small, **known), **params)
    env = {"HYFLEXPIM_BLOCK": name, "HYFLEXPIM_BLOCK_PARAMS": json.dumps(design, default=str)}
    env.update(extra_env or {})
    return run_cocotb(blk.factory(**design), toplevel=toplevel or name, test_module=test_module,
                      params=dict(tb_params or {}), design=design, extra_env=env, **kw)
