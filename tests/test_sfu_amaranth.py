# amaranth: UnusedElaboratable=no
"""SFU function units (rtl/sfu.py): parameter checks, latencies, the registry entries and
the row reducer in the Amaranth simulator (order of functions.reduce_row, backpressure,
one beat per cycle). The cocotb regression is tests/test_sfu_cocotb.py."""

import os
import random
import re

import numpy as np
import pytest
from amaranth.sim import Simulator

from hyflexpim.models import fp16
from hyflexpim.models.fp16 import functions as F
from hyflexpim.rtl.sfu import ExpUnit, GeluUnit, LayerNormUnit, RowReduce, SoftmaxUnit
from hyflexpim.sim.blocks import all_blocks

SEED = int(os.environ.get("HYFLEXPIM_SEED", "1"))


def _reduce_sim(op, n, lanes, slots, rows, seed, p_valid, p_ready):
    """RowReduce in the Amaranth simulator: (results, cycles of accepted beats)."""
    dut = RowReduce(op=op, n=n, lanes=lanes, slots=slots)
    B = n // lanes
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    x = fp16.from_float(rng.standard_normal((rows, n)) * 10.0 ** rng.uniform(-3, 3, (rows, 1)))
    x[0, 1] = fp16.NEG_INF                  # a few special values
    x[1, :] = 0x8000                         # all -0: the identity +0 decides the sign
    beats = [[int(w) for w in x[r, b * lanes:(b + 1) * lanes]] for r in range(rows)
             for b in range(B)]
    got, accepted = [], []

    async def tb(ctx):
        k = cyc = 0
        while len(got) < rows:
            ctx.set(dut.o.ready, rnd.random() < p_ready)
            send = k < len(beats) and rnd.random() < p_valid
            ctx.set(dut.i.valid, send)
            if send:
                ctx.set(dut.i.payload, beats[k])
            _, _, iv, ir, ov, ordy, od = await ctx.tick().sample(
                dut.i.valid, dut.i.ready, dut.o.valid, dut.o.ready, dut.o.payload)
            if iv and ir:
                k += 1
                accepted.append(cyc)
            if ov and ordy:
                got.append(int(od))
            cyc += 1
            assert cyc < 50 * len(beats) + 200, f"stuck: {k} beats in, {len(got)} rows out"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    ops = {"add": fp16.add, "max": fp16.max}
    want = F.reduce_row(ops[op], x, 0 if op == "add" else fp16.NEG_INF, lanes=lanes, slots=slots)
    return np.array(got, np.uint16), np.asarray(want, np.uint16), accepted


@pytest.mark.parametrize("op,n,lanes,slots", [
    ("add", 16, 2, 4), ("max", 16, 2, 4), ("add", 12, 1, 3), ("max", 8, 4, 2),
    ("add", 4, 4, 4), ("add", 24, 2, 5), ("max", 2, 1, 4),
])
def test_row_reduce_order_and_backpressure(op, n, lanes, slots):
    seed = SEED * 7919 + n * 31 + lanes * 7 + slots
    print(f"seed {seed}")
    got, want, _ = _reduce_sim(op, n, lanes, slots, rows=6, seed=seed, p_valid=0.7, p_ready=0.5)
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("op", ["add", "max"])
def test_row_reduce_one_beat_per_cycle(op):
    # slots >= operator latency: every beat accepted on consecutive cycles, rows
    # back to back, and the latency property is the measured one
    seed = SEED + 11
    print(f"seed {seed}")
    got, want, accepted = _reduce_sim(op, 16, 2, 4, rows=5, seed=seed, p_valid=1.0, p_ready=1.0)
    assert got.tolist() == want.tolist()
    assert accepted == list(range(len(accepted)))


@pytest.mark.parametrize("cls", [ExpUnit, GeluUnit])
@pytest.mark.parametrize("kw,msg", [
    ({"lanes": 0}, r"^lanes must be an integer in 1\.\.256, not 0$"),
    ({"lanes": 257}, r"^lanes must be an integer in 1\.\.256, not 257$"),
    ({"lanes": 100000}, r"^lanes must be an integer in 1\.\.256, not 100000$"),
    ({"lanes": True}, r"^lanes must be an integer in 1\.\.256, not True$"),
    ({"degree": 0}, r"^degree must be an integer in 1\.\.8, not 0$"),
    ({"degree": 9}, r"^degree must be an integer in 1\.\.8, not 9$"),
])
def test_elementwise_params(cls, kw, msg):
    with pytest.raises(ValueError, match=msg):
        cls(**kw)


@pytest.mark.parametrize("cls", [SoftmaxUnit, LayerNormUnit])
@pytest.mark.parametrize("kw,msg", [
    ({"lanes": 3}, r"^lanes must be a power of two in 1\.\.256, not 3$"),
    ({"lanes": 512, "n": 512}, r"^lanes must be a power of two in 1\.\.256, not 512$"),
    ({"n": 10, "lanes": 4}, r"^n must be a multiple of lanes \(4\) in 1\.\.8192, not 10$"),
    ({"n": 0}, r"^n must be a multiple of lanes \(2\) in 1\.\.8192, not 0$"),
    ({"n": 8194}, r"^n must be a multiple of lanes \(2\) in 1\.\.8192, not 8194$"),
    ({"n": 100000}, r"^n must be a multiple of lanes \(2\) in 1\.\.8192, not 100000$"),
    ({"slots": 0}, r"^slots must be an integer in 1\.\.64, not 0$"),
    ({"slots": 65}, r"^slots must be an integer in 1\.\.64, not 65$"),
    ({"slots": 100000}, r"^slots must be an integer in 1\.\.64, not 100000$"),
])
def test_row_params(cls, kw, msg):
    with pytest.raises(ValueError, match=msg):
        cls(**kw)


def test_layernorm_specific_params():
    with pytest.raises(ValueError, match=r"^n must be exactly representable in binary16, not 2049$"):
        LayerNormUnit(n=2049, lanes=1)
    with pytest.raises(ValueError, match=r"^eps must be a binary16 bit pattern in 0\.\.65535, not -1$"):
        LayerNormUnit(eps=-1)
    with pytest.raises(ValueError, match=r"^eps must be a binary16 bit pattern in 0\.\.65535, not 65536$"):
        LayerNormUnit(eps=65536)
    assert LayerNormUnit(eps=0x0001).eps == 0x0001 and LayerNormUnit(eps=0x7BFF).eps == 0x7BFF


# eps as the golden model (models.fp16.functions.check_eps) requires it: a positive finite
# binary16 value; a constant row would give 0 / sqrt(0 + 0) = NaN with eps = 0.
@pytest.mark.parametrize("eps,shown", [(0x0000, "0.0"), (0x8000, "-0.0"), (0x7C00, "inf"),
                                       (0xFC00, "-inf"), (0x7E00, "nan"), (0x7C01, "nan"),
                                       (0xBC00, "-1.0"), (0x8001, "-5.96")])
def test_layernorm_eps_must_be_positive_finite(eps, shown):
    with pytest.raises(ValueError, match=rf"^eps must be a positive finite binary16 pattern in "
                                         rf"0x0001\.\.0x7BFF \(2\*\*-24\.\.65504\), "
                                         rf"not 0x{eps:04X} \({re.escape(shown)}"):
        LayerNormUnit(eps=eps)
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
        blocks[name].build(small=True)._MustUse__silence = True


@pytest.mark.parametrize("cls", [ExpUnit, GeluUnit])
@pytest.mark.parametrize("degree", [1, 4, 8])
def test_latency_of_equals_the_built_units(cls, degree):
    assert cls.latency_of(degree) == cls(degree=degree).latency
