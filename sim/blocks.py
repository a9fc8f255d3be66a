"""Registry of generatable RTL blocks and of the units' CONFIG register maps.

Every module in :mod:`hyflexpim.rtl` may define a module-level ``BLOCKS`` list of
:class:`Block` entries and a ``REGISTERS`` list of
:class:`~hyflexpim.rtl.registers.RegisterMap` entries. The registry collects them, so
that ``hyflexpim verilog``, ``hyflexpim synth`` and ``hyflexpim registers`` (and any
other flow) see every block and register map without a central list to edit.
"""

import importlib
import pkgutil

from ..base import Block

__all__ = ["Block", "all_blocks", "get_block", "parse_params", "all_register_maps"]


def _rtl_modules():
    """Every public module of :mod:`hyflexpim.rtl`, by name."""
    from .. import rtl
    for info in sorted(pkgutil.iter_modules(rtl.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{rtl.__name__}.{info.name}")


def all_register_maps():
    """Every unit's :class:`~hyflexpim.rtl.registers.RegisterMap`, module by module."""
    return [rmap for mod in _rtl_modules() for rmap in getattr(mod, "REGISTERS", ())]


def all_blocks():
    """Return ``{name: Block}`` for every block of every :mod:`hyflexpim.rtl` module."""
    blocks = {}
    for mod in _rtl_modules():
        for blk in getattr(mod, "BLOCKS", ()):
            if blk.name in blocks:
                raise RuntimeError(f"block name {blk.name!r} is defined twice")
            blocks[blk.name] = blk
    return blocks


def get_block(name):
    blocks = all_blocks()
    if name not in blocks:
        raise ValueError(f"unknown block {name!r}; known blocks: {', '.join(sorted(blocks))}")
    return blocks[name]


def parse_params(block, items):
    """Turn ``["rows=32", "mlc_bits=7"]`` into typed keyword arguments for ``block``."""
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"parameter must be written NAME=VALUE, not {item!r}")
        key, _, text = item.partition("=")
        key = key.strip()
        if key not in block.params:
            raise ValueError(
                f"block {block.name!r} has no parameter {key!r}; "
                f"its parameters are {', '.join(sorted(block.params)) or '(none)'}")
        default = block.params[key]
        try:
            if isinstance(default, bool):
                if text.lower() not in ("0", "1", "true", "false"):
                    raise ValueError
                value = text.lower() in ("1", "true")
            elif isinstance(default, int):
                value = int(text, 0)
            elif isinstance(default, float):
                value = float(text)
            else:
                value = text
        except ValueError:
            raise ValueError(
                f"parameter {key} must be a {type(default).__name__}, not {text!r}") from None
        out[key] = value
    return out
