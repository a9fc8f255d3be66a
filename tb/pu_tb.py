"""cocotb end-to-end testbench of the processing unit (``ProcessingUnit``): a whole INT8
linear layer through the bridge, the analog arrays, the inner bus, the partial-sum
aggregator and (SFU tests) the digital module.

The layer ``y = x @ W`` (``m`` inputs x ``n`` outputs, INT8, a random mix of SLC and
MLC output columns) is mapped by :func:`hyflexpim.models.program_matrix`; tile ``t`` of
that mapping is programmed on PU array ``t``. Every array's comparator ``xbar__t__cmp``
is answered by that tile's :class:`~hyflexpim.models.crossbar.Crossbar` (noise off, or
on with the measured MLC BER), so the INT32 results must equal
``program_matrix(...).run(x)`` bit for bit, and the digital module's INT8 activations
must equal ``to_int8(gelu(from_int32(y, s1)), s2)`` (:mod:`hyflexpim.models.fp16`).

Parts (reused by ``tb/chip_tb.py``): :class:`Layer` (weights, mapping, golden chain),
:func:`pu_config` (the CONFIG packets of one PU for one layer), :class:`CrossbarBank`
(analog side of every array), :class:`PacketDriver` (IO side), :class:`OutMonitor`
(takes packets off ``o`` under random backpressure), :class:`Scoreboard` (INT32 results
matched by tag parity, or INT8 activation words in order; nothing missing, nothing
twice), :class:`TB` (owns them; at most two vectors in flight).

Parameters: ``HYFLEXPIM_PARAMS`` (JSON: the PU parameters plus ``m``, ``n``,
``n_slc`` SLC output columns, ``vectors``), ``HYFLEXPIM_SEED``; figures go to
``HYFLEXPIM_PU_REPORT`` (JSON lines) when set.
"""

import json
import os
import random
from collections import deque

import numpy as np

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge

from hyflexpim.models import program_matrix, fp16
from hyflexpim.models.crossbar import Crossbar
from hyflexpim.rtl.bus import (Kind, packet_layout, pack_packet, unpack_packet, config_word,
                               AGG_REG_PARTS, AGG_REG_DEST)
from hyflexpim.rtl.digital import (DIG_REG_SCALE_IN, DIG_REG_SCALE_OUT, DIG_REG_GELU,
                                   DIG_REG_DEST, DIG_REG_OUTPUTS, DIG_REG_WORDS)
from hyflexpim.rtl.pu import (REG_MODE, ENTRY_USED, BR_REG_ROUTE, CONFIG_TARGET_SHIFT,
                              route_value)
from hyflexpim.tb.bus_tb import test_seed, report as _report, clock_and_reset

P = json.loads(os.environ.get("HYFLEXPIM_PARAMS", "{}"))
BER = 0.0404
REPORT = os.environ.get("HYFLEXPIM_PU_REPORT")


class Geometry:
    """PU parameters (``HYFLEXPIM_PARAMS`` keys, the ProcessingUnit defaults of the tests)."""

    def __init__(self, p):
        self.n_modules = p.get("n_modules", 2)
        self.apm = p.get("arrays_per_module", 2)
        self.n_arrays = self.n_modules * self.apm
        self.rows, self.cols = p.get("rows", 16), p.get("cols", 32)
        self.slc_bits, self.mlc_bits = p.get("slc_bits", 6), p.get("mlc_bits", 7)
        self.dw, self.tw = p.get("data_width", 32), p.get("tag_width", 8)
        self.ext_aw = p.get("ext_addr_width", 5)
        self.agg_port = self.n_modules + 1
        self.dig_port = self.n_modules + 2
        self.layout = packet_layout(self.ext_aw, self.dw, self.tw)
        self.bpw = self.dw // 8
        self.words = self.rows // self.bpw            # input words per row chunk
        self.word_bits = (self.words - 1).bit_length()

    def cycles_per_vector(self, mode):
        return 8 * self.cols * (self.mlc_bits if mode == "mlc" else self.slc_bits)


G = Geometry(P)


class Layer:
    """One layer: weights, mapping onto arrays, golden INT32 outputs and SFU chain."""

    def __init__(self, g, rng, m, n, n_slc, ber, seed):
        self.g, self.m, self.n = g, m, n
        self.w = rng.integers(-128, 128, (m, n))
        modes = np.array(["mlc"] * n, dtype=object)
        modes[rng.choice(n, n_slc, replace=False)] = "slc"
        self.pm = program_matrix(self.w, list(modes), ber=ber, seed=seed, rows=g.rows,
                                 cols=g.cols, slc_bits=g.slc_bits, mlc_bits=g.mlc_bits)
        self.tiles = self.pm.tiles
        assert len(self.tiles) <= g.n_arrays, \
            f"the mapping needs {len(self.tiles)} arrays, the PU has {g.n_arrays}"
        assert {t.mode for t in self.tiles} == {"slc", "mlc"}, "the mapping is not mixed"
        self.parts = -(-m // g.rows)
        self.sfu = None                               # (s1, s2, gelu) bit patterns / flag
        # activation words per output vector: whole row chunks of a next layer
        self.out_words = -(-n // g.rows) * g.words

    def set_sfu(self, xs, gelu=True):
        """Scales from the layer's own outputs (configuration, not expectation):
        ``s1`` maps the largest |y| to 4.0, ``s2`` maps 4.0 to 120."""
        ymax = max(1, int(np.abs(self.pm.run(xs)).max()))
        self.sfu = (int(fp16.from_float(4.0 / ymax)), int(fp16.from_float(30.0)), gelu)

    def golden(self, x):
        """INT32 outputs of ``x`` (1-D), or the INT8 chain's when the SFU is configured."""
        y = self.pm.run(x[None, :])[0].astype(np.int64)
        if self.sfu is None:
            return y
        s1, s2, gelu = self.sfu
        h = fp16.from_int32(y, s1)
        if gelu:
            h = fp16.gelu(h)
        return fp16.to_int8(h, s2).astype(np.int64)

    def chunk(self, t):
        return int(self.tiles[t].rows_idx[0]) // self.g.rows

    def words(self, x):
        """(tag, data) of the layer's input words: tag = chunk * words + word in chunk."""
        g = self.g
        xp = np.zeros(self.parts * g.rows, dtype=np.int64)
        xp[:len(x)] = x
        out = []
        for w in range(len(xp) // g.bpw):
            word = 0
            for b in range(g.bpw):
                word |= (int(xp[w * g.bpw + b]) & 0xFF) << (8 * b)
            out.append((w, word))
        return out


def out_words(g, vals, n_words):
    """INT8 ``vals`` packed into ``n_words`` activation words (tag, data), the rest 0."""
    out = []
    for w in range(n_words):
        word = 0
        for b, v in enumerate(vals[w * g.bpw:(w + 1) * g.bpw]):
            word |= (int(v) & 0xFF) << (8 * b)
        out.append((w, word))
    return out


def pu_config(layer, pu_dest, act_route=0):
    """CONFIG packets (destination, kind, tag, data) programming one PU for ``layer``.

    ``pu_dest``: the PU's global address; ``act_route``: where its activation words go
    (global address). With ``layer.sfu`` set the aggregator feeds the digital module;
    otherwise INT32 RESULT packets leave the PU (to global address 0).
    """
    g = layer.g
    cfg = []

    def put(port, tag, reg, value):
        cfg.append((pu_dest, Kind.CONFIG, tag,
                    (port << CONFIG_TARGET_SHIFT) | config_word(reg, value)))

    for t, tile in enumerate(layer.tiles):
        port, a = 1 + t // g.apm, t % g.apm
        put(port, a, REG_MODE, 1 if tile.mode == "mlc" else 0)
        for j in range(g.cols // 4):
            put(port, a, j, ENTRY_USED | int(tile.out_idx[j]) if j < len(tile.out_idx) else 0)
    for c in range(layer.parts):
        mask = sum(1 << t for t in range(len(layer.tiles)) if layer.chunk(t) == c)
        for j in range(-(-g.n_arrays // 16)):
            put(0, c, j, (mask >> (16 * j)) & 0xFFFF)
    put(g.agg_port, 0, AGG_REG_PARTS, layer.parts)
    put(0, 0, BR_REG_ROUTE + Kind.RESULT.value, route_value(0, Kind.RESULT))
    put(0, 0, BR_REG_ROUTE + Kind.ACTIVATION.value, route_value(act_route, Kind.ACTIVATION))
    if layer.sfu is None:
        put(g.agg_port, 0, AGG_REG_DEST, 0)
    else:
        s1, s2, gelu = layer.sfu
        put(g.agg_port, 0, AGG_REG_DEST, g.dig_port)
        for reg, value in ((DIG_REG_SCALE_IN, s1), (DIG_REG_SCALE_OUT, s2),
                           (DIG_REG_GELU, int(gelu)), (DIG_REG_DEST, 0),
                           (DIG_REG_OUTPUTS, layer.n), (DIG_REG_WORDS, layer.out_words)):
            put(g.dig_port, 0, reg, value)
    return cfg


class CrossbarBank:
    """Analog side of the arrays of ``layer`` (PU arrays ``base + t``): S&H capture on
    ``sample``, comparator every cycle."""

    def __init__(self, dut, layer, base=0, n_arrays=None):
        self.dut, self.rows = dut, layer.g.rows
        self.arrays = []
        for t, tile in enumerate(layer.tiles):
            sig = {f: getattr(dut, f"xbar__{base + t}__{f}")
                   for f in ("wl", "sample", "sel", "trial", "cmp")}
            self.arrays.append([tile.crossbar, sig, None])
        for t in range(len(layer.tiles), n_arrays or layer.g.n_arrays):
            getattr(dut, f"xbar__{base + t}__cmp").value = 0
        self.samples = 0

    async def run(self):
        while True:
            await FallingEdge(self.dut.clk)
            for entry in self.arrays:
                xb, sig, held = entry
                if held is not None:
                    sel = sig["sel"].value.to_unsigned()
                    trial = sig["trial"].value.to_unsigned()
                    sig["cmp"].value = int(Crossbar.compare(held[sel], trial))
                else:
                    sig["cmp"].value = 0
                if int(sig["sample"].value) and int(self.dut.rst.value) == 0:
                    wl = sig["wl"].value.to_unsigned()
                    bits = np.array([(wl >> r) & 1 for r in range(self.rows)], dtype=np.int64)
                    entry[2] = xb.held_values(bits)
                    self.samples += 1


class PacketDriver:
    """IO side: drives ``i`` from a queue of packets (random gaps when ``p_valid`` < 1)."""

    def __init__(self, dut, layout, rng, p_valid=1.0):
        self.dut, self.layout, self.rng, self.p_valid = dut, layout, rng, p_valid
        self.queue = deque()
        self.current = None
        self.sent = 0

    def push(self, dest, kind, tag, data):
        self.queue.append(pack_packet(self.layout, 0, dest, kind, tag, data))

    def drive(self):
        if self.current is None and self.queue and self.rng.random() < self.p_valid:
            self.current = self.queue.popleft()
        self.dut.i__valid.value = int(self.current is not None)
        if self.current is not None:
            self.dut.i__payload.value = self.current

    def observe(self):
        if self.current is not None and int(self.dut.i__ready.value):
            self.current = None
            self.sent += 1

    @property
    def idle(self):
        return self.current is None and not self.queue


class OutMonitor:
    def __init__(self, dut, layout, rng, p_ready):
        self.dut, self.layout, self.rng, self.p_ready = dut, layout, rng, p_ready

    def drive(self):
        self.dut.o__ready.value = int(self.rng.random() < self.p_ready)

    def observe(self):
        if int(self.dut.o__valid.value) and int(self.dut.o__ready.value):
            v = self.dut.o__payload.value
            assert v.is_resolvable, f"o payload {v}"
            return unpack_packet(self.layout, v.to_unsigned())
        return None


class Scoreboard:
    """Golden outputs of every vector of the LAST layer of ``layers``.

    INT32 mode (last layer without SFU): RESULT packets, matched to a vector by the parity
    bit of their tag, any order within a vector. INT8 mode: ACTIVATION words, whole
    vectors in order, words 0, 1, ... of each; every word compared exactly.
    """

    def __init__(self, layers, g, source=0):
        self.layers, self.g, self.source = layers, g, source
        self.int8 = layers[-1].sfu is not None
        self.n = layers[-1].n
        self.inflight = {0: deque(), 1: deque()}
        self.vectors = []      # [x, expected, received (dict), cycle sent, cycle done]
        self.checked = 0

    def add(self, x, cycle):
        v = len(self.vectors)
        h = x
        for layer in self.layers:
            h = layer.golden(h)
        exp = dict(out_words(self.g, h, self.layers[-1].out_words)) if self.int8 else h
        self.vectors.append([x, exp, {}, cycle, None])
        self.inflight[0 if self.int8 else v % 2].append(v)
        return v

    def check(self, pkt, cycle):
        src, dst, kind, tag, data = pkt
        g = self.g
        if self.int8:
            assert (src, dst, kind) == (self.source, 0, Kind.ACTIVATION), f"unexpected packet {pkt}"
            assert self.inflight[0], f"word {pkt} for no vector in flight"
            v = self.inflight[0][0]
            _, exp, got, _, _ = self.vectors[v]
            assert tag == len(got), f"vector {v}: word {tag} out of order (expected {len(got)})"
            assert data == exp[tag], (f"vector {v} word {tag}: RTL {data:#010x}, golden "
                                      f"{exp[tag]:#010x}")
            got[tag] = data
            complete, queue = len(got) == len(exp), self.inflight[0]
        else:
            assert (src, dst, kind) == (self.source, 0, Kind.RESULT), f"unexpected packet {pkt}"
            parity, out = tag >> (g.tw - 1), tag & ((1 << (g.tw - 1)) - 1)
            assert self.inflight[parity], f"result {pkt} for no vector in flight"
            v = self.inflight[parity][0]
            _, exp, got, _, _ = self.vectors[v]
            assert 0 <= out < self.n and out not in got, f"vector {v}: output {out} twice or unknown"
            val = data - (1 << g.dw) if data >> (g.dw - 1) else data
            assert val == exp[out], f"vector {v} output {out}: RTL {val}, golden {exp[out]}"
            got[out] = val
            complete, queue = len(got) == self.n, self.inflight[parity]
        self.checked += 1
        if complete:
            self.vectors[v][4] = cycle
            queue.popleft()

    def done(self, v):
        return self.vectors[v][4] is not None


class TB:
    """IO side of one PU (or of a chip: ``layers`` on consecutive PUs)."""

    def __init__(self, dut, seed, layers, g, p_valid=1.0, p_ready=0.7, source=0):
        self.dut, self.layers, self.g = dut, layers, g
        self.rng = np.random.default_rng(seed)
        prng = random.Random(seed)
        self.driver = PacketDriver(dut, g.layout, random.Random(prng.random()), p_valid)
        self.monitor = OutMonitor(dut, g.layout, random.Random(prng.random()), p_ready)
        self.scoreboard = Scoreboard(layers, g, source)
        self.banks = []
        self.cycle = 0

    async def reset(self, banks):
        self.banks = banks
        await clock_and_reset(self.dut, [self.dut.i__valid, self.dut.o__ready])
        for bank in banks:
            cocotb.start_soon(bank.run())

    def send_vector(self, x, dest):
        """Input words of the first layer in a random order (any order is allowed)."""
        words = self.layers[0].words(x)
        for i in self.rng.permutation(len(words)):
            self.driver.push(dest, Kind.ACTIVATION, *words[i])

    async def step(self):
        self.driver.drive()
        self.monitor.drive()
        await FallingEdge(self.dut.clk)
        self.driver.observe()
        pkt = self.monitor.observe()
        if pkt is not None:
            self.scoreboard.check(pkt, self.cycle)
        await RisingEdge(self.dut.clk)
        self.cycle += 1

    async def run(self, config, xs, dest, max_cycles):
        """Send ``config``, then the vectors ``xs`` to global address ``dest`` with at
        most two in flight; returns the cycle the first vector was sent."""
        for c in config:
            self.driver.push(*c)
        while not self.driver.idle:
            await self.step()
        sb = self.scoreboard
        v_next = 0
        start = self.cycle
        while v_next < len(xs) or not all(sb.done(v) for v in range(len(sb.vectors))):
            if v_next < len(xs) and (v_next < 2 or sb.done(v_next - 2)):
                sb.add(xs[v_next], self.cycle)
                self.send_vector(xs[v_next], dest)
                v_next += 1
            await self.step()
            assert self.cycle - start < max_cycles, "layer did not finish"
        for _ in range(50):          # nothing more may come out
            await self.step()
        per_vector = len(sb.vectors[0][1])
        assert sb.checked == len(xs) * per_vector
        return start


def int8_stats(layers, xs):
    """Distinct values and saturated (-128 / 127) count of the golden INT8 outputs (to
    show the checked words are not trivial)."""
    outs = []
    for x in xs:
        h = x
        for layer in layers:
            h = layer.golden(h)
        outs.append(h)
    outs = np.array(outs)
    return dict(int8_distinct=int(len(np.unique(outs))),
                int8_saturated=int(((outs == 127) | (outs == -128)).sum()), int8_values=int(outs.size))


def input_vectors(seed, vectors, m):
    rng = np.random.default_rng(seed + 1)
    xs = rng.integers(-128, 128, (vectors, m))
    xs[0, :3] = [127, -128, 0]
    return xs


async def layer_test(dut, name, ber, p_ready=0.7, p_valid=1.0, sfu=False, gelu=True):
    seed = test_seed(name)
    rng = np.random.default_rng(seed)
    m, n = P.get("m", 2 * G.rows), P.get("n", G.cols // 8 + G.cols // 4)
    layer = Layer(G, rng, m, n, P.get("n_slc", G.cols // 8), ber, seed)
    xs = input_vectors(seed, P.get("vectors", 2), m)
    if sfu:
        layer.set_sfu(xs, gelu)
    # outside a chip, packets leave with the inner source port
    tb = TB(dut, seed, [layer], G, p_valid=p_valid, p_ready=p_ready,
            source=(G.dig_port if sfu else G.agg_port) % (1 << G.ext_aw))
    bank = CrossbarBank(dut, layer)
    await tb.reset([bank])
    bound = 4 * len(xs) * G.cycles_per_vector("mlc") + 3000
    start = await tb.run(pu_config(layer, 1), xs, 1, bound)
    sb = tb.scoreboard
    lat = [v[4] - v[3] for v in sb.vectors]
    total = sb.vectors[-1][4] - start
    _report("pu", REPORT, test=name, ber=ber, sfu=sfu, gelu=gelu and sfu, m=m, n=n,
            n_slc=P.get("n_slc"), rows=G.rows, cols=G.cols, arrays=len(layer.tiles),
            modules=G.n_modules, arrays_per_module=G.apm, vectors=len(xs),
            first_vector_latency=lat[0], total_cycles=total,
            cycles_per_vector_mlc_array=G.cycles_per_vector("mlc"),
            saturated_conversions=int(layer.pm.saturated(xs)),
            **(int8_stats([layer], xs) if sfu else {}))
    assert bank.samples == 8 * len(xs) * len(layer.tiles)


@cocotb.test()
async def layer_noise_off(dut):
    """Ideal arrays: INT32 outputs equal the golden model's."""
    await layer_test(dut, "layer_noise_off", None)


@cocotb.test()
async def layer_noise_on(dut):
    """Programming noise calibrated to BER 4.04%: still bit-exact with the golden model."""
    await layer_test(dut, "layer_noise_on", BER, p_ready=0.3, p_valid=0.6)


@cocotb.test()
async def sfu_noise_off(dut):
    """Layer -> aggregation -> digital module (dequant, GELU, requant): INT8 words exact."""
    await layer_test(dut, "sfu_noise_off", None, sfu=True)


@cocotb.test()
async def sfu_noise_on(dut):
    """The same with programming noise, IO gaps and backpressure."""
    await layer_test(dut, "sfu_noise_on", BER, p_ready=0.3, p_valid=0.6, sfu=True)


@cocotb.test()
async def sfu_gelu_off(dut):
    """GELU bypassed by configuration: to_int8(from_int32(y, s1), s2) on every word."""
    await layer_test(dut, "sfu_gelu_off", None, p_ready=0.5, sfu=True, gelu=False)
