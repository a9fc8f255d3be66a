"""Verilog generation from Amaranth components."""

import re
from pathlib import Path

from amaranth.back import verilog

from ..base import ParameterTypeError

__all__ = ["check_module_name", "to_verilog", "write_verilog"]


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*\Z")


def check_module_name(name):
    """Return ``name`` if it is a plain Verilog identifier (letters, digits, _ and $).

    Raises:
        ParameterTypeError: ``name`` is not a string.
        ValueError: ``name`` is not an identifier, or longer than 1024 characters.
    """
    if not isinstance(name, str):
        raise ParameterTypeError(f"name must be a Verilog identifier, not {name!r}")
    if len(name) > 1024 or not _IDENT.match(name):
        raise ValueError(
            "name must be a Verilog identifier (a letter or _, then letters, digits, _ "
            f"or $; at most 1024 characters), not {name!r}")
    return name


def to_verilog(component, name):
    """Return the Verilog text of ``component`` with top module ``name``."""
    return verilog.convert(component, name=check_module_name(name), emit_src=False)


def write_verilog(component, name, path):
    """Write the Verilog of ``component`` to ``path`` (parent folders are made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_verilog(component, name))
    return path
