# amaranth: UnusedElaboratable=no
"""Stream components (rtl/stream.py): Queue and Fork in the Amaranth simulator, under
random input gaps and backpressure; parameter errors."""

import random

import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from hyflexpim.rtl.stream import Fork, Queue


def _run(dut, outputs, words, seed, p_valid, p_ready, max_cycles=2000):
    """Offer ``words`` on ``dut.i``; every stream of ``outputs`` is ready with
    ``p_ready``. Returns (received per output, cycles of the transfers on ``i``,
    transfers per cycle of each output)."""
    rnd = random.Random(seed)
    got = [[] for _ in outputs]
    accepted = []

    async def bench(ctx):
        k = cycle = 0
        offering = False
        while any(len(g) < len(words) for g in got):
            if not offering and k < len(words) and rnd.random() < p_valid:
                offering = True
                ctx.set(dut.i.payload, words[k])
            ctx.set(dut.i.valid, offering)
            for o in outputs:
                ctx.set(o.ready, rnd.random() < p_ready)
            if offering and ctx.get(dut.i.ready):
                offering = False
                k += 1
                accepted.append(cycle)
            for g, o in zip(got, outputs):
                if ctx.get(o.valid) and ctx.get(o.ready):
                    g.append(ctx.get(o.payload))
            await ctx.tick()
            cycle += 1
            assert cycle < max_cycles, f"stuck: {k} in, {[len(g) for g in got]} out"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, accepted


@pytest.mark.parametrize("depth", [1, 2, 3, 8])
def test_queue_keeps_order_under_backpressure(depth):
    dut = Queue(12, depth)
    words = [random.Random(depth).getrandbits(12) for _ in range(200)]
    (got,), _ = _run(dut, [dut.o], words, seed=depth, p_valid=0.7, p_ready=0.5)
    assert got == words


def test_queue_one_word_per_cycle_from_depth_3():
    dut = Queue(8, 3)
    words = list(range(100))
    (got,), accepted = _run(dut, [dut.o], words, seed=1, p_valid=1.0, p_ready=1.0)
    assert got == words and accepted == list(range(100))


def test_fork_every_output_gets_every_payload_in_order():
    lay = data.StructLayout({"a": 8, "b": 4})
    dut = Fork(lay, 3)
    words = [{"a": k & 0xFF, "b": k & 0xF} for k in range(150)]
    got, _ = _run(dut, list(dut.o), words, seed=5, p_valid=0.8, p_ready=0.4, max_cycles=20000)
    for g in got:
        assert [(int(v.a), int(v.b)) for v in g] == [(w["a"], w["b"]) for w in words]


def test_fork_one_payload_per_cycle_when_all_ready():
    dut = Fork(8, 2)
    words = list(range(64))
    got, accepted = _run(dut, list(dut.o), words, seed=2, p_valid=1.0, p_ready=1.0)
    assert got == [words, words] and accepted == list(range(64))


def test_fork_valid_does_not_depend_on_ready():
    # an output that took the payload waits; the other still sees valid
    dut = Fork(8, 2)
    seen = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 7)
        ctx.set(dut.o[0].ready, 1)
        ctx.set(dut.o[1].ready, 0)
        seen.append((ctx.get(dut.o[0].valid), ctx.get(dut.o[1].valid), ctx.get(dut.i.ready)))
        await ctx.tick()
        seen.append((ctx.get(dut.o[0].valid), ctx.get(dut.o[1].valid), ctx.get(dut.i.ready)))
        ctx.set(dut.o[1].ready, 1)
        seen.append((ctx.get(dut.o[0].valid), ctx.get(dut.o[1].valid), ctx.get(dut.i.ready)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [(1, 1, 0), (0, 1, 0), (0, 1, 1)]


@pytest.mark.parametrize("call, msg", [
    (lambda: Queue(8, 0), r"^depth must be an integer in 1\.\.65536, not 0$"),
    (lambda: Fork(8, 1), r"^n must be an integer in 2\.\.64, not 1$"),
    (lambda: Fork(8, 2.0), r"^n must be an integer in 2\.\.64, not 2\.0$"),
])
def test_parameter_errors(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()
