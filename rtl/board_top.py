"""FPGA board top: wraps any block so that it fits a board without using its I/O pins.

Every input bit of the block comes from a stimulus shift register fed by a 32-bit LFSR
(so the inputs are independent and nothing is optimised away); every output bit goes
into an XOR reduction that is registered and drives a LED. All paths of the block are
therefore register to register, which is what nextpnr's Fmax measures. The wrapper's
own cost: one flip-flop per input bit, 33 flip-flops, and the XOR tree.
"""

from amaranth.hdl import Cat, Elaboratable, Module, Signal
from amaranth.lib import io, wiring

__all__ = ["BoardTop", "io_bits"]


def io_bits(component):
    """``(inputs, outputs)``: lists of the component's port values by direction."""
    ins, outs = [], []
    for path, member, value in component.signature.flatten(component):
        v = value.as_value() if hasattr(value, "as_value") else value
        (ins if member.flow == wiring.In else outs).append(v)
    return ins, outs


class BoardTop(Elaboratable):
    """``BoardTop(component)``: LFSR-driven inputs, XOR-reduced outputs on LED 0.

    ``platform`` may be ``None`` (then the LED is a plain signal ``self.led``), which
    lets the top be simulated or converted without a board.
    """

    def __init__(self, component):
        if not isinstance(component, wiring.Component):
            raise TypeError(f"component must be an amaranth wiring.Component, not {component!r}")
        self.component = component
        self.led = Signal()
        ins, outs = io_bits(component)
        self.in_bits = sum(len(v) for v in ins)
        self.out_bits = sum(len(v) for v in outs)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.component
        ins, outs = io_bits(dut)
        lfsr = Signal(32, init=1)
        # x^32 + x^22 + x^2 + x + 1 (maximal length), Fibonacci form.
        fb = lfsr[31] ^ lfsr[21] ^ lfsr[1] ^ lfsr[0]
        m.d.sync += lfsr.eq(Cat(fb, lfsr[:31]))
        if self.in_bits:
            stim = Signal(self.in_bits)
            if self.in_bits > 1:
                m.d.sync += stim.eq(Cat(lfsr[31], stim[:-1]))
            else:
                m.d.sync += stim.eq(lfsr[31])
            pos = 0
            for v in ins:
                m.d.comb += v.eq(stim[pos:pos + len(v)])
                pos += len(v)
        obs = Cat(*outs) if outs else lfsr[0]
        m.d.sync += self.led.eq(obs.xor())
        if platform is not None:
            m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
            m.d.comb += led.o.eq(self.led)
        return m
