"""cocotb end-to-end testbench of the processing unit (``ProcessingUnit``): a whole INT8
linear layer through the analog arrays, the inner bus and the partial-sum aggregator.

The layer ``y = x @ W`` (``m`` inputs x ``n`` outputs, INT8, a random mix of SLC and
MLC output columns) is mapped by :func:`hyflexpim.models.program_matrix`; tile ``t`` of
that mapping is programmed on PU array ``t``. Every array's comparator ``xbar__t__cmp``
is answered by that tile's :class:`~hyflexpim.models.crossbar.Crossbar` (noise off, or
on with the measured MLC BER), so the INT32 results must equal
``program_matrix(...).run(x)`` bit for bit.

Parts owned by :class:`TB`: :class:`CrossbarBank` (analog side of every array),
:class:`PacketDriver` (IO side: CONFIG packets, then ACTIVATION packets of each
vector, keeping at most two vectors in flight), :class:`ResultMonitor` (takes RESULT
packets off ``o`` under random backpressure), :class:`Scoreboard` (every output word
of every vector against the golden model; nothing missing, nothing twice).

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
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from hyflexpim.models import program_matrix
from hyflexpim.models.crossbar import Crossbar
from hyflexpim.rtl.bus import (Kind, packet_layout, pack_packet, unpack_packet, config_word,
                               AGG_REG_PARTS, AGG_REG_DEST)
from hyflexpim.rtl.pu import REG_MODE, ENTRY_USED
from hyflexpim.tb.bus_tb import test_seed, report as _report

P = json.loads(os.environ.get("HYFLEXPIM_PARAMS", "{}"))
N_MODULES = P.get("n_modules", 2)
APM = P.get("arrays_per_module", 2)
N_ARRAYS = N_MODULES * APM
ROWS = P.get("rows", 16)
COLS = P.get("cols", 32)
SLC_BITS = P.get("slc_bits", 6)
MLC_BITS = P.get("mlc_bits", 7)
DW = P.get("data_width", 32)
TW = P.get("tag_width", 8)
M = P.get("m", 2 * ROWS)
N = P.get("n", COLS // 8 + COLS // 4)
N_SLC = P.get("n_slc", COLS // 8)
VECTORS = P.get("vectors", 2)
N_PORTS = N_MODULES + 2
AW = max(1, (N_PORTS - 1).bit_length())
AGG_PORT = N_MODULES + 1
LAYOUT = packet_layout(AW, DW, TW)
BPW = DW // 8
WORDS = -(-ROWS // BPW)
WORD_BITS = (WORDS - 1).bit_length()
BER = 0.0404
REPORT = os.environ.get("HYFLEXPIM_PU_REPORT")


class Layer:
    """The layer, its mapping onto arrays and its golden outputs."""

    def __init__(self, rng, ber, seed):
        self.w = rng.integers(-128, 128, (M, N))
        modes = np.array(["mlc"] * N, dtype=object)
        modes[rng.choice(N, N_SLC, replace=False)] = "slc"
        self.modes = list(modes)
        self.pm = program_matrix(self.w, self.modes, ber=ber, seed=seed, rows=ROWS, cols=COLS,
                                 slc_bits=SLC_BITS, mlc_bits=MLC_BITS)
        self.tiles = self.pm.tiles
        assert len(self.tiles) <= N_ARRAYS, \
            f"the mapping needs {len(self.tiles)} arrays, the PU has {N_ARRAYS}"
        self.parts = -(-M // ROWS)
        assert {t.mode for t in self.tiles} == {"slc", "mlc"}, "the mapping is not mixed"

    def location(self, t):
        return 1 + t // APM, t % APM


class CrossbarBank:
    """Analog side of every array: S&H capture on ``sample``, comparator every cycle."""

    def __init__(self, dut, layer):
        self.dut = dut
        self.arrays = []
        for t, tile in enumerate(layer.tiles):
            sig = {f: getattr(dut, f"xbar__{t}__{f}") for f in ("wl", "sample", "sel", "trial", "cmp")}
            self.arrays.append([tile.crossbar, sig, None])
        for t in range(len(layer.tiles), N_ARRAYS):
            getattr(dut, f"xbar__{t}__cmp").value = 0
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
                    bits = np.array([(wl >> r) & 1 for r in range(ROWS)], dtype=np.int64)
                    entry[2] = xb.held_values(bits)
                    self.samples += 1


class PacketDriver:
    """IO side: drives ``i`` from a queue of packets (random gaps when ``p_valid`` < 1)."""

    def __init__(self, dut, rng, p_valid=1.0):
        self.dut, self.rng, self.p_valid = dut, rng, p_valid
        self.queue = deque()
        self.current = None
        self.sent = 0

    def push(self, dest, kind, tag, data):
        self.queue.append(pack_packet(LAYOUT, 0, dest, kind, tag, data))

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


class ResultMonitor:
    def __init__(self, dut, rng, p_ready):
        self.dut, self.rng, self.p_ready = dut, rng, p_ready

    def drive(self):
        self.dut.o__ready.value = int(self.rng.random() < self.p_ready)

    def observe(self):
        if int(self.dut.o__valid.value) and int(self.dut.o__ready.value):
            return unpack_packet(LAYOUT, self.dut.o__payload.value.to_unsigned())
        return None


class Scoreboard:
    """Golden outputs of every vector; results matched by the parity bit of their tag."""

    def __init__(self, layer):
        self.layer = layer
        self.inflight = {0: deque(), 1: deque()}
        self.vectors = []      # [x, expected y, received y (dict), cycle sent, cycle done]
        self.checked = 0

    def add(self, x, cycle):
        v = len(self.vectors)
        self.vectors.append([x, self.layer.pm.run(x[None, :])[0].astype(np.int64), {}, cycle, None])
        self.inflight[v % 2].append(v)
        return v

    def check(self, pkt, cycle):
        src, dst, kind, tag, data = pkt
        assert (src, dst, kind) == (AGG_PORT, 0, Kind.RESULT), f"unexpected packet {pkt}"
        parity, out = tag >> (TW - 1), tag & ((1 << (TW - 1)) - 1)
        assert self.inflight[parity], f"result {pkt} for no vector in flight"
        v = self.inflight[parity][0]
        _, exp, got, _, _ = self.vectors[v]
        assert 0 <= out < N and out not in got, f"vector {v}: output {out} twice or unknown"
        val = data - (1 << DW) if data >> (DW - 1) else data
        assert val == exp[out], f"vector {v} output {out}: RTL {val}, golden {exp[out]}"
        got[out] = val
        self.checked += 1
        if len(got) == N:
            self.vectors[v][4] = cycle
            self.inflight[parity].popleft()

    def done(self, v):
        return self.vectors[v][4] is not None


class TB:
    def __init__(self, dut, seed, ber, p_valid=1.0, p_ready=0.7):
        self.dut = dut
        self.rng = np.random.default_rng(seed)
        prng = random.Random(seed)
        self.layer = Layer(self.rng, ber, seed)
        self.bank = CrossbarBank(dut, self.layer)
        self.driver = PacketDriver(dut, random.Random(prng.random()), p_valid)
        self.monitor = ResultMonitor(dut, random.Random(prng.random()), p_ready)
        self.scoreboard = Scoreboard(self.layer)
        self.cycle = 0

    async def reset(self):
        cocotb.start_soon(Clock(self.dut.clk, 10, unit="ns").start())
        self.dut.rst.value = 1
        self.dut.i__valid.value = 0
        self.dut.o__ready.value = 0
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        cocotb.start_soon(self.bank.run())
        await RisingEdge(self.dut.clk)

    def configure(self):
        nmax = COLS // 4
        for t, tile in enumerate(self.layer.tiles):
            port, a = self.layer.location(t)
            self.driver.push(port, Kind.CONFIG, a,
                             config_word(REG_MODE, 1 if tile.mode == "mlc" else 0))
            for j in range(nmax):
                val = ENTRY_USED | int(tile.out_idx[j]) if j < len(tile.out_idx) else 0
                self.driver.push(port, Kind.CONFIG, a, config_word(j, val))
        self.driver.push(AGG_PORT, Kind.CONFIG, 0, config_word(AGG_REG_PARTS, self.layer.parts))
        self.driver.push(AGG_PORT, Kind.CONFIG, 0, config_word(AGG_REG_DEST, 0))

    def send_vector(self, x):
        order = []
        for t, tile in enumerate(self.layer.tiles):
            port, a = self.layer.location(t)
            xt = np.zeros(WORDS * BPW, dtype=np.int64)
            xt[:len(tile.rows_idx)] = x[tile.rows_idx]
            for w in range(WORDS):
                word = 0
                for b in range(BPW):
                    word |= (int(xt[w * BPW + b]) & 0xFF) << (8 * b)
                order.append((port, Kind.ACTIVATION, (a << WORD_BITS) | w, word))
        # Words of different arrays interleave at random (any order is allowed).
        for i in self.rng.permutation(len(order)):
            self.driver.push(*order[i])

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

    async def run_layer(self, xs, max_cycles):
        self.configure()
        while not self.driver.idle:
            await self.step()
        sb = self.scoreboard
        v_next = 0
        start = self.cycle
        while v_next < len(xs) or not all(sb.done(v) for v in range(len(sb.vectors))):
            if v_next < len(xs) and (v_next < 2 or sb.done(v_next - 2)):
                sb.add(xs[v_next], self.cycle)
                self.send_vector(xs[v_next])
                v_next += 1
            await self.step()
            assert self.cycle - start < max_cycles, "layer did not finish"
        for _ in range(50):          # nothing more may come out
            await self.step()
        assert sb.checked == len(xs) * N
        return start


def cycles_per_vector(mode):
    steps = MLC_BITS if mode == "mlc" else SLC_BITS
    return 8 * COLS * steps


async def layer_test(dut, name, ber, p_ready=0.7, p_valid=1.0):
    seed = test_seed(name)
    tb = TB(dut, seed, ber, p_valid=p_valid, p_ready=p_ready)
    await tb.reset()
    rng = np.random.default_rng(seed + 1)
    xs = rng.integers(-128, 128, (VECTORS, M))
    xs[0, :3] = [127, -128, 0]
    bound = 4 * VECTORS * cycles_per_vector("mlc") + 2000
    start = await tb.run_layer(xs, bound)
    sb = tb.scoreboard
    lat = [v[4] - v[3] for v in sb.vectors]
    total = sb.vectors[-1][4] - start
    _report("pu", REPORT, test=name, ber=ber, m=M, n=N, n_slc=N_SLC, rows=ROWS, cols=COLS,
           arrays=len(tb.layer.tiles), modules=N_MODULES, arrays_per_module=APM,
           vectors=len(xs), first_vector_latency=lat[0], total_cycles=total,
           cycles_per_vector_mlc_array=cycles_per_vector("mlc"),
           saturated_conversions=int(tb.layer.pm.saturated(xs)))
    assert tb.bank.samples == 8 * len(xs) * len(tb.layer.tiles)


@cocotb.test()
async def layer_noise_off(dut):
    """Ideal arrays: INT32 outputs equal the golden model's."""
    await layer_test(dut, "layer_noise_off", None)


@cocotb.test()
async def layer_noise_on(dut):
    """Programming noise calibrated to BER 4.04%: still bit-exact with the golden model."""
    await layer_test(dut, "layer_noise_on", BER, p_ready=0.3, p_valid=0.6)
