# amaranth: UnusedElaboratable=no
"""SFU function units (rtl/sfu.py): the cocotb regression on the generated Verilog
(tb/sfu_tb.py), bit-exact against models/fp16/functions.py (parameter checks and the
Amaranth-simulator tests are tests/test_sfu_amaranth.py)."""

import os

import pytest

from hyflexpim.sim.cocotb_runner import run_block

SEED = int(os.environ.get("HYFLEXPIM_SEED", "1"))


def _run(kind, count=None, exhaustive=False, testcase=None, **params):
    seed = SEED
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    env = {"HYFLEXPIM_SEED": seed}
    if count is not None:
        env["HYFLEXPIM_COUNT"] = count
    if exhaustive:
        env["HYFLEXPIM_EXHAUSTIVE"] = 1
    return run_block(f"sfu_{kind}", test_module="hyflexpim.tb.sfu_tb", params=params,
                     extra_env=env, testcase=testcase)


@pytest.mark.parametrize("kind", ["exp", "gelu"])
def test_elementwise_random(kind):
    # and a long output stall (full rate after it); reset in every state on exp (GELU:
    # test_elementwise_reset_gelu, slow: the same operator chain, twice the depth)
    passed, _ = _run(kind, count=300, lanes=2,
                     testcase=["elementwise_bit_exact", "elementwise_throughput",
                               "long_stall_then_full_rate"]
                     + (["reset_in_every_state"] if kind == "exp" else []))
    assert passed == (4 if kind == "exp" else 3)


@pytest.mark.slow
def test_elementwise_reset_gelu():
    passed, _ = _run("gelu", lanes=2, testcase=["reset_in_every_state"])
    assert passed == 1


def test_softmax_rows():
    passed, _ = _run("softmax", count=96, n=16, lanes=2, slots=4,
                     testcase=["rows_bit_exact", "rows_throughput",
                               "long_stall_then_full_rate", "reset_in_every_state"])
    assert passed == 4


def test_softmax_odd_shape():
    passed, _ = _run("softmax", count=48, n=12, lanes=1, slots=3, testcase=["rows_bit_exact"])
    assert passed == 1


def test_layernorm_rows():
    # (its long stall: test_row_throughput_long_rows, slots 4, where full rate is 1 beat
    # per cycle)
    passed, _ = _run("layernorm", count=96, n=16, lanes=4, slots=2,
                     testcase=["rows_bit_exact", "rows_throughput", "reset_in_every_state"])
    assert passed == 3


@pytest.mark.parametrize("kind", ["softmax", "layernorm"])
def test_row_throughput_long_rows(kind):
    # rows overlap: one row per n / lanes cycles in steady state (the tb asserts it);
    # layer norm: also long stalls, full rate again after the release (slots 4: one
    # beat per cycle; softmax has it in test_softmax_rows, and here in the slow
    # test_long_stall_long_rows_softmax)
    tests = ["rows_throughput"] + (["long_stall_then_full_rate"] if kind == "layernorm" else [])
    passed, _ = _run(kind, n=64, lanes=4, slots=4, testcase=tests)
    assert passed == len(tests)


@pytest.mark.slow
def test_long_stall_long_rows_softmax():
    passed, _ = _run("softmax", n=64, lanes=4, slots=4, testcase=["long_stall_then_full_rate"])
    assert passed == 1


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["softmax", "layernorm"])
def test_rows_long_backpressure(kind):
    # 9 adversarial + 60 random rows of 64, random gaps and backpressure
    passed, _ = _run(kind, count=64 * 60, n=64, lanes=4, slots=4, testcase=["rows_bit_exact"])
    assert passed == 1


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["exp", "gelu"])
def test_elementwise_exhaustive(kind):
    passed, _ = _run(kind, exhaustive=True, lanes=4, testcase=["elementwise_bit_exact"])
    assert passed == 1
