"""The ``hyflexpim`` command.

Sub-commands live in :mod:`hyflexpim.sim.commands`, one module each, and are found
at start-up: a module there defines

* ``NAME``: the sub-command word,
* ``HELP``: one line for ``hyflexpim --help``,
* ``add_arguments(parser)``: fills an :class:`argparse.ArgumentParser`,
* ``run(args) -> int``: does the work and returns the exit status.

Errors are one readable line on stderr, ``hyflexpim COMMAND: error: ...``, and exit
status 2, never a traceback:

* a command-line mistake (unknown option, a value of the wrong type, a missing
  argument, an option given twice with different values): the parser's message, with
  no usage block (``hyflexpim COMMAND --help`` shows it);
* :class:`UsageError`, ``ValueError``, ``TypeError`` or ``KeyError`` raised by ``run``:
  its message;
* any ``OSError`` (a directory where a file is expected, a path under a file, no
  permission, a full disk, a missing file): the path and the system's reason;
* ``UnicodeDecodeError``: the file that is not UTF-8 text, where it can be found.

A closed standard output (``hyflexpim perf | head -1``) ends the command quietly with
status 141 (128 + SIGPIPE, what a command killed by the signal reports), and what is
left to print goes to ``os.devnull``. Ctrl-C gives ``interrupted`` and status 130.
"""

import argparse
import importlib
import io
import os
import pathlib
import pkgutil
import sys

from . import commands as _commands

__all__ = ["UsageError", "main", "build_parser", "error_line"]

#: Exit status of a command whose standard output was closed under it (128 + SIGPIPE).
BROKEN_PIPE_STATUS = 141


class UsageError(Exception):
    """A user mistake that the CLI reports as one line (exit status 2)."""


def _one_line(text):
    """``text`` on one line: its non-empty lines joined with '; '."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return "; ".join(lines)


class _StoreOnce(argparse._StoreAction):
    """``store`` that refuses the same option twice with different values (argparse
    keeps the last one silently)."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen = namespace.__dict__.setdefault("_given_options", {})
        if option_string is not None and self.dest in seen and seen[self.dest][1] != values:
            first, before = seen[self.dest]
            parser.error(f"{first} given twice ({before!r}, then {values!r} as {option_string});"
                         f" give it once")
        seen.setdefault(self.dest, (option_string, values))
        super().__call__(parser, namespace, values, option_string)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``PROG: error: MESSAGE``) and whose
    ``store`` options may not be repeated with different values."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)

    def error(self, message):
        hint = f" (see '{self.prog} --help')"
        self.exit(2, f"{self.prog}: error: {_one_line(message)}{hint}\n")


def _command_modules():
    mods = []
    for info in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{_commands.__name__}.{info.name}")
        if all(hasattr(mod, a) for a in ("NAME", "HELP", "add_arguments", "run")):
            mods.append(mod)
    return mods


def build_parser():
    parser = _Parser(
        prog="hyflexpim",
        description="HyFlexPIM generator: Verilog, simulation, synthesis, "
                    "architecture and accuracy models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _parse(parser, argv):
    """``parser.parse_args(argv)``, with unknown arguments reported by the sub-command's
    parser (``hyflexpim perf: error: unrecognized arguments: ...``)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


# ---------------------------------------------------------------------------------------
# Errors as one line


def _name_of(obj):
    """The path a file object or path object stands for, or None."""
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    if isinstance(obj, io.IOBase):
        name = getattr(obj, "name", None)
        if isinstance(name, bytes):
            name = os.fsdecode(name)
        if isinstance(name, str):
            return {"<stdout>": "stdout", "<stderr>": "stderr", "<stdin>": "stdin"}.get(name, name)
    return None


def _culprit(exc):
    """The file an exception is about: its ``filename``, else the innermost open file
    (or the ``self`` of a :mod:`pathlib` method) among the frames it went through."""
    fn = getattr(exc, "filename", None)
    if fn is not None:
        return os.fsdecode(fn) if isinstance(fn, (bytes, os.PathLike)) else str(fn)
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            if isinstance(value, io.IOBase) and _name_of(value):
                return _name_of(value)
        if frame.f_code.co_filename == pathlib.__file__:
            name = _name_of(frame.f_locals.get("self"))
            if name:
                return name
    return None


def _os_error_line(exc):
    """One line for an ``OSError``: the path and the system's reason."""
    reason = exc.strerror or _one_line(exc) or type(exc).__name__
    if exc.errno is None and exc.args and isinstance(exc.args[0], str) and exc.filename is None:
        return _one_line(exc)           # raised with a message of its own
    path = _culprit(exc)
    if path is None:
        return f"input/output error: {reason}"
    if isinstance(exc, FileExistsError) and not os.path.isdir(path):
        reason = "exists and is not a folder (a folder is needed there)"
    elif isinstance(exc, IsADirectoryError):
        reason = "is a folder, not a file"
    elif isinstance(exc, NotADirectoryError):
        reason = "a part of the path is a file, not a folder"
    elif isinstance(exc, (BlockingIOError, InterruptedError)):
        reason = f"{reason} (try again)"
    if getattr(exc, "filename2", None) is not None:
        path = f"{path} -> {os.fsdecode(exc.filename2)}"
    return f"{path}: {reason}"


def _decode_error_line(exc):
    where = _culprit(exc)
    bad = ""
    if isinstance(exc.object, (bytes, bytearray)) and 0 <= exc.start < len(exc.object):
        bad = f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
    what = f"{where} is" if where else "an input file is"
    return f"{what} not valid {exc.encoding.upper()} text" + (f" ({bad})" if bad else "")


def error_line(exc):
    """The one-line message the CLI prints for ``exc`` (without the ``hyflexpim CMD:
    error:`` prefix), or None if ``exc`` is not a user-facing error (a bug)."""
    if isinstance(exc, UnicodeDecodeError):
        return _decode_error_line(exc)
    if isinstance(exc, OSError):
        return _os_error_line(exc)
    if isinstance(exc, KeyError):
        return _one_line(exc.args[0] if exc.args else "missing key")
    if isinstance(exc, (UsageError, ValueError, TypeError)):
        return _one_line(exc) or type(exc).__name__
    return None


def _silence_stdout():
    """Point the standard output at ``os.devnull`` so that nothing more (also not the
    flush at interpreter exit) fails on a closed pipe or a full disk."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):   # replaced by a non-file (tests)
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


class _Stdout:
    """Stands in for ``sys.stdout`` while a command runs: an ``OSError`` of a write or a
    flush gets ``filename = "stdout"``, so that it is told apart from the command's own
    files (a broken pipe to a subprocess is an error; to stdout it is the reader's exit)."""

    def __init__(self, stream):
        self._stream = stream

    def _tagged(self, fn, *args):
        try:
            return fn(*args)
        except OSError as exc:
            if exc.filename is None:
                exc.filename = "stdout"
            raise

    def write(self, text):
        return self._tagged(self._stream.write, text)

    def writelines(self, lines):
        return self._tagged(self._stream.writelines, lines)

    def flush(self):
        return self._tagged(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _is_stdout_error(exc):
    return isinstance(exc, OSError) and exc.filename == "stdout"


def _run(args):
    real = sys.stdout
    sys.stdout = _Stdout(real) if real is not None else real
    try:
        status = args._run(args)
        sys.stdout.flush()
        return status
    finally:
        if isinstance(sys.stdout, _Stdout):
            sys.stdout = sys.stdout._stream


def main(argv=None):
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as exc:           # --help (0) or a parser error (2, already printed)
        return exc.code if isinstance(exc.code, int) else 2
    where = f"hyflexpim {args.command}"
    try:
        status = _run(args)
    except BrokenPipeError as exc:
        if not _is_stdout_error(exc):
            print(f"{where}: error: {error_line(exc)}", file=sys.stderr)
            return 2
        _silence_stdout()
        return BROKEN_PIPE_STATUS
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValueError, TypeError, KeyError, OSError) as exc:
        if isinstance(exc, OSError) and _is_stdout_error(exc):
            _silence_stdout()
            print(f"{where}: error: cannot write to stdout: {exc.strerror or exc}",
                  file=sys.stderr)
            return 2
        print(f"{where}: error: {error_line(exc)}", file=sys.stderr)
        return 2
    return 0 if status is None else int(status)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
