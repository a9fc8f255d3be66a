"""Testbench library: the parts every cocotb testbench of this project is built from.

A testbench is one ``TB`` class that owns a clock, stream sources and sinks, a reference
model, a scoreboard and (for the analog arrays) a crossbar bank, all from here; the
``async def`` tests drive it. Nothing in a testbench drives a port by hand.

Conventions (all parts follow them, so nothing races):

* One clock ``dut.clk`` and Amaranth's synchronous, active-high ``dut.rst``. Create the
  parts before :meth:`TbClock.start`: they drive their ports (``valid`` / ``ready``
  low) from construction, so nothing is undriven during reset (an undriven input is Z,
  and a Z shifted into a pipeline's valid register comes out many cycles later).
* Every part drives right after a rising edge and samples at the falling edge. A
  handshake seen at a falling edge (``valid & ready``, reset low) is the transfer of
  the next rising edge. Time stamps are clock cycles (:attr:`TbClock.cycle`, taken at
  the sampling edge), so their differences are exact cycle counts.
* A stream port of an Amaranth ``stream.Signature`` is flattened by the Verilog back end
  to ``<prefix>__valid``, ``<prefix>__ready`` and ``<prefix>__payload``; element ``k`` of
  a port array ``o`` has prefix ``o__k`` (:meth:`StreamBus.from_prefix`).
* Payloads are packed and unpacked by the port's Amaranth shape (:func:`pack`,
  :func:`unpack`): a ``data.StructLayout`` is a ``dict``, a ``data.ArrayLayout`` a
  sequence, an ``enum.Enum`` a member, any other shape an ``int`` (signed ones
  sign-extended on the way back).
* The design is rebuilt from the block registry (:func:`design`), so a testbench takes
  ports, layouts, addresses and latencies from the component, never from its own copy.
* Seeds: :func:`seed` derives one per test from ``HYFLEXPIM_SEED`` and logs the line
  that replays it.

A minimal testbench::

    import cocotb
    from hyflexpim.tb import lib

    DUT = lib.design()                          # the component, from the registry

    @cocotb.test()
    async def passthrough(dut):
        rng = lib.rng(lib.seed("passthrough"))
        clock = lib.TbClock(dut)
        board = lib.Scoreboard()
        src = lib.StreamSource(dut, "i", clock, layout=DUT.i.payload.shape(),
                               idle=lib.random_pauses(0.3, rng))
        lib.StreamSink(dut, "o", clock, layout=DUT.o.payload.shape(),
                       backpressure=lib.random_pauses(0.3, rng),
                       callback=lambda value, cycle: board.check(value))
        await clock.start()                     # clock, reset, first rising edge
        for x in range(100):
            board.expect(model(x))
            src.send(x)
        await clock.wait(lambda: board.checked == 100, 10_000, "results")

Parts: :func:`seed`, :func:`rng`, :func:`design`, :func:`report`; :class:`TbClock`
(clock, cycle count, reset, waits); :class:`StreamBus`, :class:`StreamSource`,
:class:`StreamSink`, :class:`StreamMonitor` (passive); pause generators :func:`never`, :func:`random_pauses`,
:func:`pattern`; :class:`Scoreboard` (in order, per channel); :class:`CrossbarBank`
(the analog side of arrays, from :class:`hyflexpim.models.crossbar.Crossbar`);
:class:`ArrayBank` (the digital PIM arrays, from
:class:`hyflexpim.models.digital_pim.DigitalArray`).
The runner side (build, parameters, environment) is
:func:`hyflexpim.sim.cocotb_runner.run_block`.
"""

import itertools
import json
import os
import random
import time
from collections import deque

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data, enum

from ..models.crossbar import Crossbar
from ..models.encoding import INPUT_BITS

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import Event, FallingEdge, RisingEdge, Timer
    from cocotb.utils import get_sim_time
except ImportError:         # pack / unpack / seed helpers work without cocotb
    cocotb = None

__all__ = [
    "seed", "rng", "params", "design", "report", "pack", "unpack",
    "never", "random_pauses", "pattern",
    "TbClock", "Part", "StreamBus", "StreamSource", "StreamSink", "StreamMonitor", "Scoreboard", "CrossbarBank",
    "ArrayBank",
]


# ----------------------------------------------------------------------------- seeds, design

def seed(name):
    """Seed of test ``name``: ``HYFLEXPIM_SEED`` (default 1) mixed with the name; logged
    with the environment setting that replays it."""
    base = int(os.environ.get("HYFLEXPIM_SEED", "1"))
    value = (base * 1000003 + sum(map(ord, name))) & 0xFFFFFFFF
    if cocotb is not None:
        cocotb.log.info(f"{name}: seed {value} (replay: HYFLEXPIM_SEED={base})")
    return value


def rng(seed_value):
    """``random.Random(seed_value)``: the generator the pause generators draw from."""
    return random.Random(seed_value)


def params():
    """The testbench's own parameters (``HYFLEXPIM_PARAMS``, JSON; layer sizes, counts)."""
    return json.loads(os.environ.get("HYFLEXPIM_PARAMS", "{}"))


def design():
    """The component under test, rebuilt from the block registry.

    ``HYFLEXPIM_BLOCK`` names the block and ``HYFLEXPIM_BLOCK_PARAMS`` (JSON) gives the
    keyword arguments it was generated with; :func:`hyflexpim.sim.cocotb_runner.run_block`
    exports both. The object is never elaborated (it describes the Verilog under test).
    """
    from ..sim.blocks import get_block
    name = os.environ.get("HYFLEXPIM_BLOCK")
    if not name:
        raise RuntimeError("HYFLEXPIM_BLOCK is not set: run the testbench with "
                           "hyflexpim.sim.cocotb_runner.run_block")
    comp = get_block(name).factory(**json.loads(os.environ.get("HYFLEXPIM_BLOCK_PARAMS", "{}")))
    comp._MustUse__silence = True
    return comp


def core(dut):
    """The design's own module inside the simulated top: ``dut.core`` when the runner
    wrapped the design in its simulation-only top (:mod:`hyflexpim.sim.sh_model`), else
    ``dut`` itself. Internal signals (``core(dut).bus``) are reached through it."""
    try:
        return dut.core
    except AttributeError:
        return dut


def report(label, path, **fields):
    """Log measured ``fields`` and append them as a JSON line to ``path`` (when set)."""
    if cocotb is not None:
        cocotb.log.info(f"{label} figures: " + json.dumps(fields, default=str))
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(fields, default=str) + "\n")


# ----------------------------------------------------------------------------- payloads

def _members(shape):
    if isinstance(shape, data.StructLayout):
        return [(name, f.shape, f.offset) for name, f in shape]
    if isinstance(shape, data.ArrayLayout):
        w = Shape.cast(shape.elem_shape).width
        return [(k, shape.elem_shape, k * w) for k in range(shape.length)]
    return None


def pack(shape, value):
    """Integer bits of ``value`` in Amaranth ``shape`` (see the module documentation).

    A ``dict`` may leave fields out (they are 0); an ``int`` given for a layout is taken
    as its bits.
    """
    members = _members(shape)
    if members is None:
        width = Shape.cast(shape).width
        if isinstance(value, enum.Enum):
            value = value.value
        return int(value) & ((1 << width) - 1)
    if isinstance(value, (int, np.integer)):
        return int(value) & ((1 << Shape.cast(shape).width) - 1)
    bits = 0
    if isinstance(shape, data.StructLayout):
        for name, sub, offset in members:
            if name in value:
                bits |= pack(sub, value[name]) << offset
    else:
        if len(value) != len(members):
            raise ValueError(f"{shape!r} takes {len(members)} elements, not {len(value)}")
        for (_, sub, offset), v in zip(members, value):
            bits |= pack(sub, v) << offset
    return bits


def unpack(shape, bits):
    """Python value of the integer ``bits`` in Amaranth ``shape`` (inverse of :func:`pack`)."""
    bits = int(bits)
    members = _members(shape)
    if members is None:
        s = Shape.cast(shape)
        v = bits & ((1 << s.width) - 1)
        if s.signed and v >> (s.width - 1):
            v -= 1 << s.width
        if isinstance(shape, type) and issubclass(shape, enum.Enum):
            try:
                return shape(v)
            except ValueError:
                return v
        return v
    vals = [(name, unpack(sub, bits >> offset)) for name, sub, offset in members]
    if isinstance(shape, data.StructLayout):
        return dict(vals)
    return [v for _, v in vals]


_LH = str.maketrans("LH", "01")


def _resolved(value):
    """The unsigned integer of a signal value (``LogicArray``), or ``None`` when a bit is
    X, Z, U, W or -: the check of ``is_resolvable`` on the value's string, without
    building one object per bit."""
    s = str(value)
    if s.count("0") + s.count("1") != len(s):
        s = s.translate(_LH)
        if s.count("0") + s.count("1") != len(s):
            return None
    return int(s, 2)


# ----------------------------------------------------------------------------- pauses

class _Never:
    """The pause generator of :func:`never` (the parts recognise it: a sink whose
    backpressure never pauses need not be woken every cycle)."""

    def __iter__(self):
        return self

    def __next__(self):
        return False


def never():
    """Pause generator that never pauses (always valid / always ready)."""
    return _Never()


def _per_cycle():
    """``HYFLEXPIM_TB_POLL=cycle``: every part wakes on every cycle (the event-driven
    waits of the parts off; for comparison and debugging, the results are the same)."""
    return os.environ.get("HYFLEXPIM_TB_POLL", "") == "cycle"


def random_pauses(probability, rng):
    """Pause generator: pause in a cycle with ``probability`` (draws from ``rng``)."""
    while True:
        yield rng.random() < probability


def pattern(bits):
    """Pause generator repeating ``bits`` (truthy = pause), e.g. ``[0, 0, 1]``."""
    return itertools.cycle(bool(b) for b in bits)


# ----------------------------------------------------------------------------- clock

class TbClock:
    """The clock ``dut.clk`` and reset ``dut.rst`` of a testbench, and the cycle count.

    ``cycle`` is the number of clock periods since :meth:`start`, read from the
    simulation time (it does not depend on which coroutine runs first). At a falling
    edge it is the number of the coming rising edge's cycle, the stamp every part of
    this library records.

    The clock toggles in the simulator, not in Python: in the simulation top's clock
    generator (``HYFLEXPIM_CLOCK=hdl``, :mod:`hyflexpim.sim.sh_model`; it runs on from
    one test to the next, and a later :meth:`start` begins at its next rising edge) or
    cocotb's GPI clock on the ``clk`` port. Every part of this library calls
    :meth:`notify` when it has done something (a transfer, a sample), which is what
    :meth:`wait` with ``events=True`` wakes on.
    """

    def __init__(self, dut, period_ns=10):
        self.dut, self.clk, self.period_ns = dut, dut.clk, period_ns
        self._t0 = None
        self._wall0 = self._cpu0 = None
        self._activity = Event() if cocotb is not None else None
        self.hdl_clock = os.environ.get("HYFLEXPIM_CLOCK") == "hdl"

    @property
    def cycle(self):
        if self._t0 is None:
            raise RuntimeError("the clock has not started (TbClock.start)")
        return int((get_sim_time("ps") - self._t0) // (self.period_ns * 1000))

    @property
    def in_reset(self):
        """Reset is high (or not driven yet) now."""
        v = self.dut.rst.value
        return not v.is_resolvable or bool(int(v))

    def notify(self):
        """Tell :meth:`wait` (``events=True``) that the testbench's state may have changed."""
        self._activity.set()

    def figures(self):
        """``simulator``, ``cycles`` (since :meth:`start`), ``wall_s``, ``cpu_s`` (this
        process's), ``cycles_per_s`` and ``cycles_per_cpu_s`` so far (no build)."""
        wall = time.perf_counter() - self._wall0
        cpu = time.process_time() - self._cpu0
        cycles = self.cycle
        return dict(simulator=f"{cocotb.SIM_NAME} {cocotb.SIM_VERSION}".strip(),
                    cycles=cycles, wall_s=wall, cpu_s=cpu,
                    cycles_per_s=cycles / wall if wall > 0 else None,
                    cycles_per_cpu_s=cycles / cpu if cpu > 0 else None)

    async def start(self, reset_cycles=2, idle=()):
        """Start the clock with reset high and every signal in ``idle`` at 0, release
        reset after ``reset_cycles`` rising edges and wait one more."""
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()
        if self.hdl_clock:
            run = self.dut.hyflexpim_clk_run
            self.dut.hyflexpim_clk_half.value = self.period_ns * 500
            if run.value.is_resolvable and int(run.value):
                await RisingEdge(self.clk)          # running: begin at its next rise
            else:
                run.value = 1                       # rises now
        else:
            Clock(self.clk, self.period_ns, unit="ns", impl="gpi").start()
        self._t0 = get_sim_time("ps")
        stats = os.environ.get("HYFLEXPIM_RUN_STATS")
        if stats:       # the runner's cycle count (hyflexpim.sim.cocotb_runner.last_run)
            with open(stats, "a") as f:
                f.write(json.dumps({"t0_ps": self._t0, "period_ps": self.period_ns * 1000})
                        + "\n")
        self.dut.rst.value = 1
        for sig in idle:
            sig.value = 0
        await self.cycles(reset_cycles)
        self.dut.rst.value = 0
        await RisingEdge(self.clk)

    async def reset(self, cycles=3):
        """Synchronous reset for ``cycles`` cycles from the next rising edge (everything
        in flight in the DUT is dropped; the parts keep what they have not sent)."""
        await RisingEdge(self.clk)
        self.dut.rst.value = 1
        await self.cycles(cycles)
        self.dut.rst.value = 0

    def _next_rise_ps(self):
        """Simulation time (ps) of the next rising edge that has not happened yet."""
        period = self.period_ns * 1000
        now = get_sim_time("ps")
        phase = (now - self._t0) % period
        if phase:
            return now - phase + period
        v = self.clk.value
        return now if v.is_resolvable and not int(v) else now + period

    async def cycles(self, n):
        """Wait ``n`` rising edges (a long wait sleeps in a timer, not edge by edge)."""
        period = self.period_ns * 1000
        if n > 3 and self._t0 is not None and not _per_cycle():
            target = self._next_rise_ps() + (n - 1) * period
            await Timer(target - period // 2 - get_sim_time("ps"), unit="ps")
            await RisingEdge(self.clk)
            return
        for _ in range(n):
            await RisingEdge(self.clk)

    async def wait(self, done, max_cycles, what="the testbench", *, events=False):
        """Wait (checking at falling edges) until ``done()``; fail after ``max_cycles``.

        ``events=True``: ``done()`` is checked only after the parts of this library have
        done something (:meth:`notify`), not at every falling edge: for a ``done`` that
        reads only what the parts and their callbacks change (scoreboards, counts, queues).
        """
        if not events or _per_cycle():
            for _ in range(max_cycles):
                await FallingEdge(self.clk)
                if done():
                    return
            raise AssertionError(f"timeout after {max_cycles} cycles waiting for {what}")
        period = self.period_ns * 1000
        await FallingEdge(self.clk)
        # the last falling edge to check is ``max_cycles - 1`` periods on; the watchdog
        # wakes this wait a quarter period after it, when the parts have seen that edge
        timed_out = []

        async def watchdog():
            await Timer((max_cycles - 1) * period + period // 4, unit="ps")
            timed_out.append(True)
            self._activity.set()

        dog = cocotb.start_soon(watchdog())
        try:
            while not done():
                if timed_out:
                    raise AssertionError(f"timeout after {max_cycles} cycles waiting for {what}")
                self._activity.clear()
                await self._activity.wait()
                if not timed_out and (get_sim_time("ps") - self._t0) % period != period // 2:
                    await FallingEdge(self.clk)
        finally:
            dog.cancel()


# ----------------------------------------------------------------------------- streams

class StreamBus:
    """The ``valid`` / ``ready`` / ``payload`` handles of one stream port."""

    def __init__(self, valid, ready, payload):
        self.valid, self.ready, self.payload = valid, ready, payload

    @classmethod
    def from_prefix(cls, dut, prefix):
        """The port ``<prefix>__valid/ready/payload`` of ``dut`` (``"i"``, ``"o__3"``)."""
        return cls(*(getattr(dut, f"{prefix}__{f}") for f in ("valid", "ready", "payload")))


def _bus(dut, prefix):
    return prefix if isinstance(prefix, StreamBus) else StreamBus.from_prefix(dut, prefix)


class Part:
    """A testbench part: runs its coroutine ``_run`` from :meth:`_launch` (called by the
    constructor) until :meth:`stop`. Subclass it for a monitor of a port that is no stream."""

    def _launch(self):
        self._task = cocotb.start_soon(self._run())

    def stop(self):
        self._task.cancel()


class StreamSource(Part):
    """Source of a stream port: a queue of values offered one at a time.

    ``send(value, context)`` queues ``value`` (packed with ``layout`` when given, an
    ``int`` otherwise). While the source has no value on offer and its queue is not
    empty, ``idle`` (a pause generator, see :func:`random_pauses`) is asked once per
    cycle whether to wait; otherwise the head is offered and held (valid and payload)
    until the transfer. On each transfer every function in ``on_transfer`` is called with
    ``(value, context, cycle)``. ``sent`` counts the transfers, ``first`` / ``last`` are
    the cycles of the first and last.

    The source sleeps while its queue is empty (until :meth:`send`) and, while a value
    on offer waits for ``ready`` low, until ``ready`` changes: it does not wake on
    every cycle (``HYFLEXPIM_TB_POLL=cycle`` makes it).
    """

    def __init__(self, dut, prefix, clock, *, layout=None, idle=None):
        self.bus, self.clock, self.layout = _bus(dut, prefix), clock, layout
        self.idle = idle if idle is not None else never()
        self.on_transfer = []
        self._queue = deque()
        self._current = None
        self._queued = Event()
        self.sent = 0
        self.first = self.last = None
        self.bus.valid.value = 0
        self.bus.payload.value = 0
        self._launch()

    def send(self, value, context=None):
        bits = pack(self.layout, value) if self.layout is not None else int(value)
        self._queue.append((bits, value, context))
        self._queued.set()

    @property
    def busy(self):
        """A value is on offer or queued."""
        return self._current is not None or bool(self._queue)

    def clear(self):
        """Drop the queued values (not the one on offer)."""
        self._queue.clear()

    async def _run(self):
        clk = self.clock.clk
        ready = self.bus.ready
        per_cycle = _per_cycle()
        while True:
            await RisingEdge(clk)
            if self._current is None and self._queue and not next(self.idle):
                self._current = self._queue.popleft()
                self.bus.payload.value = self._current[0]
            self.bus.valid.value = int(self._current is not None)
            if self._current is None:
                if not self._queue and not per_cycle:
                    self._queued.clear()
                    await self._queued.wait()
                continue
            # on offer: valid and payload hold until the transfer
            while True:
                await FallingEdge(clk)
                if int(ready.value) and not self.clock.in_reset:
                    break
                if per_cycle:
                    await RisingEdge(clk)
                elif not int(ready.value):
                    await ready.value_change
            _, value, context = self._current
            self._current = None
            cycle = self.clock.cycle
            self.sent += 1
            self.first = cycle if self.first is None else self.first
            self.last = cycle
            for fn in self.on_transfer:
                fn(value, context, cycle)
            self.clock.notify()


class StreamMonitor(Part):
    """Watches the transfers of a stream port and drives nothing (for a stream that
    other logic drives, e.g. ``StreamBus.from_prefix(core(dut).bus, "i__1")`` inside the
    design). Every transfer is unpacked with ``layout`` (an ``int`` without one), handed
    to ``callback(value, cycle)`` (when given) and kept in ``received`` (``(value,
    cycle)`` pairs, when ``keep``). ``count`` counts the transfers, ``first`` / ``last``
    are the cycles of the first and last; an unresolved payload (X or Z) fails.

    Between transfers the monitor sleeps until ``valid`` (or ``ready``) changes, rather
    than waking on every cycle (``HYFLEXPIM_TB_POLL=cycle`` makes it).
    """

    def __init__(self, dut, prefix, clock, *, layout=None, callback=None, keep=False):
        self.bus, self.clock, self.layout = _bus(dut, prefix), clock, layout
        self.callback, self.keep = callback, keep
        self.received = []
        self.count = 0
        self.first = self.last = None
        self._launch()

    async def _run(self):
        per_cycle = _per_cycle()
        valid, ready = self.bus.valid, self.bus.ready
        while True:
            await FallingEdge(self.clock.clk)
            if self._observe() or per_cycle:
                continue
            v, r = valid.value, ready.value
            if v.is_resolvable and not int(v):
                await valid.value_change
            elif r.is_resolvable and not int(r):
                await ready.value_change

    def _observe(self):
        """Take the transfer seen now, if any; return whether there was one."""
        if (int(self.bus.valid.value) and int(self.bus.ready.value)
                and not self.clock.in_reset):
            raw = self.bus.payload.value
            bits = _resolved(raw)
            if bits is None:
                raise AssertionError(f"unresolved payload {raw} on a transfer at cycle "
                                     f"{self.clock.cycle}")
            value = unpack(self.layout, bits) if self.layout is not None else bits
            cycle = self.clock.cycle
            self.count += 1
            self.first = cycle if self.first is None else self.first
            self.last = cycle
            if self.keep:
                self.received.append((value, cycle))
            if self.callback is not None:
                self.callback(value, cycle)
            self.clock.notify()
            return True
        return False


class StreamSink(StreamMonitor):
    """Sink of a stream port: a :class:`StreamMonitor` that also drives ``ready``, from
    the pause generator ``backpressure`` (asked every cycle; ``None`` or :func:`never`:
    always ready, and then the sink sleeps between transfers until ``valid`` changes)."""

    def __init__(self, dut, prefix, clock, *, layout=None, backpressure=None, callback=None,
                 keep=False):
        self.backpressure = backpressure if backpressure is not None else never()
        super().__init__(dut, prefix, clock, layout=layout, callback=callback, keep=keep)
        self.bus.ready.value = 0

    async def _run(self):
        clk = self.clock.clk
        if isinstance(self.backpressure, _Never) and not _per_cycle():
            await RisingEdge(clk)
            self.bus.ready.value = 1
            valid = self.bus.valid
            while True:
                await FallingEdge(clk)
                if not self._observe():
                    v = valid.value
                    if v.is_resolvable and not int(v):
                        await valid.value_change
        while True:
            await RisingEdge(clk)
            self.bus.ready.value = int(not next(self.backpressure))
            await FallingEdge(clk)
            self._observe()


# ----------------------------------------------------------------------------- checking

class Scoreboard:
    """In-order checker: expected items are queued per ``channel`` (one channel by
    default), every arriving item is compared with the head of its channel.

    ``compare(got, expected)`` returns ``None`` when they match, else a message (default:
    equality). ``expect`` and ``check`` take an optional cycle; the differences go to
    ``latencies``. A mismatch, or an item on a channel with nothing expected, raises
    ``AssertionError`` naming the channel and the item's description (``what``).
    """

    def __init__(self, compare=None, name="scoreboard"):
        self.compare = compare or (lambda got, exp: None if got == exp else
                                   f"got {got!r}, expected {exp!r}")
        self.name = name
        self._queues = {}
        self.checked = 0
        self.latencies = []

    def expect(self, item, channel=None, cycle=None, what=None):
        self._queues.setdefault(channel, deque()).append((item, cycle, what))

    def check(self, got, channel=None, cycle=None):
        """Compare ``got`` with the head of ``channel``; return the expected item."""
        q = self._queues.get(channel)
        where = "" if channel is None else f" on {channel}"
        assert q, f"{self.name}: {got!r}{where} arrived, nothing was expected"
        exp, sent, what = q.popleft()
        msg = self.compare(got, exp)
        assert msg is None, f"{self.name}: {what or 'item'}{where}: {msg}"
        if sent is not None and cycle is not None:
            self.latencies.append(cycle - sent)
        self.checked += 1
        return exp

    @property
    def pending(self):
        return sum(len(q) for q in self._queues.values())

    def leftover(self):
        """``{channel: items still expected}`` of the channels not empty."""
        return {c: len(q) for c, q in self._queues.items() if q}

    def flush(self):
        """Forget everything expected (after a reset)."""
        self._queues.clear()


# ----------------------------------------------------------------------------- analog side

class _Array:
    def __init__(self, dut, prefix, rows, hdl):
        self.prefix, self.rows, self.hdl = prefix, rows, hdl
        self.fixed = None          # one crossbar for every vector
        self.pending = deque()     # or (crossbar, vector) per vector, in order
        self.planes = 0            # planes sampled of the current vector
        self.vectors = 0           # vectors sampled (the read-noise vector index)
        self.held = None
        self.samples = 0
        if hdl:
            # the S&H model of hyflexpim.sim.sh_model: loaded once per sample
            self.held_in, self.wl_q, self.count = (
                getattr(dut, f"{prefix}__{f}") for f in ("held", "wl_q", "count"))
            self.seen = _resolved(self.count.value) or 0
            self.task = None
        else:
            self.wl, self.sample, self.sel, self.trial, self.cmp = (
                getattr(dut, f"{prefix}__{f}") for f in ("wl", "sample", "sel", "trial", "cmp"))
            self.cmp.value = 0


class CrossbarBank(Part):
    """The analog side of arrays: sample-and-hold capture and the comparator.

    Every array is a :class:`~hyflexpim.rtl.analog.CrossbarSignature` port group
    ``<prefix>__wl/sample/sel/trial/cmp``. Whenever the DUT asserts ``sample`` the bank
    captures the held bitline values of the array's :class:`Crossbar` for the wordlines
    driven at that moment (:meth:`Crossbar.held_values`, with the read's ``vector`` and
    ``plane`` when the crossbar has read noise); the comparator answers
    ``cmp = held[sel] >= dac_level(trial)`` (:meth:`Crossbar.compare`).

    Two ways, chosen by the build (``HYFLEXPIM_SH_MODEL``, exported by
    :func:`hyflexpim.sim.cocotb_runner.run_cocotb`): ``hdl`` (default), the S&H model of
    :mod:`hyflexpim.sim.sh_model` in the simulated top holds the values and answers the
    comparator, and the bank acts once per sample: woken by the model's sample count, it
    reads the latched wordlines and loads the held values; ``python``, the bank wakes on
    every falling edge, captures when ``sample`` is high and drives ``cmp``. Both give
    the same comparisons, cycle for cycle.

    ``add(prefix, crossbar)`` adds an array with one crossbar for all its vectors;
    ``add(prefix)`` one whose crossbar changes with the vector: ``push(index, crossbar)``
    queues the crossbar of each vector sent to it (the bank moves on after its
    ``planes`` samples; a sample with nothing queued fails). Read noise numbers the
    vectors of an array 0, 1, ... from ``first_vector`` (of :meth:`add`) in the order
    they are sampled, or as given to :meth:`push` (``vector=``); a golden model of the
    same reads runs them with the same numbers (``run(x, first_vector=...)``).
    ``tie_off(prefix)`` holds the comparator of an unused array at 0. ``samples`` counts
    the samples of every array of the bank.
    """

    def __init__(self, dut, clock, rows, *, planes=INPUT_BITS):
        self.dut, self.clock, self.rows, self.planes = dut, clock, rows, planes
        self.arrays = []
        self.hdl = os.environ.get("HYFLEXPIM_SH_MODEL", "python") == "hdl"
        if not self.hdl:
            self._launch()

    def add(self, prefix, crossbar=None, first_vector=0):
        arr = _Array(self.dut, prefix, self.rows, self.hdl)
        arr.fixed = crossbar
        arr.vectors = first_vector
        self.arrays.append(arr)
        if self.hdl:
            arr.task = cocotb.start_soon(self._run_model(arr))
        return len(self.arrays) - 1

    def tie_off(self, prefix):
        if not self.hdl:        # the model's comparator answers 0 until it is loaded
            getattr(self.dut, f"{prefix}__cmp").value = 0

    def push(self, index, crossbar, vector=None):
        self.arrays[index].pending.append((crossbar, vector))

    def flush(self):
        """Forget the queued crossbars and held values (after a reset)."""
        for arr in self.arrays:
            arr.pending.clear()
            arr.planes, arr.held = 0, None

    def stop(self):
        if self.hdl:
            for arr in self.arrays:
                arr.task.cancel()
        else:
            super().stop()

    @property
    def samples(self):
        return sum(arr.samples for arr in self.arrays)

    async def _run(self):
        while True:
            await FallingEdge(self.clock.clk)
            in_reset = self.clock.in_reset
            for arr in self.arrays:
                if arr.held is not None:
                    arr.cmp.value = int(Crossbar.compare(arr.held[arr.sel.value.to_unsigned()],
                                                         arr.trial.value.to_unsigned()))
                else:
                    arr.cmp.value = 0
                if not in_reset and int(arr.sample.value):
                    arr.held = self._capture(arr, arr.wl.value.to_unsigned())

    async def _run_model(self, arr):
        from ..sim.sh_model import FRAC_BITS, pack_held
        adc_bits = None
        while True:
            await arr.count.value_change
            n = _resolved(arr.count.value)
            if n is None or n == arr.seen:
                continue
            assert n == (arr.seen + 1) & 0xFFFFFFFF, \
                f"{arr.prefix}: {n - arr.seen} samples at once (the bank missed some)"
            arr.seen = n
            held = self._capture(arr, _resolved(arr.wl_q.value))
            if adc_bits is None:
                adc_bits = len(arr.held_in) // len(held) - FRAC_BITS - 2
            arr.held_in.value = pack_held(held, adc_bits)

    def _capture(self, arr, wl):
        """Held values of the read sampled now with wordline bits ``wl`` (an integer)."""
        if arr.fixed is not None:
            xb, vector = arr.fixed, arr.vectors
        else:
            assert arr.pending, f"{arr.prefix}: DUT sampled bitlines with no vector in flight"
            xb, vector = arr.pending[0]
            vector = arr.vectors if vector is None else vector
        plane = arr.planes
        arr.planes += 1
        if arr.planes == self.planes:
            if arr.fixed is None:
                arr.pending.popleft()
            arr.planes = 0
            arr.vectors += 1
        bits = np.array([(wl >> r) & 1 for r in range(self.rows)], dtype=np.int64)
        if xb.has_read_noise:
            held = xb.held_values(bits, vector=vector, plane=plane)
        else:
            held = xb.held_values(bits)
        arr.samples += 1
        self.clock.notify()
        return held


# ----------------------------------------------------------------------------- digital PIM side

def _uint(handle):
    """Unsigned value of a port (a one-bit port's value is a ``Logic``)."""
    v = handle.value
    return v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)


class ArrayBank(Part):
    """The digital PIM arrays behind a :class:`~hyflexpim.rtl.digital_pim.DigitalArraySignature`
    port group ``<prefix>__op/row/col/a/b/count/en/wdata/rdata``: at every falling edge
    (reset low) the operation the DUT drives is applied to a
    :class:`~hyflexpim.models.digital_pim.DigitalArray` (``strict``: a NOR on an operand
    never written or on an output not preset fails the test) and a READ is answered on
    ``rdata`` in the same cycle. ``log`` keeps ``(cycle, op)`` of every operation other
    than NOP; ``model`` is the array model.
    """

    def __init__(self, dut, clock, *, rows, cols, arrays, prefix="pim", strict=True):
        from ..models.digital_pim import DigitalArray
        from ..rtl.digital_pim import ArrayOp
        self.dut, self.clock, self.prefix = dut, clock, prefix
        self.rows, self.cols, self.arrays = rows, cols, arrays
        self.model = DigitalArray(rows, cols, arrays, strict=strict)
        self.log = []
        self._ops = ArrayOp
        self._h = {f: getattr(dut, f"{prefix}__{f}") for f in
                   ("op", "row", "col", "a", "b", "count", "en", "wdata", "rdata")}
        self._h["rdata"].value = 0
        self._launch()

    def _bits(self, value, count):
        """``(arrays, count)`` bits of a per-array port value (``cols`` bits per array)."""
        raw = int(value).to_bytes(-(-self.cols * self.arrays // 8), "little")
        bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")
        return bits[:self.cols * self.arrays].reshape(self.arrays, self.cols)[:, :count]

    def _word(self, bits):
        """The port value of ``(arrays, n)`` bits, array ``a`` from bit ``cols * a``."""
        full = np.zeros((self.arrays, self.cols), dtype=np.uint8)
        full[:, :bits.shape[1]] = bits
        packed = np.packbits(full.reshape(-1), bitorder="little").tobytes()
        return int.from_bytes(packed, "little")

    async def _run(self):
        h, ops = self._h, self._ops
        while True:
            await FallingEdge(self.clock.clk)
            if self.clock.in_reset:
                h["rdata"].value = 0
                continue
            op = ops(_uint(h["op"]))
            if op == ops.NOP:
                h["rdata"].value = 0
                continue
            row, col, n = _uint(h["row"]), _uint(h["col"]), _uint(h["count"])
            en_bits = _uint(h["en"])
            en = np.array([(en_bits >> a) & 1 for a in range(self.arrays)], dtype=bool)
            self.log.append((self.clock.cycle, op))
            rd = 0
            if op == ops.WRITE:
                self.model.write(row, col, self._bits(_uint(h["wdata"]), n), en)
            elif op == ops.NOR:
                self.model.nor(row, _uint(h["a"]), _uint(h["b"]), col, n, en)
            elif op == ops.READ:
                rd = self._word(self.model.read(row, col, n).reshape(self.arrays, n))
            h["rdata"].value = rd


# ----------------------------------------------------------------------------- held stalls, reset helpers

class Hold:
    """Pause generator under the testbench's control: pauses in every cycle while
    :attr:`held` is true (``sink.backpressure = hold``: the output held not ready for as
    long as a test wants, then released at a chosen moment)."""

    def __init__(self, held=False):
        self.held = held

    def __iter__(self):
        return self

    def __next__(self):
        return bool(self.held)


def withdraw(source):
    """Drop everything a :class:`StreamSource` has queued and the value it has on offer
    (``valid`` low from now on), e.g. around a reset, so that nothing of the traffic
    before it reaches the DUT after it; the source then takes new :meth:`~StreamSource.send`
    values as usual. Returns how many values were dropped."""
    dropped = len(source._queue) + (source._current is not None)
    source.stop()
    source._queue.clear()
    source._current = None
    source.bus.valid.value = 0
    source._launch()
    return dropped


def back_to_back(cycles):
    """Whether the transfer ``cycles`` (a sequence of cycle stamps) are consecutive: one
    transfer per cycle, no gap."""
    cycles = list(cycles)
    return all(b - a == 1 for a, b in zip(cycles, cycles[1:]))
