# amaranth: UnusedElaboratable=no
"""Quick Amaranth-simulator checks of the bus fabric (rtl/bus.py); cocotb runs in test_bus_cocotb.py."""

import random
import re

import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hyflexpim.rtl.bus import (
    Kind, packet_layout, header_layout, RoundRobinArbiter, SharedBus, InnerBus, GlobalBus,
    PartialSumAggregator, AGG_REG_PARTS, AGG_REG_DEST, config_word,
)
from hyflexpim.sim.blocks import get_block


def _pkt(layout, dest, kind=Kind.ACTIVATION, tag=0, data=0, source=0):
    return layout.const({"header": {"source": source, "destination": dest, "kind": kind,
                                    "tag": tag}, "data": data})


def _tuple(v):
    """(source, destination, kind, tag, data) of a packet view or constant."""
    return (int(v.header.source), int(v.header.destination), Kind(v.header.kind),
            int(v.header.tag), int(v.data))


# --- parameter checks -------------------------------------------------------------------

@pytest.mark.parametrize("kw, msg", [
    (dict(n_ports=1), r"^n_ports must be an integer in 2\.\.65536, not 1$"),
    (dict(n_ports=9, addr_width=3), r"^n_ports must be an integer in 2\.\.8 \(addr_width 3\), not 9$"),
    (dict(n_ports=4, data_width=16), r"^data_width must be an integer in 32\.\.1024, not 16$"),
    (dict(n_ports=4, data_width=36), r"^data_width must be a multiple of 8 in 32\.\.1024, not 36$"),
    (dict(n_ports=4, fifo_depth=1), r"^fifo_depth must be an integer in 2\.\.1024, not 1$"),
    (dict(n_ports=4, tag_width=0), r"^tag_width must be an integer in 1\.\.32, not 0$"),
    (dict(n_ports=4, addr_width=0), r"^addr_width must be an integer in 1\.\.16, not 0$"),
    (dict(n_ports=True), r"^n_ports must be an integer in 2\.\.65536, not True$"),
])
def test_bus_parameter_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        InnerBus(**kw)


def test_global_bus_parameter_errors():
    with pytest.raises(ValueError, match=r"^n_pus must be an integer in 1\.\.65535, not 0$"):
        GlobalBus(0)
    with pytest.raises(ValueError, match=r"^n_pus must be an integer in 1\.\.3 \(addr_width 2\), not 4$"):
        GlobalBus(4, addr_width=2)
    with pytest.raises(ValueError, match=r"^index must be an integer in 0\.\.1, not 2$"):
        GlobalBus(2).pu_port(2)


@pytest.mark.parametrize("kw, msg", [
    (dict(slots=3), r"^slots must be a power of two in 1\.\.65536, not 3$"),
    (dict(slots=512, tag_width=8), r"^slots must be a power of two in 1\.\.256 \(tag_width 8\), not 512$"),
    (dict(max_parts=0), r"^max_parts must be an integer in 1\.\.65535, not 0$"),
    (dict(result_width=40), r"^result_width must be an integer in 1\.\.32, not 40$"),
    (dict(port=32), r"^port must be an integer in 0\.\.31, not 32$"),
    (dict(init_parts=17), r"^init_parts must be an integer in 1\.\.16, not 17$"),
    (dict(init_dest=-1), r"^init_dest must be an integer in 0\.\.31, not -1$"),
])
def test_aggregator_parameter_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        PartialSumAggregator(**kw)


def test_arbiter_and_layout_errors():
    with pytest.raises(ValueError, match=r"^n must be an integer in 1\.\.1024, not 0$"):
        RoundRobinArbiter(0)
    with pytest.raises(ValueError, match=r"^addr_width must be an integer in 1\.\.16, not 17$"):
        header_layout(addr_width=17)
    with pytest.raises(ValueError, match=r"^register must be an integer in 0\.\.255, not 256$"):
        config_word(256, 0)


def test_packet_layout_fields():
    lay = packet_layout(addr_width=3, data_width=64, tag_width=6)
    assert lay.size == 3 + 3 + 2 + 6 + 64
    v = lay.const({"header": {"source": 5, "destination": 2, "kind": Kind.RESULT, "tag": 33},
                   "data": 2 ** 63 + 7}).as_bits()
    # data follows the header, fields in declaration order from bit 0
    assert v & 7 == 5 and (v >> 3) & 7 == 2 and (v >> 6) & 3 == 2 and (v >> 8) & 63 == 33
    assert v >> 14 == 2 ** 63 + 7


def test_blocks_registered_and_build():
    for name in ("inner_bus", "global_bus", "psum_agg"):
        blk = get_block(name)
        blk.build(**blk.small)


# --- arbiter ----------------------------------------------------------------------------

def test_arbiter_round_robin_bound():
    """Random request patterns: every grant goes to a requester, and a continuous
    requester waits at most n - 1 grants (compared with a plain Python rotation)."""
    n = 5
    dut = RoundRobinArbiter(n)
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)

    async def tb(ctx):
        waits = [0] * n
        first = 0
        worst = 0
        for _ in range(600):
            req = rng.getrandbits(n) | (1 << 2 if rng.random() < 0.8 else 0)
            ctx.set(dut.request, req)
            ctx.set(dut.advance, 1)
            expected = next(((first + k) % n for k in range(n) if req >> ((first + k) % n) & 1), None)
            assert ctx.get(dut.valid) == (req != 0)
            if req:
                g = ctx.get(dut.grant)
                assert g == expected
                first = (g + 1) % n
                for k in range(n):
                    if k == g or not req >> k & 1:
                        waits[k] = 0
                    else:
                        waits[k] += 1
                        worst = max(worst, waits[k])
            else:
                waits = [0] * n
            await ctx.tick()
        assert worst <= dut.wait_bound

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


# --- bus --------------------------------------------------------------------------------

def _run_bus(dut, seed, n_packets=60, p_valid=0.7, p_ready=0.6, bad_every=0):
    """Random traffic on every port; returns (sent, received, bad drops, cycles)."""
    rng = random.Random(seed)
    lay = dut.layout
    n = dut.n_ports
    sent = {(s, d): [] for s in range(n) for d in range(2 ** dut.addr_width)}
    got = {(s, d): [] for s in range(n) for d in range(n)}
    todo = [n_packets] * n
    state = {"bad": 0, "done": False, "cycles": 0}

    def make(k, j):
        if bad_every and j % bad_every == bad_every - 1:
            d = rng.randrange(n, 2 ** dut.addr_width)
        else:
            d = rng.randrange(n)
        return d, (rng.randrange(n), d, Kind(rng.randrange(4)), rng.getrandbits(dut.tag_width),
                   rng.getrandbits(dut.data_width))

    async def tb(ctx):
        cur = [None] * n
        idle = 0
        while idle < 40:
            for k in range(n):
                if cur[k] is None and todo[k] and rng.random() < p_valid:
                    cur[k] = make(k, n_packets - todo[k])
                ctx.set(dut.i[k].valid, cur[k] is not None)
                if cur[k] is not None:
                    src, d, kind, tag, word = cur[k][1]
                    ctx.set(dut.i[k].payload, _pkt(lay, d, kind, tag, word, source=src))
                ctx.set(dut.o[k].ready, rng.random() < p_ready)
            await ctx.delay(1e-9)
            for k in range(n):
                if ctx.get(dut.o[k].valid) and ctx.get(dut.o[k].ready):
                    t = _tuple(ctx.get(dut.o[k].payload))
                    got[(t[0], k)].append(t)
                    assert t[1] == k
            if ctx.get(dut.mon.bad_dest):
                state["bad"] += 1
            taken = [ctx.get(dut.i[k].valid) and ctx.get(dut.i[k].ready) for k in range(n)]
            await ctx.tick()
            state["cycles"] += 1
            busy = False
            for k in range(n):
                if taken[k]:
                    d, t = cur[k]
                    # the bus stamps the source: the expected word has source = k
                    sent[(k, d)].append((k,) + t[1:])
                    cur[k] = None
                    todo[k] -= 1
                busy |= cur[k] is not None or todo[k] > 0
            idle = 0 if busy else idle + 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return sent, got, state


@pytest.mark.parametrize("n_ports, depth, bad_every", [(3, 2, 0), (4, 4, 7), (5, 3, 0)])
def test_bus_random_traffic_scoreboard(n_ports, depth, bad_every):
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    addr_width = 3 if bad_every else None
    dut = InnerBus(n_ports, data_width=32, fifo_depth=depth, addr_width=addr_width, tag_width=4)
    sent, got, state = _run_bus(dut, seed, bad_every=bad_every)
    total = 0
    for s in range(n_ports):
        for d in range(n_ports):
            assert got[(s, d)] == sent[(s, d)], f"pair {s}->{d} (seed {seed})"
            total += len(got[(s, d)])
    dropped = sum(len(v) for (s, d), v in sent.items() if d >= n_ports)
    assert state["bad"] == dropped
    assert total + dropped == 60 * n_ports
    if bad_every:
        assert dropped > 0


def test_bus_latency_uncontended():
    dut = InnerBus(4, fifo_depth=4)
    lay = dut.layout

    async def tb(ctx):
        for k in range(4):
            ctx.set(dut.o[k].ready, 1)
        await ctx.tick()
        ctx.set(dut.i[1].valid, 1)
        ctx.set(dut.i[1].payload, _pkt(lay, 3, data=0xABCD))
        await ctx.tick()           # transfer happens on this edge
        ctx.set(dut.i[1].valid, 0)
        cycles = 0
        while not ctx.get(dut.o[3].valid):
            await ctx.tick()
            cycles += 1
            assert cycles < 20
        assert int(ctx.get(dut.o[3].payload).data) == 0xABCD
        assert int(ctx.get(dut.o[3].payload).header.source) == 1
        assert cycles + 1 == dut.latency

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


# --- aggregator -------------------------------------------------------------------------

def _run_agg(dut, packets, p_ready, seed):
    rng = random.Random(seed)
    lay = dut.layout
    out = []

    async def tb(ctx):
        idx = 0
        idle = 0
        while idle < 20:
            if idx < len(packets):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, packets[idx])
            else:
                ctx.set(dut.i.valid, 0)
            ctx.set(dut.o.ready, rng.random() < p_ready)
            await ctx.delay(1e-9)
            took = ctx.get(dut.i.valid) and ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                out.append(_tuple(ctx.get(dut.o.payload)))
            await ctx.tick()
            if took:
                idx += 1
            idle = idle + 1 if idx >= len(packets) else 0

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return out


@pytest.mark.parametrize("p_ready", [1.0, 0.3])
def test_aggregator_random_interleaved(p_ready):
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    dut = PartialSumAggregator(slots=8, max_parts=4, port=6, init_dest=1, tag_width=4)
    lay = dut.layout
    parts = 3
    pk = [_pkt(lay, 6, Kind.CONFIG, data=config_word(AGG_REG_PARTS, parts)),
          _pkt(lay, 6, Kind.CONFIG, data=config_word(AGG_REG_DEST, 2))]
    # two rounds for each of 8 outputs, partials interleaved at random (a round of a slot
    # completes before that slot's next round starts), plus ignored activation packets
    queues = {t: [rng.randrange(-2 ** 31, 2 ** 31) for _ in range(2 * parts)] for t in range(8)}
    expected = {t: [] for t in range(8)}
    for t, q in queues.items():
        for r in range(2):
            expected[t].append(sum(q[r * parts:(r + 1) * parts]))
    while any(queues.values()):
        t = rng.choice([k for k, q in queues.items() if q])
        v = queues[t].pop(0)
        pk.append(_pkt(lay, 6, Kind.PARTIAL_SUM, tag=t, data=v & 0xFFFFFFFF))
        if rng.random() < 0.1:
            pk.append(_pkt(lay, 6, Kind.ACTIVATION, tag=t, data=rng.getrandbits(32)))
    out = _run_agg(dut, pk, p_ready, seed)
    assert len(out) == 16
    by_tag = {t: [] for t in range(8)}
    for src, dst, kind, tag, val in out:
        assert (src, dst, kind) == (6, 2, Kind.RESULT)
        by_tag[tag].append(val)
    for t in range(8):
        want = [((s + 2 ** 31) % 2 ** 32) - 2 ** 31 for s in expected[t]]
        assert [v - 2 ** 32 if v >= 2 ** 31 else v for v in by_tag[t]] == want, f"seed {seed}"


def test_aggregator_back_to_back_same_slot():
    """Consecutive partials of one slot (read-after-write through the transparent port)."""
    dut = PartialSumAggregator(slots=4, max_parts=8, init_parts=5, tag_width=2)
    lay = dut.layout
    vals = [1, 2, 3, 4, 5, 10, 20, 30, 40, 50]
    out = _run_agg(dut, [_pkt(lay, 0, Kind.PARTIAL_SUM, tag=3, data=v) for v in vals], 1.0, 0)
    assert [o[4] for o in out] == [15, 150]
    assert all(o[3] == 3 for o in out)
