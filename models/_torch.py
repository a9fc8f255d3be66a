"""PyTorch, an optional extra: one clear message when it is missing."""

INSTALL_HINT = "PyTorch is needed for this (the 'algo' extra): pip install -e .[algo]"


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the install command."""


try:
    import torch
    from torch import nn
except ImportError as _exc:  # pragma: no cover - exercised with torch absent
    raise MissingExtra(INSTALL_HINT) from _exc

__all__ = ["torch", "nn", "MissingExtra", "INSTALL_HINT"]
