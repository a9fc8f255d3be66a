# amaranth: UnusedElaboratable=no
"""FP16 operator units (rtl/fp16.py) on their generated Verilog: the cocotb regression
``tb/fp16_tb.py`` (Icarus), word by word (result and flags) against the golden model
``hyflexpim.models.fp16.ops``. The full sets (>= 100k random pairs, unary operators
exhaustive over 65,536 inputs) are marked slow. Parameter checks and the
Amaranth-simulator tests are ``tests/test_fp16_amaranth.py``.
"""

import pytest

from hyflexpim.sim.cocotb_runner import run_block
from hyflexpim.tb import fp16_tb as tb

OPS = sorted(tb.OPS)
SEED = 20261122


def _cocotb(op, full, params=None, ready=None):
    params = dict(params or {})
    env = {"HYFLEXPIM_FP16_SET": "full" if full else "quick", "HYFLEXPIM_SEED": SEED}
    if ready is not None:
        env["HYFLEXPIM_READY"] = ready
    print(f"fp16 {op}: HYFLEXPIM_SEED={SEED} params={params}")
    run_block(f"fp16_{op}", test_module="hyflexpim.tb.fp16_tb", params=params,
              tb_params={"set": env["HYFLEXPIM_FP16_SET"]}, extra_env=env)


@pytest.mark.parametrize("op", OPS)
def test_cocotb_quick(op):
    _cocotb(op, full=False)


def test_cocotb_lanes():
    _cocotb("add", full=False, params={"lanes": 4}, ready=0.5)


@pytest.mark.slow
@pytest.mark.parametrize("op", OPS)
def test_cocotb_full(op):
    _cocotb(op, full=True)


@pytest.mark.parametrize("op, params", [
    ("add", {}),
    pytest.param("div", {"steps_per_stage": 1}, marks=pytest.mark.slow),
    pytest.param("to_int8", {"lanes": 3}, marks=pytest.mark.slow)],
    ids=["add", "div_steps_1", "to_int8_3_lanes"])
def test_cocotb_long_stall_and_reset(op, params):
    """Output held for 10 x the pipeline depth, then released (one result per cycle
    after); reset while idle, mid-pipeline, with output waiting and input stalled."""
    print(f"fp16 {op}: HYFLEXPIM_SEED={SEED} params={params}")
    passed, _ = run_block(f"fp16_{op}", test_module="hyflexpim.tb.fp16_tb", params=params,
                          extra_env={"HYFLEXPIM_SEED": SEED},
                          testcase=["long_stall_then_full_rate", "reset_in_every_state"])
    assert passed == 2

