# amaranth: UnusedElaboratable=no
"""Bounded formal check of the digital PIM controller (SymbiYosys, yices): a product never
reads a cell it has not written in the same row step. For any command stream, array
answers and output backpressure (reset free), every NOR's operand groups and output
group were written in the three cycles before it (A, then B, then the preset of OUT, same
row, same count, within the row), and every read of the OUT group follows its NOR."""

from pathlib import Path

import pytest
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Elaboratable, Module, Signal

from hyflexpim.rtl.digital_pim import ArrayOp, DigitalPimController
from hyflexpim.sim import formal as F

#: Small enough for a BMC of a few row steps: 1 array of 16 columns (5 NOR slots), d = 2,
#: 2 tokens; an APPEND and a SCORES reach the first NOR at cycle 11, a step every 5 cycles.
PARAMS = dict(arrays=1, rows=6, cols=16, head_dim=2, max_seq=2, heads=1, lanes=2)
DEPTH = 30          # about 10 s with yices; test_deeper_bound: 60 (-m slow)
WORKDIR = Path(__file__).resolve().parent.parent / "build" / "formal"


class OperandsWrittenProps(Elaboratable):
    """The property of the module docstring on ``DigitalPimController(**params)``;
    ``order`` is the column of the write expected 1, 2 and 3 cycles before a NOR."""

    def __init__(self, order=None, **params):
        self.dut = DigitalPimController(**params)
        S = self.dut.layout.slots
        self.order = order or (2 * S, S, 0)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        pim, S, C = dut.pim, dut.layout.slots, dut.layout.cols
        for port in (dut.i.valid, dut.i.payload, dut.o.ready, dut.cfg, pim.rdata):
            m.d.comb += port.eq(AnySeq(len(port.as_value()) if hasattr(port, "as_value") else len(port)))
        past = []
        prev = (pim.op, pim.row, pim.col, pim.count)
        for k in range(3):
            regs = tuple(Signal.like(v, name=f"past{k + 1}_{n}")
                         for v, n in zip(prev, ("op", "row", "col", "count")))
            m.d.sync += [r.eq(v) for r, v in zip(regs, prev)]
            past.append(regs)
            prev = regs
        with m.If(pim.op == ArrayOp.NOR):
            m.d.comb += [Assert((pim.a == 0) & (pim.b == S) & (pim.col == 2 * S)),
                         Assert((pim.count >= 1) & (pim.count <= S))]
            for (op, row, col, count), want in zip(past, self.order):
                m.d.comb += Assert((op == ArrayOp.WRITE) & (row == pim.row) &
                                   (col == want) & (count == pim.count))
        with m.If((pim.op == ArrayOp.READ) & (pim.col == 2 * S)):
            op, row, col, count = past[0]
            m.d.comb += Assert((op == ArrayOp.NOR) & (row == pim.row) & (count == pim.count))
        with m.If(pim.op == ArrayOp.WRITE):
            m.d.comb += Assert((pim.count >= 1) & (pim.col + pim.count <= C))
        return m


def _run(harness, name, depth=DEPTH):
    return F.run_bmc(harness, WORKDIR / name, depth=depth, timeout=1800)


def test_every_nor_reads_cells_written_in_its_step():
    ok, log = _run(OperandsWrittenProps(**PARAMS), "digital_pim_operands")
    assert ok, log[-2000:]
    assert f"Checking assertions in step {DEPTH - 1}.." in log


@pytest.mark.slow
def test_deeper_bound():
    ok, log = _run(OperandsWrittenProps(**PARAMS), "digital_pim_operands_60", depth=60)
    assert ok, log[-2000:]


def test_a_wrong_expectation_is_caught():
    # the harness can fail: expecting the writes in the wrong order gives a counterexample
    S = PARAMS["cols"] // 3
    ok, log = _run(OperandsWrittenProps(order=(S, 2 * S, 0), **PARAMS), "digital_pim_operands_mutant")
    assert not ok and "Assert failed" in log
