"""cocotb testbench of a whole transformer layer on a processing unit: the layer engine
in the PU's digital module, the analog projections on the PU's own analog arrays.

The PU under test is rebuilt from the registry (:func:`hyflexpim.tb.lib.design`); it must
have the layer engine (``engine``) and arrays of the layer's geometry (``rows`` = the
engine's row chunk ``2**word_bits * data_width / 8``, ``cols``, ``slc_bits``,
``mlc_bits`` those of :class:`~hyflexpim.models.transformer.ChipFormats`). The layer
(:func:`hyflexpim.tb.layer_tb.layer_case`: hidden 32, 2 heads, FFN 64, fc1 factored) is
compiled by :class:`~hyflexpim.tb.layer_tb.LayerProgram` for ``tokens`` tokens; every
tile of every stored matrix's programming (``AnalogMatrix.programs``) goes on one PU
array (:func:`place`): its cell mode and output table by CONFIG packets, its crossbar
(the golden model's own programmed cells, noise off or on) answering the array's
comparator through :class:`~hyflexpim.tb.lib.CrossbarBank`. The engine's SENDs reach
the arrays over the inner bus, each array's partial sums go through the partial-sum
aggregator to the digital module as RESULTs, the digital PIM's ports are answered by
:class:`~hyflexpim.tb.lib.ArrayBank`. Program, constants, masks and routes are loaded
through the PU's bridge as CONFIG packets, the INT8 input rows enter as ACTIVATION
packets (random gaps), the output rows leave by ``o`` (random backpressure); every
output word is compared with :meth:`hyflexpim.models.transformer.ChipLayer.forward`.

Parameters (``HYFLEXPIM_PARAMS``): ``tokens`` (default 2), ``noise`` (default true: the
default device at ``ber``, default 4.04 %), ``causal`` (default false),
``max_cycles``. Figures go to ``HYFLEXPIM_PU_REPORT`` (JSON lines) when set.
"""

import os

import numpy as np

import cocotb

from hyflexpim.rtl.bus import Kind, AggReg
from hyflexpim.rtl.digital import DigReg
from hyflexpim.rtl.pu import BridgeReg, route_value
from hyflexpim.tb import lib
from hyflexpim.tb.layer_tb import LayerProgram, layer_case, rows_words
from hyflexpim.tb.pu_tb import array_config, config, packet

PU_DEST = 1          # the PU's global address; the testbench is address 0


def place(lp, pu):
    """The PU arrays of the layer's matrices: ``[(array, tile, chunk, offset)]``, the
    tiles of each matrix's programming in order on arrays 0, 1, ... (``chunk``: the
    engine's row-chunk number of the tile's rows, the scatter-mask index of its SENDs;
    ``offset``: where the matrix's results start in its vector group's, the output
    table's base: K's and V's after Q's, :attr:`LayerProgram.groups`).

    Raises:
        ValueError: the geometry of the arrays and of the layer's programming differ, a
            matrix is stored as two programmings (a per-weight SLC mask), or the tiles
            do not fit the PU's arrays.
    """
    p = pu.params
    offset = {id(mat): off for *_, members in lp.groups for *_, mat, off in members}
    out = []
    for name, _, mat, first, k in lp.matrices:
        if len(mat.programs) != 1:
            raise ValueError(f"matrix {name}: {len(mat.programs)} programmings; the PU "
                             "test places column- or row-mode matrices only")
        prog = mat.programs[0]
        g = prog.params
        if (g.rows, g.cols, g.slc_bits, g.mlc_bits) != (p.rows, p.cols, p.slc_bits,
                                                       p.mlc_bits) or lp.chunk != p.rows:
            raise ValueError(f"matrix {name}: arrays of {g.rows} x {g.cols} and "
                             f"chunks of {lp.chunk} rows; the PU has {p.rows} x {p.cols}")
        for tile in prog.tiles:
            j = int(tile.rows_idx[0]) // p.rows
            assert 0 <= j < k and int(tile.rows_idx[-1]) // p.rows == j
            out.append((len(out), tile, first + j, offset[id(mat)]))
    if len(out) > pu.n_arrays:
        raise ValueError(f"the layer needs {len(out)} arrays; the PU has {pu.n_arrays}")
    return out


def layer_config(lp, pu, placed, pu_dest=PU_DEST, out_route=0):
    """CONFIG packets (destination, kind, tag, data) that set the PU at global address
    ``pu_dest`` up for ``lp``: every placed array's mode and output table, the
    aggregator (parts per output: the row chunks of a matrix, the same for every matrix
    here; results to the digital module), the bridge (ACTIVATION in to the digital
    module; the output rows to global address ``out_route``: the IO port, or the PU of
    the next layer), the engine's scatter masks, MODE, input region and the program with
    its image."""
    dig = pu.digital_port(0)
    parts = {k for *_, k in lp.matrices}
    if len(parts) != 1:
        raise ValueError(f"the matrices have {sorted(parts)} row chunks; the program sets "
                         "no aggregator PARTS between them")
    cfg = [c for t, tile, _, off in placed for c in array_config(pu, pu_dest, t, tile, off)]
    cfg += [config(pu_dest, AggReg.PARTS, parts.pop(), port=pu.agg_port),
            config(pu_dest, AggReg.DEST, dig, port=pu.agg_port),
            config(pu_dest, BridgeReg.ACT_IN, dig),
            config(pu_dest, BridgeReg.ROUTE, route_value(out_route, Kind.ACTIVATION),
                   index=Kind.ACTIVATION.value),
            config(pu_dest, DigReg.MODE, 1, port=dig),
            config(pu_dest, DigReg.IN_BASE, lp.in_base, port=dig),
            config(pu_dest, DigReg.IN_WORDS, lp.in_words, port=dig)]
    masks = {}
    for t, _, c, _ in placed:
        masks[c] = masks.get(c, 0) | 1 << t
    for c, mask in sorted(masks.items()):
        for j in range(-(-pu.n_arrays // 16)):
            cfg.append(config(pu_dest, DigReg.MASK, (mask >> (16 * j)) & 0xFFFF, port=dig,
                              tag=c, index=j))
    cfg += [config(pu_dest, reg, value, port=dig) for reg, value in lp.config_writes()]
    return cfg


class Handoff:
    """Every packet a PU sends on the global bus (a :class:`~hyflexpim.tb.lib.StreamMonitor`
    callback) must be the next ACTIVATION word, to ``dest``, of the rows ``words``
    ``[(tag, data)]`` (its layer's golden output)."""

    def __init__(self, words, dest):
        self.expected, self.dest, self.checked = words, dest, 0

    def check(self, value, cycle):
        _, dst, kind, tag, data = packet(value)
        assert (dst, kind) == (self.dest, Kind.ACTIVATION), f"a PU sent {packet(value)}"
        assert self.checked < len(self.expected), f"extra word {packet(value)}"
        exp = self.expected[self.checked]
        assert (tag, data) == exp, (f"handoff word {self.checked}: RTL ({tag}, {data:#010x}), "
                                    f"golden ({exp[0]}, {exp[1]:#010x})")
        self.checked += 1


async def layers_test(dut, name, chip):
    """``chip`` False: one encoder layer on the PU under test (global address
    :data:`PU_DEST`). True: the chip under test, one layer per PU (``n_pus`` layers in a
    chain, the second fed by the first's INT8 output rows over the global bus), every
    word of each handoff checked on the bus and every word at the IO port compared."""
    from hyflexpim.rtl.pu import ProcessingUnit
    P = lib.params()
    tokens, noise = int(P.get("tokens", 2)), bool(P.get("noise", True))
    causal = bool(P.get("causal", False))
    seed = lib.seed(name)
    top = lib.design()
    if chip:
        pu = ProcessingUnit(**top.pu_params)
        pu._MustUse__silence = True
        dests = [top.pu_port(p) for p in range(top.n_pus)]
        routes = dests[1:] + [top.IO_PORT]
        layout, source = top.layout, dests[-1]
    else:
        pu, dests, routes = top, [PU_DEST], [0]
        layout, source = pu.ext_layout, pu.digital_port(0) % (1 << pu.ext_addr_width)
    eng = pu.digital_module(0).make_engine()
    e = eng.params
    stages, x = [], None
    for i in range(len(dests)):
        layer, xi, gold, fm = layer_case(seed + 7 * i, noise, causal, P.get("ber"),
                                         tokens=tokens, x=x)
        lp = LayerProgram(layer, eng, tokens, formats=fm)
        stages.append((layer, xi, gold, lp, place(lp, pu)))
        x = gold
    lp0, x0 = stages[0][3], stages[0][1]
    exp = [w for row in rows_words(stages[-1][2]) for w in row]
    tags = list(range(lp0.in_words)) * tokens
    clock = lib.TbClock(dut)
    got = []
    sink = lib.StreamSink(dut, "o", clock, layout=layout,                 # noqa: F841
                          backpressure=lib.random_pauses(0.3, lib.rng(seed)),
                          callback=lambda value, cycle: got.append((packet(value), cycle)))
    src = lib.StreamSource(dut, "i", clock, layout=layout,
                           idle=lib.random_pauses(0.1, lib.rng(seed + 1)))
    pims, xb, hands = [], lib.CrossbarBank(dut, clock, pu.params.rows), []
    for p, (*_, gold, lp, placed) in enumerate(stages):
        pims.append(lib.ArrayBank(dut, clock, rows=e["pim_rows"], cols=e["pim_cols"],
                                  arrays=e["pim_arrays"], prefix=f"pim__{p * pu.n_digital}"))
        base = p * pu.n_arrays
        for t, tile, *_ in placed:
            xb.add(f"xbar__{base + t}", tile.crossbar)
        for t in range(len(placed), pu.n_arrays):
            xb.tie_off(f"xbar__{base + t}")
        if p + 1 < len(stages):
            h = Handoff([(w % lp.in_words, v) for w, v in
                         enumerate(v for row in rows_words(gold) for v in row)], routes[p])
            lib.StreamMonitor(lib.core(dut).bus, f"i__{dests[p]}", clock, layout=layout,
                              callback=h.check)
            hands.append(h)
    await clock.start()

    def push(dest, kind, tag, data):
        src.send({"header": {"source": 0, "destination": dest, "kind": kind, "tag": tag},
                  "data": data})

    cfg = [c for (*_, lp, placed), d, r in zip(stages, dests, routes)
           for c in layer_config(lp, pu, placed, d, r)]
    for c in cfg:
        push(*c)
    await clock.wait(lambda: not src.busy, 40 * len(cfg) + 1000, "the configuration")
    start = clock.cycle
    for d in dests:
        push(*config(d, DigReg.START, 0, port=pu.digital_port(0)))
    for row in lp0.input_words(x0):
        for w, data in enumerate(row):
            push(dests[0], Kind.ACTIVATION, w, data)
    await clock.wait(lambda: len(got) >= len(exp), int(P.get("max_cycles", 4_000_000)),
                     "the output rows")
    await clock.cycles(50)
    assert len(got) == len(exp), f"{len(got)} words out, expected {len(exp)}"
    for n, ((pkt, _), want, tag) in enumerate(zip(got, exp, tags)):
        assert pkt == (source, 0, Kind.ACTIVATION, tag, want), \
            f"word {n} (token {n // lp0.in_words}): RTL {pkt}, golden " \
            f"{(source, 0, Kind.ACTIVATION, tag, want)}"
    for h in hands:
        assert h.checked == len(h.expected), \
            f"handoff: {h.checked} of {len(h.expected)} words seen"
    cycles = got[-1][1] - start
    arrays = [len(st[4]) for st in stages]
    slc = [sum(tile.mode == "slc" for _, tile, *_ in st[4]) for st in stages]
    assert xb.samples == 8 * tokens * sum(arrays), \
        f"{xb.samples} array samples, expected 8 planes x {tokens} vectors x {sum(arrays)} arrays"
    dut._log.info(f"{name}: {len(exp)} words bit-exact after {len(stages)} layer(s) "
                  f"({tokens} tokens, noise {'on' if noise else 'off'}"
                  f"{', causal' if causal else ''}), {cycles} cycles from START to the last "
                  f"word; arrays per layer {arrays} (SLC {slc}), {xb.samples} array samples, "
                  f"{sum(len(b.log) for b in pims)} digital PIM operations, "
                  f"{len(lp0.program)} instructions (layer 1)")
    lib.report("pu layer", os.environ.get("HYFLEXPIM_PU_REPORT"), test=name, seed=seed,
               layers=len(stages), tokens=tokens, noise=noise, causal=causal,
               words=len(exp), cycles=cycles, arrays=arrays, slc_arrays=slc,
               samples=xb.samples, handoff_words=[h.checked for h in hands],
               pim_ops=[len(b.log) for b in pims], instructions=len(lp0.program),
               int8_distinct=int(len(np.unique(np.asarray(stages[-1][2].q)))))


@cocotb.test()
async def pu_layer(dut):
    """One encoder layer through the PU: analog arrays, aggregator, digital module with
    the layer engine and digital PIM; every output word equal to the golden model."""
    await layers_test(dut, "pu_layer", chip=False)


@cocotb.test()
async def chip_two_layers(dut):
    """Two encoder layers on the chip's two PUs: layer 1's INT8 rows cross the global bus
    to PU 1 (checked word by word there), layer 2's leave by the IO port."""
    await layers_test(dut, "chip_two_layers", chip=True)
