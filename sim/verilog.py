"""Verilog generation from Amaranth components."""

from pathlib import Path

from amaranth.back import verilog

__all__ = ["to_verilog", "write_verilog"]


def to_verilog(component, name):
    """Return the Verilog text of ``component`` with top module ``name``."""
    return verilog.convert(component, name=name, emit_src=False)


def write_verilog(component, name, path):
    """Write the Verilog of ``component`` to ``path`` (parent folders are made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_verilog(component, name))
    return path
