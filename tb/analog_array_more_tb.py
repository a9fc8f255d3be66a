"""cocotb testbench of the analog array top (``AnalogArray``): long stalls, reconfiguration
to a tile with fewer neurons, reset in every state of the array's control, and
(``geometry_boundary``, run on the boundary geometries only) random and extreme vectors
at the largest and smallest geometries.

The parts (:class:`~hyflexpim.tb.analog_tb.TB`: input source, result sink, crossbar bank,
scoreboard; :class:`~hyflexpim.tb.analog_tb.Tile`, the golden model
:func:`hyflexpim.models.program_matrix`) are those of ``tb/analog_tb.py``; every result
is compared word by word, in order, with the golden model of its tile and vector. This
module is separate from ``tb/analog_tb.py`` because its reset test reads the state of
the array's control inside the design (``lib.core(dut)``: the wordline driver's IR
flag, the ADC's busy flag) to check that each reset hits the state it is meant for;
``tb/analog_tb.py`` stays a testbench of the top's ports (Verilator builds of it keep
only the top visible).

Parameters: ``HYFLEXPIM_SEED``; ``HYFLEXPIM_PARAMS`` ``vectors`` (``geometry_boundary``).
"""

import numpy as np

import cocotb

from hyflexpim.models.encoding import INPUT_BITS, neurons_per_array
from hyflexpim.tb import lib
from hyflexpim.tb.analog_tb import (BER, COLS, DUT, MLC_BITS, RESULT, ROWS, SLC_BITS, TB, Tile,
                                    cycles_per_vector, random_tile)


@cocotb.test()
async def long_stall_then_full_rate(dut):
    """``o.ready`` held low for 5 vector times (4 + 1) with vectors queued (the array fills: IR,
    ADC, S&A and its output buffer, then refuses input), released: every result in
    order, exact, and from the first vector converted after the release on one result
    per ``8 x cols x steps`` cycles; in MLC, then in SLC."""
    seed = lib.seed("long_stall_then_full_rate")
    hold = lib.Hold(True)
    tb = TB(dut, seed, hold=hold)
    await tb.start()
    n = 5
    for mode in ("mlc", "slc"):
        tile = random_tile(tb.rng, mode, BER, seed + len(mode))
        hold.held = True
        first, base = len(tb.results), tb.source.sent
        for i in range(n):
            tb.send(tb.rng.integers(-128, 128, ROWS), tile, f"stall {mode} #{i}")
        cpv = cycles_per_vector(mode)
        await tb.clock.cycles(4 * cpv)
        assert len(tb.results) == first, "a result left while the output was held"
        taken = tb.source.sent
        assert taken - base < n and tb.source.busy and not int(dut.i__ready.value), "the stall did not reach the input"
        await tb.clock.cycles(cpv)
        assert tb.source.sent == taken, "input taken while the output was held"
        release = tb.clock.cycle
        hold.held = False
        await tb.drain(2 * n * cpv + 200)
        outs = [c for _, c in tb.results[first:]]
        assert len(outs) == n
        # the results that waited (output buffer, S&A) leave at once; the vector in the
        # wordline driver, whose first plane waited to be sampled, is converted from
        # the release on: its result and every later one at the full rate
        waited = sum(1 for c in outs if c - release < cpv // 2)
        steady = outs[waited:]
        gaps = {b - a for a, b in zip(steady, steady[1:])}
        dut._log.info(f"{mode}: {taken - base} of {n} vectors taken during the stall, {waited} results "
                      f"waited, then gaps {sorted(gaps)} (ideal {cpv})")
        assert waited >= 1 and gaps == {cpv}, f"{mode}: gaps {sorted(gaps)}, ideal {cpv}"
        assert steady[0] - release <= cpv + 2 * DUT.read_cycles + 16
        await tb.clock.cycles(10)


@cocotb.test()
async def reconfiguration_fewer_neurons(dut):
    """A full MLC tile, then a tile with fewer neurons (unused neuron slots hold weight 0,
    ``program_matrix``), then a full SLC tile and a narrower SLC one: the unused neurons'
    words are those of the golden model of the zero-padded tile (0 without saturation),
    never a stale word of the tile before (noise off, so the padded tile's crossbar is
    the narrow tile's)."""
    seed = lib.seed("reconfiguration_fewer_neurons")
    tb = TB(dut, seed, idle=0.2, ready_prob=0.7)
    await tb.start()
    zeros = unused = n = 0
    for mode in ("mlc", "slc"):
        full = random_tile(tb.rng, mode, None, seed)
        for _ in range(2):
            tb.send(tb.rng.integers(-128, 128, ROWS), full, f"{mode} full #{n}")
            n += 1
        k = max(1, neurons_per_array(mode, COLS) // 2 - 1)
        w = tb.rng.integers(-128, 128, (ROWS, k))
        narrow = Tile(w, mode, None, seed)
        pad = np.zeros((ROWS, neurons_per_array(mode, COLS)), dtype=np.int64)
        pad[:, :k] = w
        padded = Tile(pad, mode, None, seed)
        assert np.array_equal(narrow.crossbar.levels, padded.crossbar.levels), \
            "the model does not program unused slots with weight 0"
        for j in range(3):
            x = tb.rng.integers(0, 8, ROWS) if j else tb.rng.integers(-128, 128, ROWS)
            y = padded.expected(x)
            assert np.array_equal(y[:k], narrow.expected(x)[:k])
            zeros += int((y[k:] == 0).sum())
            unused += len(y) - k
            tb.send(x, narrow, f"{mode} {k} neurons #{n}", expected=y)
            n += 1
    await tb.drain(n * cycles_per_vector("mlc") * 3 + 500)
    assert tb.board.checked == n
    dut._log.info(f"{n} vectors; {zeros} of {unused} unused-neuron words are 0")
    assert zeros > unused // 2, "the narrow tiles' unused neurons were hardly ever 0"


@cocotb.test()
async def reset_in_every_state(dut):
    """Synchronous reset in each state of the array's control, the state checked at the
    reset: idle; IR loaded, first plane settling (nothing sampled yet); mid-conversion
    in SLC and in MLC; in the shift-and-add (every plane converted, no result yet);
    result waiting for ``ready``; stalled with the IR full and input refused. After
    each, nothing from before comes out and the next vector (SLC and MLC in turn; both
    after the last) is exact."""
    seed = lib.seed("reset_in_every_state")
    hold = lib.Hold(False)
    tb = TB(dut, seed, hold=hold)
    await tb.start()
    core = lib.core(dut)
    tiles = {m: random_tile(tb.rng, m, BER, seed + i) for i, m in enumerate(("slc", "mlc"))}
    steps = {"slc": SLC_BITS, "mlc": MLC_BITS}

    count = [0]

    async def after(state):
        """One vector after the reset, SLC and MLC in turn (both after the last)."""
        hold.held = False
        assert not int(dut.o__valid.value), f"{state}: a result is offered after the reset"
        start = tb.board.checked
        modes = ("slc", "mlc") if state == "while stalled" else (("slc", "mlc")[count[0] % 2],)
        count[0] += 1
        for mode in modes:
            tb.send(tb.rng.integers(-128, 128, ROWS), tiles[mode], f"after reset {state} {mode}")
        await tb.drain(3 * cycles_per_vector("mlc") + 200)
        assert tb.board.checked == start + len(modes)
        dut._log.info(f"reset {state}: exact after it")

    def one(mode, what):
        tb.send(tb.rng.integers(-128, 128, ROWS), tiles[mode], what)

    # idle
    await tb.clock.cycles(20)
    await tb.reset()
    await after("idle")

    # IR loaded, the first plane settling
    s0 = tb.bank.samples
    one("mlc", "dropped: settling")
    await tb.clock.wait(lambda: int(core.wl_driver.loaded.value), 50, "the IR load")
    assert tb.bank.samples == s0
    await tb.reset()
    await after("with the first plane settling")

    # mid-conversion, SLC and MLC
    for mode in ("slc", "mlc"):
        s0 = tb.bank.samples
        one(mode, f"dropped: converting {mode}")
        await tb.clock.wait(lambda: tb.bank.samples >= s0 + 3, 3 * cycles_per_vector(mode),
                            "three planes", events=True)
        await tb.clock.cycles(COLS * steps[mode] // 2)
        assert int(core.adc.active.value)
        await tb.reset()
        await after(f"mid-conversion {mode}")

    # in the shift-and-add: the last plane converted, the result not out yet
    s0 = tb.bank.samples
    one("slc", "dropped: in the S&A")
    await tb.clock.wait(lambda: tb.bank.samples >= s0 + INPUT_BITS, 2 * cycles_per_vector("slc"),
                        "the last plane", events=True)
    await tb.clock.wait(lambda: not int(core.adc.active.value), COLS * SLC_BITS + 10,
                        "the last conversion")
    assert not int(dut.o__valid.value)
    await tb.reset()
    await after("in the shift-and-add")

    # result waiting for ready
    hold.held = True
    one("mlc", "dropped: waiting")
    await tb.clock.wait(lambda: int(dut.o__valid.value), 2 * cycles_per_vector("mlc"), "o.valid")
    await tb.clock.cycles(5)
    await tb.reset()
    await after("with the result waiting")

    # stalled: output waiting, the next vector finished in the S&A, IR full, input refused
    hold.held = True
    for i in range(4):
        one(("slc", "mlc")[i % 2], f"dropped: stalled #{i}")
    await tb.clock.cycles(3 * cycles_per_vector("mlc"))
    assert int(dut.o__valid.value) and not int(dut.i__ready.value) and tb.source.busy
    await tb.reset()
    await after("while stalled")


@cocotb.test()
async def geometry_boundary(dut):
    """The array at a geometry boundary (run on the largest rows with the 16-bit ADC, the
    largest cols, both at once, and every minimum: 1 row, 8 cols, 1-bit ADC; each with
    the result width at its minimum): in SLC and MLC, a
    random tile noise off and one noise on, ``HYFLEXPIM_PARAMS`` ``vectors`` (default 2)
    random vectors each, then the all-max input on an all-max tile and the all-min input
    on an all-min tile (the widest results), every result word compared with
    ``program_matrix``; the vectors back to back."""
    seed = lib.seed("geometry_boundary")
    vectors = lib.params().get("vectors", 2)
    tb = TB(dut, seed)
    await tb.start()
    dut._log.info(f"geometry {ROWS} x {COLS}, ADC {SLC_BITS}/{MLC_BITS} bits, "
                  f"result width {RESULT['y'].shape.elem_shape.width}")
    n = 0
    for mode in ("slc", "mlc"):
        k = neurons_per_array(mode, COLS)
        for ber in (None, BER):
            tile = random_tile(tb.rng, mode, ber, seed + n)
            for _ in range(vectors):
                tb.send(tb.rng.integers(-128, 128, ROWS), tile, f"{mode} ber={ber} #{n}")
                n += 1
        for v, w in ((127, 127), (-128, -128), (127, -128)):
            tile = Tile(np.full((ROWS, k), w), mode, None, seed)
            tb.send(np.full(ROWS, v), tile, f"{mode} x={v} w={w} #{n}")
            n += 1
    await tb.drain(n * cycles_per_vector("mlc") + 500)
    assert tb.board.checked == n
    dut._log.info(f"{n} vectors exact")
