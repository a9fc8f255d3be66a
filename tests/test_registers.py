# amaranth: UnusedElaboratable=no
"""CONFIG register maps (rtl/registers.py and each unit's map): the CONFIG word, the
words the maps build, their checks, and docs/registers.md being up to date."""

from pathlib import Path

import pytest
from amaranth.lib import enum

from hyflexpim.rtl.bus import AGG_REGISTERS, AggReg, config_word
from hyflexpim.rtl.digital import DIG_REGISTERS, DigReg
from hyflexpim.rtl.pu import ARRAY_REGISTERS, BRIDGE_REGISTERS, ArrayReg, BridgeReg
from hyflexpim.rtl.registers import CONFIG_WORD, Register, RegisterMap, markdown
from hyflexpim.sim.blocks import all_register_maps
from hyflexpim.sim.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_config_word_fields():
    assert [(n, f.offset, f.width) for n, f in CONFIG_WORD] == [
        ("value", 0, 16), ("register", 16, 8), ("target", 24, 8)]
    assert config_word(AggReg.DEST, 7) == config_word(1, 7) == (1 << 16) | 7


def test_words_of_the_maps():
    assert AGG_REGISTERS.word(AggReg.PARTS, 3) == 3
    assert DIG_REGISTERS.word(DigReg.WORDS, 9, target=4) == (4 << 24) | (5 << 16) | 9
    assert ARRAY_REGISTERS.word(ArrayReg.TABLE, 0x8001, index=6, target=2) == \
        (2 << 24) | (6 << 16) | 0x8001
    assert BRIDGE_REGISTERS.word(BridgeReg.ROUTE, 0x1005, index=2) == (0xF2 << 16) | 0x1005
    assert ARRAY_REGISTERS.word(ArrayReg.MODE, 1) == (255 << 16) | 1


@pytest.mark.parametrize("call, msg", [
    (lambda: AGG_REGISTERS.word(AggReg.PARTS, 0x10000),
     r"^value must be an integer in 0\.\.65535, not 65536$"),
    (lambda: ARRAY_REGISTERS.word(ArrayReg.MODE, 1, index=1),
     r"^register must be an integer in 0\.\.255, not 256$"),
    (lambda: AGG_REGISTERS.word(AggReg.PARTS, 1, target=256),
     r"^target must be an integer in 0\.\.255, not 256$"),
    (lambda: DIG_REGISTERS.reset(DigReg.OUTPUTS),
     r"^the reset of OUTPUTS depends on the parameters \(`2\*\*\(tag_width-1\)`\)$"),
])
def test_word_errors(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()


def test_map_checks():
    class Wide(enum.Enum, shape=9):
        A = 0

    class Narrow(enum.Enum, shape=8):
        A = 0
        B = 1

    with pytest.raises(ValueError, match=r"^enum must be an amaranth enum of shape 8, not "):
        RegisterMap("x", Wide, {Wide.A: Register(0, "a")})
    with pytest.raises(ValueError, match=r"^register B of Narrow has no description$"):
        RegisterMap("x", Narrow, {Narrow.A: Register(0, "a")})


def test_reset_values_drive_the_rtl():
    assert DIG_REGISTERS.reset(DigReg.SCALE_IN) == 0x3C00
    assert DIG_REGISTERS.reset(DigReg.GELU) == 1


def test_registry_collects_every_map():
    maps = all_register_maps()
    assert {m.enum for m in maps} >= {AggReg, DigReg, ArrayReg, BridgeReg}


def test_docs_registers_md_is_up_to_date():
    want = markdown(all_register_maps())
    have = (ROOT / "docs" / "registers.md").read_text()
    assert have == want, "docs/registers.md is stale: run hyflexpim registers -o docs/registers.md"


def test_registers_command(tmp_path, capsys):
    out = tmp_path / "r.md"
    assert main(["registers", "-o", str(out)]) == 0
    assert out.read_text() == markdown(all_register_maps())
    assert main(["registers"]) == 0
    assert capsys.readouterr().out == out.read_text()
