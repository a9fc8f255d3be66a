"""The bottom layer of HyFlexPIM: parameter checks and the block descriptor.

Every other layer imports this module and it imports nothing of the project, so a check
is written once and reads the same everywhere (``models`` <- ``rtl`` <- ``sim``, all on
top of ``base``).

Checks follow Python's and Amaranth's convention: a value of the wrong type raises
:class:`ParameterTypeError`, a value out of range raises ``ValueError``; both messages
name the parameter, the allowed range and the value given, in the form
``"rows must be an integer in 1..1024, not 0"``. :class:`ParameterTypeError` is a
``TypeError`` and also a ``ValueError``, so callers written against the project's
earlier ``ValueError``-only checks keep working.
"""

import math
from dataclasses import dataclass, field
from numbers import Integral, Real

__all__ = [
    "ParameterTypeError", "check_int", "check_pow2", "check_choice", "check_float",
    "check_fraction", "check_bool", "Block",
]


class ParameterTypeError(TypeError, ValueError):
    """A parameter of the wrong type (a ``TypeError``; also a ``ValueError``)."""


def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_int(name, value, lo=None, hi=None, what="an integer"):
    """Return ``int(value)`` if it is an integer in ``lo..hi`` (either bound may be None).

    Raises:
        ParameterTypeError: ``value`` is not an integer (``bool`` is refused).
        ValueError: ``value`` is outside ``lo..hi``.
    """
    if lo is None and hi is None:
        rng = what
    elif hi is None:
        rng = f"{what} >= {lo}" if lo != 1 else "a positive integer"
    elif lo is None:
        rng = f"{what} <= {hi}"
    else:
        rng = f"{what} in {lo}..{hi}"
    if not _is_int(value):
        raise ParameterTypeError(f"{name} must be {rng}, not {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name} must be {rng}, not {value!r}")
    return int(value)


def check_pow2(name, value, lo=1, hi=None):
    """Return ``int(value)`` if it is a power of two in ``lo..hi``.

    Raises:
        ParameterTypeError: ``value`` is not an integer.
        ValueError: not a power of two, or outside ``lo..hi``.
    """
    rng = "a power of two" + (f" in {lo}..{hi}" if hi is not None else "")
    if not _is_int(value):
        raise ParameterTypeError(f"{name} must be {rng}, not {value!r}")
    if value < 1 or value & (value - 1) or value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} must be {rng}, not {value!r}")
    return int(value)


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices`` (strings compared exactly).

    Raises:
        ParameterTypeError: ``value`` is not of the choices' type.
        ValueError: ``value`` is not one of ``choices``.
    """
    choices = tuple(choices)
    listed = ", ".join(repr(c) for c in choices)
    types = {type(c) for c in choices}
    if types and not any(isinstance(value, t) for t in types):
        raise ParameterTypeError(f"{name} must be one of {listed}, not {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {listed}, not {value!r}")
    return value


def check_float(name, value, lo=None, hi=None, *, lo_open=False, hi_open=False):
    """Return ``float(value)`` if it is a finite real number within the given bounds.

    ``lo_open`` / ``hi_open`` exclude the bound itself. NaN and infinities are refused.

    Raises:
        ParameterTypeError: ``value`` is not a real number (``bool`` is refused).
        ValueError: ``value`` is NaN, infinite or outside the bounds.
    """
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    if lo is None and hi is None:
        rng = "a finite number"
    elif hi is None:
        rng = f"a number {'>' if lo_open else '>='} {lo}"
    elif lo is None:
        rng = f"a number {'<' if hi_open else '<='} {hi}"
    else:
        rng = f"a number in {left}{lo}, {hi}{right}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ParameterTypeError(f"{name} must be {rng}, not {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be {rng}, not {value!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{name} must be {rng}, not {value!r}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"{name} must be {rng}, not {value!r}")
    return v


def check_fraction(name, value):
    """Return ``float(value)`` if it is a number in [0, 1]."""
    return check_float(name, value, 0.0, 1.0)


def check_bool(name, value):
    """Return ``value`` if it is a ``bool``.

    Raises:
        ParameterTypeError: ``value`` is not a ``bool``.
    """
    if not isinstance(value, bool):
        raise ParameterTypeError(f"{name} must be True or False, not {value!r}")
    return value


@dataclass(frozen=True)
class Block:
    """One generatable RTL block (the registry in :mod:`hyflexpim.sim.blocks` collects them).

    ``factory(**params)`` returns an Amaranth ``wiring.Component``; ``params`` maps each
    generator parameter name to its default value (its type is the default's type);
    ``small`` overrides defaults with the one small configuration that tests,
    testbenches and area bands use.
    """
    name: str
    factory: object
    params: dict
    doc: str
    small: dict = field(default_factory=dict)

    def resolve(self, small=False, **overrides):
        """Return the full parameter dict: defaults, then ``small`` (if asked), then overrides.

        Raises:
            ValueError: an override names a parameter the block does not have.
        """
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            raise ValueError(
                f"block {self.name!r} has no parameter {unknown[0]!r}; "
                f"its parameters are {', '.join(sorted(self.params)) or '(none)'}")
        kw = dict(self.params)
        if small:
            kw.update(self.small)
        kw.update(overrides)
        return kw

    def build(self, small=False, **overrides):
        """Build the component with the defaults (or the small configuration) and overrides."""
        return self.factory(**self.resolve(small, **overrides))
