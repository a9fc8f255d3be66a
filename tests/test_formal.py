# amaranth: UnusedElaboratable=no
"""Formal checks (SymbiYosys via yowasp-sby, yices): the project's properties prove,
and a wrong controller is caught (so the harness can fail)."""

import re

import pytest

from hyflexpim.rtl.analog import SarAdcController
from hyflexpim.sim import formal as F
from hyflexpim.sim.formal_props import SarAdcProps
from hyflexpim.sim.cli import main


@pytest.mark.parametrize("check", F.CHECKS, ids=lambda c: c.name)
def test_property_proves(check):
    r = F.run_check(check)
    assert r.passed, f"{r.name}: {r.status} {r.summary} (log {r.workdir}/sby.log)"
    assert r.mode == "prove"


@pytest.mark.parametrize("slc,mlc", [(5, 7), (6, 6), (6, 8)], ids=["slc5", "mlc6", "mlc8"])
def test_wrong_step_count_is_caught(slc, mlc):
    # The harness expects 6/7 steps; a controller built otherwise must fail quickly.
    h = SarAdcProps(cols=2, slc_bits=6, mlc_bits=7, rows=4,
                    dut=SarAdcController(2, slc, mlc, 4))
    r = F.run_sby(h, f"mutant_{slc}_{mlc}", mode="bmc", depth=20)
    assert r.status == "FAIL", r


def test_bad_mode_and_depth():
    with pytest.raises(ValueError, match=r"^mode must be 'prove' or 'bmc', not 'sim'$"):
        F.run_sby(SarAdcProps(), "x", mode="sim")
    with pytest.raises(ValueError, match=r"^depth must be a positive integer, not 0$"):
        F.run_sby(SarAdcProps(), "x", depth=0)


def test_cli_unknown_check(capsys):
    assert main(["formal", "nope"]) == 2
    assert re.fullmatch(r"hyflexpim formal: error: unknown check 'nope'; known checks: .+",
                        capsys.readouterr().err.strip())
