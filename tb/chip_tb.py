"""cocotb testbench of the chip top (``Chip``): two layers on two PUs over the global bus.

Layer 1 (``m1`` x ``n1``) runs on PU 0: arrays, inner bus, aggregation, digital module
(dequantisation, GELU, requantisation to INT8). Its activation words leave PU 0 by the
bridge with global destination PU 1, cross the global bus, and PU 1's bridge scatters
them to layer 2's arrays (``n1`` x ``n2``); PU 1's digital module (GELU on or off by
test) sends the final INT8 words to the IO port. Every word the IO port receives is
compared with the golden chain
``to_int8(g2(from_int32(pm2.run(to_int8(gelu(from_int32(pm1.run(x), s1)), s2)), s3)), s4)``
(in order, nothing missing or extra); the parts are those of ``tb/pu_tb.py``
(:class:`~hyflexpim.tb.pu_tb.Layer`, :func:`~hyflexpim.tb.pu_tb.pu_config`, crossbar
banks, the IO source and sink, the scoreboard). A
:class:`~hyflexpim.tb.lib.StreamMonitor` watches the global bus's PU 0 -> PU 1 traffic
through the hierarchy and checks it word by word too.

The chip under test is rebuilt from the registry (:func:`hyflexpim.tb.lib.design`); the
PU geometry comes from ``ProcessingUnit(**chip.pu_params)`` and the global addresses
from the chip (``pu_port``, ``IO_PORT``).

Split layer (``split_layer_*``): one ``m`` x ``n`` layer mapped by ``program_matrix``;
the tiles of the first half of the row chunks sit on PU 0's arrays, the rest on PU 1's
(:class:`PuShare`; each array answered by its tile's crossbar model). The IO side sends
each input word to the PU holding its chunk; PU 0's aggregator sends its sums to its
bridge, whose RESULT route turns them into PARTIAL_SUM packets for PU 1, whose aggregator
adds them as one more part and sends the INT32 RESULTs to the IO port, each compared
with ``program_matrix(W, modes).run(x)`` of the whole layer.

Parameters: ``HYFLEXPIM_PARAMS`` (JSON: ``m1``, ``n1``, ``n2``, ``n_slc1``, ``n_slc2``,
``vectors``; split layer: ``m``, ``n``, ``n_slc``),
``HYFLEXPIM_SEED``; figures to
``HYFLEXPIM_CHIP_REPORT`` when set.
"""

import os

import numpy as np

import cocotb

from hyflexpim.rtl.bus import Kind, AggReg
from hyflexpim.rtl.pu import BridgeReg, ProcessingUnit, route_value
from hyflexpim.tb import lib
from hyflexpim.tb.pu_tb import (Layer, LayerScoreboard, TB, config, crossbar_bank,
                                cycles_per_vector, packet, pu_config, out_words,
                                input_vectors, int8_stats, BER)

P = lib.params()
CHIP = lib.design()
PU = ProcessingUnit(**CHIP.pu_params)           # the geometry of every PU of the chip
PU._MustUse__silence = True
N_PUS = CHIP.n_pus
REPORT = os.environ.get("HYFLEXPIM_CHIP_REPORT")


def pu0_monitor(dut, clock, check, p=0):
    """A monitor of PU ``p``'s (default 0) output on the global bus (``bus.i[p + 1]``);
    ``check(pkt)`` gets every packet."""
    return lib.StreamMonitor(lib.core(dut).bus, f"i__{CHIP.pu_port(p)}", clock, layout=CHIP.layout,
                             callback=lambda value, cycle: check(packet(value)))


class Handoff:
    """Every ACTIVATION word PU 0 sends to PU 1 must be the next word of layer 1's
    golden INT8 output."""

    def __init__(self, layer, xs, dest=None, upstream=()):
        # ``upstream``: the layers before ``layer`` (its inputs are their golden chain's)
        def chain(x):
            for up in upstream:
                x = up.golden(x)
            return layer.golden(x)
        self.dest = CHIP.pu_port(1) if dest is None else dest
        self.expected = [w for x in xs for w in out_words(PU, chain(x), layer.out_words)]
        self.checked = 0

    def check(self, pkt):
        _, dst, kind, tag, data = pkt
        assert (dst, kind) == (self.dest, Kind.ACTIVATION), f"PU sent {pkt}"
        assert self.checked < len(self.expected), f"extra word {pkt}"
        exp = self.expected[self.checked]
        assert (tag, data) == exp, (f"PU 0 -> PU 1 word {self.checked}: RTL "
                                    f"({tag}, {data:#010x}), golden ({exp[0]}, {exp[1]:#010x})")
        self.checked += 1


async def two_layers(dut, name, ber, gelu2, p_ready=0.7, p_valid=1.0):
    seed = lib.seed(name)
    rng = np.random.default_rng(seed)
    rows, slc = PU.params.rows, PU.params.neurons("slc")
    m1, n1, n2 = P.get("m1", 2 * rows), P.get("n1", 12), P.get("n2", 12)
    l1 = Layer(PU, rng, m1, n1, P.get("n_slc1", slc), ber, seed)
    l2 = Layer(PU, rng, n1, n2, P.get("n_slc2", slc), ber, seed + 7)
    xs = input_vectors(seed, P.get("vectors", 2), m1)
    l1.set_sfu(xs, gelu=True)
    l2.set_sfu(np.array([l1.golden(x) for x in xs]), gelu=gelu2)
    pu0, pu1 = CHIP.pu_port(0), CHIP.pu_port(1)
    tb = TB(dut, seed, [l1, l2], PU, CHIP.layout, p_valid=p_valid, p_ready=p_ready, source=pu1)
    banks = [crossbar_bank(dut, tb.clock, l1, base=0),
             crossbar_bank(dut, tb.clock, l2, base=PU.n_arrays)]
    await tb.start()
    hand = Handoff(l1, xs)
    pu0_monitor(dut, tb.clock, hand.check)
    config_packets = (pu_config(l1, PU, pu0, act_route=pu1)
                      + pu_config(l2, PU, pu1, act_route=CHIP.IO_PORT))
    bound = 8 * len(xs) * cycles_per_vector(PU, "mlc") + 5000
    start = await tb.run(config_packets, xs, pu0, bound)
    sb = tb.scoreboard
    assert hand.checked == len(hand.expected), \
        f"PU 0 -> PU 1: {hand.checked} of {len(hand.expected)} words seen"
    lat = [v[4] - v[3] for v in sb.vectors]
    lib.report("chip", REPORT, test=name, ber=ber, m1=m1, n1=n1, n2=n2, rows=rows,
               cols=PU.params.cols, arrays1=len(l1.tiles), arrays2=len(l2.tiles),
               vectors=len(xs), first_vector_latency=lat[0],
               total_cycles=sb.vectors[-1][4] - start, handoff_words=hand.checked,
               gelu2=gelu2, **int8_stats([l1, l2], xs))
    for bank, layer in zip(banks, (l1, l2)):
        assert bank.samples == 8 * len(xs) * len(layer.tiles)


@cocotb.test()
async def two_layers_noise_off(dut):
    """PU 0 (layer 1 + GELU) -> global bus -> PU 1 (layer 2 + GELU) -> IO: INT8 exact."""
    await two_layers(dut, "two_layers_noise_off", None, True)


@cocotb.test()
async def two_layers_noise_on(dut):
    """Programming noise on both layers, layer 2 without GELU, IO gaps and backpressure."""
    await two_layers(dut, "two_layers_noise_on", BER, False, p_ready=0.4, p_valid=0.7)


class PuShare:
    """The tiles of a split layer that one PU holds (local array ``t`` = ``tiles[t]``),
    in the shape :func:`~hyflexpim.tb.pu_tb.pu_config` and
    :func:`~hyflexpim.tb.pu_tb.crossbar_bank` read (``parts`` stays the whole layer's,
    so every chunk gets a scatter mask, zero for chunks held by the other PU)."""

    chunk = Layer.chunk

    def __init__(self, layer, tiles):
        self.pu, self.tiles, self.parts = PU, tiles, layer.parts
        self.n, self.out_words, self.sfu = layer.n, layer.out_words, None
        self.chunks = sorted({self.chunk(t) for t in range(len(tiles))})


class SplitTB(TB):
    """IO side of a split layer: input words of PU ``p``'s row chunks go to PU ``p``."""

    def __init__(self, *args, dest_of_chunk, **kw):
        super().__init__(*args, **kw)
        self.dest_of_chunk = dest_of_chunk

    def send_vector(self, x, dest):
        words = self.layers[0].words(x)
        for i in self.rng.permutation(len(words)):
            tag, data = words[i]
            self.push(self.dest_of_chunk[tag // PU.words], Kind.ACTIVATION, tag, data)


async def split_layer(dut, name, ber, p_ready=0.7, p_valid=1.0):
    """One ``m`` x ``n`` layer, row chunks 0..parts/2-1 on PU 0, the rest on PU 1."""
    seed = lib.seed(name)
    rng = np.random.default_rng(seed)
    rows = PU.params.rows
    m, n = P.get("m", 4 * rows), P.get("n", 12)
    # the whole layer spans both PUs
    layer = Layer(PU, rng, m, n, P.get("n_slc", PU.params.neurons("slc")), ber, seed,
                  capacity=N_PUS * PU.n_arrays)
    split = layer.parts // 2
    order = sorted(range(len(layer.tiles)), key=layer.chunk)
    shares = [PuShare(layer, [layer.tiles[t] for t in order if (layer.chunk(t) >= split) == p])
              for p in (0, 1)]
    for share in shares:
        assert 0 < len(share.tiles) <= PU.n_arrays, f"a PU holds {len(share.tiles)} tiles"
    xs = input_vectors(seed, P.get("vectors", 2), m)
    pu0, pu1 = CHIP.pu_port(0), CHIP.pu_port(1)
    tb = SplitTB(dut, seed, [layer], PU, CHIP.layout, p_valid=p_valid, p_ready=p_ready,
                 source=pu1, dest_of_chunk=[pu0 if c < split else pu1 for c in range(layer.parts)])
    banks = [crossbar_bank(dut, tb.clock, s, base=p * PU.n_arrays) for p, s in enumerate(shares)]
    await tb.start()
    psums = []

    def partial_sum(pkt):
        assert pkt[1:3] == (pu1, Kind.PARTIAL_SUM), f"PU 0 sent {pkt}"
        psums.append(pkt)

    pu0_monitor(dut, tb.clock, partial_sum)
    # PU 0: its chunks' sums leave as PARTIAL_SUM for PU 1; PU 1 adds one more part
    config_packets = pu_config(shares[0], PU, pu0) + pu_config(shares[1], PU, pu1)
    for pu, parts, route in ((pu0, len(shares[0].chunks), route_value(pu1, Kind.PARTIAL_SUM)),
                             (pu1, len(shares[1].chunks) + 1,
                              route_value(CHIP.IO_PORT, Kind.RESULT))):
        config_packets += [config(pu, AggReg.PARTS, parts, port=PU.agg_port),
                           config(pu, BridgeReg.ROUTE, route, index=Kind.RESULT.value)]
    bound = 8 * len(xs) * cycles_per_vector(PU, "mlc") + 5000
    start = await tb.run(config_packets, xs, None, bound)
    sb = tb.scoreboard
    assert len(psums) == len(xs) * n, \
        f"PU 0 -> PU 1: {len(psums)} partial sums, expected {len(xs) * n}"
    lat = [v[4] - v[3] for v in sb.vectors]
    lib.report("chip", REPORT, test=name, ber=ber, m=m, n=n, rows=rows, cols=PU.params.cols,
               arrays_pu0=len(shares[0].tiles), arrays_pu1=len(shares[1].tiles),
               vectors=len(xs), first_vector_latency=lat[0],
               total_cycles=sb.vectors[-1][4] - start, partial_sums=len(psums),
               saturated_conversions=int(layer.pm.saturated(xs)))
    for bank, share in zip(banks, shares):
        assert bank.samples == 8 * len(xs) * len(share.tiles)


@cocotb.test()
async def split_layer_noise_off(dut):
    """One layer over two PUs: PU 0's sums -> PARTIAL_SUM -> PU 1's aggregator -> IO."""
    await split_layer(dut, "split_layer_noise_off", None)


@cocotb.test()
async def split_layer_noise_on(dut):
    """The same with programming noise, IO gaps and backpressure."""
    await split_layer(dut, "split_layer_noise_on", BER, p_ready=0.4, p_valid=0.7)


def _bank(dut, clock, placed):
    """A crossbar bank answering the chip's arrays (global index ``PU p``'s array ``a`` =
    ``p * arrays + a``) from ``placed``: ``{index: crossbar}``, the others tied off."""
    bank = lib.CrossbarBank(dut, clock, PU.params.rows)
    for a in range(N_PUS * PU.n_arrays):
        if a in placed:
            bank.add(f"xbar__{a}", placed[a])
        else:
            bank.tie_off(f"xbar__{a}")
    return bank


@cocotb.test()
async def narrower_layers_after_wider_ones(dut):
    """Two layers (32 x 12 on PU 0 -> 12 x 12 on PU 1, both with the SFU path), then on
    the same chip, without reset, two narrower ones: 16 x 6 on PU 0 -> 6 x 4 on PU 1,
    each on arrays 3 and 2 of its PU in the other cell mode than before (scatter masks,
    tables, PARTS 2 -> 1 on PU 0, OUTPUTS 12 -> 6 / 4 rewritten; arrays 0 and 1 keep the
    wide layers' tables, chunk 1 of PU 0 its mask). Every word PU 0 hands to PU 1 and
    every word at the IO port exact, none extra (no stale TABLE, MASK, PARTS or OUTPUTS
    entry in any word)."""
    seed = lib.seed("narrower_layers_after_wider_ones")
    rng = np.random.default_rng(seed)
    slc = PU.params.neurons("slc")
    pu0, pu1 = CHIP.pu_port(0), CHIP.pu_port(1)
    l1 = Layer(PU, rng, 32, 12, slc, None, seed)
    l2 = Layer(PU, rng, 12, 12, slc, None, seed + 1)
    l3 = Layer(PU, rng, 16, 6, 2, None, seed + 2)
    l4 = Layer(PU, rng, 6, 4, 2, None, seed + 3)
    assert [t.mode for t in l1.tiles] == ["slc", "mlc", "slc", "mlc"]
    assert [t.mode for t in l2.tiles] == ["slc", "mlc"]
    assert [t.mode for t in l3.tiles] == ["slc", "mlc"] == [t.mode for t in l4.tiles]
    xa, xb = input_vectors(seed, 2, 32), input_vectors(seed + 1, 2, 16)
    l1.set_sfu(xa)
    l2.set_sfu(np.array([l1.golden(x) for x in xa]), gelu=False)
    l3.set_sfu(xb)
    l4.set_sfu(np.array([l3.golden(x) for x in xb]))
    n = PU.n_arrays
    tb = TB(dut, seed, [l1, l2], PU, CHIP.layout, p_valid=0.8, p_ready=0.6, source=pu1)
    bank = _bank(dut, tb.clock, {**{t: tile.crossbar for t, tile in enumerate(l1.tiles)},
                                 **{n + t: tile.crossbar for t, tile in enumerate(l2.tiles)}})
    await tb.start()
    hand = Handoff(l1, xa)
    mon = pu0_monitor(dut, tb.clock, hand.check)
    bound = 8 * 2 * cycles_per_vector(PU, "mlc") + 5000
    await tb.run(pu_config(l1, PU, pu0, act_route=pu1)
                 + pu_config(l2, PU, pu1, act_route=CHIP.IO_PORT), xa, pu0, bound)
    assert hand.checked == len(hand.expected)
    assert bank.samples == 8 * len(xa) * (len(l1.tiles) + len(l2.tiles))
    bank.stop()
    # the narrower pair: arrays 3 (SLC, was MLC) and 2 (MLC, was SLC) of each PU
    at = [3, 2]
    bank = _bank(dut, tb.clock, {**{a: t.crossbar for a, t in zip(at, l3.tiles)},
                                 **{n + a: t.crossbar for a, t in zip(at, l4.tiles)}})
    hand = Handoff(l3, xb)
    mon.callback = lambda value, cycle: hand.check(packet(value))
    tb.layers = [l3, l4]
    tb.scoreboard = LayerScoreboard([l3, l4], PU, pu1)
    await tb.run(pu_config(l3, PU, pu0, act_route=pu1, arrays=at)
                 + pu_config(l4, PU, pu1, act_route=CHIP.IO_PORT, arrays=at), xb, pu0, bound)
    assert hand.checked == len(hand.expected)
    assert bank.samples == 8 * len(xb) * (len(l3.tiles) + len(l4.tiles))


def _chain(rng, seed):
    """The two layers of the chip tests below: 32 x 12 on PU 0 -> 12 x 12 on PU 1 (their
    outputs set per round by :func:`_set_out`)."""
    slc = PU.params.neurons("slc")
    l1 = Layer(PU, rng, 32, 12, slc, None, seed)
    l2 = Layer(PU, rng, 12, 12, slc, None, seed + 1)
    return l1, l2


def _set_out(l1, l2, xs, gelu2):
    """Layer 2 INT8 out (GELU ``gelu2``) or INT32 RESULTs (``gelu2`` None)."""
    l1.set_sfu(xs, gelu=True)
    l2.sfu = None
    if gelu2 is not None:
        l2.set_sfu(np.array([l1.golden(x) for x in xs]), gelu=gelu2)


@cocotb.test()
async def long_stall_then_full_rate(dut):
    """The IO port's output held not ready for 5 MLC vector times while the input words
    of two vectors keep arriving (each vector crosses two layers, about 2 vector times
    from its first input word to its last output: the stall outlasts filling every FIFO
    on the path, global bus FIFO depth 4, inner ones 4), then released. Two rounds:
    INT8 out of PU 1's digital module (4 words a vector), then, both PUs configured
    again between vectors, INT32 RESULTs of PU 1's aggregator (12 a vector). Checked:
    no word leaves while held; by the end of the stall every input word was taken, both
    layers' arrays have converted both vectors and PU 0 has handed all its words to PU
    1 (so everything waits inside); after the release every word exact and in order
    against the golden chain, none lost or extra, and the words of both vectors leave
    back to back (one per cycle)."""
    seed = lib.seed("chip_long_stall_then_full_rate")
    rng = np.random.default_rng(seed)
    l1, l2 = _chain(rng, seed)
    xa, xb = input_vectors(seed, 2, 32), input_vectors(seed + 1, 2, 32)
    pu0, pu1 = CHIP.pu_port(0), CHIP.pu_port(1)
    hold = lib.Hold(True)
    tb = TB(dut, seed, [l1, l2], PU, CHIP.layout, source=pu1, backpressure=hold)
    banks = [crossbar_bank(dut, tb.clock, l1, base=0),
             crossbar_bank(dut, tb.clock, l2, base=PU.n_arrays)]
    await tb.start()
    out = []
    check = tb.sink.callback
    tb.sink.callback = lambda value, cycle: (out.append(cycle), check(value, cycle))
    stall = 5 * cycles_per_vector(PU, "mlc")
    for rnd, (xs, gelu2) in enumerate(((xa, True), (xb, None))):
        _set_out(l1, l2, xs, gelu2)
        tb.layers = [l1, l2]
        tb.scoreboard = LayerScoreboard([l1, l2], PU, pu1)
        hand = Handoff(l1, xs)
        if rnd == 0:
            mon = pu0_monitor(dut, tb.clock, hand.check)
        mon.callback = lambda value, cycle, hand=hand: hand.check(packet(value))
        samples = [b.samples for b in banks]
        cfg = (pu_config(l1, PU, pu0, act_route=pu1)
               + pu_config(l2, PU, pu1, act_route=CHIP.IO_PORT))
        released = []

        async def driver():
            sb = tb.scoreboard
            await tb.clock.wait(lambda: len(sb.vectors) >= 2, 100_000, "two vectors")
            hold.held = True
            n_out = len(out)
            await tb.clock.cycles(stall)
            assert len(out) == n_out, "a word left while the output was held"
            assert not tb.source.busy, "input words still queued at the end of the stall"
            for b, layer, s in zip(banks, (l1, l2), samples):
                assert b.samples == s + 8 * 2 * len(layer.tiles), \
                    "the conversions were not all done during the stall"
            assert hand.checked == len(hand.expected), "layer 1's words did not all reach PU 1"
            released.append(len(out))
            hold.held = False

        task = cocotb.start_soon(driver())
        await tb.run(cfg, xs, pu0, 8 * len(xs) * cycles_per_vector(PU, "mlc") + stall + 5000)
        await task
        assert hand.checked == len(hand.expected)
        per_round = 2 * (l2.out_words if gelu2 is not None else l2.n)
        cycles = out[released[0]:released[0] + per_round]
        dut._log.info(f"round {rnd}: {per_round} words after the release at cycles "
                      f"{cycles[0]}..{cycles[-1]}")
        assert len(cycles) == per_round and lib.back_to_back(cycles), \
            f"round {rnd}: {per_round} words after the release at cycles {cycles}"
        hold.held = True
    for b, layer in zip(banks, (l1, l2)):
        assert b.samples == 8 * (len(xa) + len(xb)) * len(layer.tiles)


@cocotb.test()
async def reset_in_every_state(dut):
    """Reset of the whole chip with both PUs configured and idle, half-way through layer
    1's input words, with PU 0's arrays converting, with PU 1's arrays converting (layer
    1's words handed over), and with the outputs of a vector waiting behind the held IO
    output. After each: nothing from before comes out; the registers are at their reset
    values (every scatter mask 0: a vector sent without configuration reaches no array
    of either PU, nothing comes out); then both PUs configured again run two vectors
    exact, PU 1 alternately INT8 (GELU on / off) and INT32 out."""
    seed = lib.seed("chip_reset_in_every_state")
    rng = np.random.default_rng(seed)
    l1, l2 = _chain(rng, seed)
    xs = input_vectors(seed, 2, 32)
    pu0, pu1 = CHIP.pu_port(0), CHIP.pu_port(1)
    hold = lib.Hold(False)
    tb = TB(dut, seed, [l1, l2], PU, CHIP.layout, source=pu1, backpressure=hold)
    banks = [crossbar_bank(dut, tb.clock, l1, base=0),
             crossbar_bank(dut, tb.clock, l2, base=PU.n_arrays)]
    await tb.start()
    got = []
    check = tb.sink.callback
    tb.sink.callback = lambda value, cycle: (got.append(packet(value)), check(value, cycle))
    cpv = cycles_per_vector(PU, "mlc")
    outs = (None, True, False, None, True, None)

    async def configured_run(k):
        _set_out(l1, l2, xs, outs[k])
        tb.layers = [l1, l2]
        tb.scoreboard = LayerScoreboard([l1, l2], PU, pu1)
        cfg = (pu_config(l1, PU, pu0, act_route=pu1)
               + pu_config(l2, PU, pu1, act_route=CHIP.IO_PORT))
        await tb.run(cfg, xs, pu0, 8 * len(xs) * cycles_per_vector(PU, "mlc") + 5000)

    states = ("idle", "input words", "PU 0 converting", "PU 1 converting", "output waiting")
    for k, state in enumerate(states):
        await configured_run(k)
        s0, s1 = banks[0].samples, banks[1].samples
        words = l1.words(xs[0])
        if state == "input words":
            for w in words[:len(words) // 2]:
                tb.push(pu0, Kind.ACTIVATION, *w)
            await tb.clock.wait(lambda: not tb.source.busy, 2000, "the words")
        elif state == "PU 0 converting":
            for w in words:
                tb.push(pu0, Kind.ACTIVATION, *w)
            await tb.clock.wait(lambda: banks[0].samples > s0 + 2, 5000, "a conversion",
                                events=True)
            assert banks[1].samples == s1
        elif state == "PU 1 converting":
            for w in words:
                tb.push(pu0, Kind.ACTIVATION, *w)
            await tb.clock.wait(lambda: banks[1].samples > s1 + 2, 4 * cpv, "a conversion",
                                events=True)
        elif state == "output waiting":
            hold.held = True
            for w in words:
                tb.push(pu0, Kind.ACTIVATION, *w)
            await tb.clock.cycles(4 * cpv)
            assert banks[1].samples == s1 + 8 * len(l2.tiles), "layer 2 not converted"
            assert int(dut.o__valid.value), "no output waiting"
        dut._log.info(f"chip: reset {state}")
        n_got = len(got)
        await tb.clock.reset()
        lib.withdraw(tb.source)
        for b in banks:
            b.flush()
        hold.held = False
        await tb.clock.cycles(3)
        assert len(got) == n_got
        # reset values: scatter masks 0 on both PUs: a vector goes nowhere
        s0, s1 = banks[0].samples, banks[1].samples
        for w in words:
            tb.push(pu0, Kind.ACTIVATION, *w)
        await tb.clock.cycles(400)      # a configured array starts converting within 100
        assert (banks[0].samples, banks[1].samples) == (s0, s1) and len(got) == n_got, \
            "a vector was converted or answered after reset without configuration"
    await configured_run(len(states))
    assert len(got) > 0


@cocotb.test(skip=N_PUS < 3)          # skipped on a chip of fewer PUs
async def three_layers_three_pus(dut):
    """A chip of three PUs (or more; PUs 0..2 used): 32 x 12 (GELU) on PU 0 -> 12 x 12
    (GELU) on PU 1 -> 12 x 8 (GELU off) on PU 2 -> IO, IO gaps and backpressure. Every
    word PU 0 hands to PU 1 and PU 1 to PU 2 (monitors on the global bus) and every INT8
    word at the IO port equal to the golden three-layer chain, in order, none extra."""
    seed = lib.seed("three_layers_three_pus")
    rng = np.random.default_rng(seed)
    slc = PU.params.neurons("slc")
    l1 = Layer(PU, rng, 32, 12, slc, None, seed)
    l2 = Layer(PU, rng, 12, 12, slc, None, seed + 1)
    l3 = Layer(PU, rng, 12, 8, 2, None, seed + 2)
    xs = input_vectors(seed, P.get("vectors", 3), 32)
    l1.set_sfu(xs)
    h1 = np.array([l1.golden(x) for x in xs])
    l2.set_sfu(h1)
    l3.set_sfu(np.array([l2.golden(h) for h in h1]), gelu=False)
    port = [CHIP.pu_port(p) for p in range(3)]
    tb = TB(dut, seed, [l1, l2, l3], PU, CHIP.layout, p_valid=0.8, p_ready=0.6,
            source=port[2])
    n = PU.n_arrays
    bank = _bank(dut, tb.clock, {p * n + t: tile.crossbar
                                 for p, layer in enumerate((l1, l2, l3))
                                 for t, tile in enumerate(layer.tiles)})
    await tb.start()
    hands = [Handoff(l1, xs, dest=port[1]), Handoff(l2, xs, dest=port[2], upstream=[l1])]
    for p, hand in enumerate(hands):
        pu0_monitor(dut, tb.clock, hand.check, p=p)
    cfg = (pu_config(l1, PU, port[0], act_route=port[1])
           + pu_config(l2, PU, port[1], act_route=port[2])
           + pu_config(l3, PU, port[2], act_route=CHIP.IO_PORT))
    await tb.run(cfg, xs, port[0], 12 * len(xs) * cycles_per_vector(PU, "mlc") + 5000)
    for p, hand in enumerate(hands):
        assert hand.checked == len(hand.expected), \
            f"PU {p} -> PU {p + 1}: {hand.checked} of {len(hand.expected)} words"
    assert bank.samples == 8 * len(xs) * (len(l1.tiles) + len(l2.tiles) + len(l3.tiles))
    dut._log.info(f"{len(xs)} vectors through three PUs, {tb.scoreboard.checked} words exact")


@cocotb.test(skip=N_PUS < 3)          # skipped on a chip of fewer PUs
async def split_layer_three_pus(dut):
    """One 96 x 12 layer (6 row chunks, 12 tiles) split over PUs 0, 1, 2 by row chunks
    (2 chunks each); PU 0's and PU 1's sums leave as PARTIAL_SUM for PU 2, whose
    aggregator adds them as two more parts (PARTS = 4) and sends the INT32 RESULTs to
    IO: every RESULT equal to ``program_matrix(W).run(x)`` of the whole layer, every
    partial sum destined for PU 2, their count n per vector per sending PU; noise on,
    IO gaps and backpressure."""
    seed = lib.seed("split_layer_three_pus")
    rng = np.random.default_rng(seed)
    rows = PU.params.rows
    m, n = 6 * rows, 12
    layer = Layer(PU, rng, m, n, PU.params.neurons("slc"), BER, seed, capacity=3 * PU.n_arrays)
    per = layer.parts // 3
    order = sorted(range(len(layer.tiles)), key=layer.chunk)
    shares = [PuShare(layer, [layer.tiles[t] for t in order if layer.chunk(t) // per == p])
              for p in range(3)]
    for share in shares:
        assert 0 < len(share.tiles) <= PU.n_arrays, f"a PU holds {len(share.tiles)} tiles"
    xs = input_vectors(seed, P.get("vectors", 2), m)
    port = [CHIP.pu_port(p) for p in range(3)]
    tb = SplitTB(dut, seed, [layer], PU, CHIP.layout, p_valid=0.7, p_ready=0.5,
                 source=port[2], dest_of_chunk=[port[c // per] for c in range(layer.parts)])
    banks = [crossbar_bank(dut, tb.clock, s, base=p * PU.n_arrays) for p, s in enumerate(shares)]
    await tb.start()
    psums = {0: [], 1: []}

    def partial_sum(p, pkt):
        assert pkt[1:3] == (port[2], Kind.PARTIAL_SUM), f"PU {p} sent {pkt}"
        psums[p].append(pkt)

    for p in (0, 1):
        pu0_monitor(dut, tb.clock, lambda pkt, p=p: partial_sum(p, pkt), p=p)
    cfg = sum((pu_config(s, PU, port[p]) for p, s in enumerate(shares)), [])
    for p, parts, route in ((0, per, route_value(port[2], Kind.PARTIAL_SUM)),
                            (1, per, route_value(port[2], Kind.PARTIAL_SUM)),
                            (2, per + 2, route_value(CHIP.IO_PORT, Kind.RESULT))):
        cfg += [config(port[p], AggReg.PARTS, parts, port=PU.agg_port),
                config(port[p], BridgeReg.ROUTE, route, index=Kind.RESULT.value)]
    await tb.run(cfg, xs, None, 8 * len(xs) * cycles_per_vector(PU, "mlc") + 5000)
    for p in (0, 1):
        assert len(psums[p]) == len(xs) * n, \
            f"PU {p} -> PU 2: {len(psums[p])} partial sums, expected {len(xs) * n}"
    for bank, share in zip(banks, shares):
        assert bank.samples == 8 * len(xs) * len(share.tiles)
    dut._log.info(f"{len(xs)} vectors, {tb.scoreboard.checked} RESULTs exact, "
                  f"saturated conversions {int(layer.pm.saturated(xs))}")
