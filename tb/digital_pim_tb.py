"""cocotb testbench of the digital PIM controller (``DigitalPimController``) on its Verilog.

The array port ``pim__*`` is answered by the behavioural array model
(:class:`hyflexpim.models.digital_pim.DigitalArray`, ``strict``: a NOR on an operand
never written or on an output not preset fails the test): at every falling edge
:class:`ArrayBank` applies the operation the DUT drives and, for a READ, drives
``pim__rdata`` in the same cycle (:class:`hyflexpim.tb.lib.ArrayBank`). Every result beat is compared in order with exact
integer arithmetic on the host's copy of the KV cache (:class:`Host`); the array
operations of every product run are counted and their span compared with
:func:`hyflexpim.models.digital_pim.run_cycles`, and the cycles between the header beats
of back-to-back commands with :func:`hyflexpim.models.digital_pim.command_cycles`.

Built from :mod:`hyflexpim.tb.lib` (clock, stream source and sink, scoreboard, seeds,
the design from the registry, the array side :class:`~hyflexpim.tb.lib.ArrayBank`).
Parameters: ``HYFLEXPIM_PARAMS`` (JSON, ``quick``: fewer cases,
``n_keys``: the key counts of the cycle test), ``HYFLEXPIM_SEED``, ``HYFLEXPIM_REPORT``
(JSON lines of the measured cycles).
"""

import os

import numpy as np

import cocotb
from amaranth.hdl import Shape
from hyflexpim.models.digital_pim import MASKED, command_cycles, run_cycles
from hyflexpim.rtl.digital_pim import Cmd
from hyflexpim.tb import lib

DUT = lib.design()
LAY = DUT.layout
A, C, D, T, H, L = LAY.arrays, LAY.cols, LAY.head_dim, LAY.max_seq, LAY.heads, DUT.lanes
CMD = DUT.i.payload.shape()
RES = DUT.o.payload.shape()
QUICK = bool(lib.params().get("quick", False))
ARG_MAX = (1 << Shape.cast(CMD["arg"].shape).width) - 1     # the largest arg a header carries
REPORT = os.environ.get("HYFLEXPIM_REPORT")


def ArrayBank(dut, clock):
    """The arrays of the controller under test (:class:`hyflexpim.tb.lib.ArrayBank`)."""
    return lib.ArrayBank(dut, clock, rows=LAY.rows, cols=C, arrays=A)


def _uint(handle):
    """Unsigned value of a port (a one-bit port's value is a ``Logic``)."""
    v = handle.value
    return v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)


class Host:
    """The host's copy of the KV caches, and the beats each command must produce."""

    def __init__(self):
        self.k = [[] for _ in range(H)]
        self.v = [[] for _ in range(H)]

    def length(self, h):
        return len(self.k[h])

    def append(self, h, k, v):
        for kr, vr in zip(k, v):
            if self.length(h) < T:
                self.k[h].append(np.array(kr))
                self.v[h].append(np.array(vr))

    def n_keys(self, h, arg):
        n = self.length(h)
        return n if arg == 0 or arg > n else arg

    def score_beats(self, h, q, arg):
        n, length = self.n_keys(h, arg), self.length(h)
        row = np.full(-(-length // A) * A, MASKED, dtype=np.int64)
        if n:
            row[:n] = np.array(self.k[h][:n]) @ np.asarray(q)
        return _beats(row)

    def context_beats(self, h, p, arg):
        n = self.n_keys(h, arg)
        out = np.zeros(-(-D // A) * A, dtype=np.int64)
        if n:
            out[:D] = np.asarray(p[:n]) @ np.array(self.v[h][:n])
        return _beats(out)


def _beats(values):
    n = len(values) // A
    return [{"y": [int(x) for x in values[b * A:(b + 1) * A]], "last": int(b == n - 1)}
            for b in range(n)]


def _chunks(x):
    x = [int(v) for v in x]
    x += [0] * (-len(x) % L)
    return [{"x": x[i:i + L]} for i in range(0, len(x), L)]


class TB:
    """Clock, command source, result sink, scoreboard, array bank and host model."""

    def __init__(self, dut, name, idle=0.0, backpressure=0.0, stall=None, hold=None):
        self.dut = dut
        self.seed = lib.seed(name)
        self.rng = np.random.default_rng(self.seed)
        self._prng = lib.rng(self.seed)
        self.idle, self.backpressure, self.stall = idle, backpressure, stall
        self.hold = hold                    # a lib.Hold: the output held at the test's will
        self.clock = lib.TbClock(dut)
        self.board = lib.Scoreboard(name=name)
        self.host = Host()
        self.head = 0

    async def start(self):
        d = self.dut
        await self.clock.start(idle=[d.i__valid, d.o__ready, d.cfg])
        self.bank = ArrayBank(d, self.clock)
        self.src = lib.StreamSource(d, "i", self.clock, layout=CMD,
                                    idle=lib.random_pauses(self.idle, self._prng))
        bp = (self.hold if self.hold is not None else
              lib.pattern(self.stall) if self.stall is not None
              else lib.random_pauses(self.backpressure, self._prng))
        self.sink = lib.StreamSink(d, "o", self.clock, layout=RES, backpressure=bp,
                                   callback=lambda value, cycle: self.board.check(value, cycle=cycle))

    def rand(self, *shape, low=-128, high=127):
        return self.rng.integers(low, high + 1, shape)

    # ------------------------------------------------------------------ commands
    def clear(self):
        self.src.send({"cmd": Cmd.CLEAR})
        self.host.k[self.head], self.host.v[self.head] = [], []

    def append(self, k, v):
        k, v = np.atleast_2d(k), np.atleast_2d(v)
        self.src.send({"cmd": Cmd.APPEND, "arg": len(k)})
        for kr, vr in zip(k, v):
            for beat in _chunks(kr) + _chunks(vr):
                self.src.send(beat)
        self.host.append(self.head, k, v)

    def scores(self, q, n_keys=0):
        self._product(Cmd.SCORES, q, n_keys, self.host.score_beats(self.head, q, n_keys))

    def context(self, p, n_keys=0):
        self._product(Cmd.CONTEXT, p, n_keys, self.host.context_beats(self.head, p, n_keys))

    def _product(self, cmd, operand, n_keys, beats):
        for b in beats:
            self.board.expect(b, what=f"{cmd.name} head {self.head} n_keys {n_keys}")
        self.src.send({"cmd": cmd, "arg": n_keys})
        for beat in _chunks(operand):
            self.src.send(beat)

    # ------------------------------------------------------------------ waiting
    def busy(self):
        return (self.src.busy or self.board.pending or
                _uint(self.dut.status) & 1)

    async def settle(self, max_cycles=200_000):
        await self.clock.wait(lambda: not self.busy(), max_cycles, "the commands")

    def done(self, at_least=1):
        """Log and check how many result beats were compared."""
        cocotb.log.info(f"{self.board.name}: {self.board.checked} result beats exact, "
                        f"{len(self.bank.log)} array operations")
        assert self.board.checked >= at_least and self.board.pending == 0

    async def set_head(self, h):
        await self.settle()
        self.dut.cfg.value = h
        self.head = h

    async def measured_run(self, send):
        """Run one product command alone; return ``(ops, span)`` of its array operations."""
        await self.settle()
        start = len(self.bank.log)
        send()
        await self.settle()
        ops = self.bank.log[start:]
        span = ops[-1][0] - ops[0][0] + 1 if ops else 0
        return len(ops), span


async def _fill(tb, h, n, per_token):
    await tb.set_head(h)
    k, v = tb.rand(n, D), tb.rand(n, D)
    if per_token:
        for t in range(n):
            tb.append(k[t], v[t])
    else:
        tb.append(k, v)


@cocotb.test()
async def random_products_gaps_and_backpressure(dut):
    """Random K/V/q/P, every head, several lengths, causal and full n_keys, random input
    gaps and output backpressure."""
    tb = TB(dut, "random_products_gaps_and_backpressure", idle=0.3, backpressure=0.4)
    await tb.start()
    lengths = [1, A + 1, T] if QUICK else sorted({1, 2, A, A + 1, 2 * A + 1, T - 1, T})
    for h in range(H):
        for length in lengths:
            await tb.set_head(h)
            tb.clear()
            await _fill(tb, h, length, per_token=bool(length % 2))
            for n_keys in sorted({0, 1, length, max(1, length // 2), min(length + 3, T)}):
                tb.scores(tb.rand(D), n_keys)
                tb.context(tb.rand(length), n_keys)
            await tb.settle()
    tb.done(len(lengths) * H * 4)


@cocotb.test()
async def corner_values(dut):
    """-128, 127, 0, -1 in every combination of K, V, q and P (all equal), and a mix."""
    tb = TB(dut, "corner_values")
    await tb.start()
    vals = (-128, 127) if QUICK else (-128, 127, 0, -1)
    n = min(T, 2 * A + 1)
    for kv in vals:
        tb.clear()
        tb.append(np.full((n, D), kv), np.full((n, D), kv))
        for x in vals:
            tb.scores(np.full(D, x))
            tb.context(np.full(n, x))
            tb.scores(np.full(D, x), n_keys=n // 2 + 1)
        await tb.settle()
    tb.clear()
    tb.append(tb.rng.choice([-128, 127, 0, -1], (T, D)), tb.rng.choice([-128, 127], (T, D)))
    tb.scores(tb.rng.choice([-128, 127], D))
    tb.context(tb.rng.choice([-128, 127], T))
    await tb.settle()
    tb.done(len(vals) ** 2 * 3)


@cocotb.test()
async def stalls_longer_than_a_product(dut):
    """Output ready only one cycle in every 3 x run_cycles: the controller holds its run
    while the FIFO is full; every beat still exact. Also appends to a full cache."""
    stall = 3 * run_cycles(-(-T // A) * D, cols=C)
    tb = TB(dut, "stalls_longer_than_a_product", idle=0.2, stall=[1] * stall + [0])
    await tb.start()
    await _fill(tb, 0, T, per_token=False)
    tb.append(tb.rand(2, D), tb.rand(2, D))            # full: consumed and dropped
    for _ in range(1 if QUICK else 2):
        tb.scores(tb.rand(D))
        tb.context(tb.rand(T))
    await tb.settle(max_cycles=50 * stall * (-(-T // A) + 4))
    assert _uint(dut.status) >> 1 == T
    tb.done(2)


@cocotb.test()
async def reset_in_the_middle_of_a_product(dut):
    """A reset during a product run drops it and empties the caches; then all is exact."""
    tb = TB(dut, "reset_in_the_middle_of_a_product")
    await tb.start()
    await _fill(tb, 0, T, per_token=False)
    await tb.settle()
    start = len(tb.bank.log)
    tb.dut.cfg.value = 0
    tb.src.send({"cmd": Cmd.SCORES, "arg": 0})
    for beat in _chunks(tb.rand(D)):
        tb.src.send(beat)
    await tb.clock.wait(lambda: len(tb.bank.log) >= start + 7, 10_000, "the run to start")
    await tb.clock.reset()
    tb.board.flush()
    tb.host = Host()
    await tb.clock.cycles(3)
    assert _uint(dut.status) == 0
    await _fill(tb, 0, A + 1, per_token=True)
    tb.scores(tb.rand(D))
    tb.context(tb.rand(A + 1), n_keys=A)
    await tb.settle()
    tb.done(2)


@cocotb.test()
async def run_cycles_equal_the_model(dut):
    """Without gaps or backpressure every product run issues exactly run_cycles(M) array
    operations, back to back (span = count)."""
    tb = TB(dut, "run_cycles_equal_the_model")
    await tb.start()
    await _fill(tb, 0, T, per_token=False)
    rows = []
    for n_keys in lib.params().get("n_keys") or sorted({1, A, A + 1, T // 2 + 1, T}):
        for what in ("scores", "context"):
            def send(what=what, n_keys=n_keys):
                if what == "scores":
                    tb.scores(tb.rand(D), n_keys)
                else:
                    tb.context(tb.rand(T), n_keys)
            ops, span = await tb.measured_run(send)
            M = -(-n_keys // A) * D
            expect = run_cycles(M, cols=C)
            assert ops == span == expect, f"{what} n_keys {n_keys}: {ops} ops over {span} cycles, model {expect}"
            rows.append(dict(what=what, n_keys=n_keys, products_per_array=M, cycles=span,
                             model=expect, arrays=A, cols=C, head_dim=D))
    for r in rows:
        lib.report("digital_pim run", REPORT, **r)
    tb.done(len(rows))


@cocotb.test()
async def command_cycles_equal_the_model(dut):
    """Commands back to back (every input beat offered at once, output always ready):
    the cycles from each header beat to the next equal command_cycles, for CLEAR,
    APPEND (0, 1 and many tokens, on a full cache), SCORES and CONTEXT (all keys, 1,
    A + 1, more than the length, an empty cache)."""
    tb = TB(dut, "command_cycles_equal_the_model")
    await tb.start()
    headers = []
    tb.src.on_transfer.append(
        lambda value, context, cycle: headers.append(cycle) if "cmd" in value else None)
    sent = []

    def command(name, arg=0):
        sent.append((name, arg, tb.host.length(0)))
        if name == "clear":
            tb.clear()
        elif name == "append":
            tb.append(tb.rand(arg, D), tb.rand(arg, D)) if arg else tb.src.send(
                {"cmd": Cmd.APPEND, "arg": 0})
        elif name == "scores":
            tb.scores(tb.rand(D), arg)
        else:
            tb.context(tb.rand(tb.host.length(0)), arg)

    command("clear")
    command("scores")                                  # empty cache
    command("context")
    command("append", 0)
    command("append", 1)
    for n_keys in (0, 1):
        command("scores", n_keys)
        command("context", n_keys)
    command("append", min(A + 1, T - 1))
    for n_keys in sorted({0, 1, A, A + 1, T}):
        command("scores", n_keys)
        command("context", n_keys)
    while tb.host.length(0) < T:
        command("append", 1)
    command("append", 2)                               # full: consumed and dropped
    command("scores")
    command("context", T // 2 + 1)
    command("clear")                                   # the end of the last measured one
    await tb.settle()
    assert len(headers) == len(sent), (len(headers), len(sent))
    wrong = []
    for (name, arg, length), c0, c1 in zip(sent, headers, headers[1:]):
        model = command_cycles(name, arg, length, arrays=A, cols=C, head_dim=D, lanes=L,
                               max_seq=T)
        if c1 - c0 != model:
            wrong.append(f"{name} arg {arg} length {length}: RTL {c1 - c0}, model {model}")
        lib.report("digital_pim command", REPORT, cmd=name, arg=arg, length=length,
                   cycles=c1 - c0, model=model, arrays=A, cols=C, head_dim=D, lanes=L,
                   max_seq=T)
    assert not wrong, "; ".join(wrong)
    tb.done(1)


@cocotb.test()
async def boundaries_of_n_keys_and_max_seq(dut):
    """``n_keys`` at 0 (all keys), length - 1, length, max_seq, max_seq + 1 and the
    largest value the ``arg`` field holds (2^w - 1: above the length, so all keys, as
    documented); APPEND of max_seq + 1 and of 2^w - 1 tokens on an empty cache (the
    first max_seq stored, the rest consumed and dropped), of 2 on a cache of max_seq - 1
    (one stored), of 0; products on the empty cache. Every result beat exact, the
    length in ``status`` as documented."""
    tb = TB(dut, "boundaries_of_n_keys_and_max_seq", idle=0.2, backpressure=0.2)
    await tb.start()
    dut.cfg.value = 0
    above = sorted({T, T + 1, ARG_MAX})
    n_products = 0

    async def products(length, scores, contexts):
        nonlocal n_products
        for n_keys in scores:
            tb.scores(tb.rand(D), n_keys)
        for n_keys in contexts:
            tb.context(tb.rand(length), n_keys)
        n_products += len(scores) + len(contexts)
        await tb.settle()
        assert _uint(dut.status) >> 1 == length

    tb.clear()
    tb.scores(tb.rand(D), 0)                   # empty cache: no beat
    tb.scores(tb.rand(D), ARG_MAX)
    await tb.settle()
    await _fill(tb, 0, T - 1, per_token=False)
    await products(T - 1, [0, T - 2, T - 1] + above, [T - 1, ARG_MAX])
    tb.append(tb.rand(2, D), tb.rand(2, D))    # one stored, one dropped
    await products(T, [T - 1] + above, [0, T + 1])
    for n in (T + 1, ARG_MAX):
        tb.clear()
        tb.append(tb.rand(n, D), tb.rand(n, D))    # max_seq stored, the rest dropped
        await products(T, [n], [ARG_MAX])
    tb.src.send({"cmd": Cmd.APPEND, "arg": 0})
    tb.append(tb.rand(ARG_MAX, D), tb.rand(ARG_MAX, D))   # a full cache: all dropped
    await products(T, [T + 1], [T])
    tb.done(n_products)


@cocotb.test()
async def reset_in_every_state(dut):
    """Reset while idle, during an APPEND's data beats, right after a CLEAR, during a
    product run and with the output FIFO full (output held, the run waiting for room):
    every time the caches are empty afterwards (``status`` 0) and a fresh fill and its
    products are exact (the tokens cached before the reset, still in the arrays, are
    never read)."""
    hold = lib.Hold(False)
    tb = TB(dut, "reset_in_every_state", hold=hold)
    await tb.start()
    dut.cfg.value = 0
    for state in ("idle", "append", "clear", "product", "output full"):
        await _fill(tb, 0, T, per_token=False)
        await tb.settle()
        start = len(tb.bank.log)
        if state == "append":
            tb.clear()
            tb.append(tb.rand(3, D), tb.rand(3, D))
            await tb.clock.wait(lambda: len(tb.bank.log) >= start + 2, 10_000, "the append")
        elif state == "clear":
            tb.clear()
            await tb.clock.wait(lambda: not tb.src.busy, 1000, "the clear")
        elif state == "product":
            tb.scores(tb.rand(D))
            await tb.clock.wait(lambda: len(tb.bank.log) >= start + 7, 10_000, "the run")
        elif state == "output full":
            hold.held = True
            for _ in range(3):
                tb.scores(tb.rand(D))
            await tb.clock.cycles(4 * run_cycles(-(-T // A) * D, cols=C) + 200)
            assert tb.src.busy or _uint(dut.status) & 1
        cocotb.log.info(f"digital_pim: reset {state}")
        await tb.clock.reset()
        lib.withdraw(tb.src)
        tb.board.flush()
        tb.host = Host()
        hold.held = False
        await tb.clock.cycles(3)
        assert _uint(dut.status) == 0, f"status {_uint(dut.status):#x} after the reset"
        await _fill(tb, 0, A + 1, per_token=True)
        tb.scores(tb.rand(D))
        tb.scores(tb.rand(D), n_keys=T + 1)
        tb.context(tb.rand(A + 1), n_keys=A)
        await tb.settle()
    tb.done(3)
