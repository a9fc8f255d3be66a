"""Registry of generatable RTL blocks.

Every module in :mod:`hyflexpim.rtl` may define a module-level ``BLOCKS`` list of
:class:`Block` entries. The registry collects them, so that ``hyflexpim verilog`` and
``hyflexpim synth`` (and any other flow) see every block without a central list to
edit.
"""

import importlib
import pkgutil

from ..base import Block

__all__ = ["Block", "all_blocks", "get_block", "parse_params"]


def all_blocks():
    """Return ``{name: Block}`` for every block of every :mod:`hyflexpim.rtl` module."""
    from .. import rtl
    blocks = {}
    for info in sorted(pkgutil.iter_modules(rtl.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{rtl.__name__}.{info.name}")
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
