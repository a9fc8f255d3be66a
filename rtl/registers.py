"""CONFIG registers: the word a CONFIG packet carries and one typed register map per unit.

A CONFIG packet (kind ``CONFIG`` of :mod:`hyflexpim.rtl.bus`) writes one 16-bit register;
its ``data`` is a :data:`CONFIG_WORD`::

    bits  0..15  value     the value written
    bits 16..23  register  the register number, in the unit's register enum
    bits 24..31  target    inner port of a PU (read by its bridge; 0 elsewhere)

Every unit that takes CONFIG packets defines an ``amaranth.lib.enum.Enum`` of shape 8 that
numbers its registers and a :class:`RegisterMap` that gives each register its reset value,
its count (a register may be an array: numbers ``number .. number + count - 1``) and its
description. The unit's decoder reads the word through :func:`config_layout` of its enum
(``m.Switch(cfg.register)`` / ``m.Case(Reg.X)``); testbenches build words with
:meth:`RegisterMap.word`; ``hyflexpim registers`` writes every map to
``docs/registers.md`` (:func:`markdown`). A module lists its maps in ``REGISTERS``, as
it lists its blocks in ``BLOCKS``.
"""

from dataclasses import dataclass

from amaranth.hdl import unsigned
from amaranth.lib import data, enum

from ..base import check_int

__all__ = ["CONFIG_WORD", "config_layout", "Register", "RegisterMap", "markdown"]


def config_layout(registers=unsigned(8)):
    """``data.StructLayout`` of a CONFIG word whose ``register`` field has the shape
    ``registers`` (a unit's register enum, or plain 8 bits)."""
    return data.StructLayout({"value": unsigned(16), "register": registers,
                              "target": unsigned(8)})


#: The CONFIG word of any unit (``register`` as plain 8 bits).
CONFIG_WORD = config_layout()


@dataclass(frozen=True)
class Register:
    """Reset value and description of one register (or register array) of a map.

    ``reset`` and ``count`` are numbers, or text when they depend on the unit's
    parameters (e.g. ``"init_parts"``, ``"cols // 4"``).
    """
    reset: object
    doc: str
    count: object = 1


class RegisterMap:
    """The CONFIG registers of one unit: ``enum`` numbers them, ``registers`` maps each
    member to its :class:`Register`.

    Raises:
        ValueError: ``enum`` is not an 8-bit ``amaranth.lib.enum.Enum``, or a member has
            no :class:`Register`.
    """

    def __init__(self, unit, enum_cls, registers, *, doc=""):
        if not (isinstance(enum_cls, type) and issubclass(enum_cls, enum.Enum)
                and enum_cls.as_shape() == unsigned(8)):
            raise ValueError(f"enum must be an amaranth enum of shape 8, not {enum_cls!r}")
        missing = [m.name for m in enum_cls if m not in registers]
        if missing:
            raise ValueError(f"register {missing[0]} of {enum_cls.__name__} has no description")
        self.unit, self.enum, self.doc = unit, enum_cls, doc
        self.registers = dict(registers)

    def reset(self, register):
        """The reset value of ``register`` (a number; the RTL initialises it from here).

        Raises:
            ValueError: its reset depends on the unit's parameters (given as text).
        """
        value = self.registers[self.enum(register)].reset
        if not isinstance(value, int):
            raise ValueError(f"the reset of {self.enum(register).name} depends on the "
                             f"parameters ({value})")
        return value

    @property
    def layout(self):
        """The CONFIG word with this unit's register enum."""
        return config_layout(self.enum)

    def word(self, register, value, *, index=0, target=0):
        """The ``data`` of a CONFIG packet writing ``value`` to ``register`` (+ ``index``
        within a register array), for PU inner port ``target``.

        Raises:
            ParameterTypeError / ValueError: ``value`` not in 0..65535, the number not in
                0..255, ``target`` not in 0..255.
        """
        number = self.enum(register).value + check_int("index", index, 0, 255)
        check_int("register", number, 0, 255)
        return CONFIG_WORD.const({"value": check_int("value", value, 0, 0xFFFF),
                                  "register": number,
                                  "target": check_int("target", target, 0, 255)}).as_bits()

    def rows(self):
        """``(name, numbers, reset, description)`` of every register, by number."""
        out = []
        for member in sorted(self.enum, key=lambda m: m.value):
            reg = self.registers[member]
            if reg.count == 1:
                numbers = f"{member.value:#04x}"
            else:
                numbers = f"{member.value:#04x} + i, i < {reg.count}"
            reset = f"{reg.reset:#06x}" if isinstance(reg.reset, int) and reg.reset > 9 \
                else str(reg.reset)
            out.append((member.name, numbers, reset, reg.doc))
        return out


def markdown(maps):
    """A Markdown page documenting the CONFIG word and the register ``maps``."""
    lines = ["# CONFIG registers", "",
             "Generated by `hyflexpim registers` from the register maps in `rtl/` (do not "
             "edit by hand; `tests/test_registers.py` checks that this file is up to date).",
             "", "A CONFIG packet's `data` (low 32 bits) is the CONFIG word:", "",
             "| bits | field | meaning |", "|---|---|---|"]
    meaning = {"value": "the value written",
               "register": "register number (the unit's register enum)",
               "target": "inner port of a PU, read by its bridge (0 elsewhere)"}
    for name, field in CONFIG_WORD:
        lines.append(f"| {field.offset}..{field.offset + field.width - 1} | `{name}` | "
                     f"{meaning[name]} |")
    for rmap in maps:
        lines += ["", f"## {rmap.unit} (`{rmap.enum.__module__}.{rmap.enum.__qualname__}`)",
                  ""]
        if rmap.doc:
            lines += [rmap.doc, ""]
        lines += ["| register | number | reset | description |", "|---|---|---|---|"]
        for name, numbers, reset, doc in rmap.rows():
            lines.append(f"| `{name}` | {numbers} | {reset} | {doc} |")
    return "\n".join(lines) + "\n"
