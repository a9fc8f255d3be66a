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
banks, driver, monitor, scoreboard). A second monitor watches the global bus's
PU 0 -> PU 1 traffic through the hierarchy and checks it word by word too.

Split layer (``split_layer_*``): one ``m`` x ``n`` layer mapped by ``program_matrix``;
the tiles of the first half of the row chunks sit on PU 0's arrays, the rest on PU 1's
(:class:`PuShare`; each array answered by its tile's crossbar model). The IO side sends
each input word to the PU holding its chunk; PU 0's aggregator sends its sums to its
bridge, whose RESULT route turns them into PARTIAL_SUM packets for PU 1, whose aggregator
adds them as one more part and sends the INT32 RESULTs to the IO port, each compared
with ``program_matrix(W, modes).run(x)`` of the whole layer.

Parameters: ``HYFLEXPIM_PARAMS`` (JSON: the chip's PU parameters plus ``m1``, ``n1``,
``n2``, ``n_slc1``, ``n_slc2``, ``vectors``; split layer: ``m``, ``n``, ``n_slc``),
``HYFLEXPIM_SEED``; figures to
``HYFLEXPIM_CHIP_REPORT`` when set.
"""

import copy
import json
import os

import numpy as np

import cocotb
from cocotb.triggers import FallingEdge

from hyflexpim.rtl.bus import Kind, packet_layout, unpack_packet, config_word, AGG_REG_PARTS
from hyflexpim.rtl.pu import BR_REG_ROUTE, CONFIG_TARGET_SHIFT, route_value
from hyflexpim.tb.bus_tb import test_seed, report as _report
from hyflexpim.tb.pu_tb import (Geometry, Layer, CrossbarBank, TB, pu_config, out_words,
                                input_vectors, int8_stats, BER)

P = json.loads(os.environ.get("HYFLEXPIM_PARAMS", "{}"))
N_PUS = P.get("n_pus", 2)
G = Geometry(dict(P, ext_addr_width=max(1, N_PUS.bit_length())))
REPORT = os.environ.get("HYFLEXPIM_CHIP_REPORT")


class HandoffMonitor:
    """Watches PU 0's output on the global bus (``bus.i[1]``): every ACTIVATION word
    for PU 1 must be the next word of layer 1's golden INT8 output."""

    def __init__(self, dut, layer, xs):
        self.valid, self.ready, self.payload = (getattr(dut.bus, f"i__1__{f}")
                                                for f in ("valid", "ready", "payload"))
        self.layout = packet_layout(G.ext_aw, G.dw, G.tw)
        self.expected = [w for x in xs for w in out_words(G, layer.golden(x), layer.out_words)]
        self.checked = 0

    async def run(self, clk):
        while True:
            await FallingEdge(clk)
            if int(self.valid.value) and int(self.ready.value):
                pkt = unpack_packet(self.layout, self.payload.value.to_unsigned())
                _, dst, kind, tag, data = pkt
                assert (dst, kind) == (2, Kind.ACTIVATION), f"PU 0 sent {pkt}"
                assert self.checked < len(self.expected), f"extra word {pkt}"
                exp = self.expected[self.checked]
                assert (tag, data) == exp, (f"PU 0 -> PU 1 word {self.checked}: RTL "
                                            f"({tag}, {data:#010x}), golden ({exp[0]}, {exp[1]:#010x})")
                self.checked += 1


async def two_layers(dut, name, ber, gelu2, p_ready=0.7, p_valid=1.0):
    seed = test_seed(name)
    rng = np.random.default_rng(seed)
    m1, n1, n2 = P.get("m1", 2 * G.rows), P.get("n1", 12), P.get("n2", 12)
    l1 = Layer(G, rng, m1, n1, P.get("n_slc1", G.cols // 8), ber, seed)
    l2 = Layer(G, rng, n1, n2, P.get("n_slc2", G.cols // 8), ber, seed + 7)
    xs = input_vectors(seed, P.get("vectors", 2), m1)
    l1.set_sfu(xs, gelu=True)
    l2.set_sfu(np.array([l1.golden(x) for x in xs]), gelu=gelu2)
    tb = TB(dut, seed, [l1, l2], G, p_valid=p_valid, p_ready=p_ready, source=2)
    banks = [CrossbarBank(dut, l1, base=0), CrossbarBank(dut, l2, base=G.n_arrays)]
    await tb.reset(banks)
    hand = HandoffMonitor(dut, l1, xs)
    cocotb.start_soon(hand.run(dut.clk))
    config = pu_config(l1, 1, act_route=2) + pu_config(l2, 2, act_route=0)
    bound = 8 * len(xs) * G.cycles_per_vector("mlc") + 5000
    start = await tb.run(config, xs, 1, bound)
    sb = tb.scoreboard
    assert hand.checked == len(hand.expected), \
        f"PU 0 -> PU 1: {hand.checked} of {len(hand.expected)} words seen"
    lat = [v[4] - v[3] for v in sb.vectors]
    _report("chip", REPORT, test=name, ber=ber, m1=m1, n1=n1, n2=n2, rows=G.rows, cols=G.cols,
            arrays1=len(l1.tiles), arrays2=len(l2.tiles), vectors=len(xs),
            first_vector_latency=lat[0], total_cycles=sb.vectors[-1][4] - start,
            handoff_words=hand.checked, gelu2=gelu2, **int8_stats([l1, l2], xs))
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
    :class:`~hyflexpim.tb.pu_tb.CrossbarBank` read (``parts`` stays the whole layer's,
    so every chunk gets a scatter mask, zero for chunks held by the other PU)."""

    chunk = Layer.chunk

    def __init__(self, layer, tiles):
        self.g, self.tiles, self.parts = G, tiles, layer.parts
        self.n, self.out_words, self.sfu = layer.n, layer.out_words, None
        self.chunks = sorted({self.chunk(t) for t in range(len(tiles))})


class PartialSumMonitor:
    """Watches PU 0's output on the global bus: every packet is a PARTIAL_SUM for PU 1."""

    def __init__(self, dut):
        self.valid, self.ready, self.payload = (getattr(dut.bus, f"i__1__{f}")
                                                for f in ("valid", "ready", "payload"))
        self.layout = packet_layout(G.ext_aw, G.dw, G.tw)
        self.count = 0

    async def run(self, clk):
        while True:
            await FallingEdge(clk)
            if int(self.valid.value) and int(self.ready.value):
                pkt = unpack_packet(self.layout, self.payload.value.to_unsigned())
                assert pkt[1:3] == (2, Kind.PARTIAL_SUM), f"PU 0 sent {pkt}"
                self.count += 1


class SplitTB(TB):
    """IO side of a split layer: input words of PU ``p``'s row chunks go to PU ``p``."""

    def __init__(self, *args, dest_of_chunk, **kw):
        super().__init__(*args, **kw)
        self.dest_of_chunk = dest_of_chunk

    def send_vector(self, x, dest):
        words = self.layers[0].words(x)
        for i in self.rng.permutation(len(words)):
            tag, data = words[i]
            self.driver.push(self.dest_of_chunk[tag // G.words], Kind.ACTIVATION, tag, data)


async def split_layer(dut, name, ber, p_ready=0.7, p_valid=1.0):
    """One ``m`` x ``n`` layer, row chunks 0..parts/2-1 on PU 0, the rest on PU 1."""
    seed = test_seed(name)
    rng = np.random.default_rng(seed)
    m, n = P.get("m", 4 * G.rows), P.get("n", 12)
    whole = copy.copy(G)
    whole.n_arrays = N_PUS * G.n_arrays          # the whole layer spans both PUs
    layer = Layer(whole, rng, m, n, P.get("n_slc", G.cols // 8), ber, seed)
    split = layer.parts // 2
    order = sorted(range(len(layer.tiles)), key=layer.chunk)
    shares = [PuShare(layer, [layer.tiles[t] for t in order if (layer.chunk(t) >= split) == p])
              for p in (0, 1)]
    for share in shares:
        assert 0 < len(share.tiles) <= G.n_arrays, f"a PU holds {len(share.tiles)} tiles"
    xs = input_vectors(seed, P.get("vectors", 2), m)
    tb = SplitTB(dut, seed, [layer], G, p_valid=p_valid, p_ready=p_ready, source=2,
                 dest_of_chunk=[1 if c < split else 2 for c in range(layer.parts)])
    banks = [CrossbarBank(dut, s, base=p * G.n_arrays) for p, s in enumerate(shares)]
    await tb.reset(banks)
    psum = PartialSumMonitor(dut)
    cocotb.start_soon(psum.run(dut.clk))
    # PU 0: its chunks' sums leave as PARTIAL_SUM for PU 1; PU 1 adds one more part
    config = pu_config(shares[0], 1) + pu_config(shares[1], 2)
    for pu, parts, route in ((1, len(shares[0].chunks), route_value(2, Kind.PARTIAL_SUM)),
                             (2, len(shares[1].chunks) + 1, route_value(0, Kind.RESULT))):
        config += [(pu, Kind.CONFIG, 0, (G.agg_port << CONFIG_TARGET_SHIFT)
                    | config_word(AGG_REG_PARTS, parts)),
                   (pu, Kind.CONFIG, 0, config_word(BR_REG_ROUTE + Kind.RESULT.value, route))]
    bound = 8 * len(xs) * G.cycles_per_vector("mlc") + 5000
    start = await tb.run(config, xs, None, bound)
    sb = tb.scoreboard
    assert psum.count == len(xs) * n, \
        f"PU 0 -> PU 1: {psum.count} partial sums, expected {len(xs) * n}"
    lat = [v[4] - v[3] for v in sb.vectors]
    _report("chip", REPORT, test=name, ber=ber, m=m, n=n, rows=G.rows, cols=G.cols,
            arrays_pu0=len(shares[0].tiles), arrays_pu1=len(shares[1].tiles),
            vectors=len(xs), first_vector_latency=lat[0],
            total_cycles=sb.vectors[-1][4] - start, partial_sums=psum.count,
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
