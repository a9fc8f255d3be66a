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


_TYPE_WORDS = {bool: "true/false (or 1/0)", float: "a number", str: "a word",
               int: "an integer (decimal without leading zeros, or 0x / 0o / 0b)"}


def parse_params(block, items):
    """Turn ``["rows=32", "mlc_bits=7"]`` into typed keyword arguments for ``block``.

    Integers are decimal without leading zeros, or carry a ``0x`` / ``0o`` / ``0b`` prefix.

    Raises:
        ValueError: an item is not NAME=VALUE, names no parameter of the block, names one
            twice, or its value does not parse as the parameter's type.
    """
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"parameter must be written NAME=VALUE, not {item!r}")
        key, _, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if key not in block.params:
            raise ValueError(
                f"block {block.name!r} has no parameter {key!r}; "
                f"its parameters are {', '.join(sorted(block.params)) or '(none)'}")
        if key in out:
            raise ValueError(f"parameter {key} is given twice ({out[key]!r} and {text!r})")
        default = block.params[key]
        kind = type(default)
        try:
            if kind is bool:
                if text.lower() not in ("0", "1", "true", "false"):
                    raise ValueError
                value = text.lower() in ("1", "true")
            elif kind is int:
                value = int(text, 0)   # decimal, or 0x / 0o / 0b; "010" is refused
            elif kind is float:
                value = float(text)
            else:
                value = text
        except ValueError:
            raise ValueError(
                f"parameter {key} must be {_TYPE_WORDS.get(kind, kind.__name__)}, "
                f"not {text!r}") from None
        out[key] = value
    return out
