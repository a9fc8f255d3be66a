"""cocotb end-to-end testbench of the processing unit (``ProcessingUnit``): a whole INT8
linear layer through the bridge, the analog arrays, the inner bus, the partial-sum
aggregator and (SFU tests) the digital module.

The PU under test is rebuilt from the registry (:func:`hyflexpim.tb.lib.design`); its
array geometry, ports, addresses, word counts and packet layouts come from it. The
layer ``y = x @ W`` (``m`` inputs x ``n`` outputs, INT8, a random mix of SLC and MLC
output columns) is mapped by :func:`hyflexpim.models.program_matrix`; tile ``t`` of
that mapping is programmed on PU array ``t``. Every array's comparator ``xbar__t__cmp``
is answered by that tile's :class:`~hyflexpim.models.crossbar.Crossbar` (noise off, or
on with the measured MLC BER) through a :class:`~hyflexpim.tb.lib.CrossbarBank`, so
the INT32 results must equal ``program_matrix(...).run(x)`` bit for bit, and the digital
module's INT8 activations must equal ``to_int8(gelu(from_int32(y, s1)), s2)``
(:mod:`hyflexpim.models.fp16`).

Parts (reused by ``tb/chip_tb.py``): :class:`Layer` (weights, mapping, golden chain),
:func:`pu_config` (the CONFIG packets of one PU for one layer, from the units' register
maps through :func:`config`), :func:`crossbar_bank`
(the analog side of a layer's arrays), :class:`LayerScoreboard` (INT32 results matched
by tag parity, or INT8 activation words in order; nothing missing, nothing twice),
:class:`TB` (the IO side: a :class:`~hyflexpim.tb.lib.StreamSource` on ``i``, a
:class:`~hyflexpim.tb.lib.StreamSink` on ``o``; at most two vectors in flight).

Parameters: ``HYFLEXPIM_PARAMS`` (JSON: ``m``, ``n``, ``n_slc`` SLC output columns,
``vectors``), ``HYFLEXPIM_SEED``; figures go to ``HYFLEXPIM_PU_REPORT`` (JSON lines)
when set.
"""

import os
from collections import deque

import numpy as np

import cocotb
from amaranth.hdl import signed
from amaranth.lib import data

from hyflexpim.models import program_matrix, fp16
from hyflexpim.models.encoding import INPUT_BITS
from hyflexpim.rtl.analog import Mode
from hyflexpim.rtl.bus import Kind, AggReg, AGG_REGISTERS
from hyflexpim.rtl.digital import DigReg, DIG_REGISTERS
from hyflexpim.rtl.pu import (ArrayReg, ARRAY_REGISTERS, BridgeReg, BRIDGE_REGISTERS, ENTRY_USED,
                              route_value)
from hyflexpim.tb import lib

P = lib.params()
BER = 0.0404
REPORT = os.environ.get("HYFLEXPIM_PU_REPORT")


def cycles_per_vector(pu, mode):
    """Cycles one array takes per input vector in ``mode`` (8 planes x cols x steps)."""
    p = pu.params
    return INPUT_BITS * p.cols * (p.mlc_bits if mode == "mlc" else p.slc_bits)


def word_layout(pu):
    """One activation word: ``data_width // 8`` INT8, element ``b`` in byte ``b``."""
    return data.ArrayLayout(signed(8), pu.data_width // 8)


class Layer:
    """One layer on ``pu``'s arrays: weights, mapping, golden INT32 outputs and SFU chain.

    ``capacity``: arrays the mapping may use (default: the PU's).
    """

    def __init__(self, pu, rng, m, n, n_slc, ber, seed, capacity=None):
        self.pu, self.m, self.n = pu, m, n
        p = pu.params
        self.w = rng.integers(-128, 128, (m, n))
        modes = np.array(["mlc"] * n, dtype=object)
        modes[rng.choice(n, n_slc, replace=False)] = "slc"
        self.pm = program_matrix(self.w, list(modes), ber=ber, seed=seed, rows=p.rows,
                                 cols=p.cols, slc_bits=p.slc_bits, mlc_bits=p.mlc_bits)
        self.tiles = self.pm.tiles
        capacity = capacity or pu.n_arrays
        assert len(self.tiles) <= capacity, \
            f"the mapping needs {len(self.tiles)} arrays, {capacity} are there"
        assert {t.mode for t in self.tiles} == {"slc", "mlc"}, "the mapping is not mixed"
        self.parts = -(-m // p.rows)
        self.sfu = None                               # (s1, s2, gelu) bit patterns / flag
        # activation words per output vector: whole row chunks of a next layer
        self.out_words = -(-n // p.rows) * pu.words

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
        return int(self.tiles[t].rows_idx[0]) // self.pu.params.rows

    def words(self, x):
        """(tag, data) of the layer's input words: tag = chunk * words + word in chunk."""
        xp = np.zeros(self.parts * self.pu.params.rows, dtype=np.int64)
        xp[:len(x)] = x
        return out_words(self.pu, xp, len(xp) // (self.pu.data_width // 8))


def out_words(pu, vals, n_words):
    """INT8 ``vals`` packed into ``n_words`` activation words (tag, data), the rest 0."""
    layout, bpw = word_layout(pu), pu.data_width // 8
    vals = list(vals) + [0] * (n_words * bpw - len(vals))
    return [(w, lib.pack(layout, vals[w * bpw:(w + 1) * bpw])) for w in range(n_words)]


def config(pu_dest, register, value, *, port=0, tag=0, index=0):
    """A CONFIG packet (destination, kind, tag, data) for PU ``pu_dest`` writing ``value``
    to ``register`` (+ ``index``; a member of a unit's register enum) of inner ``port``."""
    rmap = {ArrayReg: ARRAY_REGISTERS, BridgeReg: BRIDGE_REGISTERS, AggReg: AGG_REGISTERS,
            DigReg: DIG_REGISTERS}[type(register)]
    return pu_dest, Kind.CONFIG, tag, rmap.word(register, value, index=index, target=port)


def array_config(pu, pu_dest, t, tile, offset=0):
    """CONFIG packets that set PU array ``t`` up for ``tile`` (a programmed tile: its
    ``mode`` and ``out_idx``): the cell mode and the output table (the tile's output
    columns + ``offset``, unused entries cleared)."""
    port, a = pu.array_location(t)
    mode = Mode.MLC if tile.mode == "mlc" else Mode.SLC
    cfg = [config(pu_dest, ArrayReg.MODE, mode.value, port=port, tag=a)]
    for j in range(pu.params.neurons("mlc")):
        entry = ENTRY_USED | offset + int(tile.out_idx[j]) if j < len(tile.out_idx) else 0
        cfg.append(config(pu_dest, ArrayReg.TABLE, entry, port=port, tag=a, index=j))
    return cfg


def pu_config(layer, pu, pu_dest, act_route=0, arrays=None):
    """CONFIG packets (destination, kind, tag, data) programming ``pu`` for ``layer``.

    ``pu_dest``: the PU's global address; ``act_route``: where its activation words go
    (global address). With ``layer.sfu`` set the aggregator feeds the digital module;
    otherwise INT32 RESULT packets leave the PU (to global address 0). ``arrays``: the
    PU array of each tile (default: tile ``t`` on array ``t``).
    """
    agg, dig = pu.agg_port, pu.digital_port(0) if pu.n_digital else None
    cfg = array_configs(layer, pu, pu_dest, arrays)
    cfg += mask_configs(layer, pu, pu_dest, arrays)
    cfg += [config(pu_dest, AggReg.PARTS, layer.parts, port=agg),
            config(pu_dest, BridgeReg.ROUTE, route_value(0, Kind.RESULT),
                   index=Kind.RESULT.value),
            config(pu_dest, BridgeReg.ROUTE, route_value(act_route, Kind.ACTIVATION),
                   index=Kind.ACTIVATION.value)]
    if layer.sfu is None:
        cfg.append(config(pu_dest, AggReg.DEST, 0, port=agg))
    else:
        s1, s2, gelu = layer.sfu
        cfg.append(config(pu_dest, AggReg.DEST, dig, port=agg))
        for reg, value in ((DigReg.SCALE_IN, s1), (DigReg.SCALE_OUT, s2),
                           (DigReg.GELU, int(gelu)), (DigReg.DEST, 0),
                           (DigReg.OUTPUTS, layer.n), (DigReg.WORDS, layer.out_words)):
            cfg.append(config(pu_dest, reg, value, port=dig))
    return cfg


def array_configs(layer, pu, pu_dest, arrays=None):
    """The CONFIG packets of :func:`array_config` for every tile of ``layer``, tile ``t``
    on PU array ``arrays[t]`` (default ``t``)."""
    at = list(arrays) if arrays is not None else list(range(len(layer.tiles)))
    return [c for t, tile in enumerate(layer.tiles)
            for c in array_config(pu, pu_dest, at[t], tile)]


def mask_configs(layer, pu, pu_dest, arrays=None):
    """The bridge's scatter masks of ``layer``'s row chunks (tile ``t`` on PU array
    ``arrays[t]``, default ``t``)."""
    at = list(arrays) if arrays is not None else list(range(len(layer.tiles)))
    cfg = []
    for c in range(layer.parts):
        mask = sum(1 << at[t] for t in range(len(layer.tiles)) if layer.chunk(t) == c)
        for j in range(pu.mask_regs):
            cfg.append(config(pu_dest, BridgeReg.MASK, (mask >> (16 * j)) & 0xFFFF, tag=c,
                              index=j))
    return cfg


def crossbar_bank(dut, clock, layer, base=0, n_arrays=None):
    """The analog side of ``layer``'s arrays (design arrays ``base + t``): array ``t``
    answered by tile ``t``'s crossbar, the other arrays up to ``n_arrays`` tied off."""
    bank = lib.CrossbarBank(dut, clock, layer.pu.params.rows)
    for t, tile in enumerate(layer.tiles):
        bank.add(f"xbar__{base + t}", tile.crossbar)
    for t in range(len(layer.tiles), n_arrays or layer.pu.n_arrays):
        bank.tie_off(f"xbar__{base + t}")
    return bank


class LayerScoreboard:
    """Golden outputs of every vector of the LAST layer of ``layers``.

    INT32 mode (last layer without SFU): RESULT packets, matched to a vector by the parity
    bit of their tag, any order within a vector. INT8 mode: ACTIVATION words, whole
    vectors in order, words 0, 1, ... of each; every word compared exactly.
    """

    def __init__(self, layers, pu, source=0):
        self.layers, self.pu, self.source = layers, pu, source
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
        exp = dict(out_words(self.pu, h, self.layers[-1].out_words)) if self.int8 else h
        self.vectors.append([x, exp, {}, cycle, None])
        self.inflight[0 if self.int8 else v % 2].append(v)
        return v

    def check(self, pkt, cycle):
        src, dst, kind, tag, data = pkt
        dw, tw = self.pu.data_width, self.pu.tag_width
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
            parity, out = tag >> (tw - 1), tag & ((1 << (tw - 1)) - 1)
            assert self.inflight[parity], f"result {pkt} for no vector in flight"
            v = self.inflight[parity][0]
            _, exp, got, _, _ = self.vectors[v]
            assert 0 <= out < self.n and out not in got, f"vector {v}: output {out} twice or unknown"
            val = data - (1 << dw) if data >> (dw - 1) else data
            assert val == exp[out], f"vector {v} output {out}: RTL {val}, golden {exp[out]}"
            got[out] = val
            complete, queue = len(got) == self.n, self.inflight[parity]
        self.checked += 1
        if complete:
            self.vectors[v][4] = cycle
            queue.popleft()

    def done(self, v):
        return self.vectors[v][4] is not None


def packet(value):
    """``(source, destination, kind, tag, data)`` of an unpacked packet."""
    h = value["header"]
    return h["source"], h["destination"], h["kind"], h["tag"], value["data"]


class TB:
    """IO side of one PU (or of a chip: ``layers`` on consecutive PUs); ``pu`` gives the
    PU geometry, ``layout`` the packet layout of ``i`` / ``o``."""

    def __init__(self, dut, seed, layers, pu, layout, p_valid=1.0, p_ready=0.7, source=0,
                 backpressure=None):
        self.dut, self.layers, self.pu, self.layout = dut, layers, pu, layout
        self.backpressure = backpressure          # a pause generator instead of p_ready
        self.rng = np.random.default_rng(seed)
        self.prng = lib.rng(seed)
        self.p_valid, self.p_ready = p_valid, p_ready
        self.clock = lib.TbClock(dut)
        self.scoreboard = LayerScoreboard(layers, pu, source)

    async def start(self):
        self.source = lib.StreamSource(
            self.dut, "i", self.clock, layout=self.layout,
            idle=lib.random_pauses(1 - self.p_valid, lib.rng(self.prng.random())))
        self.sink = lib.StreamSink(
            self.dut, "o", self.clock, layout=self.layout,
            backpressure=(self.backpressure if self.backpressure is not None else
                          lib.random_pauses(1 - self.p_ready, lib.rng(self.prng.random()))),
            callback=lambda value, cycle: self.scoreboard.check(packet(value), cycle))
        await self.clock.start()

    def push(self, dest, kind, tag, data):
        self.source.send({"header": {"source": 0, "destination": dest, "kind": kind,
                                     "tag": tag}, "data": data})

    def send_vector(self, x, dest):
        """Input words of the first layer in a random order (any order is allowed)."""
        words = self.layers[0].words(x)
        for i in self.rng.permutation(len(words)):
            self.push(dest, Kind.ACTIVATION, *words[i])

    async def run(self, config, xs, dest, max_cycles):
        """Send ``config``, then the vectors ``xs`` to global address ``dest`` with at
        most two in flight; returns the cycle the first vector was sent."""
        for c in config:
            self.push(*c)
        clock = self.clock
        await clock.wait(lambda: not self.source.busy, 100 * len(config) + 100, "configuration")
        sb = self.scoreboard
        v_next = 0
        start = clock.cycle
        while v_next < len(xs) or not all(sb.done(v) for v in range(len(sb.vectors))):
            if v_next < len(xs) and (v_next < 2 or sb.done(v_next - 2)):
                sb.add(xs[v_next], clock.cycle)
                self.send_vector(xs[v_next], dest)
                v_next += 1
            await clock.cycles(1)
            assert clock.cycle - start < max_cycles, "layer did not finish"
        await clock.cycles(50)          # nothing more may come out
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
    pu = lib.design()
    p = pu.params
    seed = lib.seed(name)
    rng = np.random.default_rng(seed)
    m, n = P.get("m", 2 * p.rows), P.get("n", p.neurons("slc") + p.neurons("mlc"))
    layer = Layer(pu, rng, m, n, P.get("n_slc", p.neurons("slc")), ber, seed)
    xs = input_vectors(seed, P.get("vectors", 2), m)
    if sfu:
        layer.set_sfu(xs, gelu)
    # outside a chip, packets leave with the inner source port
    port = pu.digital_port(0) if sfu else pu.agg_port
    tb = TB(dut, seed, [layer], pu, pu.ext_layout, p_valid=p_valid, p_ready=p_ready,
            source=port % (1 << pu.ext_addr_width))
    bank = crossbar_bank(dut, tb.clock, layer)
    await tb.start()
    bound = 4 * len(xs) * cycles_per_vector(pu, "mlc") + 3000
    start = await tb.run(pu_config(layer, pu, 1), xs, 1, bound)
    sb = tb.scoreboard
    lat = [v[4] - v[3] for v in sb.vectors]
    total = sb.vectors[-1][4] - start
    lib.report("pu", REPORT, test=name, ber=ber, sfu=sfu, gelu=gelu and sfu, m=m, n=n,
               n_slc=P.get("n_slc"), rows=p.rows, cols=p.cols, arrays=len(layer.tiles),
               modules=pu.n_modules, arrays_per_module=pu.arrays_per_module, vectors=len(xs),
               first_vector_latency=lat[0], total_cycles=total,
               cycles_per_vector_mlc_array=cycles_per_vector(pu, "mlc"),
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


# ------------------------------------------------------------------ attention (layer engine)

def engine_config(pu, asm, pu_dest=1, *, in_base=0, in_words=0, start=True):
    """CONFIG packets that load ``asm`` (a :class:`~hyflexpim.tb.layer_tb.Asm`) into the
    first digital module's layer engine, point the bridge's ACTIVATION input at it, set
    its input region and MODE, and (``start``) START it."""
    dig = pu.digital_port(0)
    cfg = [config(pu_dest, BridgeReg.ACT_IN, dig),
           config(pu_dest, DigReg.MODE, 1, port=dig),
           config(pu_dest, DigReg.IN_BASE, in_base, port=dig),
           config(pu_dest, DigReg.IN_WORDS, in_words, port=dig)]
    cfg += [config(pu_dest, reg, value, port=dig) for reg, value in asm.config_writes()]
    if start:
        cfg.append(config(pu_dest, DigReg.START, 0, port=dig))
    return cfg


async def attention_test(dut, name, causal):
    """One head through the PU's digital module: Q/K/V INT32 rows in, INT8 conversion,
    KV cache, scores, softmax on the SFU, INT8 probabilities, context, INT8 context out;
    S, P, O compared with models.digital_pim.attention_head, every word with the engine
    model."""
    from hyflexpim.models import digital_pim as dpim
    from hyflexpim.tb.layer_tb import EngineModel, attention_program
    pu = lib.design()
    dig = pu.digital_module(0)
    eng = dig.make_engine()
    e = eng.params
    d, T, head = e["head_dim"], e["max_seq"], e["heads"] - 1
    seed = lib.seed(name)
    rng = np.random.default_rng(seed)
    acc = rng.integers(-6000, 6001, (T, 3 * d))
    acc[0, :3] = [(1 << 31) - 1, -(1 << 31), 0]
    h = lambda v: int(fp16.from_float(v))           # noqa: E731
    scales = (h(2.0 ** -9), h(8.0), h(2.0 ** -12), h(127.0), h(2.0 ** -10), h(1.0))
    asm = attention_program(eng, head=head, tokens=T, causal=causal, scales=scales)
    # the expected values: the FP16 model and the digital PIM golden model
    s1, s2, s3, sp, s4, s5 = scales
    x8 = fp16.to_int8(fp16.from_int32(acc, s1), s2).astype(np.int64)
    q8, k8, v8 = x8[:, :d], x8[:, d:2 * d], x8[:, 2 * d:]
    pad = e["softmax_n"] - T

    def probs(s):
        s16 = np.where(s == dpim.MASKED, np.uint16(0xFC00), fp16.from_int32(s, s3))
        s16 = np.concatenate([s16, np.full((T, pad), 0xFC00, np.uint16)], 1)
        p16 = fp16.softmax(s16, lanes=e["sfu_lanes"], slots=e["sfu_slots"])[:, :T]
        return fp16.to_int8(p16, sp).astype(np.int64)

    S, Pm, O = dpim.attention_head(q8, k8, v8, probs, causal, arrays=e["pim_arrays"],
                                   cols=e["pim_cols"])
    o8 = fp16.to_int8(fp16.from_int32(O, s4), s5).astype(np.int64)
    model = EngineModel(eng)
    for addr, words in asm.image.items():
        model.write(addr, words)
    model.write(0, (acc & 0xFFFFFFFF).reshape(-1))
    model.run(asm.program)
    exp = [(d_, k, t, v) for d_, k, t, v in model.out]
    # the golden values, word by word, against the engine model's packets
    u32 = lambda a: [int(v) & 0xFFFFFFFF for v in np.asarray(a).reshape(-1)]   # noqa: E731
    packed = lambda a: [int(sum((int(r[4 * w + b]) & 0xFF) << (8 * b) for b in range(4)))  # noqa: E731
                        for r in np.asarray(a) for w in range(len(r) // 4)]
    golden = u32(S) + packed(Pm) + u32(O) + packed(o8)
    assert [v for _, _, _, v in exp] == golden, "the engine model differs from the golden model"
    clock = lib.TbClock(dut)
    got = []
    sink = lib.StreamSink(dut, "o", clock, layout=pu.ext_layout,
                          backpressure=lib.random_pauses(0.3, lib.rng(seed)),
                          callback=lambda value, cycle: got.append((packet(value), cycle)))
    src = lib.StreamSource(dut, "i", clock, layout=pu.ext_layout,
                           idle=lib.random_pauses(0.2, lib.rng(seed + 1)))
    bank = lib.ArrayBank(dut, clock, rows=e["pim_rows"], cols=e["pim_cols"],
                         arrays=e["pim_arrays"], prefix="pim__0")
    xb = lib.CrossbarBank(dut, clock, pu.params.rows)
    for t in range(pu.n_arrays):
        xb.tie_off(f"xbar__{t}")
    await clock.start()

    def push(dest, kind, tag, data):
        src.send({"header": {"source": 0, "destination": dest, "kind": kind, "tag": tag},
                  "data": data})

    for c in engine_config(pu, asm, in_base=0, in_words=3 * d):
        push(*c)
    start = None
    for t in range(T):
        for w in range(3 * d):
            push(1, Kind.ACTIVATION, w, int(acc[t, w]) & 0xFFFFFFFF)
    await clock.wait(lambda: len(got) >= len(exp), 400_000, "the attention results")
    await clock.cycles(50)
    assert len(got) == len(exp), f"{len(got)} words, expected {len(exp)}"
    port = pu.digital_port(0) % (1 << pu.ext_addr_width)
    for n, ((pkt, _), (_, kind, tag, value)) in enumerate(zip(got, exp)):
        assert pkt == (port, 0, kind, tag, value), \
            f"word {n}: RTL {pkt}, expected {(port, 0, kind, tag, value)}"
    first_in = src.first
    lib.report("pu attention", REPORT, test=name, causal=causal, tokens=T, head_dim=d,
               words=len(got), cycles=got[-1][1] - first_in, pim_ops=len(bank.log),
               p_distinct=int(len(np.unique(Pm))), o8_distinct=int(len(np.unique(o8))))


@cocotb.test()
async def attention_head(dut):
    """One head, all keys: S, P, O bit-exact with models.digital_pim.attention_head."""
    await attention_test(dut, "attention_head", causal=False)


@cocotb.test()
async def attention_head_causal(dut):
    """The same with the causal mask (query t sees keys 0..t)."""
    await attention_test(dut, "attention_head_causal", causal=True)


# ------------------------------------------------------------------ reconfiguration, stalls, reset

def _small_layer(pu, rng, m, n, n_slc, seed):
    return Layer(pu, rng, m, n, n_slc, None, seed)


async def _run_layer(tb, layer, xs, dest=1, config_packets=None, bound=None):
    """Run ``xs`` through ``layer`` on ``tb`` (a fresh scoreboard of that layer; the
    configuration packets first)."""
    tb.layers = [layer]
    port = tb.pu.digital_port(0) if layer.sfu else tb.pu.agg_port
    tb.scoreboard = LayerScoreboard([layer], tb.pu, port % (1 << tb.pu.ext_addr_width))
    bound = bound or 4 * len(xs) * cycles_per_vector(tb.pu, "mlc") + 3000
    return await tb.run(config_packets or [], xs, dest, bound)


def _bank(dut, clock, pu, placed):
    """A crossbar bank answering ``pu``'s arrays from ``placed``: ``{array: crossbar}``,
    the others tied off."""
    bank = lib.CrossbarBank(dut, clock, pu.params.rows)
    for a in range(pu.n_arrays):
        if a in placed:
            bank.add(f"xbar__{a}", placed[a])
        else:
            bank.tie_off(f"xbar__{a}")
    return bank


@cocotb.test()
async def narrower_layer_after_a_wider_one(dut):
    """Layer 1 (32 x 12, two row chunks, four arrays: SLC, MLC, SLC, MLC, SFU with GELU);
    then on the same PU, without reset, layer 2 (16 x 6, one chunk, INT32 out) on arrays
    3 and 2, each in the other cell mode than in layer 1: the chunk-0 scatter mask, the
    tables of arrays 2 and 3, PARTS (2 -> 1) and the aggregator's DEST rewritten, arrays
    0 and 1 keeping layer 1's tables, chunk 1 its mask; then layer 3 (16 x 6, SFU, GELU
    off) on arrays 0 and 1 (modes switched again), its configuration streamed right
    behind layer 2's last input words while layer 2's SLC and MLC results are still in
    flight. Every output word exact, none extra (no stale TABLE, MASK or PARTS entry;
    the digital module's bytes 6.. of every word 0 although layer 1 wrote 12 outputs)."""
    pu = lib.design()
    seed = lib.seed("narrower_layer_after_a_wider_one")
    rng = np.random.default_rng(seed)
    l1 = _small_layer(pu, rng, 32, 12, pu.params.neurons("slc"), seed)
    l2 = _small_layer(pu, rng, 16, 6, 2, seed + 1)
    l3 = _small_layer(pu, rng, 16, 6, 2, seed + 2)
    assert [t.mode for t in l1.tiles] == ["slc", "mlc", "slc", "mlc"]
    assert [t.mode for t in l2.tiles] == ["slc", "mlc"] == [t.mode for t in l3.tiles]
    x1, x2, x3 = (input_vectors(seed + k, 2, m) for k, m in ((0, 32), (1, 16), (2, 16)))
    l1.set_sfu(x1, gelu=True)
    l3.set_sfu(x3, gelu=False)
    l2.sfu = None
    tb = TB(dut, seed, [l1], pu, pu.ext_layout, p_valid=0.8, p_ready=0.7)
    bank = _bank(dut, tb.clock, pu, {t: tile.crossbar for t, tile in enumerate(l1.tiles)})
    await tb.start()
    await _run_layer(tb, l1, x1, config_packets=pu_config(l1, pu, 1))
    assert bank.samples == 8 * len(x1) * 4
    bank.stop()
    # layer 2 on arrays 3 (SLC, was MLC) and 2 (MLC, was SLC); layer 3 on 1 (SLC, was
    # MLC) and 0 (MLC, was SLC)
    at2, at3 = [3, 2], [1, 0]
    bank = _bank(dut, tb.clock, pu, {**{a: t.crossbar for a, t in zip(at2, l2.tiles)},
                                     **{a: t.crossbar for a, t in zip(at3, l3.tiles)}})
    await _run_layer(tb, l2, x2, config_packets=pu_config(l2, pu, 1, arrays=at2))
    assert bank.samples == 8 * len(x2) * 2
    # layer 2 again (SFU path, layer 3's scales) with layer 3's arrays and chunk mask
    # written right behind its last input words
    l2.sfu = l3.sfu
    cfg = pu_config(l2, pu, 1, arrays=at2)
    mid = array_configs(l3, pu, 1, at3) + mask_configs(l3, pu, 1, at3)
    tb.layers = [l2]
    sb = tb.scoreboard = LayerScoreboard([l2], pu, pu.digital_port(0) % (1 << pu.ext_addr_width))
    for c in cfg:
        tb.push(*c)
    await tb.clock.wait(lambda: not tb.source.busy, 5000, "configuration")
    xs = list(x2) + list(x3)
    v_next, start = 0, tb.clock.cycle
    bound = 6 * len(xs) * cycles_per_vector(pu, "mlc") + 5000
    while v_next < len(xs) or not all(sb.done(v) for v in range(len(sb.vectors))):
        if v_next < len(xs) and (v_next < 2 or sb.done(v_next - 2)):
            if v_next == len(x2):
                sb.layers = tb.layers = [l3]
            sb.add(xs[v_next], tb.clock.cycle)
            tb.send_vector(xs[v_next], 1)
            if v_next == len(x2) - 1:
                # the next layer's configuration right behind the last input words
                in_flight = [v for v in range(len(sb.vectors)) if not sb.done(v)]
                assert in_flight, "nothing in flight when the configuration was sent"
                for c in mid:
                    tb.push(*c)
            v_next += 1
        await tb.clock.cycles(1)
        assert tb.clock.cycle - start < bound, "the layers did not finish"
    await tb.clock.cycles(50)
    assert sb.checked == len(xs) * l3.out_words
    assert bank.samples == 8 * 2 * (len(x2) + len(xs))


@cocotb.test()
async def long_stall_then_full_rate(dut):
    """The PU's output held not ready for 3 vector times (every array's conversion of a
    vector, several times over) while two vectors' input words keep arriving, then
    released; two rounds. The results wait inside (digital module, inner bus, bridge;
    the arrays and the aggregator held back), every INT8 word exact and in order, none
    before the release, and at the release the words of both vectors (complete by then)
    leave back to back, one per cycle."""
    pu = lib.design()
    seed = lib.seed("pu_long_stall_then_full_rate")
    rng = np.random.default_rng(seed)
    layer = _small_layer(pu, rng, 32, 12, pu.params.neurons("slc"), seed)
    xs = input_vectors(seed, 4, 32)
    layer.set_sfu(xs)
    hold = lib.Hold(True)
    tb = TB(dut, seed, [layer], pu, pu.ext_layout, backpressure=hold)
    bank = crossbar_bank(dut, tb.clock, layer)
    await tb.start()
    out = []
    check = tb.sink.callback
    tb.sink.callback = lambda value, cycle: (out.append(cycle), check(value, cycle))
    stall = 3 * cycles_per_vector(pu, "mlc")
    releases = []

    async def driver():
        sb = tb.scoreboard
        for rnd in range(2):
            await tb.clock.wait(lambda: len(sb.vectors) >= 2 * rnd + 2, 200_000, "two vectors")
            n_out = len(out)
            hold.held = True
            await tb.clock.cycles(stall)
            assert len(out) == n_out, "a word left while the output was held"
            releases.append(len(out))
            hold.held = False
            await tb.clock.wait(lambda: sb.done(2 * rnd + 1), 200_000, "the vectors",
                                events=True)

    task = cocotb.start_soon(driver())
    await tb.run(pu_config(layer, pu, 1), xs, 1,
                 4 * len(xs) * cycles_per_vector(pu, "mlc") + 3 * stall + 3000)
    await task
    per_round = 2 * layer.out_words
    for rnd, first in enumerate(releases):
        cycles = out[first:first + per_round]
        assert len(cycles) == per_round and lib.back_to_back(cycles), \
            f"round {rnd}: {per_round} words after the release at cycles {cycles}"
    assert bank.samples == 8 * len(xs) * len(layer.tiles)


@cocotb.test()
async def reset_in_every_state(dut):
    """Reset with the PU configured and idle, half-way through a vector's input words,
    with the arrays converting, and with results waiting behind a held output. After
    each the registers are at their documented reset values: every scatter mask 0, so
    a vector sent without configuration reaches no array and nothing comes out; then
    the layer configured again runs exact (INT32 and SFU path alternately)."""
    pu = lib.design()
    seed = lib.seed("pu_reset_in_every_state")
    rng = np.random.default_rng(seed)
    layer = _small_layer(pu, rng, 32, 12, pu.params.neurons("slc"), seed)
    xs = input_vectors(seed, 2, 32)
    hold = lib.Hold(False)
    tb = TB(dut, seed, [layer], pu, pu.ext_layout, backpressure=hold)
    bank = crossbar_bank(dut, tb.clock, layer)
    await tb.start()
    got = []
    check = tb.sink.callback
    tb.sink.callback = lambda value, cycle: (got.append(packet(value)), check(value, cycle))
    cpv = cycles_per_vector(pu, "mlc")
    for k, state in enumerate(("idle", "input words", "converting", "output waiting")):
        layer.sfu = None
        if k % 2:
            layer.set_sfu(xs)
        await _run_layer(tb, layer, xs[k % 2:k % 2 + 1], config_packets=pu_config(layer, pu, 1))
        samples = bank.samples
        words = layer.words(xs[0])
        if state == "input words":
            for w in words[:len(words) // 2]:
                tb.push(1, Kind.ACTIVATION, *w)
            await tb.clock.wait(lambda: not tb.source.busy, 2000, "the words")
        elif state == "converting":
            for w in words:
                tb.push(1, Kind.ACTIVATION, *w)
            await tb.clock.wait(lambda: bank.samples > samples, 5000, "a conversion")
        elif state == "output waiting":
            hold.held = True
            for w in words:
                tb.push(1, Kind.ACTIVATION, *w)
            await tb.clock.cycles(2 * cpv)
            assert bank.samples == samples + 8 * len(layer.tiles)
        cocotb.log.info(f"pu: reset {state}")
        n_got = len(got)
        await tb.clock.reset()
        lib.withdraw(tb.source)
        bank.flush()
        hold.held = False
        await tb.clock.cycles(3)
        assert len(got) == n_got
        # reset values: scatter masks 0, tables unused: a vector goes nowhere
        samples = bank.samples
        for w in words:
            tb.push(1, Kind.ACTIVATION, *w)
        await tb.clock.cycles(400)      # a configured array starts converting within 100
        assert bank.samples == samples and len(got) == n_got, \
            "a vector was converted or answered after reset without configuration"
    layer.sfu = None
    await _run_layer(tb, layer, xs, config_packets=pu_config(layer, pu, 1))
    assert len(got) > 0
