"""The ``hyflexpim`` command.

Sub-commands live in :mod:`hyflexpim.sim.commands`, one module each, and are found
at start-up: a module there defines

* ``NAME``: the sub-command word,
* ``HELP``: one line for ``hyflexpim --help``,
* ``add_arguments(parser)``: fills an :class:`argparse.ArgumentParser`,
* ``run(args) -> int``: does the work and returns the exit status.

Any :class:`ValueError`, :class:`TypeError`, :class:`FileNotFoundError` or
:class:`UsageError` raised by ``run`` becomes one readable line on stderr and exit
status 2, never a traceback.
"""

import argparse
import importlib
import pkgutil
import sys

from . import commands as _commands

__all__ = ["UsageError", "main", "build_parser"]


class UsageError(Exception):
    """A user mistake that the CLI reports as one line (exit status 2)."""


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
    parser = argparse.ArgumentParser(
        prog="hyflexpim",
        description="HyFlexPIM generator: Verilog, simulation, synthesis, "
                    "architecture and accuracy models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args._run(args)
    except (UsageError, ValueError, TypeError, FileNotFoundError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"hyflexpim {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hyflexpim {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
