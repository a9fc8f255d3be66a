# amaranth: UnusedElaboratable=no
"""Digital PIM controller: parameters, array signature, registry, and the slot-pattern and
shift-and-add units in the Amaranth simulator against the golden model's weights."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hyflexpim.base import ParameterTypeError
from hyflexpim.models import digital_pim as D
from hyflexpim.rtl.digital_pim import (DigitalPimController, DigitalArraySignature, SlotPattern,
                                       WindowSums)
from hyflexpim.sim.blocks import all_blocks

# ------------------------------------------------------------------ parameters

@pytest.mark.parametrize("kw,exc,message", [
    (dict(arrays=3), ValueError, r"^arrays must be a power of two in 1\.\.1024, not 3$"),
    (dict(arrays=2.0), ParameterTypeError, r"^arrays must be a power of two in 1\.\.1024, not 2\.0$"),
    (dict(cols=48), ValueError, r"^cols must be a power of two in 16\.\.4096, not 48$"),
    (dict(rows=16), ValueError, r"^rows must be an integer in 17\.\.65536, not 16$"),
    (dict(head_dim=1), ValueError, r"^head_dim must be an integer in 2\.\.1024, not 1$"),
    (dict(max_seq=0), ValueError, r"^max_seq must be an integer in 1\.\.65536, not 0$"),
    (dict(heads=0), ValueError, r"^heads must be an integer in 1\.\.64, not 0$"),
    (dict(lanes=3), ValueError, r"^lanes must be a power of two in 1\.\.64, not 3$"),
    (dict(lanes=128), ValueError, r"^lanes must be a power of two in 1\.\.64, not 128$"),
])
def test_bad_parameters(kw, exc, message):
    with pytest.raises(exc, match=message):
        DigitalPimController(**kw)


def test_array_signature():
    sig = DigitalArraySignature(4, 64, 32)
    assert sig == DigitalArraySignature(4, 64, 32) and sig != DigitalArraySignature(2, 64, 32)
    assert repr(sig) == "DigitalArraySignature(arrays=4, rows=64, cols=32)"
    assert sig.members["wdata"].shape.length == 4
    with pytest.raises(ValueError, match=r"^cols must be an integer in 1\.\.4096, not 0$"):
        DigitalArraySignature(4, 64, 0)


def test_registered_block():
    blk = all_blocks()["digital_pim"]
    comp = blk.build(small=True)
    assert comp.layout.arrays == 2 and comp.pim.signature == DigitalArraySignature(2, 32, 32)


# ------------------------------------------------------------------ units

def _simulate(dut, cases, check):
    sim = Simulator(dut)

    async def tb(ctx):
        for case in cases:
            for port, value in case.items():
                if port in dut.signature.members:
                    ctx.set(getattr(dut, port), value)
            await ctx.delay(1e-9)
            check(ctx, case)

    sim.add_testbench(tb)
    sim.run()


def _slot_stream(stat, strm):
    """Model slot bits of products (stat[k], strm[k]): A = NOT stat_i, B = NOT strm_j."""
    sb = D._element_bits(np.asarray(stat))              # (W, 8)
    tb = D._element_bits(np.asarray(strm))
    a = 1 - np.repeat(sb, 8, axis=1)                    # slot 8 i + j -> stat bit i
    b = 1 - np.tile(tb, (1, 8))                         # slot 8 i + j -> strm bit j
    return a.reshape(-1), b.reshape(-1)


@pytest.mark.parametrize("slots", [5, 10, 21, 85, 341])
def test_slot_pattern_matches_the_model_layout(slots):
    rng = np.random.default_rng(slots)
    dut = SlotPattern(slots)
    W = dut.windows
    cases = []
    for off in sorted({0, 1, 21, 63, *rng.integers(0, 64, 4).tolist()}):
        cases.append({"stat": rng.integers(0, 256, W).tolist(), "strm": rng.integers(0, 256, W).tolist(),
                      "offset": off})

    def check(ctx, case):
        a, b = _slot_stream(case["stat"], case["strm"])
        o = case["offset"]
        for port, want in (("a_bits", a), ("b_bits", b)):
            got = ctx.get(getattr(dut, port))
            assert [(got >> k) & 1 for k in range(slots)] == want[o:o + slots].tolist()

    _simulate(dut, cases, check)


@pytest.mark.parametrize("slots", [5, 10, 85, 341])
def test_window_sums_weigh_the_partial_product_bits(slots):
    rng = np.random.default_rng(slots + 1)
    dut = WindowSums(slots)
    W = dut.windows
    w = D.product_weights().reshape(-1)
    cases = [{"bits": int(rng.integers(0, 2, slots) @ (1 << np.arange(slots, dtype=object))),
              "offset": int(o)} for o in (0, 1, 63, *rng.integers(0, 64, 3))]
    cases.append({"bits": (1 << slots) - 1, "offset": 0})

    def check(ctx, case):
        bits = [(case["bits"] >> k) & 1 for k in range(slots)]
        aligned = [0] * case["offset"] + bits + [0] * (64 * W)
        for k in range(W):
            want = int(np.dot(aligned[64 * k:64 * k + 64], w))
            assert ctx.get(dut.sums[k]) == want

    _simulate(dut, cases, check)


def test_window_sums_full_products_are_int8_products():
    dut = WindowSums(64)
    x = [-128, -1, 0, 1, 127, -77]
    cases = []
    for a in x:
        for b in x:
            bits = (D._element_bits(a)[:, None] & D._element_bits(b)[None, :]).reshape(-1)
            cases.append({"bits": sum(int(v) << k for k, v in enumerate(bits)), "offset": 0,
                          "want": a * b})

    def check(ctx, case):
        assert ctx.get(dut.sums[0]) == case["want"]

    _simulate(dut, cases, check)
