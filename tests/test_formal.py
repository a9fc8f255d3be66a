# amaranth: UnusedElaboratable=no
"""Formal checks (SymbiYosys via yowasp-sby, yices): the project's properties prove,
and a wrong controller is caught (so the harness can fail)."""

import re
from pathlib import Path

import pytest

from hyflexpim.models.array import ArrayParams
from hyflexpim.rtl.analog import SarAdcController, ShiftAdd
from hyflexpim.sim import formal as F
from hyflexpim.sim.formal_props import SarAdcProps, ShiftAddProps
from hyflexpim.sim.cli import main


def _checks():
    # bus_order and bus_order_prove are the harnesses of tests/test_bus_formal.py at the
    # same depths (that file runs them in the default suite); here they run with -m slow
    # only (about 30 s and 6 s).
    again = {"bus_order", "bus_order_prove"}
    return [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.name in again else [])
            for c in F.CHECKS]


@pytest.mark.parametrize("check", _checks())
def test_property_holds(check):
    r = F.run_check(check)
    assert r.passed, f"{r.name}: {r.status} {r.summary} (log {r.workdir}/sby.log)"
    assert (r.mode, r.depth) == (check.mode, check.depth)
    log = Path(r.workdir, "sby.log").read_text()
    if check.mode == "prove":
        assert "successful proof by k-induction" in log
    else:
        assert f"Checking assertions in step {check.depth - 1}.." in log


def test_checks_cover_the_issue_properties():
    assert {c.name for c in F.CHECKS} >= {"sar_steps", "shift_add_overflow", "bus_order",
                                          "bus_order_prove"}
    assert [c.mode for c in F.CHECKS if c.name != "bus_order"] == ["prove"] * (len(F.CHECKS) - 1)


@pytest.mark.parametrize("slc,mlc", [(5, 7), (6, 6), (6, 8)], ids=["slc5", "mlc6", "mlc8"])
def test_wrong_step_count_is_caught(slc, mlc):
    # The harness expects 6/7 steps; a controller built otherwise must fail quickly.
    h = SarAdcProps(cols=2, slc_bits=6, mlc_bits=7, rows=4,
                    dut=SarAdcController(2, slc, mlc, 4))
    r = F.run_sby(h, f"mutant_{slc}_{mlc}", mode="bmc", depth=20)
    assert r.status == "FAIL", r


def _narrow_shift_add(monkeypatch):
    """A 4 x 8, 6/7-bit ShiftAdd one bit narrower than the minimum result width (its
    constructor refuses that width, so its minimum is lowered for the construction)."""
    need = ArrayParams(rows=4, cols=8, slc_bits=6, mlc_bits=7).min_result_width()
    with monkeypatch.context() as mp:
        mp.setattr(ArrayParams, "min_result_width", lambda self: 1)
        dut = ShiftAdd(4, 8, 6, 7, need - 1)
    assert dut.result_width == need - 1
    return dut


def test_shift_add_one_bit_narrower_fails_induction(monkeypatch):
    # With the result width one bit below the minimum, the bounds no longer fit: the
    # inductive step fails on an accumulation assertion (basecase still passes).
    # At the depth that proves the correct width (a shallower one fails for any width).
    r = F.run_sby(ShiftAddProps(dut=_narrow_shift_add(monkeypatch)), "sa_narrow_prove",
                  mode="prove", depth=F.SHIFT_ADD_DEPTH)
    assert r.status != "PASS", r
    assert re.search(r"returned FAIL for induction", Path(r.workdir, "sby.log").read_text()), r


@pytest.mark.slow
def test_shift_add_one_bit_narrower_overflows(monkeypatch):
    # The overflow is reachable from reset: the largest positive result (-128 xsum +
    # 127 C) is complete after plane 6, at transfer 56 (step 55), the earliest step at
    # which a 22-bit accumulator can overflow; about 70 s.
    r = F.run_sby(ShiftAddProps(dut=_narrow_shift_add(monkeypatch)), "sa_narrow_bmc",
                  mode="bmc", depth=56)
    assert r.status == "FAIL", r
    assert re.search(r"failed assertion .* step 55$", r.summary), r


def test_bad_mode_and_depth():
    with pytest.raises(ValueError, match=r"^mode must be 'prove' or 'bmc', not 'sim'$"):
        F.run_sby(SarAdcProps(), "x", mode="sim")
    with pytest.raises(ValueError, match=r"^depth must be a positive integer, not 0$"):
        F.run_sby(SarAdcProps(), "x", depth=0)


def test_cli_unknown_check(capsys):
    assert main(["formal", "nope"]) == 2
    assert re.fullmatch(r"hyflexpim formal: error: unknown check 'nope'; known checks: .+",
                        capsys.readouterr().err.strip())
