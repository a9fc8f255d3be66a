"""Digital module of a PU, SFU path: INT32 results -> FP16 -> GELU -> INT8 activations.

:class:`DigitalModule` sits on one port of the inner bus, like the analog modules, and
is driven by packets (format of :mod:`hyflexpim.rtl.bus`):

* CONFIG writes a register of :data:`DIG_REGISTERS` (the scales ``s1`` / ``s2``, GELU on
  or off, the destination port, outputs per vector ``n``, words per vector; reset values
  and meanings there and in ``docs/registers.md``).
* RESULT, tag ``parity << (tag_width - 1) | j``, data the INT32 output ``j`` of a vector
  (what :class:`~hyflexpim.rtl.bus.PartialSumAggregator` emits): the module computes
  ``to_int8(g(from_int32(acc, s1)), s2)`` with ``g = gelu`` (or the identity when GELU
  is off), bit-exact to :mod:`hyflexpim.models.fp16`, and stores the INT8 in byte ``j``
  of the buffer of vector ``parity``.
* Other kinds are consumed and ignored.

Output: ACTIVATION packets to the DEST port, tag = word index ``w``, data = INT8
outputs ``w * B .. w * B + B - 1`` (``B = data_width // 8``, output ``w * B + b`` in
byte ``b``; bytes past ``n`` are 0, and so are the pad words up to ``DigReg.WORDS``, which
fill the next layer's last row chunk). A word leaves once all its outputs have arrived;
the words of one vector leave in order 0, 1, ..., then the next vector's (the other
parity), so a receiver sees whole vectors one after the other. The word index is the
input-word address of the next layer (:class:`~hyflexpim.rtl.pu.Bridge` scatters it to
the arrays that hold that row chunk).

Pipeline: three in-order stream units, :class:`~hyflexpim.rtl.fp16.Fp16FromInt32` ->
:class:`~hyflexpim.rtl.sfu.GeluUnit` -> :class:`~hyflexpim.rtl.fp16.Fp16ToInt8`, one
result per cycle; the output index, parity and GELU choice of each item travel in a FIFO
beside each unit (pushed when the item enters, popped when it leaves), so they stay with
their item under any backpressure. With GELU off the item still passes the GELU unit
(same order, same latency) and its input is used. SCALE_IN and GELU take effect for
items that enter after the write, SCALE_OUT, OUTPUTS, WORDS and DEST as words leave:
configure between vectors (docs/registers.md).

Rule (as for the PU): results of vector ``v + 2`` may arrive only after every word of
vector ``v`` has left (two vectors in flight, told apart by ``parity``).
"""

from amaranth.hdl import Array, Signal, Module, Const, Cat, Mux, Shape, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..models.fp16 import functions as F
from .bus import Kind, packet_layout, check_data_width
from .digital_pim import (Cmd, DigitalArraySignature, DigitalPimController, command_layout,
                          result_layout)
from .fp16 import Fp16AddSub, Fp16Div, Fp16FromInt32, Fp16Ldexp, Fp16Mul, Fp16ToInt8
from .sfu import LN_LANE, GeluUnit, LayerNormUnit, SoftmaxUnit
from ..base import Block, check_int, check_pow2
from .registers import CONFIG_WORD, Register, RegisterMap

__all__ = ["DigitalModule", "DigReg", "DIG_REGISTERS", "DIG_REG_SCALE_IN", "DIG_REG_SCALE_OUT",
           "DIG_REG_GELU", "DIG_REG_DEST", "DIG_REG_OUTPUTS", "DIG_REG_WORDS", "Fp16Ldexp",
           "Op", "Alu", "Reduce", "Wait", "FLAGS_LAYOUT", "COUNT_BITS", "instr_layout",
           "ENGINE_DEFAULTS", "LAYER_MODULE", "check_engine", "LayerEngine", "BLOCKS", "REGISTERS"]

_FP16_ONE = 0x3C00


class DigReg(enum.Enum, shape=8):
    """CONFIG registers of the :class:`DigitalModule` (map: :data:`DIG_REGISTERS`)."""
    SCALE_IN = 0
    SCALE_OUT = 1
    GELU = 2
    DEST = 3
    OUTPUTS = 4
    WORDS = 5
    MODE = 6
    START = 7
    PROG_ADDR = 8
    PROG_DATA = 9
    MEM_ADDR = 10
    MEM_LO = 11
    MEM_HI = 12
    IN_BASE = 13
    IN_WORDS = 14
    MASK = 0x10


DIG_REGISTERS = RegisterMap("Digital module (SFU path)", DigReg, {
    DigReg.SCALE_IN: Register(_FP16_ONE, "binary16 dequantisation scale `s1` (INT32 -> FP16)"),
    DigReg.SCALE_OUT: Register(_FP16_ONE, "binary16 requantisation scale `s2` (FP16 -> INT8)"),
    DigReg.GELU: Register(1, "bit 0: apply GELU (0: the identity)"),
    DigReg.DEST: Register(0, "bus port the activation words go to"),
    DigReg.OUTPUTS: Register("`2**(tag_width-1)`", "outputs per vector `n` (0, or more than "
                             "`2**(tag_width-1)`: that maximum)"),
    DigReg.WORDS: Register(0, "words sent per vector: `max(value, ceil(n / B))`, "
                           "`B = data_width / 8` (pad words fill the next layer's last row "
                           "chunk; at most `2**tag_width`)"),
    DigReg.MODE: Register(0, "bit 0: RESULT packets go to the layer engine (1) or the SFU "
                          "path (0); the engine's output then replaces the SFU path's "
                          "(layer engine only)"),
    DigReg.START: Register(0, "write: the layer engine runs its program from instruction "
                           "`value` until an END (written while it runs: held, and the program restarts there after the END)"),
    DigReg.PROG_ADDR: Register(0, "program memory address of the next PROG_DATA instruction"),
    DigReg.PROG_DATA: Register(0, "16 bits of an instruction, low bits first; the last "
                               "of its `ceil(width / 16)` writes stores it at PROG_ADDR, "
                               "which then advances"),
    DigReg.MEM_ADDR: Register(0, "data memory address of the next MEM_HI write"),
    DigReg.MEM_LO: Register(0, "bits 0..15 of the next data word"),
    DigReg.MEM_HI: Register(0, "bits 16..31 of a data word: stores MEM_LO / value at "
                            "MEM_ADDR, which then advances"),
    DigReg.IN_BASE: Register(0, "data memory address of input row 0 (ACTIVATION words "
                             "`w` of row `r` go to `IN_BASE + r * IN_WORDS + w`); a write "
                             "restarts the row count"),
    DigReg.IN_WORDS: Register(0, "words per input row"),
    DigReg.MASK: Register(0, "bits `16 i .. 16 i + 15` of the engine's scatter mask of row "
                          "chunk `c` = the CONFIG tag (bit `t`: a SEND of chunk `c` goes to "
                          "array `t` of the PU)", count="`ceil(arrays / 16)`"),
}, doc="A CONFIG packet to the module's bus port writes one register. SCALE_IN and GELU "
       "take effect for the results that enter after the write (an item in the pipeline "
       "keeps the values it entered with); SCALE_OUT, OUTPUTS, WORDS and DEST are read as "
       "the words leave, so write them between vectors, once the previous vector's words "
       "have left (carrying SCALE_OUT with every item through the GELU pipeline would cost "
       "16 bits per pipeline entry: +12.6 % of the small digital module's area, measured). "
       "Configure between layers (`tb/digital_module_tb.py::scales_written_with_items_in_"
       "flight`, `tb/digital_module_tb.py::gelu_switched_with_items_in_flight`). MODE .. "
       "MASK exist with the layer engine only (`engine`, docs/layer.md).")
# the register numbers, for packet-level code
DIG_REG_SCALE_IN, DIG_REG_SCALE_OUT, DIG_REG_GELU, DIG_REG_DEST, DIG_REG_OUTPUTS, \
    DIG_REG_WORDS = (DigReg(r).value for r in range(6))


# =================================================================================== layer engine

class Op(enum.Enum, shape=5):
    """Operation of a :class:`LayerEngine` instruction (``docs/layer.md`` lists the fields each one reads)."""
    END = 0
    WAIT = 1
    ALU = 2
    REDUCE = 3
    FMUL = 4
    FADD = 5
    FDIV = 6
    FROMI32 = 7
    TOI8 = 8
    LDEXP = 9
    GELU = 10
    SOFTMAX = 11
    LNORM = 12
    PIM = 13
    SEND = 14
    OUT = 15
    CFG = 16


class Alu(enum.Enum, shape=3):
    """``aux`` of an ``ALU`` instruction (32-bit signed integers ``a``, ``b``)."""
    ADD = 0      # a + (+-b) + imm
    MAX = 1      # max(a, b) (imm without use_b)
    PACK = 2     # a[0:16] | b[0:16] << 16
    LO = 3       # a[0:16]
    HI = 4       # a[16:32], sign-extended
    BYTE = 5     # byte (element index mod bytes per word) of a, sign-extended (a_bytes)
    EXPO = 6     # exponent(a[0:16]) of transformer_fp16.exponent
    MIN = 7      # min(a, b) (imm without use_b)


class Reduce(enum.Enum, shape=1):
    """``aux`` of a ``REDUCE`` instruction: one result per row."""
    QMAX = 0     # quantisation maximum of binary16 patterns (models.transformer.quantize)
    IMAX = 1     # signed integer maximum


class Wait(enum.Enum, shape=2):
    """``aux`` of a ``WAIT`` instruction."""
    RESULTS = 0  # every result slot complete
    INPUT = 1    # at least imm input rows arrived
    SLOT = 2     # result slot `parity` complete


FLAGS_LAYOUT = data.StructLayout({"use_b": 1, "neg_b": 1, "a_bytes": 1, "parity": 1,
                                  "arg_step": 1, "tail": 1, "sub": 1, "raw": 1})
#: Bits of the counts ``n_i``, ``n_o``, ``n_w`` of an instruction: rows of up to 4,095
#: elements (BERT-base's and GPT-2's FFN width, 3,072, in one instruction).
COUNT_BITS = 12


def instr_layout(addr_bits):
    """``data.StructLayout`` of one instruction for a data memory of ``2**addr_bits``
    words (fields: module documentation of :class:`LayerEngine`)."""
    a = unsigned(addr_bits)
    return data.StructLayout({
        "op": Op, "aux": 8, "flags": FLAGS_LAYOUT,
        "dst": a, "a": a, "b": a,
        "d_i": a, "d_o": a, "a_i": a, "a_o": a, "b_i": a, "b_o": a,
        "n_i": COUNT_BITS, "n_o": COUNT_BITS, "n_w": COUNT_BITS, "imm": signed(16)})


#: Default geometry of the layer engine (``DigitalModule(engine={...})``): data memory,
#: program memory, digital PIM controller, SFU rows (the CI layer: hidden 32, 2 heads of
#: 16, 8 tokens, softmax rows padded to 16).
ENGINE_DEFAULTS = dict(mem_depth=8192, prog_depth=512, pim_arrays=4, pim_rows=8, pim_cols=256,
                       head_dim=16, max_seq=8, heads=2, pim_lanes=4, sfu_lanes=4, sfu_slots=4,
                       softmax_n=16, ln_n=32, ln_eps=F._h(1e-5))

#: The digital module of the CI layer (``hyflexpim demo --layer``, the cocotb layer tests):
#: the layer engine with its defaults, 16 analog arrays behind inner port 1 (one per row
#: chunk of the layer's matrices), 4 INT8 per word, 16 per chunk.
LAYER_MODULE = dict(port=3, addr_width=2, data_width=32, tag_width=8, degree=4, engine={},
                    n_arrays=16, arrays_per_module=16, word_bits=2)


def check_engine(engine):
    """``engine`` (a dict of :data:`ENGINE_DEFAULTS` keys, or None) completed with the
    defaults and checked; None stays None.

    Raises:
        ValueError: an unknown key, or a value out of its range (the message names it).
    """
    if engine is None:
        return None
    if not isinstance(engine, dict):
        raise ValueError(f"engine must be a dict of {', '.join(ENGINE_DEFAULTS)} or None, "
                         f"not {engine!r}")
    bad = [k for k in engine if k not in ENGINE_DEFAULTS]
    if bad:
        raise ValueError(f"engine has no parameter {bad[0]!r} (known: "
                         f"{', '.join(ENGINE_DEFAULTS)})")
    e = dict(ENGINE_DEFAULTS, **engine)
    check_pow2("mem_depth", e["mem_depth"], 256, 65536)
    check_pow2("prog_depth", e["prog_depth"], 4, 65536)
    DigitalPimController.check_parameters(
        arrays=e["pim_arrays"], rows=e["pim_rows"], cols=e["pim_cols"],
        head_dim=e["head_dim"], max_seq=e["max_seq"], heads=e["heads"], lanes=e["pim_lanes"])
    check_pow2("sfu_lanes", e["sfu_lanes"], 1, 256)
    check_int("sfu_slots", e["sfu_slots"], 1, 256)
    for k in ("softmax_n", "ln_n"):
        check_int(k, e[k], e["sfu_lanes"], 1 << COUNT_BITS - 1)
        if e[k] % e["sfu_lanes"]:
            raise ValueError(f"{k} must be a multiple of sfu_lanes ({e['sfu_lanes']}), "
                             f"not {e[k]!r}")
    F._fp16_of_int(e["ln_n"], "ln_n")
    check_int("ln_eps", e["ln_eps"], F.EPS_MIN, F.EPS_MAX, what="a binary16 bit pattern")
    return e


class LayerEngine(wiring.Component):
    """The programmable part of a digital module: a data memory, a program of vector
    instructions, the SFU's operators and row units, and the digital PIM controller
    (``docs/layer.md``).

    Packets in (``i``, always ready): RESULT ``parity << (tag_width-1) | j`` writes the
    INT32 ``data`` to ``rbase[parity] + j`` and counts it for the result slot ``parity``;
    ACTIVATION ``w`` writes the raw word to ``in_base + r * in_words + w`` (``r``: input
    rows so far, a row complete after ``in_words`` words); CONFIG writes the engine's
    registers of :data:`DIG_REGISTERS` (program and data memory, start, input region,
    scatter masks). Packets out (``o``): SEND's activation words to the analog modules,
    OUT's words, CFG's CONFIG packets.

    Every instruction is a two-level loop: ``n_o`` rows of ``n_i`` elements, operand
    ``a`` at ``a + o * a_o + i * a_i`` (``a_bytes``: byte ``i mod B`` of word ``a + o *
    a_o + i div B``), ``b`` likewise, results to ``dst + o * d_o + i * d_i`` (the first
    ``n_w`` of each row). One element per cycle enters the selected unit; an instruction
    starts when the previous one has written its last result.

    Parameters: the packet format (``port``, ``addr_width``, ``data_width``,
    ``tag_width``), ``degree`` (exp), the analog scatter geometry (``n_arrays``,
    ``arrays_per_module``, ``word_bits``: the input words of an array are ``2 **
    word_bits``), and ``engine`` (:data:`ENGINE_DEFAULTS`).
    """

    def __init__(self, *, port, addr_width, data_width, tag_width, degree, n_arrays,
                 arrays_per_module, word_bits, engine):
        self._e = e = check_engine(engine)
        self._port, self._addr_width = port, addr_width
        self._data_width, self._tag_width, self._degree = data_width, tag_width, degree
        self._n_arrays, self._apm, self._word_bits = n_arrays, arrays_per_module, word_bits
        self._aw = exact_log2(e["mem_depth"])
        self._instr = instr_layout(self._aw)
        self._layout = packet_layout(addr_width, data_width, tag_width)
        self._pim = DigitalPimController(e["pim_arrays"], e["pim_rows"], e["pim_cols"],
                                         e["head_dim"], e["max_seq"], e["heads"], e["pim_lanes"])
        sig = stream.Signature(self._layout)
        super().__init__({
            "i": In(sig), "o": Out(sig),
            "pim": Out(DigitalArraySignature(e["pim_arrays"], e["pim_rows"], e["pim_cols"])),
            "running": Out(1),
        })

    params = property(lambda self: dict(self._e))
    instr = property(lambda self: self._instr, doc="instruction layout")
    addr_bits = property(lambda self: self._aw)
    pim_controller = property(lambda self: self._pim)
    prog_chunks = property(lambda self: -(-self._instr.size // 16),
                           doc="16-bit PROG_DATA writes per instruction")
    mask_regs = property(lambda self: max(1, -(-self._n_arrays // 16)))
    _FIELDS = ("dst", "a", "b", "d_i", "d_o", "a_i", "a_o", "b_i", "b_o")

    def instruction(self, op, *, aux=0, flags=(), n_i=1, n_o=1, n_w=None, imm=0, **fields):
        """The bits of one instruction (host side). ``op``: an :class:`Op`; ``aux`` a
        number or an :class:`Alu` / :class:`Reduce` / :class:`Wait` / ``Cmd`` member;
        ``flags``: names of :data:`FLAGS_LAYOUT` fields; addresses and strides (``dst``,
        ``a``, ``b``, ``d_i``, ``d_o``, ``a_i``, ``a_o``, ``b_i``, ``b_o``) may be
        negative (modulo the memory); ``n_w`` defaults to ``n_i``.

        Raises:
            ValueError: an unknown field or flag, a count or ``imm`` out of range.
        """
        bad = [k for k in fields if k not in self._FIELDS]
        if bad:
            raise ValueError(f"an instruction has no field {bad[0]!r}")
        bad = [f for f in flags if f not in dict(FLAGS_LAYOUT.members)]
        if bad:
            raise ValueError(f"an instruction has no flag {bad[0]!r}")
        top = (1 << COUNT_BITS) - 1
        n_w = n_i if n_w is None else n_w
        for name, v in (("n_i", n_i), ("n_o", n_o), ("n_w", n_w)):
            check_int(name, v, 0, top)
        check_int("imm", imm, -(1 << 15), (1 << 15) - 1)
        aux = aux.value if isinstance(aux, enum.Enum) else aux
        check_int("aux", aux, 0, 255)
        mask = (1 << self._aw) - 1
        value = {"op": Op(op), "aux": aux, "flags": {f: 1 for f in flags},
                 "n_i": n_i, "n_o": n_o, "n_w": n_w, "imm": imm}
        value.update({k: int(fields.get(k, 0)) & mask for k in self._FIELDS})
        return self._instr.const(value).as_bits()

    def program_writes(self, program, at=0):
        """``[(DigReg, value), ...]``: the CONFIG writes that store the instructions
        ``program`` (bits, :meth:`instruction`) from program address ``at``."""
        out = [(DigReg.PROG_ADDR, at)]
        for bits in program:
            out += [(DigReg.PROG_DATA, (bits >> (16 * k)) & 0xFFFF)
                    for k in range(self.prog_chunks)]
        return out

    @staticmethod
    def memory_writes(addr, words):
        """``[(DigReg, value), ...]``: the CONFIG writes that store the 32-bit ``words``
        (signed or unsigned) from data memory address ``addr``."""
        out = [(DigReg.MEM_ADDR, addr)]
        for w in words:
            w = int(w) & 0xFFFFFFFF
            out += [(DigReg.MEM_LO, w & 0xFFFF), (DigReg.MEM_HI, w >> 16)]
        return out

    def elaborate(self, platform):
        m = Module()
        e, aw, tw = self._e, self._aw, self._tag_width
        MD, PD = e["mem_depth"], e["prog_depth"]
        bpw = self._data_width // 8
        bb = exact_log2(bpw)
        wb_bits, apm, na = self._word_bits, self._apm, self._n_arrays
        words = 1 << wb_bits
        n_chunks = 2 ** max(0, tw - wb_bits)
        mr = self.mask_regs
        SL, SS, SN, LN = e["sfu_lanes"], e["sfu_slots"], e["softmax_n"], e["ln_n"]
        PL, PA = e["pim_lanes"], e["pim_arrays"]
        IL = self._instr
        IW = IL.size
        nch = self.prog_chunks

        # ------------------------------------------------------------------ memories
        m.submodules.mem = mem = Memory(shape=32, depth=MD, init=[])
        wp_in, wp_wb = mem.write_port(), mem.write_port()
        rpa, rpb = mem.read_port(), mem.read_port()
        m.submodules.prog = prog = Memory(shape=IW, depth=PD, init=[])
        wp_pg, rp_pg = prog.write_port(), prog.read_port()
        m.submodules.masks = masks = Memory(shape=16 * mr, depth=n_chunks, init=[])
        wp_mk = masks.write_port(granularity=16)
        rp_mk = masks.read_port(domain="comb")

        # ------------------------------------------------------------------ ingress
        pkt = self.i.payload
        kind, tag = pkt.header.kind, pkt.header.tag
        take = self.i.valid
        m.d.comb += self.i.ready.eq(1)
        rbase = Array(Signal(aw, name=f"rbase{p}") for p in range(2))
        expect = Array(Signal(COUNT_BITS, name=f"expect{p}") for p in range(2))
        cnt = Array(Signal(COUNT_BITS, name=f"count{p}") for p in range(2))
        busy = Signal(2)
        in_base, in_words = Signal(aw), Signal(aw)
        row_base, in_cnt = Signal(aw), Signal(aw)
        in_rows = Signal(16)
        paddr, pchunk = Signal(range(PD)), Signal(range(nch))
        pbuf = Signal(16 * max(1, nch - 1))
        maddr, mlo = Signal(aw), Signal(16)
        start, start_pc = Signal(), Signal(range(PD))
        bind = Signal()                 # the executor binds a result slot this cycle

        cfg = data.View(DIG_REGISTERS.layout, pkt.data[:CONFIG_WORD.size])
        value = cfg.value
        with m.If(take & (kind == Kind.RESULT)):
            par = tag[tw - 1]
            m.d.comb += [wp_in.addr.eq(rbase[par] + tag[:tw - 1]), wp_in.data.eq(pkt.data[:32]),
                         wp_in.en.eq(1)]
            m.d.sync += cnt[par].eq(cnt[par] + 1)
            with m.If(cnt[par] + 1 >= expect[par]):
                m.d.sync += busy.bit_select(par, 1).eq(0)
        with m.Elif(take & (kind == Kind.ACTIVATION)):
            m.d.comb += [wp_in.addr.eq(row_base + tag), wp_in.data.eq(pkt.data[:32]),
                         wp_in.en.eq(1)]
            with m.If(in_cnt + 1 >= in_words):
                m.d.sync += [in_cnt.eq(0), row_base.eq(row_base + in_words),
                             in_rows.eq(in_rows + 1)]
            with m.Else():
                m.d.sync += in_cnt.eq(in_cnt + 1)
        with m.Elif(take & (kind == Kind.CONFIG)):
            reg = cfg.register.as_value()
            with m.Switch(cfg.register):
                with m.Case(DigReg.START):
                    m.d.sync += [start.eq(1), start_pc.eq(value)]
                with m.Case(DigReg.PROG_ADDR):
                    m.d.sync += [paddr.eq(value), pchunk.eq(0)]
                with m.Case(DigReg.PROG_DATA):
                    with m.If(pchunk == nch - 1):
                        m.d.comb += [wp_pg.addr.eq(paddr), wp_pg.en.eq(1),
                                     wp_pg.data.eq(Cat(pbuf[:16 * (nch - 1)], value)[:IW])]
                        m.d.sync += [pchunk.eq(0), paddr.eq(paddr + 1)]
                    with m.Else():
                        m.d.sync += [pbuf.word_select(pchunk, 16).eq(value),
                                     pchunk.eq(pchunk + 1)]
                with m.Case(DigReg.MEM_ADDR):
                    m.d.sync += maddr.eq(value)
                with m.Case(DigReg.MEM_LO):
                    m.d.sync += mlo.eq(value)
                with m.Case(DigReg.MEM_HI):
                    m.d.comb += [wp_in.addr.eq(maddr), wp_in.data.eq(Cat(mlo, value)),
                                 wp_in.en.eq(1)]
                    m.d.sync += maddr.eq(maddr + 1)
                with m.Case(DigReg.IN_BASE):
                    m.d.sync += [in_base.eq(value), row_base.eq(value), in_cnt.eq(0),
                                 in_rows.eq(0)]
                with m.Case(DigReg.IN_WORDS):
                    m.d.sync += in_words.eq(value)
            with m.If((reg >= DigReg.MASK.value) & (reg < DigReg.MASK.value + mr)):
                m.d.comb += [wp_mk.addr.eq(tag[:max(1, tw - wb_bits)] if n_chunks > 1 else 0),
                             wp_mk.data.eq(Cat(*[value] * mr)),
                             wp_mk.en.eq(1 << (reg - DigReg.MASK.value)[:max(1, ceil_log2(mr))]
                                         if mr > 1 else 1)]

        # ------------------------------------------------------------------ units
        units = {}
        for op, unit in ((Op.FMUL, Fp16Mul()), (Op.FADD, Fp16AddSub()), (Op.FDIV, Fp16Div()),
                         (Op.FROMI32, Fp16FromInt32()), (Op.TOI8, Fp16ToInt8()),
                         (Op.LDEXP, Fp16Ldexp()), (Op.GELU, GeluUnit(lanes=1, degree=self._degree))):
            m.submodules[f"u_{op.name.lower()}"] = unit
            units[op] = unit
        m.submodules.u_softmax = smx = SoftmaxUnit(n=SN, lanes=SL, slots=SS, degree=self._degree)
        m.submodules.u_lnorm = lnu = LayerNormUnit(n=LN, lanes=SL, slots=SS, eps=e["ln_eps"])
        m.submodules.u_pim = pimc = self._pim
        wiring.connect(m, pimc.pim, wiring.flipped(self.pim))

        # ------------------------------------------------------------------ executor
        ins = Signal(IL)
        op, fl = ins.op, ins.flags
        pc = Signal(range(PD))
        running = Signal()
        m.d.comb += self.running.eq(running)
        pim_cmd = ins.aux[:2]
        is_pim = op == Op.PIM
        pim_rows = is_pim & ((pim_cmd == Cmd.SCORES) | (pim_cmd == Cmd.CONTEXT))
        is_append = is_pim & (pim_cmd == Cmd.APPEND)
        m.d.comb += pimc.cfg.head.eq(ins.aux[2:])

        # feed: the element loop and the operand reads
        fo, fi = Signal(COUNT_BITS + 1), Signal(COUNT_BITS + 1)
        nf = Signal(COUNT_BITS + 1)
        a_row, b_row, ra, rb = (Signal(aw, name=n) for n in ("a_row", "b_row", "ra", "rb"))
        hdr_pend, kv, tail_pend, feed_done = Signal(), Signal(), Signal(), Signal()
        item = data.StructLayout({"a": 32, "b": 32, "pad": 1, "last": 1, "hdr": 1, "kv": 1,
                                  "tail": 1, "byte": max(1, bb)})
        m.submodules.feed = feed = SyncFIFOBuffered(width=item.size, depth=4)
        issued = Signal()
        flags_d = Signal(item)
        m.d.comb += [rpa.addr.eq(ra), rpb.addr.eq(rb),
                     feed.w_stream.valid.eq(issued),
                     feed.w_stream.payload.eq(Cat(rpa.data, rpb.data,
                                                  flags_d.as_value()[64:]))]
        issue = Signal()
        exec_state = Signal()           # the RUN state
        # elements of a row that are read (the others are padding); SOFTMAX with
        # arg_step: imm + o of row o (a causal mask)
        n_valid = Signal(COUNT_BITS + 2)
        m.d.comb += n_valid.eq(Mux(fl.arg_step & (op == Op.SOFTMAX), ins.imm + fo, ins.n_i))
        m.d.comb += issue.eq(exec_state & ~feed_done & (feed.level + issued < 4))
        m.d.comb += [rpa.en.eq(issue), rpb.en.eq(issue)]
        m.d.sync += issued.eq(issue)

        def row_advance():
            m.d.sync += [fo.eq(fo + 1), fi.eq(0), a_row.eq(a_row + ins.a_o),
                         b_row.eq(b_row + ins.b_o), ra.eq(a_row + ins.a_o),
                         rb.eq(b_row + ins.b_o), kv.eq(0), hdr_pend.eq(pim_rows)]
            with m.If(fo + 1 >= ins.n_o):
                m.d.sync += feed_done.eq(1)

        with m.If(issue):
            m.d.sync += flags_d.eq(0)
            with m.If(hdr_pend):
                m.d.sync += [flags_d.hdr.eq(1), hdr_pend.eq(0)]
                with m.If(nf == 0):
                    row_advance()
            with m.Elif(tail_pend):
                m.d.sync += [flags_d.tail.eq(1), tail_pend.eq(0)]
                row_advance()
            with m.Else():
                last = fi + 1 >= nf
                m.d.sync += [flags_d.pad.eq(fi >= n_valid), flags_d.last.eq(last),
                             flags_d.kv.eq(kv), flags_d.byte.eq(fi[:max(1, bb)] if bb else 0),
                             fi.eq(fi + 1), rb.eq(rb + ins.b_i)]
                if bb:
                    with m.If(fl.a_bytes):
                        with m.If(fi[:bb] == bpw - 1):
                            m.d.sync += ra.eq(ra + 1)
                    with m.Else():
                        m.d.sync += ra.eq(ra + ins.a_i)
                else:
                    m.d.sync += ra.eq(ra + ins.a_i)
                with m.If(last):
                    with m.If(is_append & ~kv):
                        m.d.sync += [kv.eq(1), fi.eq(0), ra.eq(a_row), rb.eq(b_row)]
                    with m.Elif((op == Op.OUT) & fl.tail):
                        m.d.sync += [tail_pend.eq(1), rb.eq(b_row)]
                    with m.Else():
                        row_advance()

        it = data.View(item, feed.r_stream.payload)
        it_valid, it_ready = feed.r_stream.valid, feed.r_stream.ready
        fire = it_valid & it_ready
        padval = Mux(op == Op.SOFTMAX, 0xFC00, 0)
        xa = Mux(it.pad, padval, it.a)
        xb = Mux(it.pad, 0, it.b)

        # results into the memory
        wb_valid, wb_value, wb_row_last = Signal(), Signal(32), Signal()
        wo, wi = Signal(COUNT_BITS + 1), Signal(COUNT_BITS + 1)
        w_row, wd = Signal(aw), Signal(aw)
        p_row = Signal(COUNT_BITS + 1)
        wb_done = Signal()
        with m.If(wb_valid):
            with m.If(wi < ins.n_w):
                m.d.comb += [wp_wb.addr.eq(wd), wp_wb.data.eq(wb_value), wp_wb.en.eq(1)]
            end_row = Mux(is_pim, wb_row_last, wi + 1 >= p_row)
            with m.If(end_row):
                m.d.sync += [wi.eq(0), wo.eq(wo + 1), w_row.eq(w_row + ins.d_o),
                             wd.eq(w_row + ins.d_o)]
                with m.If(wo + 1 >= ins.n_o):
                    m.d.sync += wb_done.eq(1)
            with m.Else():
                m.d.sync += [wi.eq(wi + 1), wd.eq(wd + ins.d_i)]

        # ALU (combinational)
        bsx = Mux(fl.use_b, Mux(fl.neg_b, -xb.as_signed(), xb.as_signed()), 0)
        alu = Signal(32)
        imm = ins.imm
        sa = xa.as_signed()
        other = Mux(fl.use_b, xb.as_signed(), imm)
        ex = xa[10:15]
        lz = Signal(range(11))
        m.d.comb += lz.eq(10)
        for k in range(10):
            with m.If(xa[k]):
                m.d.comb += lz.eq(9 - k)
        expo = Mux((xa[:15] == 0) | (ex == 31), 0,
                   Mux(ex == 0, -15 - lz, Cat(ex, Const(0, 1)).as_signed() - 15))
        byte = xa.word_select(it.byte[:max(1, bb)], 8).as_signed() if bb else xa[:8].as_signed()
        with m.Switch(ins.aux[:3]):
            with m.Case(Alu.ADD):
                m.d.comb += alu.eq(sa + bsx + imm)
            with m.Case(Alu.MAX):
                m.d.comb += alu.eq(Mux(sa > other, sa, other))
            with m.Case(Alu.MIN):
                m.d.comb += alu.eq(Mux(sa < other, sa, other))
            with m.Case(Alu.PACK):
                m.d.comb += alu.eq(Cat(xa[:16], xb[:16]))
            with m.Case(Alu.LO):
                m.d.comb += alu.eq(xa[:16])
            with m.Case(Alu.HI):
                m.d.comb += alu.eq(xa[16:32].as_signed())
            with m.Case(Alu.BYTE):
                m.d.comb += alu.eq(byte)
            with m.Case(Alu.EXPO):
                m.d.comb += alu.eq(expo)

        # REDUCE: one result per row, registered
        racc = Signal(signed(32))
        red_valid, red_value = Signal(), Signal(32)
        mag = Mux(xa[:15] > 0x7C00, 0, xa[:15])
        rv = Mux(ins.aux[0] == Reduce.IMAX.value, sa, mag)
        first = Signal(init=1)
        acc_next = Mux(first | (rv > racc), rv, racc)
        m.d.sync += red_valid.eq(0)
        with m.If(fire & (op == Op.REDUCE)):
            m.d.sync += [racc.eq(acc_next), first.eq(it.last)]
            with m.If(it.last):
                qm = Mux(acc_next > 0x7BFF, 0x7BFF, acc_next)
                m.d.sync += [red_valid.eq(1),
                             red_value.eq(Mux(ins.aux[0] == Reduce.IMAX.value, acc_next,
                                              Mux(qm == 0, 0x3C00, qm)))]

        # SFU row units: beats of SL lanes in, serialised out
        sbeat = Signal(data.ArrayLayout(LN_LANE, SL))
        scnt, sfull = Signal(range(max(2, SL))), Signal()
        obeat = Signal(data.ArrayLayout(16, SL))
        ocnt, ofull = Signal(range(max(2, SL))), Signal()
        row_unit = (op == Op.SOFTMAX) | (op == Op.LNORM)
        with m.If(fire & row_unit):
            m.d.sync += [sbeat[scnt].x.eq(xa[:16]), sbeat[scnt].gamma.eq(xb[:16]),
                         sbeat[scnt].beta.eq(xb[16:32]), scnt.eq(scnt + 1)]
            with m.If(scnt == SL - 1):
                m.d.sync += [sfull.eq(1), scnt.eq(0)]
        m.d.comb += [smx.i.valid.eq(sfull & (op == Op.SOFTMAX)),
                     lnu.i.valid.eq(sfull & (op == Op.LNORM)),
                     lnu.i.payload.eq(sbeat)]
        for l in range(SL):
            m.d.comb += smx.i.payload[l].eq(sbeat[l].x)
        with m.If((smx.i.valid & smx.i.ready) | (lnu.i.valid & lnu.i.ready)):
            m.d.sync += sfull.eq(0)
        unit_o_valid = Mux(op == Op.SOFTMAX, smx.o.valid, lnu.o.valid)
        unit_o = Mux(op == Op.SOFTMAX, smx.o.payload, lnu.o.payload)
        o_take = (~ofull | (ocnt == SL - 1)) & row_unit
        m.d.comb += [smx.o.ready.eq(o_take), lnu.o.ready.eq(o_take)]
        with m.If(ofull):
            m.d.sync += ocnt.eq(ocnt + 1)
            with m.If(ocnt == SL - 1):
                m.d.sync += [ofull.eq(0), ocnt.eq(0)]
        with m.If(unit_o_valid & o_take):
            m.d.sync += [obeat.eq(unit_o), ofull.eq(1), ocnt.eq(0)]

        # digital PIM: command beats in, result beats serialised out
        cmd_l = command_layout(PL, e["max_seq"])
        pbeat = Signal(cmd_l)
        pcnt, pfull = Signal(range(max(2, PL))), Signal()
        hdrs = Signal(COUNT_BITS + 1)
        with m.If(fire & is_pim):
            with m.If(it.hdr):
                arg = Mux(is_append, ins.n_o, ins.imm + Mux(fl.arg_step, hdrs, 0))
                m.d.sync += [pbeat.cmd.eq(pim_cmd), pbeat.arg.eq(arg), pfull.eq(1),
                             hdrs.eq(hdrs + 1)]
            with m.Else():
                m.d.sync += [pbeat.x[pcnt].eq(Mux(it.kv, xb[:8], xa[:8])), pcnt.eq(pcnt + 1)]
                with m.If(pcnt == PL - 1):
                    m.d.sync += [pfull.eq(1), pcnt.eq(0)]
        m.d.comb += [pimc.i.valid.eq(pfull), pimc.i.payload.eq(pbeat)]
        with m.If(pimc.i.valid & pimc.i.ready):
            m.d.sync += pfull.eq(0)
        rbeat = Signal(result_layout(PA))
        rcnt, rfull = Signal(range(max(2, PA))), Signal()
        r_take = ~rfull | (rcnt == PA - 1)
        m.d.comb += pimc.o.ready.eq(r_take)
        with m.If(rfull):
            m.d.sync += rcnt.eq(rcnt + 1)
            with m.If(rcnt == PA - 1):
                m.d.sync += [rfull.eq(0), rcnt.eq(0)]
        with m.If(pimc.o.valid & r_take):
            m.d.sync += [rbeat.eq(pimc.o.payload), rfull.eq(1), rcnt.eq(0)]

        # packets: SEND (scatter to the analog arrays), OUT, CFG
        wword = Signal(32)
        bcnt, wfull = Signal(range(max(2, bpw))), Signal()
        widx, crow = Signal(COUNT_BITS + 1), Signal(COUNT_BITS + 1)
        wtag = Signal(tw)
        pend = Signal(max(1, na))
        is_pkt = (op == Op.SEND) | (op == Op.OUT) | (op == Op.CFG)
        chunk = (ins.imm + crow)[:max(1, tw - wb_bits)]
        m.d.comb += rp_mk.addr.eq(chunk if n_chunks > 1 else 0)
        raw = (op == Op.OUT) & fl.raw
        with m.If(fire & is_pkt):
            with m.If(raw & ~it.tail):
                m.d.sync += [wword.eq(xa), wfull.eq(1), wtag.eq(ins.imm + widx),
                             widx.eq(widx + 1)]
                with m.If(it.last & ~fl.tail):
                    m.d.sync += [widx.eq(0), crow.eq(crow + 1)]
            with m.Elif((op == Op.CFG) | it.tail):
                m.d.sync += [wword.eq(Mux(it.tail, it.b, it.a)), wfull.eq(1),
                             wtag.eq(Mux(it.tail, ins.imm + widx, ins.imm))]
                m.d.sync += [widx.eq(0), crow.eq(crow + 1)]
            with m.Else():
                m.d.sync += [wword.word_select(bcnt, 8).eq(xa[:8]), bcnt.eq(bcnt + 1)]
                with m.If(bcnt == bpw - 1):
                    m.d.sync += [wfull.eq(1), bcnt.eq(0), widx.eq(widx + 1),
                                 wtag.eq(Mux(op == Op.SEND, widx, ins.imm + widx)),
                                 pend.eq(rp_mk.data[:na])]
                    with m.If(it.last & ~((op == Op.OUT) & fl.tail)):
                        m.d.sync += [widx.eq(0), crow.eq(crow + 1)]
        lowest = Signal(range(max(2, na)))
        for t in reversed(range(na)):
            with m.If(pend[t]):
                m.d.comb += lowest.eq(t)
        o = self.o.payload
        # the constant source is assigned in both branches: alone, it becomes an
        # ``always @*`` without a sensitivity that Icarus never runs (source X)
        m.d.comb += o.data.eq(wword)
        with m.If(op == Op.SEND):
            m.d.comb += [self.o.valid.eq(wfull & pend.any()), o.header.source.eq(self._port),
                         o.header.destination.eq(1 + lowest // apm),
                         o.header.kind.eq(Kind.ACTIVATION),
                         o.header.tag.eq((lowest % apm) << wb_bits | wtag[:wb_bits]
                                         if wb_bits else lowest % apm)]
            with m.If(wfull & ~pend.any()):
                m.d.sync += wfull.eq(0)
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += pend.eq(pend & ~(1 << lowest)[:max(1, na)])
                with m.If((pend & ~(1 << lowest)[:max(1, na)]) == 0):
                    m.d.sync += wfull.eq(0)
        with m.Else():
            m.d.comb += [self.o.valid.eq(wfull & is_pkt), o.header.source.eq(self._port),
                         o.header.destination.eq(ins.aux),
                         o.header.kind.eq(Mux(op == Op.CFG, Kind.CONFIG, Kind.ACTIVATION)),
                         o.header.tag.eq(wtag)]
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += wfull.eq(0)

        # the consumer of the feed items and the writeback source, by operation
        m.d.comb += [wb_valid.eq(0), it_ready.eq(0)]
        with m.Switch(op):
            with m.Case(Op.ALU):
                m.d.comb += [it_ready.eq(1), wb_valid.eq(it_valid), wb_value.eq(alu)]
            with m.Case(Op.REDUCE):
                m.d.comb += [it_ready.eq(1), wb_valid.eq(red_valid), wb_value.eq(red_value)]
            for uop, unit in units.items():
                with m.Case(uop):
                    lane = unit.i.payload[0]
                    if uop == Op.GELU:
                        m.d.comb += unit.i.payload[0].eq(xa[:16])
                    elif uop == Op.FROMI32:
                        m.d.comb += [lane.acc.eq(xa), lane.scale.eq(xb[:16])]
                    elif uop == Op.TOI8:
                        m.d.comb += [lane.x.eq(xa[:16]), lane.scale.eq(xb[:16])]
                    elif uop == Op.LDEXP:
                        ev = Signal(signed(34), name="ldexp_e")
                        m.d.comb += [ev.eq(bsx + imm), lane.x.eq(xa[:16]),
                                     lane.e.eq(Mux(ev > 127, 127, Mux(ev < -128, -128, ev)))]
                    else:
                        m.d.comb += [lane.a.eq(xa[:16]), lane.b.eq(xb[:16])]
                        if uop == Op.FADD:
                            m.d.comb += lane.sub.eq(fl.sub)
                    r = unit.o.payload[0] if uop == Op.GELU else unit.o.payload[0].r
                    m.d.comb += [unit.i.valid.eq(it_valid), it_ready.eq(unit.i.ready),
                                 unit.o.ready.eq(1), wb_valid.eq(unit.o.valid),
                                 wb_value.eq(r.as_signed() if uop == Op.TOI8 else r)]
            with m.Case(Op.SOFTMAX, Op.LNORM):
                m.d.comb += [it_ready.eq(~sfull), wb_valid.eq(ofull),
                             wb_value.eq(obeat[ocnt])]
            with m.Case(Op.PIM):
                m.d.comb += [it_ready.eq(~pfull), wb_valid.eq(rfull),
                             wb_value.eq(rbeat.y[rcnt]),
                             wb_row_last.eq(rbeat.last & (rcnt == PA - 1))]
            with m.Case(Op.SEND, Op.OUT, Op.CFG):
                m.d.comb += it_ready.eq(~wfull)
        for uop, unit in units.items():
            with m.If(op != uop):
                m.d.comb += unit.o.ready.eq(0)

        needs_wb = ~((op == Op.SEND) | (op == Op.OUT) | (op == Op.CFG) |
                     (is_pim & ~pim_rows))
        idle = (feed.level == 0) & ~issued & ~sfull & ~ofull & ~pfull & ~rfull & ~wfull & \
            ~red_valid
        done = feed_done & idle & (~needs_wb | wb_done)

        n_f = Signal(COUNT_BITS + 1)
        d = rp_pg.data
        dv = data.View(IL, d)
        with m.Switch(dv.op):
            with m.Case(Op.SOFTMAX):
                m.d.comb += n_f.eq(SN)
            with m.Case(Op.LNORM):
                m.d.comb += n_f.eq(LN)
            with m.Case(Op.PIM):
                m.d.comb += n_f.eq((dv.n_i + PL - 1) // PL * PL)
            with m.Case(Op.SEND):
                m.d.comb += n_f.eq(words * bpw)
            with m.Case(Op.OUT):
                m.d.comb += n_f.eq(Mux(dv.flags.raw, dv.n_i, (dv.n_i + bpw - 1) >> bb << bb))
            with m.Case(Op.CFG):
                m.d.comb += n_f.eq(1)
            with m.Default():
                m.d.comb += n_f.eq(dv.n_i)
        p_rows = Signal(COUNT_BITS + 1)
        with m.Switch(dv.op):
            with m.Case(Op.REDUCE):
                m.d.comb += p_rows.eq(1)
            with m.Case(Op.SOFTMAX):
                m.d.comb += p_rows.eq(SN)
            with m.Case(Op.LNORM):
                m.d.comb += p_rows.eq(LN)
            with m.Default():
                m.d.comb += p_rows.eq(dv.n_i)

        with m.FSM(init="IDLE"):
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [start.eq(0), pc.eq(start_pc), running.eq(1)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += [rp_pg.addr.eq(pc), rp_pg.en.eq(1)]
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += [ins.eq(d), pc.eq(pc + 1), nf.eq(n_f), p_row.eq(p_rows),
                             fo.eq(0), fi.eq(0), a_row.eq(dv.a), b_row.eq(dv.b), ra.eq(dv.a),
                             rb.eq(dv.b), kv.eq(0), tail_pend.eq(0),
                             hdr_pend.eq(dv.op == Op.PIM),
                             feed_done.eq((dv.n_o == 0) | (dv.op == Op.END) | (dv.op == Op.WAIT)),
                             wo.eq(0), wi.eq(0), w_row.eq(dv.dst), wd.eq(dv.dst),
                             wb_done.eq(dv.n_o == 0), hdrs.eq(0), first.eq(1),
                             widx.eq(0), crow.eq(0), bcnt.eq(0), scnt.eq(0), pcnt.eq(0)]
                m.next = "ISSUE"
            with m.State("ISSUE"):
                with m.Switch(op):
                    with m.Case(Op.END):
                        m.d.sync += running.eq(0)
                        m.next = "IDLE"
                    with m.Case(Op.WAIT):
                        with m.Switch(ins.aux[:2]):
                            with m.Case(Wait.RESULTS):
                                with m.If(~busy.any()):
                                    m.next = "FETCH"
                            with m.Case(Wait.INPUT):
                                with m.If(in_rows >= ins.imm.as_unsigned()):
                                    m.next = "FETCH"
                            with m.Default():
                                with m.If(~busy.bit_select(fl.parity, 1)):
                                    m.next = "FETCH"
                    with m.Case(Op.SEND):
                        with m.If(ins.n_w == 0):
                            m.next = "RUN"
                        with m.Elif(~busy.bit_select(fl.parity, 1)):
                            m.d.comb += bind.eq(1)
                            m.next = "RUN"
                    with m.Default():
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += exec_state.eq(1)
                with m.If(done):
                    m.next = "FETCH"
        with m.If(bind):
            m.d.sync += [rbase[fl.parity].eq(ins.dst), expect[fl.parity].eq(ins.n_w),
                         cnt[fl.parity].eq(0), busy.bit_select(fl.parity, 1).eq(1)]
        return m


class _Tracked:
    """An in-order stream ``unit`` with a FIFO of side values beside it.

    ``valid`` / ``side`` / ``ready`` (in), ``out_valid`` / ``out_side`` / ``out_ready``
    (out); the unit's own payloads are set by the caller. The side value of an item is
    pushed when the item enters the unit and popped when it leaves, so it stays with
    its item; an item enters only while the FIFO has room.
    """

    def __init__(self, m, name, unit, side_layout, depth):
        self.unit = unit
        fifo = SyncFIFOBuffered(width=Shape.cast(side_layout).width, depth=depth)
        m.submodules[f"{name}_unit"] = unit
        m.submodules[f"{name}_side"] = fifo
        self.valid, self.ready = Signal(name=f"{name}_valid"), Signal(name=f"{name}_ready")
        self.side = Signal(side_layout, name=f"{name}_side_in")
        self.out_valid = Signal(name=f"{name}_out_valid")
        self.out_ready = Signal(name=f"{name}_out_ready")
        self.out_side = data.View(side_layout, fifo.r_stream.payload)
        m.d.comb += [
            unit.i.valid.eq(self.valid & fifo.w_stream.ready),
            fifo.w_stream.valid.eq(self.valid & unit.i.ready),
            fifo.w_stream.payload.eq(self.side),
            self.ready.eq(unit.i.ready & fifo.w_stream.ready),
            self.out_valid.eq(unit.o.valid & fifo.r_stream.valid),
            unit.o.ready.eq(self.out_ready & fifo.r_stream.valid),
            fifo.r_stream.ready.eq(self.out_ready & unit.o.valid),
        ]


class DigitalModule(wiring.Component):
    """Digital PIM module with the SFU path (protocol: module documentation).

    Ports: ``i`` packets from the bus, ``o`` packets to the bus. Parameters: ``port``
    (this module's bus address, 0..2**addr_width - 1), ``addr_width`` 1..16,
    ``data_width`` a power of two in 32..1024, ``tag_width`` 2..16 (output index bits +
    1 parity bit), ``degree`` (Taylor degree of the GELU's exp, as
    :class:`~hyflexpim.rtl.sfu.GeluUnit`).
    """

    @classmethod
    def check_parameters(cls, *, port=3, addr_width=2, data_width=32, tag_width=8, degree=4,
                         engine=None, n_arrays=1, arrays_per_module=1, word_bits=0):
        """Check the parameters without building the module; return ``engine`` completed
        with :data:`ENGINE_DEFAULTS` (None without a layer engine).

        Raises:
            ParameterTypeError: a parameter is not an integer.
            ValueError: a parameter is out of its range (the message names it).
        """
        check_int("addr_width", addr_width, 1, 16)
        check_data_width(data_width, pow2=True)
        check_int("tag_width", tag_width, 2, 16)
        check_int("port", port, 0, 2 ** addr_width - 1)
        GeluUnit.check_parameters(lanes=1, degree=degree)
        check_int("n_arrays", n_arrays, 1, 4096)
        check_int("arrays_per_module", arrays_per_module, 1, 4096)
        check_int("word_bits", word_bits, 0, tag_width - 1)
        return check_engine(engine)

    @staticmethod
    def latency_of(degree=4):
        """Pipeline stages from a RESULT accepted to its INT8 stored (FIFOs not counted)."""
        return Fp16FromInt32.LATENCY + GeluUnit.latency_of(degree) + Fp16ToInt8.LATENCY

    def __init__(self, *, port=3, addr_width=2, data_width=32, tag_width=8, degree=4,
                 engine=None, n_arrays=1, arrays_per_module=1, word_bits=0):
        self._engine = self.check_parameters(
            port=port, addr_width=addr_width, data_width=data_width, tag_width=tag_width,
            degree=degree, engine=engine, n_arrays=n_arrays,
            arrays_per_module=arrays_per_module, word_bits=word_bits)
        self._latency = self.latency_of(degree)
        self._port, self._addr_width = port, addr_width
        self._data_width, self._tag_width, self._degree = data_width, tag_width, degree
        self._scatter = dict(n_arrays=n_arrays, arrays_per_module=arrays_per_module,
                             word_bits=word_bits)
        self._layout = packet_layout(addr_width, data_width, tag_width)
        sig = stream.Signature(self._layout)
        ports = {"i": In(sig), "o": Out(sig)}
        if self._engine is not None:
            e = self._engine
            ports["pim"] = Out(DigitalArraySignature(e["pim_arrays"], e["pim_rows"],
                                                     e["pim_cols"]))
            ports["running"] = Out(1)
        super().__init__(ports)

    engine = property(lambda self: None if self._engine is None else dict(self._engine),
                      doc="the layer engine's parameters (None: SFU path only)")

    def make_engine(self):
        """A :class:`LayerEngine` equal to this module's (for its instruction layout and
        parameters; never elaborated)."""
        eng = LayerEngine(port=self._port, addr_width=self._addr_width,
                          data_width=self._data_width, tag_width=self._tag_width,
                          degree=self._degree, engine=self._engine, **self._scatter)
        eng._MustUse__silence = True
        return eng

    layout = property(lambda self: self._layout)
    port = property(lambda self: self._port)
    max_outputs = property(lambda self: 2 ** (self._tag_width - 1),
                           doc="most outputs per vector (output index bits of the tag)")
    bytes_per_word = property(lambda self: self._data_width // 8)

    @property
    def latency(self):
        """Pipeline stages from a RESULT accepted to its INT8 stored (FIFOs not counted)."""
        return self._latency

    def elaborate(self, platform):
        m = Module()
        tw, nmax, bpw = self._tag_width, self.max_outputs, self.bytes_per_word
        ib = tw - 1                                     # output index bits
        bb = exact_log2(bpw)                            # byte-in-word bits
        nwmax = -(-nmax // bpw)                         # words per vector at most
        wb = max(1, ceil_log2(nwmax))

        regs = DIG_REGISTERS
        scale_in = Signal(16, init=regs.reset(DigReg.SCALE_IN))
        scale_out = Signal(16, init=regs.reset(DigReg.SCALE_OUT))
        gelu_on = Signal(init=regs.reset(DigReg.GELU))
        dest = Signal(self._addr_width, init=regs.reset(DigReg.DEST))
        n_out = Signal(range(nmax + 1), init=nmax)
        pad_words = Signal(tw + 1, init=regs.reset(DigReg.WORDS))

        # --- input: configuration, results into the pipeline ---------------------------
        pkt = self.i.payload
        kind = pkt.header.kind
        mode = Signal(init=DIG_REGISTERS.reset(DigReg.MODE))
        so = stream.Signature(self._layout).create()         # the SFU path's output
        item = data.StructLayout({"idx": unsigned(ib), "parity": 1, "gelu": 1})
        item_x = data.StructLayout({"idx": unsigned(ib), "parity": 1, "gelu": 1, "x": 16})
        t1 = _Tracked(m, "dequant", Fp16FromInt32(), item, 8)
        gelu = GeluUnit(lanes=1, degree=self._degree)
        t2 = _Tracked(m, "gelu", gelu, item_x, gelu.latency + 4)
        t3 = _Tracked(m, "requant", Fp16ToInt8(), item, 8)
        is_result = kind == Kind.RESULT
        m.d.comb += [
            t1.valid.eq(self.i.valid & is_result & ~mode),
            t1.unit.i.payload[0].acc.eq(pkt.data[:32]),
            t1.unit.i.payload[0].scale.eq(scale_in),
            t1.side.idx.eq(pkt.header.tag[:ib]),
            t1.side.parity.eq(pkt.header.tag[ib]),
            t1.side.gelu.eq(gelu_on),
            self.i.ready.eq(Mux(is_result & ~mode, t1.ready, 1)),
        ]
        cfg = data.View(DIG_REGISTERS.layout, pkt.data[:CONFIG_WORD.size])
        with m.If(self.i.valid & self.i.ready & (kind == Kind.CONFIG)):
            value = cfg.value
            with m.Switch(cfg.register):
                with m.Case(DigReg.SCALE_IN):
                    m.d.sync += scale_in.eq(value)
                with m.Case(DigReg.SCALE_OUT):
                    m.d.sync += scale_out.eq(value)
                with m.Case(DigReg.GELU):
                    m.d.sync += gelu_on.eq(value[0])
                with m.Case(DigReg.DEST):
                    m.d.sync += dest.eq(value)
                with m.Case(DigReg.OUTPUTS):
                    m.d.sync += n_out.eq(Mux((value == 0) | (value > nmax), nmax, value))
                with m.Case(DigReg.WORDS):
                    m.d.sync += pad_words.eq(Mux(value > 2 ** tw, 2 ** tw, value))
                with m.Case(DigReg.MODE):
                    if self._engine is not None:
                        m.d.sync += mode.eq(value[0])

        # dequant -> GELU -> requant
        x1 = t1.unit.o.payload[0].r
        m.d.comb += [
            t2.valid.eq(t1.out_valid), t1.out_ready.eq(t2.ready),
            t2.unit.i.payload[0].eq(x1),
            t2.side.eq(Cat(t1.out_side.as_value(), x1)),
        ]
        y = Mux(t2.out_side.gelu, t2.unit.o.payload[0], t2.out_side.x)
        m.d.comb += [
            t3.valid.eq(t2.out_valid), t2.out_ready.eq(t3.ready),
            t3.unit.i.payload[0].x.eq(y),
            t3.unit.i.payload[0].scale.eq(scale_out),
            t3.side.eq(t2.out_side.as_value()[:Shape.cast(item).width]),
        ]

        # --- vector buffers: one word memory, two vectors (parity), byte writes ----------
        m.submodules.buf = buf = Memory(shape=unsigned(self._data_width), depth=2 * 2 ** wb,
                                        init=[])
        wr = buf.write_port(granularity=8)
        rd = buf.read_port(domain="comb")
        got = Signal(data.ArrayLayout(nmax, 2))
        r8 = t3.unit.o.payload[0].r
        side3 = t3.out_side
        widx = side3.idx >> bb
        m.d.comb += [
            t3.out_ready.eq(1),
            wr.addr.eq(Cat(widx[:wb], side3.parity)),
            wr.data.eq(Cat([r8.as_unsigned()] * bpw)),
        ]
        with m.If(t3.out_valid):
            m.d.comb += wr.en.eq(1 << side3.idx[:bb] if bb else 1)

        # --- output: the words of vector ``cur`` in order ----------------------------------
        cur = Signal()
        wptr = Signal(tw + 1)
        nwords = Signal(tw + 1)
        need = (n_out + bpw - 1) >> bb
        m.d.comb += nwords.eq(Mux(pad_words > need, pad_words, need))
        valid_pos = Signal(nmax)
        m.d.comb += valid_pos.eq(Cat(Const(j, range(nmax + 1)) < n_out for j in range(nmax)))
        have = Signal(nmax)
        m.d.comb += have.eq(got[cur] | ~valid_pos)
        word_done = Signal(init=1)                  # pad words (w >= nwmax) are always done
        byte_mask = Signal(bpw)
        for w in range(nwmax):
            with m.If(wptr == w):
                m.d.comb += [
                    word_done.eq(have[w * bpw:(w + 1) * bpw].all()),
                    byte_mask.eq(valid_pos[w * bpw:(w + 1) * bpw]),
                ]
        m.d.comb += [
            rd.addr.eq(Cat(wptr[:wb], cur)),
            so.valid.eq(word_done & (wptr < nwords)),
            so.payload.header.source.eq(self._port),
            so.payload.header.destination.eq(dest),
            so.payload.header.kind.eq(Kind.ACTIVATION),
            so.payload.header.tag.eq(wptr),
            so.payload.data.eq(rd.data & Cat(Mux(byte_mask[b], 0xFF, 0) for b in range(bpw))),
        ]
        with m.If(so.valid & so.ready):
            with m.If(wptr + 1 == nwords):
                m.d.sync += [wptr.eq(0), cur.eq(~cur), got[cur].eq(0)]
            with m.Else():
                m.d.sync += wptr.eq(wptr + 1)
        # A byte stored this cycle (statements after the clear win).
        with m.If(t3.out_valid):
            m.d.sync += got[side3.parity].bit_select(side3.idx, 1).eq(1)

        # --- the layer engine beside the SFU path ------------------------------------------
        if self._engine is None:
            wiring.connect(m, so, wiring.flipped(self.o))
            return m
        m.submodules.engine = eng = LayerEngine(
            port=self._port, addr_width=self._addr_width, data_width=self._data_width,
            tag_width=self._tag_width, degree=self._degree, engine=self._engine,
            **self._scatter)
        wiring.connect(m, eng.pim, wiring.flipped(self.pim))
        m.d.comb += [
            # the engine takes every packet it is offered; RESULTs only in MODE 1
            eng.i.valid.eq(self.i.valid & self.i.ready & (~is_result | mode)),
            eng.i.payload.eq(self.i.payload),
            self.running.eq(eng.running),
            self.o.valid.eq(Mux(mode, eng.o.valid, so.valid)),
            self.o.payload.eq(Mux(mode, eng.o.payload, so.payload)),
            eng.o.ready.eq(mode & self.o.ready),
            so.ready.eq(~mode & self.o.ready),
        ]
        return m


BLOCKS = [
    Block("digital_module", lambda **kw: DigitalModule(**kw),
          dict(port=3, addr_width=2, data_width=32, tag_width=8, degree=4),
          "digital PIM module, SFU path: INT32 results -> FP16 (scale) -> GELU -> INT8 "
          "activation words for the next layer",
          small=dict(tag_width=6)),
]

REGISTERS = [DIG_REGISTERS]
