# amaranth: UnusedElaboratable=no
"""Launch the cocotb regression of the digital PIM controller (tb/digital_pim_tb.py) on
its generated Verilog, the behavioural array model answering the array port."""

import json
import os

import pytest

from hyflexpim.models.digital_pim import COMMANDS, command_cycles, run_cycles
from hyflexpim.sim.cocotb_runner import run_block

SMALL = dict(arrays=2, rows=32, cols=32, head_dim=4, max_seq=16, heads=1, lanes=4)
TWO_HEADS = dict(arrays=4, rows=20, cols=64, head_dim=8, max_seq=12, heads=2, lanes=2)
ONE_ARRAY = dict(arrays=1, rows=20, cols=16, head_dim=3, max_seq=5, heads=1, lanes=1)
WIDE = dict(arrays=2, rows=12, cols=256, head_dim=3, max_seq=9, heads=1, lanes=8)
#: the largest lanes the generator allows (1..64): a whole q in one beat
MAX_LANES = dict(SMALL, lanes=64)
PUBLISHED_COLS = dict(arrays=4, rows=12, cols=1024, head_dim=64, max_seq=12, heads=1, lanes=16)


def _run(params, testcase=None, quick=False, report=None, seed=None):
    seed = seed if seed is not None else int(os.environ.get("HYFLEXPIM_SEED", "1"))
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    env = {"HYFLEXPIM_SEED": seed}
    if report:
        env["HYFLEXPIM_REPORT"] = report
    return run_block("digital_pim", params=params, test_module="hyflexpim.tb.digital_pim_tb",
                     tb_params={"quick": quick}, extra_env=env, testcase=testcase, quiet=True)


def test_small_all_cases():
    passed, _ = _run(SMALL)
    assert passed == 8


@pytest.mark.parametrize("params", [TWO_HEADS, ONE_ARRAY, WIDE], ids=["two_heads", "one_array", "wide"])
def test_other_geometries(params):
    passed, _ = _run(params, quick=True, testcase=["random_products_gaps_and_backpressure",
                                                   "corner_values", "run_cycles_equal_the_model",
                                                   "command_cycles_equal_the_model"])
    assert passed == 4


def test_rtl_cycles_equal_model_cycles(tmp_path):
    report = tmp_path / "cycles.jsonl"
    _run(SMALL, testcase="run_cycles_equal_the_model", report=report)
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(rows) >= 8
    for r in rows:
        assert r["cycles"] == run_cycles(r["products_per_array"], cols=r["cols"])


def test_rtl_command_cycles_equal_model_cycles(tmp_path):
    """Every command kind measured header to header in RTL, each equal to command_cycles."""
    report = tmp_path / "commands.jsonl"
    _run(SMALL, testcase="command_cycles_equal_the_model", report=report)
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert {r["cmd"] for r in rows} == set(COMMANDS)
    assert any(r["cmd"] == "append" and r["length"] + r["arg"] > r["max_seq"] for r in rows)
    for r in rows:
        assert r["cycles"] == command_cycles(r["cmd"], r["arg"], r["length"], arrays=r["arrays"],
                                             cols=r["cols"], head_dim=r["head_dim"],
                                             lanes=r["lanes"], max_seq=r["max_seq"]), r


@pytest.mark.slow
def test_published_columns_all_cases():
    passed, _ = _run(PUBLISHED_COLS, quick=True)
    assert passed == 8


@pytest.mark.slow
def test_max_lanes_boundaries_and_reset():
    """lanes = 64 (the generator's bound): n_keys and APPEND boundaries, reset in every
    state, random products; every beat exact."""
    passed, _ = _run(MAX_LANES, quick=True, testcase=["random_products_gaps_and_backpressure",
                                                      "boundaries_of_n_keys_and_max_seq",
                                                      "reset_in_every_state"])
    assert passed == 3
