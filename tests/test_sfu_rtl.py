"""SFU function units (rtl/sfu.py): parameter checks, and the cocotb regression on the
generated Verilog (tb/sfu_tb.py), bit-exact against models/fp16/functions.py."""
# amaranth: UnusedElaboratable=no

import os

import pytest

from hyflexpim.rtl.sfu import ExpUnit, GeluUnit, LayerNormUnit, RowReduce, SoftmaxUnit
from hyflexpim.sim.blocks import all_blocks
from hyflexpim.sim.cocotb_runner import run_cocotb

UNITS = {"exp": ExpUnit, "gelu": GeluUnit, "softmax": SoftmaxUnit, "layernorm": LayerNormUnit}


def _run(kind, count=None, exhaustive=False, testcase=None, **params):
    seed = int(os.environ.get("HYFLEXPIM_SEED", "1"))
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    env = {"HYFLEXPIM_SEED": seed}
    if count is not None:
        env["HYFLEXPIM_COUNT"] = count
    if exhaustive:
        env["HYFLEXPIM_EXHAUSTIVE"] = 1
    comp = UNITS[kind](**params)
    return run_cocotb(comp, toplevel=f"sfu_{kind}", test_module="hyflexpim.tb.sfu_tb",
                      params=dict(params, kind=kind), extra_env=env, testcase=testcase)


@pytest.mark.parametrize("kind", ["exp", "gelu"])
def test_elementwise_random(kind):
    passed, _ = _run(kind, count=300, lanes=2,
                     testcase=["elementwise_bit_exact", "elementwise_throughput"])
    assert passed == 2


def test_softmax_rows():
    passed, _ = _run("softmax", count=96, n=16, lanes=2, slots=4,
                     testcase=["rows_bit_exact", "rows_throughput"])
    assert passed == 2


def test_softmax_odd_shape():
    passed, _ = _run("softmax", count=48, n=12, lanes=1, slots=3, testcase=["rows_bit_exact"])
    assert passed == 1


def test_layernorm_rows():
    passed, _ = _run("layernorm", count=96, n=16, lanes=4, slots=2,
                     testcase=["rows_bit_exact", "rows_throughput"])
    assert passed == 2


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["exp", "gelu"])
def test_elementwise_exhaustive(kind):
    passed, _ = _run(kind, exhaustive=True, lanes=4, testcase=["elementwise_bit_exact"])
    assert passed == 1


@pytest.mark.parametrize("cls", [ExpUnit, GeluUnit])
@pytest.mark.parametrize("kw,msg", [
    ({"lanes": 0}, r"^lanes must be a positive integer, not 0$"),
    ({"lanes": True}, r"^lanes must be a positive integer, not True$"),
    ({"degree": 0}, r"^degree must be an integer in 1\.\.8, not 0$"),
    ({"degree": 9}, r"^degree must be an integer in 1\.\.8, not 9$"),
])
def test_elementwise_params(cls, kw, msg):
    with pytest.raises(ValueError, match=msg):
        cls(**kw)


@pytest.mark.parametrize("cls", [SoftmaxUnit, LayerNormUnit])
@pytest.mark.parametrize("kw,msg", [
    ({"lanes": 3}, r"^lanes must be a power of two, not 3$"),
    ({"n": 10, "lanes": 4}, r"^n must be a positive multiple of lanes \(4\), not 10$"),
    ({"n": 0}, r"^n must be a positive multiple of lanes \(2\), not 0$"),
    ({"slots": 0}, r"^slots must be a positive integer, not 0$"),
])
def test_row_params(cls, kw, msg):
    with pytest.raises(ValueError, match=msg):
        cls(**kw)


def test_layernorm_specific_params():
    with pytest.raises(ValueError, match=r"^n must be exactly representable in binary16, not 2049$"):
        LayerNormUnit(n=2049, lanes=1)
    with pytest.raises(ValueError, match=r"^eps must be a binary16 bit pattern in 0\.\.65535, not -1$"):
        LayerNormUnit(eps=-1)
    with pytest.raises(ValueError, match=r"^op must be 'add' or 'max', not 'mul'$"):
        RowReduce(op="mul")


def test_blocks_registered_and_small_builds():
    # registry defaults are small (the published 256 lanes is a -p lanes=256 away) so
    # that `hyflexpim synth --all` and `hyflexpim verilog` stay quick
    blocks = all_blocks()
    for name in ("sfu_exp", "sfu_gelu", "sfu_softmax", "sfu_layernorm"):
        assert name in blocks
        assert blocks[name].params["lanes"] <= 4
        assert blocks[name].params.get("n", 0) <= 64
        blocks[name].build(**blocks[name].small)
