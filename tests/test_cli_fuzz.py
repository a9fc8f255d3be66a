"""CLI robustness: random argument vectors over every command and option, and the
central error handling of :mod:`hyflexpim.sim.cli` (OS errors, broken pipes, non-UTF-8
input, parser errors, repeated options).

The fuzz test draws argument vectors from the parser itself (every sub-command, every
option, values from per-type pools of edge cases and bad paths), runs each in-process
through ``hyflexpim.sim.cli.main(argv)`` with a per-invocation time limit, and checks:
no traceback, exit status 0 or 2, and on 2 exactly one line on stderr. Commands whose
success path is long work (simulation, synthesis, training) always get one "poison"
argument that the command checks before it starts, so that a vector ends fast.

Seeded: ``HYFLEXPIM_FUZZ_SEED`` (default 17), ``HYFLEXPIM_FUZZ_COUNT`` (default 250
vectors) and ``HYFLEXPIM_FUZZ_SECONDS`` (default 30 s, whichever ends first); the seed
and a replay line for each failure are printed.
"""

import contextlib
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
import traceback

import pytest

from hyflexpim.sim import cli
from hyflexpim.sim.cli import main

SEED = int(os.environ.get("HYFLEXPIM_FUZZ_SEED", "17"))
COUNT = int(os.environ.get("HYFLEXPIM_FUZZ_COUNT", "250"))
SECONDS = float(os.environ.get("HYFLEXPIM_FUZZ_SECONDS", "30"))
#: Time limit of one in-process invocation, in CPU seconds of this process (the machine
#: may be shared: wall time says little), and a wall-clock backstop. A vector over it is
#: a failure: a missing size bound, or a poison that is checked too late.
PER_CALL_S = float(os.environ.get("HYFLEXPIM_FUZZ_PER_CALL_S", "6"))

# ---------------------------------------------------------------------------------------
# Valid vectors whose work is longer than the per-call limit (not failures): each entry a
# regular expression matched against the argument vector joined by spaces (a space inside
# an argument written U+2423; the test skips a vector that matches), the files that do
# the work, and why it is long. A wrong answer or a traceback is never listed here: it is
# fixed where it belongs.
SLOW_VALID = [
    # (pattern, owner file, symptom)
    (r"^verilog (fp16|sfu)_\S* .*lanes=\s*0*([1-9]\d|1\d\d|2[0-4]\d|25[0-6])\b",
     "rtl/fp16.py, rtl/sfu.py",
     "lanes is bounded (1..256, the published SFU width, stated in the message of 257 and "
     "above); inside the bound the Verilog of every lane is generated, linear in lanes: "
     "sfu_exp 4 lanes 15 s wall (7 s of Amaranth, 8 s of Yosys' conversion), 16 lanes "
     "34 s CPU, over the per-call limit"),
]


def _slow_valid(argv):
    text = " ".join(a.replace(" ", "\u2423") for a in argv)   # a space inside an argument: U+2423
    for pattern, owner, why in SLOW_VALID:
        if re.search(pattern, text):
            return owner, why
    return None


# ---------------------------------------------------------------------------------------
# Value pools

INTS = ["0", "1", "-1", "2", "3", "4", "7", "8", "16", "255", "256", "1023", "1024",
        "65535", "65536", "2147483648", "-0", "010", " 3", "4294967296", "-2147483649"]
FLOATS = ["0", "1", "-1", "0.5", "0.1", "1e-9", "nan", "inf", "-inf", "1e308", "1e15",
          "100", "101", "-0.0", "5e-324", "0.0404", "1e-3"]
#: Values the parser refuses for an int / float option (one draw in 25).
NOT_INTS = ["x", "", "1.5", "0x10", "1e3"]
NOT_FLOATS = ["x", "", "0x1p-3", "1,5"]
WORDS = ["", " ", "nope", "a b", ",", ",,", "-", "\u00e9", "x" * 300, "../x", "NUL\x01"]


class Paths:
    """Bad (and a few good) paths under a temporary folder."""

    def __init__(self, root):
        self.root = root
        d = root / "adir"
        d.mkdir()
        f = root / "afile.txt"
        f.write_text("hello\n")
        (root / "bad_utf8.json").write_bytes(b"\xff\xfe{\"a\": 1}")
        (root / "empty.json").write_text("")
        (root / "list.json").write_text("[]")
        (root / "obj.json").write_text("{}")
        (root / "garbage.toml").write_text("a = = 1\n")
        (root / "bad_utf8.toml").write_bytes(b"name = \"\xff\"\n")
        (root / "null.json").write_text("null")
        try:
            os.symlink(root / "loop", root / "loop")
        except OSError:
            pass
        self.inputs = [str(root / n) for n in (
            "adir", "afile.txt", "afile.txt/x.json", "missing.json", "bad_utf8.json",
            "empty.json", "list.json", "obj.json", "garbage.toml", "bad_utf8.toml",
            "null.json", "loop", "adir/")] + ["", "/proc/nope/x.json"]
        self.outputs = [str(root / n) for n in (
            "adir", "afile.txt/x.out", "afile.txt/sub/x.out", "loop", "new/deeper/x.out",
            "out.json", "adir/")] + ["/dev/full", "", "/proc/nope/x.out"]


INPUT_OPTS = {"--mapping", "--model", "--slc-map", "--params", "--baselines", "--liberty"}
OUTPUT_OPTS = {"--out", "-o", "--output", "--outdir", "--placement", "--png", "--save"}


def _names():
    from hyflexpim.sim.blocks import all_blocks
    from hyflexpim.sim import formal
    from hyflexpim.sim.arch.mapper import DESIGNS
    from hyflexpim.sim.arch.params import ADC_LAWS, SCHEDULES
    from hyflexpim.sim.arch.workloads import WORKLOADS
    from hyflexpim.sim.commands.redistribute import TASKS, POLICIES, RANK_SELECT
    blocks = all_blocks()
    return dict(
        blocks=blocks,
        checks=[c.name for c in formal.CHECKS],
        by_opt={
            "--task": list(TASKS), "--policy": list(POLICIES), "--rank-select": list(RANK_SELECT),
            "--mode": ["hardware", "paper", "slc", "mlc"], "--backend": ["faithful", "fast"],
            "--design": list(DESIGNS), "--adc-law": list(ADC_LAWS),
            "--schedule": list(SCHEDULES), "--workload": list(WORKLOADS),
            "--model": ["bert-base", "bert-large", "gpt2", "llama-3.2-1b", "vit-base"],
            "--policies": ["gradient", "gradient,rank", ",", "gradient,,nope"],
            "--ks": ["0,5", "10", ",", "x", "101", "nan", "-1,5", "1e400"],
            "--modes": ["hardware", "paper,hardware", ",", "nope"],
            "--values": ["1,2", "8", ",", "x", "0", "-1", "100000"],
            "--synth-opts": ["-dff", "-nope", ";"],
            "--name": ["top", "a b", "1x", "module", "\\esc", "a" * 300],
        })


# ---------------------------------------------------------------------------------------
# Vector generation


def _subparsers():
    import argparse
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _block_params(names, block):
    blk = names["blocks"].get(block)
    return sorted(blk.params) if blk else ["rows", "cols", "lanes", "n", "slots"]


def _param_value(rng):
    return rng.choice(INTS + ["true", "false", "", "1,2", "0x10", "x"])


def _value(rng, names, paths, cmd, opt, action, block):
    """A value for option ``opt`` (or the positional ``action.dest``)."""
    if opt in INPUT_OPTS and rng.random() < 0.7:
        return rng.choice(paths.inputs)
    if opt in OUTPUT_OPTS:
        return rng.choice(paths.outputs)
    if opt in ("-p", "--param"):
        r = rng.random()
        if r < 0.75:
            return f"{rng.choice(_block_params(names, block))}={_param_value(rng)}"
        return rng.choice(["zz=1", "=1", "rows", "rows==1", "ROWS=1", " rows =2"])
    if action.choices:
        return rng.choice(list(action.choices) + ["nope", ""])
    if opt in names["by_opt"] and rng.random() < 0.75:
        return rng.choice(names["by_opt"][opt])
    if action.type is int:
        return rng.choice(NOT_INTS if rng.random() < 0.04 else INTS)
    if action.type is float:
        return rng.choice(NOT_FLOATS if rng.random() < 0.04 else FLOATS)
    return rng.choice(WORDS)


def _positional(rng, names, paths, cmd, action):
    if cmd in ("verilog", "synth", "fpga"):
        return rng.choice(sorted(names["blocks"]) + ["nope", ""])
    if cmd == "formal":
        return rng.choice(names["checks"] + ["nope"])
    if cmd == "device":
        return rng.choice(paths.inputs + ["nope", "neurram-1d", ""])
    return rng.choice(WORDS)


#: Blocks whose Verilog is generated in about a second (an unpoisoned ``verilog`` vector
#: names one of these).
FAST_BLOCKS = ("fp16_add", "fp16_cmp", "fp16_from_int32", "fp16_mul", "fp16_to_int8",
               "psum_agg", "sar_adc", "shift_add", "wl_driver", "fp16_sqrt")

#: Commands whose success is long work, and arguments each such command checks before
#: starting it (one of them is added to every vector of the command).
POISON = {
    "accuracy": [["--task", "nope"], ["--epochs", "-1"], ["--ber", "0.7"], ["--seeds", "0"],
                 ["--backend", "nope"], ["--ks", "101"], ["--policies", "best"]],
    "redistribute": [["--task", "nope"], ["--epochs", "-1"], ["--policy", "best"],
                     ["--slc", "101"], ["--rank-select", "nope"], ["--seed", "-1"]],
    "demo": [["--vectors", "0"], ["--ber", "0.7"], ["--vectors", "1001"]],
    "formal": [["nope"]],
    "fpga": [["-p", "zz=1"]],
    "synth": [["-p", "zz=1"], ["--all", "--overhead"]],
    "verilog": [["-p", "zz=1"]],
    "perf": [["--seq", "0"], ["--slc", "2"], ["--batch", "0"], ["--design", "nope"]],
}
#: Options that start long work in an otherwise cheap command: given only with a poison.
LONG_OPTS = {"perf": {"--sweep", "--report"}, "formal": set()}


def _vector(rng, subs, names, paths):
    cmd = rng.choice(sorted(subs))
    sp = subs[cmd]
    actions = [a for a in sp._actions if a.dest != "help"]
    positionals = [a for a in actions if not a.option_strings]
    optionals = [a for a in actions if a.option_strings]
    poison = None
    cheap = cmd not in POISON or (cmd in ("perf",) and rng.random() < 0.6) or (
        cmd == "verilog" and rng.random() < 0.3) or (cmd == "formal" and rng.random() < 0.2)
    if not cheap:
        poison = rng.choice(POISON[cmd])
    argv = [cmd]
    block = None
    for a in positionals:
        if a.nargs in ("?", "*") and rng.random() < 0.3:
            continue
        v = _positional(rng, names, paths, cmd, a)
        if cmd == "verilog" and cheap:
            v = rng.choice(FAST_BLOCKS)
        block = v
        argv.append(v)
    used = set(poison or ())
    for a in optionals:
        opt = rng.choice(a.option_strings)
        if rng.random() > (0.9 if a.required else 0.25) or used & set(a.option_strings):
            continue
        if cheap and cmd in LONG_OPTS and set(a.option_strings) & (LONG_OPTS[cmd] or {""}):
            continue
        if cheap and cmd == "formal" and "--list" not in a.option_strings:
            continue
        if a.nargs == 0:
            argv.append(opt)
            if rng.random() < 0.05:
                argv.append(opt)       # a flag twice is harmless
            continue
        repeat = 1 + (rng.random() < 0.05) + (rng.random() < 0.02)
        for _ in range(repeat):
            argv += [opt, _value(rng, names, paths, cmd, opt, a, block)]
    if cheap and cmd == "formal":
        argv = [cmd, "--list"]
    if poison:
        argv += poison
    if rng.random() < 0.04:
        argv.append(rng.choice(["--bogus", "-z", "extra", "--"]))
    if rng.random() < 0.01:
        argv.insert(1, rng.choice(["-h", "--help"]))
    return argv


# ---------------------------------------------------------------------------------------
# Running one vector


class _Timeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


def run_in_process(argv, limit=PER_CALL_S):
    """``(status, stdout, stderr, traceback text or None, seconds)`` of ``main(argv)``;
    status ``"timeout"`` past ``limit`` CPU seconds (or 4 x that in wall time)."""
    out, err = io.StringIO(), io.StringIO()
    tb = None
    status = None
    use_timer = bool(limit) and hasattr(signal, "setitimer")
    if use_timer:
        old = {s: signal.signal(s, _on_alarm) for s in (signal.SIGALRM, signal.SIGPROF)}
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if use_timer:
                signal.setitimer(signal.ITIMER_PROF, limit)
                signal.setitimer(signal.ITIMER_REAL, 4 * limit)
            try:
                status = main(argv)
            finally:
                if use_timer:
                    signal.setitimer(signal.ITIMER_PROF, 0)
                    signal.setitimer(signal.ITIMER_REAL, 0)
    except _Timeout:
        status = "timeout"
    except SystemExit as exc:          # main returns the status; a SystemExit is a bug
        status = f"SystemExit({exc.code!r})"
    except BaseException:              # noqa: BLE001 -- any escape is what we look for
        tb = traceback.format_exc()
    finally:
        if use_timer:
            for s, h in old.items():
                signal.signal(s, h)
    return status, out.getvalue(), err.getvalue(), tb, time.perf_counter() - t0


def problem(status, stderr, tb):
    """What is wrong with one invocation's result, or None."""
    if tb is not None:
        return "traceback: " + tb.strip().splitlines()[-1]
    if "Traceback (most recent call last)" in stderr:
        return "traceback on stderr"
    if status == "timeout":
        return f"ran over {PER_CALL_S:g} CPU s"
    if status not in (0, 2):
        return f"exit status {status!r}"
    if status == 2:
        lines = stderr.strip().splitlines()
        if len(lines) != 1:
            return f"{len(lines)} lines on stderr"
        if not re.match(r"^hyflexpim( [a-z]+)?: error: \S", lines[0]):
            return f"not an error line: {lines[0][:120]!r}"
    return None


def _owner(tb):
    """The innermost project file of a traceback (where the fix belongs)."""
    files = re.findall(r'File "([^"]+)"', tb or "")
    mine = [f for f in files if "/site-packages/" not in f and "/lib/python" not in f
            and not f.endswith("tests/test_cli_fuzz.py")]
    return os.path.relpath(mine[-1], os.path.dirname(os.path.dirname(__file__))) if mine else "?"


# ---------------------------------------------------------------------------------------
# The fuzz test


def test_fuzz_every_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYFLEXPIM_TORCH_THREADS", "1")
    paths = Paths(tmp_path)
    names = _names()
    subs = _subparsers()
    rng = random.Random(SEED)
    print(f"\nCLI fuzz: seed {SEED} (HYFLEXPIM_FUZZ_SEED), up to {COUNT} vectors / {SECONDS:g} s")
    failures, ran, skipped, t_end = [], 0, 0, time.monotonic() + SECONDS
    per_cmd = {}
    while ran + skipped < COUNT and time.monotonic() < t_end:
        argv = _vector(rng, subs, names, paths)
        if _slow_valid(argv):
            skipped += 1
            continue
        status, _, err, tb, secs = run_in_process(argv)
        ran += 1
        per_cmd[argv[0]] = per_cmd.get(argv[0], 0) + 1
        why = problem(status, err, tb)
        if why:
            owner = _owner(tb) if tb else "?"
            failures.append(f"{why} [{owner}] ({secs:.1f} s)\n    replay: hyflexpim "
                            f"{' '.join(repr(a) if not a or ' ' in a else a for a in argv)}"
                            + (f"\n    stderr: {err.strip()[:300]!r}" if err.strip() else ""))
    print(f"ran {ran} vectors ({', '.join(f'{k} {v}' for k, v in sorted(per_cmd.items()))}), "
          f"{skipped} skipped as SLOW_VALID (valid, longer than the per-call limit)")
    assert ran > 0
    assert not failures, f"{len(failures)} of {ran} vectors failed (seed {SEED}):\n" + \
        "\n".join(failures)


# ---------------------------------------------------------------------------------------
# Every path option with every bad path (deterministic; the fuzz test draws them rarely
# for the commands it poisons)

BAD_OUTPUTS = ["adir", "afile.txt/x.out", "afile.txt/sub/x.out", "loop", "adir/", "/dev/full",
               "", "/proc/nope/x.out"]
#: Output options, each with the rest of a cheap vector (``{}`` is the path). Folders
#: (``--out`` of perf --sweep, demo) take only the paths that are no folder.
OUTPUT_CASES = [
    (["perf", "--placement", "{}", "--model", "gpt2", "--seq", "8"], BAD_OUTPUTS),
    (["perf", "--sweep", "--no-plots", "--out", "{}"], ["afile.txt", "afile.txt/sub", "loop",
                                                       "/dev/full", "/proc/nope/x"]),
    (["redistribute", "--task", "tiny", "--out", "{}"], [b for b in BAD_OUTPUTS
                                                        if b != "/dev/full"]),
    (["demo", "--out", "{}", "--rows", "16", "--cols", "32", "--vectors", "1"],
     ["afile.txt", "afile.txt/sub", "loop", "/dev/full", "/proc/nope/x"]),
    (["device", "--png", "{}", "--layer-seeds", "0"], BAD_OUTPUTS),
    (["device", "--save", "{}", "--layer-seeds", "0"], BAD_OUTPUTS),
    (["registers", "-o", "{}"], BAD_OUTPUTS),
    (["verilog", "wl_driver", "-p", "rows=4", "-o", "{}"], BAD_OUTPUTS),
]
INPUT_CASES = [["perf", "--params", "{}"], ["perf", "--baselines", "{}"],
               ["perf", "--slc-map", "{}"], ["perf", "--model", "{}"],
               ["accuracy", "--task", "tiny", "--mapping", "{}"], ["device", "{}"]]


def _path_vectors(paths):
    out = []
    for argv, bad in OUTPUT_CASES:
        for b in bad:
            p = b if b.startswith("/") or not b else str(paths.root / b)
            out.append([p if a == "{}" else a for a in argv])
    for argv in INPUT_CASES:
        for p in paths.inputs:
            out.append([p if a == "{}" else a for a in argv])
    return out


def test_every_path_option_with_bad_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = Paths(tmp_path)
    failures, ran = [], 0
    for argv in _path_vectors(paths):
        if _slow_valid(argv):
            continue
        status, _, err, tb, secs = run_in_process(argv)
        ran += 1
        lines = err.strip().splitlines()
        # a command that trained before writing may print progress first; its last line
        # must still be the one error line
        if status == 2 and argv[0] in ("redistribute", "accuracy") and lines:
            err = lines[-1]
        why = problem(status, err, tb)
        if why:
            failures.append(f"{why} [{_owner(tb) if tb else '?'}]: hyflexpim "
                            f"{' '.join(repr(a) if not a or ' ' in a else a for a in argv)}"
                            f"\n    stderr: {err.strip()[:300]!r}")
    assert ran > 100
    assert not failures, f"{len(failures)} of {ran} path vectors failed:\n" + "\n".join(failures)


# ---------------------------------------------------------------------------------------
# Cases of the issue that random vectors rarely reach (those in SLOW_VALID are skipped)

#: (argument vector, regular expression the one error line must match, or None for the
#: generic checks only).
TARGETED = [
    (["accuracy", "--task", "tiny", "--sweep", "--ks", ",", "--seeds", "1"], r"\bks\b"),
    (["accuracy", "--task", "tiny", "--sweep", "--policies", "", "--seeds", "1"],
     r"\bpolicies\b"),
    (["accuracy", "--task", "tiny", "--sweep", "--modes", ",", "--seeds", "1"], r"\bmodes\b"),
    (["accuracy", "--task", "tiny", "--eval-limit", "0", "--mapping", "obj.json"],
     r"eval.limit"),
    (["accuracy", "--task", "tiny", "--eval-limit", "-5", "--mapping", "obj.json"],
     r"eval.limit"),
    (["redistribute", "--task", "tiny", "--seed", "-1", "--out", "m.json"], r"^.*\bseed\b"),
    (["accuracy", "--task", "tiny", "--seed", "-1", "--sweep"], r"\bseed\b"),
    (["demo", "--seed", "-1", "--rows", "16", "--cols", "32", "--vectors", "1"], r"\bseed\b"),
    (["verilog", "psum_agg", "--name", "a b"], r"\bname\b"),
    (["verilog", "wl_driver", "-p", "rows=4", "-p", "rows=8"], r"rows"),
    (["verilog", "wl_driver", "-p", "rows=010"], r"rows must be an integer"),
    (["verilog", "wl_driver", "-p", "rows=1024"], None),
    (["verilog", "fp16_add", "-p", "lanes=100000"], r"lanes must be an integer in 1\.\."),
    (["verilog", "sfu_layernorm", "-p", "eps=48128"], r"eps must be"),     # -1.0
    (["verilog", "sfu_layernorm", "-p", "eps=0"], r"eps must be"),
    (["verilog", "sfu_layernorm", "-p", "eps=31744"], r"eps must be"),     # +Inf
    (["perf", "--model", "bert-base", "--slc-map", "gate.json"], r"gate"),
    (["perf", "--model", "bert-base", "--slc-map", "empty_map.json"], r"no matrix entries"),
    (["perf", "--slc-map", "adir"], r"director|folder"),
    (["synth", "sar_adc", "-p", "cols=8", "-p", "cols=16", "--generic"], r"cols"),
]


@pytest.mark.parametrize("argv,want", TARGETED, ids=[" ".join(a) for a, _ in TARGETED])
def test_issue_cases(tmp_path, monkeypatch, argv, want):
    monkeypatch.chdir(tmp_path)
    Paths(tmp_path)
    (tmp_path / "gate.json").write_text('{"L0.gate": {"slc_fraction": 0.5}}')
    (tmp_path / "empty_map.json").write_text("{}")
    bad = _slow_valid(argv)
    if bad:
        pytest.skip(f"SLOW_VALID ({bad[0]}): {bad[1]}")
    status, _, err, tb, _ = run_in_process(argv, limit=30)
    lines = err.strip().splitlines()
    if status == 2 and argv[0] in ("redistribute", "accuracy") and lines:
        err = lines[-1]                 # progress lines of training may come first
    why = problem(status, err, tb)
    assert why is None, f"{why}: {err.strip()[:300]!r} {tb or ''}"
    if want:
        assert status == 2 and re.search(want, err), err


# ---------------------------------------------------------------------------------------
# Targeted cases of the central handling (any command; verilog is the cheap one)


def _check(argv, want_status=2, want=None):
    status, out, err, tb, _ = run_in_process(argv)
    assert tb is None, tb
    assert status == want_status, (status, err)
    if status == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        if want:
            assert re.search(want, lines[0]), lines[0]
    return out, err


@pytest.mark.parametrize("where,want", [
    ("adir", r"adir: is a folder, not a file$"),
    ("afile.txt/x.v", r"afile\.txt: exists and is not a folder|afile\.txt/x\.v: a part of"),
    ("/dev/full", r"/dev/full: No space left on device$"),
    ("loop", r"loop: Too many levels of symbolic links$"),
])
def test_verilog_output_os_errors_are_one_line(tmp_path, monkeypatch, where, want):
    monkeypatch.chdir(tmp_path)
    Paths(tmp_path)
    _check(["verilog", "wl_driver", "-p", "rows=4", "-o", where], want=want)


def test_any_os_error_of_a_command_is_one_line_naming_the_path(monkeypatch):
    import errno
    from hyflexpim.sim.commands import registers

    def boom(args):
        raise PermissionError(errno.EACCES, "Permission denied", "/root/secret.v")
    monkeypatch.setattr(registers, "run", boom)
    _check(["registers"], want=r"^hyflexpim registers: error: /root/secret\.v: Permission denied$")

    def nospace(args):
        with open(os.devnull, "w") as fh:
            raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(registers, "run", nospace)
    _check(["registers"], want=r"error: /dev/null: No space left on device$")

    def message(args):
        raise FileNotFoundError("liberty file cells.lib not found")
    monkeypatch.setattr(registers, "run", message)
    _check(["registers"], want=r"error: liberty file cells\.lib not found$")


def test_non_utf8_input_names_the_file(tmp_path, monkeypatch):
    from hyflexpim.sim.commands import registers
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\n")
    monkeypatch.setattr(registers, "run", lambda args: bad.read_text())
    _check(["registers"], want=rf"error: {re.escape(str(bad))} is not valid UTF-8 text "
                               r"\(byte 0xff at offset 3\)$")

    def via_open(args):
        with open(bad, encoding="utf-8") as fh:
            return json.load(fh)
    monkeypatch.setattr(registers, "run", via_open)
    _check(["registers"], want=rf"error: {re.escape(str(bad))} is not valid UTF-8 text")


def test_multi_line_messages_become_one_line(monkeypatch):
    from hyflexpim.sim.commands import registers

    def multi(args):
        raise ValueError("first\n\n  second\nthird\n")
    monkeypatch.setattr(registers, "run", multi)
    _check(["registers"], want=r"error: first; second; third$")


@pytest.mark.parametrize("argv,want", [
    (["perf", "--seq", "x"], r"^hyflexpim perf: error: argument --seq: invalid int value: 'x'"),
    (["perf", "--bogus"], r"^hyflexpim perf: error: unrecognized arguments: --bogus"),
    (["nope"], r"^hyflexpim: error: argument COMMAND: invalid choice: 'nope'"),
    ([], r"^hyflexpim: error: the following arguments are required: COMMAND"),
    (["perf", "--seq"], r"^hyflexpim perf: error: argument --seq: expected one argument"),
    (["perf", "--seq", "1", "--seq", "2"],
     r"^hyflexpim perf: error: --seq given twice \(1, then 2 as --seq\); give it once"),
    (["demo", "--mode", "tlc"], r"^hyflexpim demo: error: argument --mode: invalid choice"),
])
def test_parser_errors_are_one_line(argv, want):
    _check(argv, want=want)


def test_same_value_twice_and_append_options_are_fine():
    _check(["perf", "--model", "gpt2", "--seq", "8", "--seq", "8", "--json"], want_status=0)
    _check(["verilog", "wl_driver", "-p", "rows=4", "-p", "read_cycles=2", "--name", "t"],
           want_status=0)


def test_help_returns_zero():
    out, _ = _check(["perf", "--help"], want_status=0)
    assert "usage: hyflexpim perf" in out


# A command replaced in a child process (the standard streams are real files there).
_CHILD = textwrap.dedent("""
    import sys
    from hyflexpim.sim import cli
    from hyflexpim.sim.commands import registers
    def run(args):
        for i in range(100000):
            print("line", i)
        return 0
    registers.run = run
    sys.exit(cli.main(["registers"]))
""")


def _child(stdout):
    return subprocess.run([sys.executable, "-c", _CHILD], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=120)


def test_broken_pipe_is_quiet():
    r, w = os.pipe()
    os.close(r)                     # the reader is gone before the first write
    try:
        p = _child(w)
    finally:
        os.close(w)
    assert p.stderr == "", p.stderr
    assert p.returncode == cli.BROKEN_PIPE_STATUS


def test_full_disk_on_stdout_is_one_line():
    with open("/dev/full", "w") as full:
        p = _child(full)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "hyflexpim registers: error: cannot write to stdout: No space left on device"], p.stderr


def test_real_command_into_a_closed_pipe_and_a_full_disk():
    """``hyflexpim perf | head -1`` and ``hyflexpim verilog BLOCK > /dev/full``."""
    cmd = [sys.executable, "-m", "hyflexpim"]
    p = subprocess.Popen(cmd + ["perf"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert "Traceback" not in err and p.returncode in (0, 2, cli.BROKEN_PIPE_STATUS), err
    with open("/dev/full", "w") as full:
        q = subprocess.run(cmd + ["verilog", "wl_driver"], stdout=full, stderr=subprocess.PIPE,
                           text=True, timeout=120)
    assert q.returncode == 2 and len(q.stderr.strip().splitlines()) == 1, q.stderr
    assert "No space left on device" in q.stderr
