"""A transformer layer on the chip: the layer engine's reference model, the program of a
layer, and the cocotb tests of a whole encoder layer on a PU.

Three parts, used by the cocotb tests below, by ``tests/test_layer_*.py`` and by
``hyflexpim demo --layer`` (``tb/demo_tb.py``):

* :class:`EngineModel`: the instruction set of :class:`~hyflexpim.rtl.digital.LayerEngine`
  executed in Python, one instruction at a time, with the FP16 operators and SFU
  functions of :mod:`hyflexpim.models.transformer_fp16` and exact integer attention
  products (what the digital PIM controller computes, ``tests/test_digital_pim*.py``).
  The RTL engine is tested against it instruction by instruction.
* :class:`LayerProgram`: the program and data memory image that run one layer of
  :class:`hyflexpim.models.transformer.ChipLayer` on a PU, in the golden model's formats
  and order (``docs/layer.md``): the compiler of a layer. Run on an
  :class:`EngineModel` whose analog side is the golden model's own programmed matrices,
  it gives the golden model's output bit for bit (``tests/test_layer_program.py``).
* the cocotb tests (``layer_*``): the same program on the generated Verilog of a PU,
  every output word compared with the golden model.
"""

import math
import os

import numpy as np

import cocotb

from hyflexpim.models import transformer_fp16 as t16
from hyflexpim.models.digital_pim import MASKED
from hyflexpim.models.fp16 import functions as F
from hyflexpim.rtl.bus import Kind
from hyflexpim.rtl.digital import LAYER_MODULE, Alu, Op, Reduce, Wait
from hyflexpim.rtl.digital_pim import Cmd

__all__ = ["EngineModel", "Asm", "attention_program", "LayerProgram", "rows_words",
           "random_layer", "random_input", "reset_vectors", "AnalogSide", "LAYER_MODULE"]

_U32 = 0xFFFFFFFF


def _s32(v):
    v = int(v) & _U32
    return v - (1 << 32) if v >> 31 else v


def _s(v, bits):
    v = int(v) & ((1 << bits) - 1)
    return v - (1 << bits) if v >> (bits - 1) else v


class EngineModel:
    """The layer engine's instruction set in Python (``docs/layer.md``).

    ``engine``: a :class:`~hyflexpim.rtl.digital.LayerEngine` (its parameters and
    instruction layout; never elaborated). ``analog(parity, chunks)``: called when the
    results of an analog vector are needed (at a WAIT), with ``chunks`` = ``{chunk:
    INT8 elements}`` of the vector's SENDs; returns ``{output index: INT32}``. ``mem``:
    the data memory (uint32 words); ``out``: the packets sent, ``(destination, kind,
    tag, data)``; ``pim``: the KV caches (``{head: (K rows, V rows)}``).
    """

    def __init__(self, engine, analog=None, f=t16.FAST):
        self.engine, self.analog, self.f = engine, analog, f
        p = engine.params
        self.p = p
        self.md = p["mem_depth"]
        self.mem = np.zeros(self.md, dtype=np.uint64)
        self.out = []
        self.pim = {h: ([], []) for h in range(p["heads"])}
        self.bpw = engine._data_width // 8
        self.words = 1 << engine._word_bits
        self.slots = {0: None, 1: None}
        self.in_base = self.in_words = 0
        self.executed = 0

    # ---------------------------------------------------------------- memory
    def write(self, addr, words):
        for k, w in enumerate(words):
            self.mem[(addr + k) % self.md] = int(w) & _U32

    def read(self, addr, n=1):
        return [int(self.mem[(addr + k) % self.md]) for k in range(n)]

    def input_rows(self, rows):
        """ACTIVATION words of input rows (lists of raw words), as the ingress stores them."""
        for r, row in enumerate(rows):
            self.write(self.in_base + r * self.in_words, row)

    # ---------------------------------------------------------------- execution
    def run(self, program, max_steps=1 << 20):
        """Execute the instruction bits ``program`` from its first one to an END."""
        lay = self.engine.instr
        for pc, bits in enumerate(program):
            ins = lay.from_bits(bits)
            if Op(ins.op) == Op.END:
                self._resolve()
                return pc
            self._exec(ins)
            self.executed += 1
            if pc > max_steps:
                break
        raise ValueError("the program has no END")

    def _resolve(self, parity=None):
        for p in (0, 1):
            s = self.slots[p]
            if s is None or (parity is not None and p != parity):
                continue
            rbase, expect, chunks = s
            res = self.analog(p, chunks) if self.analog else {}
            if len(res) != expect:
                raise ValueError(f"slot {p}: {len(res)} results, the SEND expects {expect}")
            for j, v in res.items():
                self.mem[(rbase + j) % self.md] = int(v) & _U32
            self.slots[p] = None

    def _exec(self, ins):
        op, aux, fl = Op(ins.op), int(ins.aux), ins.flags
        md, f, p = self.md, self.f, self.p
        n_i, n_o, n_w = int(ins.n_i), int(ins.n_o), int(ins.n_w)
        use_b, neg_b = bool(fl.use_b), bool(fl.neg_b)
        imm = int(ins.imm)
        a, b, dst = int(ins.a), int(ins.b), int(ins.dst)
        a_i, a_o, b_i, b_o = int(ins.a_i), int(ins.a_o), int(ins.b_i), int(ins.b_o)
        d_i, d_o = int(ins.d_i), int(ins.d_o)
        bb = self.bpw.bit_length() - 1

        def addr_a(o, i):
            return (a + o * a_o + ((i >> bb) if fl.a_bytes else i * a_i)) % md

        def addr_b(o, i):
            return (b + o * b_o + i * b_i) % md

        def row(o, n, pad=0, base=None):
            return [int(self.mem[addr_a(o, i)]) if i < n_i else pad for i in range(n)]

        def rowb(o, n):
            return [int(self.mem[addr_b(o, i)]) if i < n_i else 0 for i in range(n)]

        def store(o, vals):
            for i, v in enumerate(vals[:n_w]):
                self.mem[(dst + o * d_o + i * d_i) % md] = int(v) & _U32

        if op == Op.WAIT:
            if aux == Wait.RESULTS.value:
                self._resolve()
            elif aux == Wait.SLOT.value:
                self._resolve(int(fl.parity))
            return
        if op == Op.SEND:
            par = int(fl.parity)
            if n_w:
                self._resolve(par)
                self.slots[par] = (dst, n_w, {})
            target = self.slots[par]
            for o in range(n_o):
                vec = [_s(v, 8) for v in row(o, self.words * self.bpw)]
                if target is not None:
                    target[2][imm + o] = vec
            return
        if op == Op.OUT:
            for o in range(n_o):
                if fl.raw:
                    vals = row(o, n_i)
                    nw = len(vals)
                    for w, v in enumerate(vals):
                        self.out.append((aux, Kind.ACTIVATION, imm + w, v & _U32))
                else:
                    vals = row(o, -(-n_i // self.bpw) * self.bpw)
                    nw = len(vals) // self.bpw
                    for w in range(nw):
                        word = sum((vals[w * self.bpw + k] & 0xFF) << (8 * k)
                                   for k in range(self.bpw))
                        self.out.append((aux, Kind.ACTIVATION, imm + w, word))
                if fl.tail:
                    self.out.append((aux, Kind.ACTIVATION, imm + nw,
                                     int(self.mem[(b + o * b_o) % md])))
            return
        if op == Op.CFG:
            for o in range(n_o):
                self.out.append((aux, Kind.CONFIG, imm, int(self.mem[addr_a(o, 0)])))
            return
        if op == Op.PIM:
            self._pim(ins, row, rowb, store)
            return
        for o in range(n_o):
            xa = row(o, n_i)
            xb = rowb(o, n_i)
            if op == Op.ALU:
                res = [self._alu(aux, x, y, i, use_b, neg_b, imm) for i, (x, y) in
                       enumerate(zip(xa, xb))]
            elif op == Op.REDUCE:
                if aux == Reduce.IMAX.value:
                    res = [max(_s32(x) for x in xa)]
                else:
                    mags = [0 if (x & 0x7FFF) > 0x7C00 else x & 0x7FFF for x in xa]
                    m = min(max(mags), 0x7BFF)
                    res = [m if m else 0x3C00]
            elif op == Op.SOFTMAX:
                nv = imm + o if fl.arg_step else n_i
                x = np.array([int(self.mem[addr_a(o, i)]) if i < nv else 0xFC00
                              for i in range(p["softmax_n"])], dtype=np.uint64) & 0xFFFF
                res = list(f.softmax(x.astype(np.uint16), lanes=p["sfu_lanes"],
                                     slots=p["sfu_slots"], degree=self.engine._degree))
            elif op == Op.LNORM:
                x = np.array(xa, dtype=np.uint64)
                y = np.array(xb, dtype=np.uint64)
                res = list(f.layernorm((x & 0xFFFF).astype(np.uint16),
                                       (y & 0xFFFF).astype(np.uint16),
                                       ((y >> 16) & 0xFFFF).astype(np.uint16),
                                       np.uint16(p["ln_eps"]), lanes=p["sfu_lanes"],
                                       slots=p["sfu_slots"]))
            else:
                res = self._fp(op, aux, xa, xb, use_b, neg_b, imm, fl)
            store(o, [int(v) for v in res])

    def _alu(self, aux, x, y, i, use_b, neg_b, imm):
        sa, sb = _s32(x), _s32(y)
        bsx = (-sb if neg_b else sb) if use_b else 0
        other = sb if use_b else imm
        alu = Alu(aux & 7)
        if alu == Alu.ADD:
            return sa + bsx + imm
        if alu == Alu.MAX:
            return max(sa, other)
        if alu == Alu.MIN:
            return min(sa, other)
        if alu == Alu.PACK:
            return (x & 0xFFFF) | ((y & 0xFFFF) << 16)
        if alu == Alu.LO:
            return x & 0xFFFF
        if alu == Alu.HI:
            return _s(x >> 16, 16)
        if alu == Alu.BYTE:
            return _s(x >> (8 * (i % self.bpw)), 8)
        return int(t16.exponent(np.uint16(x & 0xFFFF)))

    def _fp(self, op, aux, xa, xb, use_b, neg_b, imm, fl):
        f = self.f
        a16 = (np.array(xa, dtype=np.uint64) & 0xFFFF).astype(np.uint16)
        b16 = (np.array(xb, dtype=np.uint64) & 0xFFFF).astype(np.uint16)
        if op == Op.FMUL:
            return f.mul(a16, b16)
        if op == Op.FADD:
            return f.sub(a16, b16) if fl.sub else f.add(a16, b16)
        if op == Op.FDIV:
            return f.div(a16, b16)
        if op == Op.FROMI32:
            return f.from_int32(np.array([_s32(x) for x in xa], dtype=np.int64), b16)
        if op == Op.TOI8:
            return [int(v) for v in f.to_int8(a16, b16)]
        if op == Op.LDEXP:
            e = [(((-_s32(y)) if neg_b else _s32(y)) if use_b else 0) + imm for y in xb]
            e = np.clip(np.array(e, dtype=np.int64), -t16.LDEXP_MAX, t16.LDEXP_MAX)
            return f.ldexp(a16, e)
        if op == Op.GELU:
            return f.gelu(a16, degree=self.engine._degree)
        raise ValueError(f"the model does not know {op!r}")

    def _pim(self, ins, row, rowb, store):
        cmd, head = Cmd(int(ins.aux) & 3), int(ins.aux) >> 2
        head = min(head, self.p["heads"] - 1)
        K, V = self.pim[head]
        d, A, T = self.p["head_dim"], self.p["pim_arrays"], self.p["max_seq"]
        n_o, imm = int(ins.n_o), int(ins.imm)
        if cmd == Cmd.CLEAR:
            K.clear()
            V.clear()
            return
        if cmd == Cmd.APPEND:
            for o in range(n_o):
                if len(K) < T:
                    K.append([_s(v, 8) for v in row(o, d)])
                    V.append([_s(v, 8) for v in rowb(o, d)])
            return
        for o in range(n_o):
            length = len(K)
            arg = imm + (o if ins.flags.arg_step else 0)
            n = length if arg == 0 or arg > length else arg
            if cmd == Cmd.SCORES:
                q = [_s(v, 8) for v in row(o, d)]
                out = [MASKED] * (-(-length // A) * A)
                for t in range(n):
                    out[t] = int(np.dot(K[t], q))
            else:
                pr = [_s(v, 8) for v in row(o, length)]
                out = [0] * (-(-d // A) * A)
                for t in range(n):
                    for e in range(d):
                        out[e] += pr[t] * V[t][e]
            store(o, out)


class Asm:
    """A program under construction for ``engine`` (a
    :class:`~hyflexpim.rtl.digital.LayerEngine`): instructions (:meth:`op`), a data
    memory image (:meth:`const`), regions (:meth:`alloc`, from ``base``)."""

    def __init__(self, engine, base=0):
        self.engine = engine
        self.program = []
        self.image = {}
        self.top = base
        self.md = engine.params["mem_depth"]
        self.names = {}

    def alloc(self, n, name=None):
        addr = self.top
        self.top += int(n)
        if self.top > self.md:
            raise ValueError(f"the program needs {self.top} words of data memory, "
                             f"{self.md} are there")
        if name:
            self.names[name] = (addr, int(n))
        return addr

    def const(self, words, name=None):
        words = [int(w) for w in words]
        addr = self.alloc(len(words), name)
        self.image[addr] = words
        return addr

    def op(self, op, **kw):
        self.program.append(self.engine.instruction(op, **kw))

    def config_writes(self, start=0):
        """``[(DigReg, value)]``: the data image, then the program from address ``start``."""
        out = []
        for addr, words in self.image.items():
            out += self.engine.memory_writes(addr, words)
        return out + self.engine.program_writes(self.program, at=start)


def attention_program(engine, *, head, tokens, causal, scales, in_base=0):
    """The program of one attention head on INT32 Q/K/V rows (step 1 of the layer engine):
    input row ``t`` = ``[q_t, k_t, v_t]`` (``3 d`` INT32 words);
    ``X8 = to_int8(from_int32(acc, s1), s2)``; K and V appended to head ``head``'s cache;
    ``S = Q K^T`` (causal: query ``t`` sees keys ``<= t``); ``P = to_int8(softmax(
    from_int32(S, s3)), s_p)`` (masked keys -Inf); ``O = P V``; ``O8 = to_int8(
    from_int32(O, s4), s5)``. Out (ACTIVATION words to inner port 0, in order): S (raw
    INT32 rows), P (packed INT8 rows), O (raw INT32 rows), O8 (packed INT8 rows).
    ``scales``: the binary16 patterns ``(s1, s2, s3, s_p, s4, s5)``. Returns the
    :class:`Asm`."""
    p = engine.params
    d, T = p["head_dim"], tokens
    w = 3 * d
    a = Asm(engine, base=in_base + T * w)
    c = a.const(scales, "scales")
    X16, X8 = a.alloc(T * w), a.alloc(T * w)
    SI, S16, P16, P8 = (a.alloc(T * T) for _ in range(4))
    OI, O16, O8 = (a.alloc(T * d) for _ in range(3))
    hd = head << 2
    step = dict(imm=1, flags=("arg_step",)) if causal else {}
    rows = dict(d_i=1, a_i=1, b_i=0)
    a.op(Op.WAIT, aux=Wait.INPUT, imm=T)
    a.op(Op.FROMI32, dst=X16, d_o=w, a=in_base, a_o=w, b=c, n_i=w, n_o=T, **rows)
    a.op(Op.TOI8, dst=X8, d_o=w, a=X16, a_o=w, b=c + 1, n_i=w, n_o=T, **rows)
    a.op(Op.PIM, aux=hd | Cmd.CLEAR.value, n_i=0, n_o=1)
    a.op(Op.PIM, aux=hd | Cmd.APPEND.value, a=X8 + d, a_i=1, a_o=w, b=X8 + 2 * d, b_i=1,
         b_o=w, n_i=d, n_o=T)
    a.op(Op.PIM, aux=hd | Cmd.SCORES.value, a=X8, a_i=1, a_o=w, n_i=d, n_o=T, dst=SI, d_i=1,
         d_o=T, n_w=T, **step)
    a.op(Op.FROMI32, dst=S16, d_o=T, a=SI, a_o=T, b=c + 2, n_i=T, n_o=T, **rows)
    a.op(Op.SOFTMAX, dst=P16, d_i=1, d_o=T, a=S16, a_i=1, a_o=T, n_i=T, n_o=T, n_w=T, **step)
    a.op(Op.TOI8, dst=P8, d_o=T, a=P16, a_o=T, b=c + 3, n_i=T, n_o=T, **rows)
    a.op(Op.PIM, aux=hd | Cmd.CONTEXT.value, a=P8, a_i=1, a_o=T, n_i=T, n_o=T, dst=OI, d_i=1,
         d_o=d, n_w=d, **step)
    a.op(Op.FROMI32, dst=O16, d_o=d, a=OI, a_o=d, b=c + 4, n_i=d, n_o=T, **rows)
    a.op(Op.TOI8, dst=O8, d_o=d, a=O16, a_o=d, b=c + 5, n_i=d, n_o=T, **rows)
    for src, n, raw in ((SI, T, True), (P8, T, False), (OI, d, True), (O8, d, False)):
        a.op(Op.OUT, aux=0, a=src, a_i=1, a_o=n, n_i=n, n_o=T, flags=("raw",) if raw else ())
    a.op(Op.END)
    return a


# =================================================================================== a layer

#: Largest exponent adjustment of an LDEXP (the golden model's clip of the V-scale shift).
_LDEXP_MAX = t16.LDEXP_MAX
#: Added to the V exponents of the keys a query must not see before their row maximum.
_HIDDEN = -(1 << 30)


class LayerProgram:
    """The program of one post-LN encoder layer (or one causal layer over its own tokens)
    of :class:`hyflexpim.models.transformer.ChipLayer` on a PU's layer engine, in the golden
    model's formats and order (docs/transformer.md section 2, docs/layer.md).

    ``layer``: the :class:`~hyflexpim.models.transformer.ChipLayer`; ``engine``: a
    :class:`~hyflexpim.rtl.digital.LayerEngine` (parameters and instruction layout);
    ``tokens``: the sequence length ``T``; ``formats``: the
    :class:`~hyflexpim.models.transformer.ChipFormats` the golden model runs with (the
    engine's SFU must have its lanes, slots and exp degree); ``in_base``: where the input
    rows land; ``out_port``: the inner-bus port the output rows go to; ``chunk_base``: the
    first row-chunk number of the analog vectors (the scatter-mask index); ``past``: None
    for a layer over its own tokens only, or the number of tokens already in the KV
    cache (a decoder step; 0 starts the cache). With ``past``, the ``T`` new tokens'
    K and V are appended to the digital PIM's cache without a CLEAR (``past = 0``
    clears it), their scales are kept at :attr:`kv_scales` (a region at the top of the
    data memory, the same for every program of this layer and engine, never written by
    :meth:`config_writes`), and each query attends to the ``past + T`` cached keys
    (causal: query ``t`` sees keys ``0 .. past + t``), as
    :meth:`hyflexpim.models.transformer.ChipLayer.forward` with a
    :class:`~hyflexpim.models.transformer.KVCache`.

    Input (ACTIVATION words, ``in_words`` per token): the token's INT8 row packed
    ``data_width / 8`` per word, then one word ``s | e << 16`` (the row's binary16 scale
    mantissa and signed exponent, :class:`~hyflexpim.models.transformer.Rows`). Output
    (OUT to ``out_port``): the layer's INT8 rows in the same format, tags 0 .. ``in_words
    - 1`` per token, tokens in order.

    Analog vectors: every stored matrix (``matrices``: name, factor, the
    :class:`~hyflexpim.models.transformer.AnalogMatrix`, first chunk, chunks) gets
    ``ceil(m / C)`` row chunks of ``C = 2**word_bits * data_width / 8`` inputs. The
    first matrices of Q, K and V read the same rows and share their chunks (the scatter
    mask of a chunk holds the arrays of all three): one SEND per token reaches them side
    by side, as DESIGN.md section 8's `qkv` phase, and their results come back
    concatenated (each array's output table numbers its columns from the matrix's
    offset, :attr:`groups`). Every other matrix is one SEND per token of its own; the
    ``n`` INT32 results of a vector return as RESULT packets to ``acc + t * n`` (two
    result slots alternate). :meth:`analog_model` answers those SENDs with the golden
    model's own programmed arrays (for :class:`EngineModel`).

    Raises:
        ValueError: a layer or engine this program cannot run (pre-LN, head geometry,
            SFU rows, layer norm width or eps, data memory) with the reason.
    """

    #: the linears whose first matrices run side by side on one vector per token
    SIDE_BY_SIDE = ("q", "k", "v")

    def __init__(self, layer, engine, tokens, *, formats=None, in_base=0, out_port=0,
                 chunk_base=0, past=None):
        from hyflexpim.base import check_int
        from hyflexpim.models import transformer as tr
        formats = formats or tr.ChipFormats()
        cfg = layer.config
        p = engine.params
        self.layer, self.engine, self.formats = layer, engine, formats
        self.past = None if past is None else check_int("past", past, 0, p["max_seq"] - 1)
        P = self.past or 0
        self.T = T = check_int("tokens", tokens, 1, p["max_seq"] - P)
        #: the keys each query row can see: the cached ones and the new ones
        self.keys = Tk = P + T
        if not cfg.post_ln:
            raise ValueError("the layer program runs post-LN layers only (post_ln=True)")
        if formats.float_ops:
            raise ValueError("the layer program runs every operation in the chip's formats "
                             f"(float_ops must be empty, not {sorted(formats.float_ops)})")
        need = [("head_dim", cfg.head_dim), ("ln_n", cfg.dim), ("ln_eps", int(layer.eps16)),
                ("sfu_lanes", formats.lanes), ("sfu_slots", formats.slots),
                ("softmax_n", -(-Tk // formats.row_pad) * formats.row_pad)]
        for k, v in need:
            if p[k] != v:
                raise ValueError(f"engine {k} must be {v} for this layer, not {p[k]}")
        if p["heads"] < cfg.heads:
            raise ValueError(f"engine heads must be at least {cfg.heads}, not {p['heads']}")
        if engine._degree != formats.exp_degree:
            raise ValueError(f"engine degree must be {formats.exp_degree}, not {engine._degree}")
        self.bpw = engine._data_width // 8
        if cfg.dim % self.bpw:
            raise ValueError(f"dim must be a multiple of {self.bpw} (bytes per word), "
                             f"not {cfg.dim}")
        self.chunk = (1 << engine._word_bits) * self.bpw
        self.in_base, self.out_port = in_base, out_port
        self.in_words = cfg.dim // self.bpw + 1
        #: ``(name, i, mat, first, k)``: matrix ``i`` of linear ``name`` on row chunks
        #: ``first .. first + k - 1`` (the scatter-mask numbers of its SENDs)
        self.matrices = []
        #: the vectors the arrays see: ``(first, k, [(name, i, mat, offset)])``, one SEND
        #: per token to the union of the matrices' arrays, their INT32 results
        #: concatenated (matrix results from ``offset``): the first matrices of Q, K and
        #: V side by side (they read the same rows), every other matrix alone
        self.groups = []
        c = chunk_base
        for name in layer.NAMES:
            for i, mat in enumerate(layer.linears[name].matrices):
                k = -(-mat.m // self.chunk)
                if i == 0 and name in self.SIDE_BY_SIDE and name != self.SIDE_BY_SIDE[0]:
                    first, _, members = self.groups[0]
                    members.append((name, i, mat, members[-1][3] + members[-1][2].n))
                else:
                    first = c
                    self.groups.append((first, k, [(name, i, mat, 0)]))
                    c += k
                self.matrices.append((name, i, mat, first, k))
        self.chunks = c - chunk_base
        self.asm = Asm(engine, base=in_base + T * self.in_words)
        self._ctop = self.asm.md           # constants from the top of the memory down
        #: with ``past``: the kept K, V scales, ``(ks, ke, vs, ve)`` addresses of
        #: ``max_seq x heads`` words each, token ``t`` head ``h`` at ``t * heads + h``
        self.kv_scales = None
        if self.past is not None:
            n = p["max_seq"] * cfg.heads
            self._ctop -= 4 * n
            if self._ctop < self.asm.top:
                raise ValueError(f"the program needs more data memory than the "
                                 f"{p['mem_depth']} words there are")
            self.asm.md = self._ctop
            self.kv_scales = tuple(self._ctop + i * n for i in range(4))
        #: the steps of the layer: name, units, operation, output format, first and
        #: last instruction (``first``, ``last``: indices into :attr:`program`)
        self.phases = []
        self._peak = self.asm.top
        self._q16 = self._const([int(tr._Q16)])
        self._compile()

    program = property(lambda self: self.asm.program)
    image = property(lambda self: self.asm.image)

    def config_writes(self, start=0):
        return self.asm.config_writes(start)

    # -------------------------------------------------------------------- helpers
    def _phase(self, name, units, operation, fmt):
        """Start a step of the layer (:attr:`phases`: the dataflow picture and docs)."""
        self.phases.append(dict(name=name, units=units, operation=operation, format=fmt,
                                first=len(self.asm.program)))

    def _const(self, words):
        """Constant words at the top of the data memory (never reused as scratch)."""
        words = [int(w) for w in words]
        self._ctop -= len(words)
        if self._ctop < self.asm.top:
            raise ValueError(f"the program needs more data memory than the "
                             f"{self.engine.params['mem_depth']} words there are")
        self.asm.md = self._ctop
        self.asm.image[self._ctop] = words
        return self._ctop

    def _mark(self):
        return self.asm.top

    def _release(self, mark):
        """Scratch allocated since ``mark`` may be reused (the instructions run in order)."""
        self._peak = max(self._peak, self.asm.top)
        self.asm.top = mark

    def _op(self, op, **kw):
        self.asm.op(op, **kw)

    def _ew(self, op, dst, a, n, rows=1, *, b=0, a_i=1, a_o=None, b_i=1, b_o=None,
            d_o=None, **kw):
        """An element-wise instruction over ``rows`` rows of ``n`` (row strides ``n``
        unless given)."""
        self._op(op, dst=dst, d_i=1, d_o=n if d_o is None else d_o, a=a, a_i=a_i,
                 a_o=n if a_o is None else a_o, b=b, b_i=b_i, b_o=n if b_o is None else b_o,
                 n_i=n, n_o=rows, **kw)

    def _quantize(self, src, rows, n, so=None, se=None):
        """INT8 rows of ``rows`` FP16 rows of ``n`` at ``src`` (row stride ``so``):
        :func:`hyflexpim.models.transformer.quantize`. Returns the addresses (q, s, e);
        ``se``: where the scales and exponents go (two addresses; default new buffers)."""
        a = self.asm
        so = n if so is None else so
        Q = a.alloc(rows * n)
        S, E = se if se is not None else (a.alloc(rows), a.alloc(rows))
        mark = self._mark()
        M, MM, INV = (a.alloc(rows) for _ in range(3))
        XS = a.alloc(rows * n)
        self._op(Op.REDUCE, aux=Reduce.QMAX, a=src, a_i=1, a_o=so, n_i=n, n_o=rows, dst=M,
                 d_o=1, n_w=1)
        self._ew(Op.ALU, E, M, rows, aux=Alu.EXPO)
        self._ew(Op.LDEXP, MM, M, rows, b=E, flags=("use_b", "neg_b"))
        self._ew(Op.FDIV, INV, self._q16, rows, a_i=0, b=MM)
        self._ew(Op.LDEXP, XS, src, n, rows, a_o=so, b=E, b_i=0, b_o=1,
                 flags=("use_b", "neg_b"))
        self._ew(Op.TOI8, Q, XS, n, rows, b=INV, b_i=0, b_o=1)
        self._ew(Op.FDIV, S, MM, rows, b=self._q16, b_i=0)
        self._release(mark)
        return Q, S, E

    def _dequantize(self, dst, acc, n, rows, c, e, b, *, d_o=None):
        """``ldexp(from_int32(acc, ldexp(c, -b)), e + b)`` element-wise (``c``, ``e``
        addresses of rows x n values): :func:`hyflexpim.models.transformer.dequantize`.
        ``c`` is overwritten (element-wise instructions may write where they read: each
        element is read before its own result is written)."""
        if b:
            self._ew(Op.LDEXP, c, c, n, rows, imm=-b)
        self._ew(Op.FROMI32, c, acc, n, rows, b=c)
        self._ew(Op.LDEXP, dst, c, n, rows, b=e, d_o=d_o, flags=("use_b",))

    def _sends(self, src, m, first, parity, dst, n_w):
        """One token's vector (``m`` INT8 at ``src``) to the arrays of row chunks
        ``first ..``; its ``n_w`` results to ``dst``."""
        full, rem = divmod(m, self.chunk)
        parts = [(full, self.chunk, 0)] if full else []
        if rem:
            parts.append((1, rem, full))
        for j, (n_o, n_i, off) in enumerate(parts):
            self._op(Op.SEND, a=src + off * self.chunk, a_i=1, a_o=self.chunk, n_i=n_i,
                     n_o=n_o, imm=first + off, dst=dst, n_w=n_w if j == 0 else 0,
                     flags=("parity",) if parity else ())

    def _analog(self, group, rows, ys):
        """The matrices ``group`` (one entry of :attr:`groups`) on the INT8 rows ``rows``
        = (q, s, e) of T tokens: one SEND per token, their concatenated INT32 results,
        each matrix's dequantised to FP16 at its ``ys`` address (T x n)."""
        a, T, P = self.asm, self.T, self.past or 0
        first, _, members = group
        q, s, e = rows
        m = members[0][2].m
        ng = sum(mat.n for *_, mat, _ in members)
        acc = a.alloc(T * ng)
        for t in range(T):
            # parity: the arrays' vector count mod 2 (they count on across the programs
            # of a decoder: one vector per token)
            self._sends(q + t * m, m, first, (P + t) % 2, acc + t * ng, ng)
        self._op(Op.WAIT, aux=Wait.RESULTS)
        for (*_, mat, off), y in zip(members, ys):
            ms = self._const(mat.s)
            me = self._const(mat.e)
            c, n, r = a.alloc(T * mat.n), mat.n, acc + off
            self._ew(Op.FMUL, c, s, n, T, a_i=0, a_o=1, b=ms, b_o=0)
            if mat.b:
                self._ew(Op.LDEXP, c, c, n, T, imm=-mat.b)
            self._ew(Op.FROMI32, c, r, n, T, a_o=ng, b=c)
            # the exponents e_row + e_col + b, over the matrix's INT32 sums (read already)
            self._ew(Op.ALU, r, e, n, T, aux=Alu.ADD, a_i=0, a_o=1, b=me, b_o=0,
                     imm=mat.b, flags=("use_b",), d_o=ng)
            self._ew(Op.LDEXP, y, c, n, T, b=r, b_o=ng, flags=("use_b",))

    def _linears(self, names, rows, outs=None):
        """Static linears on the same INT8 rows ``rows`` = (q, s, e) of T tokens: their
        first matrices as their :attr:`groups` entry runs them (side by side or alone),
        then each linear's next factor (requantised between the factors), dequantised,
        + bias. Returns the FP16 outputs' addresses (T x n each; ``outs`` if given)."""
        a, T = self.asm, self.T
        lins = [self.layer.linears[n] for n in names]
        outs = list(outs) if outs else [a.alloc(T * lin.n) for lin in lins]
        mark = self._mark()
        chains = [[mat for nm, _, mat, *_ in self.matrices if nm == n] for n in names]

        def group_of(mat):          # the vector group that mat heads
            return next(g for g in self.groups if g[2][0][2] is mat)
        group = group_of(chains[0][0])
        if [mat for *_, mat, _ in group[2]] != [ch[0] for ch in chains]:
            raise AssertionError(f"{names} are not one vector group")
        ys = [o if len(ch) == 1 else a.alloc(T * ch[0].n) for o, ch in zip(outs, chains)]
        self._analog(group, rows, ys)
        for j, ch in enumerate(chains):
            y = ys[j]
            for i in range(1, len(ch)):
                r = self._quantize(y, T, ch[i - 1].n)
                y = outs[j] if i + 1 == len(ch) else a.alloc(T * ch[i].n)
                self._analog(group_of(ch[i]), r, [y])
            if lins[j].bias16 is not None:
                bias = self._const(np.broadcast_to(lins[j].bias16, (lins[j].n,)))
                self._ew(Op.FADD, outs[j], outs[j], lins[j].n, T, b=bias, b_o=0)
        self._release(mark)
        return outs

    def _attention(self, qh, kh, vh, att):
        """Every head: Q, K, V (FP16, T x dim) -> INT8 rows per (token, head), the KV
        cache, scores, softmax, the V-scale fold, P V. Returns the FP16 context (T x dim).
        The T queries attend to ``Tk = past + T`` keys (:attr:`keys`)."""
        from hyflexpim.models import transformer as tr
        from hyflexpim.models.fp16 import ops as o16
        a, T, Tk, cfg = self.asm, self.T, self.keys, self.layer.config
        P = Tk - T
        H, dh, D = cfg.heads, cfg.head_dim, cfg.dim
        f = t16.FAST
        r = o16.from_float(1.0 / math.sqrt(dh))
        r_e = int(t16.exponent(r))
        r_m = int(np.asarray(f.ldexp(r, -r_e)).reshape(-1)[0])
        b_s = tr.guard_shift(dh, 8.0 / tr.QMAX ** 2 * 1.001, 1.0 / tr.QMAX ** 2 * 0.999)
        b_pv = tr.guard_shift(cfg.max_seq, 2.0 / tr.QMAX * 1.001, 1.0 / tr.QMAX * 0.999)
        rm = self._const([r_m])
        causal = cfg.causal
        # SCORES / SOFTMAX: query o sees P + 1 + o keys (causal), or all of them
        step = dict(imm=P + 1, flags=("arg_step",)) if causal else {}
        outer = self._mark()
        self._phase("Q, K, V to INT8", "engine", "quantise per (token, head)",
                    "INT8 rows + (s, e)")
        kv = self.kv_scales
        qq, qs, qe = self._quantize(qh, T * H, dh)
        if kv is None:
            (kq, ks, ke), (vq, vs, ve) = (self._quantize(x, T * H, dh) for x in (kh, vh))
        else:                  # the new tokens' scales after the cached ones'
            kq = self._quantize(kh, T * H, dh, se=(kv[0] + P * H, kv[1] + P * H))[0]
            vq = self._quantize(vh, T * H, dh, se=(kv[2] + P * H, kv[3] + P * H))[0]
            ks, ke, vs, ve = kv
        hidden = None
        if causal:
            hidden = self._const([0 if t <= P + i else _HIDDEN
                                  for i in range(T) for t in range(Tk)])
        for h in range(H):
            mark = self._mark()
            hd = h << 2
            self._phase(f"head {h}: K, V cache, scores", "digital PIM + engine",
                        "APPEND K, V; S = Q K^T; dequantise with 1/sqrt(d)", "INT32 -> FP16")
            si, c, es, s16 = (a.alloc(T * Tk) for _ in range(4))
            c1 = a.alloc(T)
            p16 = a.alloc(T * Tk)
            if not P:
                self._op(Op.PIM, aux=hd | Cmd.CLEAR.value, n_i=0, n_o=1)
            self._op(Op.PIM, aux=hd | Cmd.APPEND.value, a=kq + h * dh, a_i=1, a_o=D,
                     b=vq + h * dh, b_i=1, b_o=D, n_i=dh, n_o=T)
            self._op(Op.PIM, aux=hd | Cmd.SCORES.value, a=qq + h * dh, a_i=1, a_o=D, n_i=dh,
                     n_o=T, dst=si, d_i=1, d_o=Tk, n_w=Tk, **step)
            # score scale s_q * mant(1/sqrt(d)) * s_k, exponent e_q + e_k + exp(1/sqrt(d))
            self._ew(Op.FMUL, c1, qs + h, T, a_i=H, b=rm, b_i=0)
            self._ew(Op.FMUL, c, c1, Tk, T, a_i=0, a_o=1, b=ks + h, b_i=H, b_o=0)
            self._ew(Op.ALU, es, qe + h, Tk, T, aux=Alu.ADD, a_i=0, a_o=H, b=ke + h, b_i=H,
                     b_o=0, imm=r_e + b_s, flags=("use_b",))
            self._dequantize(s16, si, Tk, T, c, es, b_s)
            self._phase(f"head {h}: softmax, P V", "SFU row unit + digital PIM",
                        "softmax (padded -Inf); P * s_v 2**(e_v - E); quantise; O = w V; "
                        "dequantise", "FP16 -> INT8 -> INT32 -> FP16")
            self._op(Op.SOFTMAX, dst=p16, d_i=1, d_o=Tk, a=s16, a_i=1, a_o=Tk, n_i=Tk, n_o=T,
                     n_w=Tk, **step)
            # E_i = the largest V exponent among the keys query i sees
            big = a.alloc(T)
            src, so = ve + h, 0
            if causal:
                evm = a.alloc(T * Tk)
                self._ew(Op.ALU, evm, ve + h, Tk, T, aux=Alu.ADD, a_i=H, a_o=0, b=hidden,
                         flags=("use_b",))
                src, so = evm, Tk
            self._op(Op.REDUCE, aux=Reduce.IMAX, a=src, a_i=H if not causal else 1, a_o=so,
                     n_i=Tk, n_o=T, dst=big, d_o=1, n_w=1)
            sh0, sh, sv, w = (a.alloc(T * Tk) for _ in range(4))
            self._ew(Op.ALU, sh0, ve + h, Tk, T, aux=Alu.ADD, a_i=H, a_o=0, b=big, b_i=0,
                     b_o=1, flags=("use_b", "neg_b"))
            self._ew(Op.ALU, sh, sh0, Tk, T, aux=Alu.MAX, imm=-_LDEXP_MAX)
            self._ew(Op.LDEXP, sv, vs + h, Tk, T, a_i=H, a_o=0, b=sh, flags=("use_b",))
            self._ew(Op.FMUL, w, p16, Tk, T, b=sv)
            pq, ps, pe = self._quantize(w, T, Tk)
            oi = a.alloc(T * dh)
            self._op(Op.PIM, aux=hd | Cmd.CONTEXT.value, a=pq, a_i=1, a_o=Tk, n_i=Tk, n_o=T,
                     dst=oi, d_i=1, d_o=dh, n_w=dh)
            eo = a.alloc(T)
            self._ew(Op.ALU, eo, pe, T, aux=Alu.ADD, b=big, imm=b_pv, flags=("use_b",))
            # per-row scale and exponent, broadcast over the head's dh outputs
            cc = ps
            if b_pv:
                cc = a.alloc(T)
                self._ew(Op.LDEXP, cc, ps, T, imm=-b_pv)
            y = a.alloc(T * dh)
            self._ew(Op.FROMI32, y, oi, dh, T, b=cc, b_i=0, b_o=1)
            self._ew(Op.LDEXP, att + h * dh, y, dh, T, b=eo, b_i=0, b_o=1, d_o=D,
                     flags=("use_b",))
            self._release(mark)
        self._release(outer)
        return att

    def _norm(self, dst, src, i):
        g16, b16 = self.layer.ln[i][2], self.layer.ln[i][3]
        gb = self._const([int(g) | int(b) << 16 for g, b in zip(g16, b16)])
        D = self.layer.config.dim
        self._op(Op.LNORM, dst=dst, d_i=1, d_o=D, a=src, a_i=1, a_o=D, b=gb, b_i=1, b_o=0,
                 n_i=D, n_o=self.T, n_w=D)

    # -------------------------------------------------------------------- the layer
    def _compile(self):
        a, T, cfg = self.asm, self.T, self.layer.config
        D, F = cfg.dim, cfg.ffn
        iw, ib = self.in_words, self.in_base
        self._phase("input", "bus -> engine memory", "INT8 rows + (s, e) per token; "
                    "residual = ldexp(from_int32(q, s), e)", "INT8 rows, FP16 residual")
        self._op(Op.WAIT, aux=Wait.INPUT, imm=T)
        # the INT8 input rows, their scales, and the residual x.value()
        xq, xs, xe = a.alloc(T * D), a.alloc(T), a.alloc(T)
        self._ew(Op.ALU, xq, ib, D, T, aux=Alu.BYTE, a_o=iw, flags=("a_bytes",))
        self._ew(Op.ALU, xs, ib + D // self.bpw, T, aux=Alu.LO, a_i=iw)
        self._ew(Op.ALU, xe, ib + D // self.bpw, T, aux=Alu.HI, a_i=iw)
        res, z1 = a.alloc(T * D), a.alloc(T * D)
        mark = self._mark()
        r0 = a.alloc(T * D)
        self._ew(Op.FROMI32, r0, xq, D, T, b=xs, b_i=0, b_o=1)
        self._ew(Op.LDEXP, res, r0, D, T, b=xe, b_i=0, b_o=1, flags=("use_b",))
        self._release(mark)
        # attention: Q, K, V, heads, the context
        x = (xq, xs, xe)
        att, y = a.alloc(T * D), a.alloc(T * D)
        mark = self._mark()
        self._phase("Q, K, V", "analog arrays + engine", "x A (B): INT32 -> dequantise "
                    "(FMUL, FROMI32, LDEXP) + bias (FADD)", "FP16")
        qh, kh, vh = self._linears(self.SIDE_BY_SIDE, x)
        self._attention(qh, kh, vh, att)
        self._release(mark)
        self._phase("output projection", "engine + analog arrays", "quantise per token; "
                    "o A (B); dequantise + bias", "FP16")
        self._linears(["proj"], self._quantize(att, T, D), outs=[y])
        self._release(mark)
        z = a.alloc(T * D)
        self._phase("residual + layer norm 1", "engine (FADD, LNORM)", "x + o; layer norm",
                    "FP16")
        self._ew(Op.FADD, z, res, D, T, b=y)
        self._norm(z1, z, 0)
        self._release(mark)
        # FFN
        y2 = a.alloc(T * D)
        mark = self._mark()
        h = a.alloc(T * F)
        self._phase("FFN1 + GELU", "engine + analog arrays", "quantise; z A (B); "
                    "dequantise + bias; GELU", "FP16")
        self._linears(["fc1"], self._quantize(z1, T, D), outs=[h])
        self._ew(Op.GELU, h, h, F, T)
        g = h
        self._phase("FFN2", "engine + analog arrays", "quantise; h A (B); dequantise + "
                    "bias", "FP16")
        self._linears(["fc2"], self._quantize(g, T, F), outs=[y2])
        self._release(mark)
        o, o1 = a.alloc(T * D), a.alloc(T * D)
        self._phase("residual + layer norm 2, out", "engine -> bus", "z + f; layer norm; "
                    "quantise per token; OUT rows + scale words", "INT8 rows + (s, e)")
        self._ew(Op.FADD, o, z1, D, T, b=y2)
        self._norm(o1, o, 1)
        oq, os_, oe = self._quantize(o1, T, D)
        sw = a.alloc(T)
        self._ew(Op.ALU, sw, os_, T, aux=Alu.PACK, b=oe)
        self._op(Op.OUT, aux=self.out_port, a=oq, a_i=1, a_o=D, n_i=D, n_o=T, b=sw, b_o=1,
                 flags=("tail",))
        self._op(Op.END)
        for k, ph in enumerate(self.phases):
            nxt = self.phases[k + 1]["first"] if k + 1 < len(self.phases) else len(a.program)
            ph["last"] = nxt - 1
        self._release(a.top)
        #: data memory words the program uses: inputs and buffers (their peak) + constants
        self.memory_words = self._peak + self.engine.params["mem_depth"] - self._ctop

    # -------------------------------------------------------------------- host side
    def input_words(self, rows):
        """The ACTIVATION words of the INT8 input rows ``rows`` (a
        :class:`~hyflexpim.models.transformer.Rows` of shape (1, T, dim)): per token,
        the packed row then ``s | e << 16``."""
        return rows_words(rows, self.bpw)

    def analog_model(self):
        """``analog(parity, chunks)`` for :class:`EngineModel`: each SEND's vector through
        the golden model's own programmed matrix (``AnalogMatrix.run``)."""
        by_chunk = {first + j: g for g in self.groups for first, k, _ in [g] for j in range(k)}

        def analog(parity, chunks):
            groups = {id(by_chunk[c]) for c in chunks}
            if len(groups) != 1:
                raise ValueError(f"a vector's chunks {sorted(chunks)} span several groups")
            first, _, members = by_chunk[next(iter(chunks))]
            return {off + j: int(v) for *_, mat, off in members
                    for j, v in enumerate(group_vector(mat, chunks, first, self.chunk))}
        return analog


def group_vector(mat, chunks, first, chunk):
    """``mat``'s INT32 outputs for the vector ``chunks`` ``{row chunk: INT8 values}``
    (chunk ``first`` holds rows ``0 .. chunk - 1``) through its programmed arrays."""
    x = np.zeros(mat.m, dtype=np.int64)
    for c, vec in chunks.items():
        lo = (c - first) * chunk
        n = min(chunk, mat.m - lo)
        x[lo:lo + n] = vec[:n]
    return mat.run(x[None, :])[0]


def rows_words(rows, bpw=4):
    """Words of INT8 rows with scales (a :class:`~hyflexpim.models.transformer.Rows` of
    shape (1, T, n), ``n`` a multiple of ``bpw``): per token the INT8 elements packed
    ``bpw`` per word (element ``b`` in byte ``b``), then ``s | (e mod 2**16) << 16``.
    Returns a list of T lists of words."""
    q = np.asarray(rows.q)[0]
    s = np.asarray(rows.s).reshape(-1)
    e = np.asarray(rows.e).reshape(-1)
    out = []
    for t in range(q.shape[0]):
        r = [sum((int(q[t, w * bpw + b]) & 0xFF) << (8 * b) for b in range(bpw))
             for w in range(q.shape[1] // bpw)]
        out.append(r + [(int(s[t]) & 0xFFFF) | (int(e[t]) & 0xFFFF) << 16])
    return out


def random_layer(seed, *, dim=32, heads=2, ffn=64, causal=False, max_seq=8, noise=None,
                 factored=(), formats=None):
    """A :class:`~hyflexpim.models.transformer.ChipLayer` of random weights (NumPy only):
    normal weights of scale ``1/sqrt(m)``, a random SLC/MLC mode per output column,
    small biases, layer norm gains near 1; the linears named in ``factored`` stored as
    A (m x 16) then B (16 x n). Matrix ``i`` (layer order, factor by factor) is
    programmed with ``noise`` (a :class:`~hyflexpim.models.transformer.Noise`, or None:
    ideal arrays) as the golden model numbers it."""
    from hyflexpim.models import transformer as tr
    formats = formats or tr.ChipFormats(attention_engine="integer")
    noise = noise or tr.Noise()
    rng = np.random.default_rng(seed)
    cfg = tr.LayerConfig(dim=dim, heads=heads, ffn=ffn, causal=causal, max_seq=max_seq)
    shapes = dict(q=(dim, dim), k=(dim, dim), v=(dim, dim), proj=(dim, dim),
                  fc1=(dim, ffn), fc2=(ffn, dim))
    lin, index = {}, 0
    for name in tr.ChipLayer.NAMES:
        m, n = shapes[name]
        ws = ([rng.standard_normal((m, 16)) / math.sqrt(m),
               rng.standard_normal((16, n)) / 4.0] if name in factored
              else [rng.standard_normal((m, n)) / math.sqrt(m)])
        mats = []
        for w in ws:
            modes = ("cols", list(rng.choice(["slc", "mlc"], w.shape[1])))
            mats.append(tr.AnalogMatrix(w, modes, formats, noise, index))
            index += 1
        lin[name] = tr.AnalogLinear(name, mats, rng.normal(0, 0.1, n))
    ln = [(1.0 + rng.normal(0, 0.1, dim), rng.normal(0, 0.1, dim)) for _ in range(2)]
    return tr.ChipLayer(cfg, lin, *ln)


def random_input(seed, tokens, dim):
    """INT8 input rows (a :class:`~hyflexpim.models.transformer.Rows`, shape (1, T, dim))
    of a normal hidden state, quantised as the previous PU sends them."""
    from hyflexpim.models import transformer as tr
    from hyflexpim.models.fp16 import ops as o16
    x = np.random.default_rng(seed).standard_normal((1, tokens, dim))
    return tr.quantize(o16.from_float(x), tr.Run(tr.ChipFormats()))


def reset_vectors(layer):
    """Restart the read-noise vector numbering of every matrix of ``layer`` (a second
    pass over the same programmed arrays then reads the same noise)."""
    for lin in layer.linears.values():
        for mat in lin.matrices:
            mat.vectors = 0


# =================================================================================== cocotb

class AnalogSide:
    """The analog modules of a PU at transaction level, for a test of the layer engine's
    RTL: the SEND words of a vector (array ``a`` = the chunk's one mask bit, word ``w``)
    are collected per vector group (:attr:`LayerProgram.groups`); when a vector is
    complete the INT32 outputs of the group's matrices (the golden model's programmed
    matrices, ``AnalogMatrix.run``), concatenated, return after ``delay`` cycles as
    RESULT packets ``parity << (tag_width - 1) | j`` (parity: the group's vector count
    mod 2, as the program alternates its slots). ``push(kind, tag, data)`` sends a packet
    into the module."""

    def __init__(self, lp, clock, push, delay):
        self.lp, self.clock, self.push, self.delay = lp, clock, push, delay
        eng = lp.engine
        self.wb, self.apm = eng._word_bits, eng._apm
        self.tw = eng._tag_width
        self.bpw = lp.bpw
        self.by_array = {first + j: g for g in lp.groups for first, k, _ in [g]
                         for j in range(k)}
        self.pending = {}              # first chunk -> {chunk: {word: data}}
        self.count = {}                # first chunk -> vectors answered
        self.vectors = 0
        self.first_send = self.last_result = None

    def masks(self):
        """``[(chunk, mask)]``: chunk ``c`` to array ``c``."""
        return [(c, 1 << c) for c in sorted(self.by_array)]

    def on_send(self, dest, tag, data):
        if self.first_send is None:
            self.first_send = self.clock.cycle
        a = (dest - 1) * self.apm + (tag >> self.wb)
        w = tag & ((1 << self.wb) - 1)
        assert a in self.by_array, f"a SEND to array {a}, which holds no chunk"
        first, k, members = self.by_array[a]
        got = self.pending.setdefault(first, {})
        row = got.setdefault(a, {})
        assert w not in row, f"array {a}: word {w} twice in one vector"
        row[w] = data
        words = 1 << self.wb
        if len(got) == k and all(len(r) == words for r in got.values()):
            del self.pending[first]
            chunks = {c: [_s(r[ww] >> (8 * b), 8) for ww in range(words)
                          for b in range(self.bpw)] for c, r in got.items()}
            acc = np.concatenate([group_vector(mat, chunks, first, words * self.bpw)
                                  for *_, mat, _ in members])
            parity = self.count.get(first, 0) % 2
            self.count[first] = self.count.get(first, 0) + 1
            self.vectors += 1
            cocotb.start_soon(self._answer(parity, acc))

    async def _answer(self, parity, acc):
        await self.clock.cycles(self.delay)
        for j, v in enumerate(acc):
            self.push(Kind.RESULT, parity << (self.tw - 1) | j, int(v) & _U32)
        self.last_result = self.clock.cycle


def layer_case(seed, noise, causal=False, ber=None, steps=None, tokens=8, x=None, *,
               dim=32, heads=2, ffn=64, max_seq=8):
    """The layer (:func:`random_layer` of ``dim``, ``heads``, ``ffn``, ``max_seq``), its
    input, the golden output rows and the formats of one test (``noise``: programmed with
    MLC bit error rate ``ber``, default the device's
    :data:`~hyflexpim.models.device.DEFAULT_MLC_BER`). ``steps``: None for one pass over
    ``tokens`` tokens (input ``x``, default random rows); or the token counts of a
    decoder's steps (a prompt, then the tokens each step appends to the
    :class:`~hyflexpim.models.transformer.KVCache`), and then the input and golden output
    are lists, one entry per step."""
    from hyflexpim.models import transformer as tr
    from hyflexpim.models.device import DEFAULT_MLC_BER
    fm = tr.ChipFormats(attention_engine="integer")
    ber = DEFAULT_MLC_BER if ber is None else ber
    nz = tr.Noise(ber=ber, seed=seed % 1000) if noise else None
    layer = random_layer(seed, dim=dim, heads=heads, ffn=ffn, max_seq=max_seq, noise=nz,
                         formats=fm, causal=causal, factored=("fc1",))
    if steps is None:
        x = random_input(seed + 1, tokens, dim) if x is None else x
        gold = layer.forward(x, tr.Run(fm))
    else:
        x = [random_input(seed + 1 + i, n, dim) for i, n in enumerate(steps)]
        cache = tr.KVCache(layer.config.max_seq)
        gold = [layer.forward(xi, tr.Run(fm), cache=cache) for xi in x]
    reset_vectors(layer)
    return layer, x, gold, fm


async def layer_engine_test(dut, name, noise, causal=False, p_ready=0.7, delay=None,
                            steps=None):
    """One encoder layer (hidden 32, 2 heads, 8 tokens, FFN 64) on the generated Verilog
    of a digital module with the layer engine: program and constants loaded by CONFIG
    packets, the INT8 input rows in as ACTIVATION packets, the digital PIM arrays answered
    by the array model (:class:`~hyflexpim.tb.lib.ArrayBank`), the analog vectors by
    :class:`AnalogSide`; every output word (INT8 rows and their scale words) compared
    with :meth:`hyflexpim.models.transformer.ChipLayer.forward`, in order.

    ``steps`` (decoder): the token counts of a prompt and the steps after it; each step
    is its own program (``LayerProgram(past=...)``) loaded after the previous one ended,
    with the KV cache kept in the digital PIM arrays and the engine's data memory."""
    from hyflexpim.rtl.digital import DigReg, DIG_REGISTERS
    from hyflexpim.tb import lib
    P = lib.params()
    seed = lib.seed(name)
    dig = lib.design()
    eng = dig.make_engine()
    e = eng.params
    tokens = int(P.get("tokens", 8))
    layer, x, gold, fm = layer_case(seed, noise, causal, P.get("ber"), steps, tokens,
                                    dim=int(P.get("dim", 32)), heads=int(P.get("heads", 2)),
                                    ffn=int(P.get("ffn", 64)), max_seq=e["max_seq"])
    if steps is None:
        runs = [(LayerProgram(layer, eng, tokens, formats=fm), x, gold)]
    else:
        past = [sum(steps[:i]) for i in range(len(steps))]
        runs = [(LayerProgram(layer, eng, n, formats=fm, past=p), xi, g)
                for n, p, xi, g in zip(steps, past, x, gold)]
    clock = lib.TbClock(dut)
    port = dig.port
    src = lib.StreamSource(dut, "i", clock, layout=dig.layout,
                           idle=lib.random_pauses(0.1, lib.rng(seed + 1)))

    def push(kind, tag, data):
        src.send({"header": {"source": 0, "destination": port, "kind": kind, "tag": tag},
                  "data": data})

    delay = P.get("analog_delay", 20) if delay is None else delay
    analog = AnalogSide(runs[0][0], clock, push, delay)
    got = []

    def on_packet(value, cycle):
        h = value["header"]
        if h["kind"] == Kind.ACTIVATION and h["destination"] != 0:
            analog.on_send(h["destination"], h["tag"], value["data"])
        else:
            got.append((h["source"], h["destination"], h["kind"], h["tag"], value["data"],
                        cycle))

    lib.StreamSink(dut, "o", clock, layout=dig.layout,
                   backpressure=lib.random_pauses(1 - p_ready, lib.rng(seed + 2)),
                   callback=on_packet)
    bank = lib.ArrayBank(dut, clock, rows=e["pim_rows"], cols=e["pim_cols"],
                         arrays=e["pim_arrays"], prefix="pim")
    engine = lib.core(dut).engine
    await clock.start()
    # the scatter masks in 16-bit parts (register index j: bits 16 j ..)
    cfg0 = [(DigReg.MODE, 1, 0, 0)] + [
        (DigReg.MASK, m >> (16 * j) & 0xFFFF, c, j) for c, m in analog.masks()
        for j in range(eng.mask_regs)]
    profile = bool(P.get("profile"))
    words = 0
    for k, (lp, xk, gk) in enumerate(runs):
        cfg = cfg0 if k == 0 else []
        cfg += [(DigReg.IN_BASE, lp.in_base, 0, 0), (DigReg.IN_WORDS, lp.in_words, 0, 0)]
        cfg += [(r, v, 0, 0) for r, v in lp.config_writes()]
        for reg, value, tag, index in cfg:
            push(Kind.CONFIG, tag, DIG_REGISTERS.word(reg, value, index=index))
        await clock.wait(lambda: not src.busy, 40 * len(cfg) + 1000, "the configuration")
        exp = [w for row in rows_words(gk) for w in row]
        tags = list(range(lp.in_words)) * lp.T
        start, first = clock.cycle, len(got)
        start0 = start if k == 0 else start0
        per_instr = np.zeros(len(lp.program), dtype=np.int64)
        if profile:
            cocotb.start_soon(_profile(engine, clock, per_instr))
        push(Kind.CONFIG, 0, DIG_REGISTERS.word(DigReg.START, 0))
        for row in lp.input_words(xk):
            for w, data in enumerate(row):
                push(Kind.ACTIVATION, w, data)
        await clock.wait(lambda: len(got) >= first + len(exp), P.get("max_cycles", 600_000),
                         "the layer's output rows")
        await clock.wait(lambda: not int(engine.running.value), 1000, "the program's END")
        await clock.cycles(50)
        out = got[first:]
        what = f"step {k} (past {lp.past}, {lp.T} tokens): " if steps else ""
        assert len(out) == len(exp), f"{what}{len(out)} words out, expected {len(exp)}"
        for n, (g, want, tag) in enumerate(zip(out, exp, tags)):
            assert g[:5] == (port, 0, Kind.ACTIVATION, tag, want), \
                f"{what}word {n} (token {n // lp.in_words}): RTL {g[:5]}, golden " \
                f"{(port, 0, Kind.ACTIVATION, tag, want)}"
        cycles = out[-1][5] - start
        words += len(exp)
        q = np.asarray(gk.q)
        dut._log.info(f"{name}: {what}{len(exp)} words bit-exact, {cycles} cycles from START "
                      f"to the last word, {len(lp.program)} instructions; INT8 distinct "
                      f"{len(np.unique(q))}")
    dut._log.info(f"{name}: {words} words bit-exact in all, {analog.vectors} analog vectors, "
                  f"{len(bank.log)} digital PIM operations")
    lib.report("layer engine", os.environ.get("HYFLEXPIM_LAYER_REPORT"), test=name,
               noise=noise, causal=causal, words=words, cycles=cycles,
               analog_vectors=analog.vectors, analog_delay=delay, pim_ops=len(bank.log),
               instructions=len(lp.program), seed=seed, steps=steps,
               first_send=None if analog.first_send is None else analog.first_send - start0,
               words_per_row=lp.in_words, rtl_first_row=[g[4] for g in out[:lp.in_words]],
               golden_first_row=exp[:lp.in_words],
               instr_cycles=per_instr.tolist() if profile else None)


async def _profile(engine, clock, per_instr):
    """Cycles per instruction of the running program: each cycle while ``running`` is
    charged to instruction ``pc - 1`` (``pc`` steps past an instruction when it is
    decoded, so its fetch cycle goes to the one before)."""
    from cocotb.triggers import RisingEdge
    seen = False
    while True:
        await RisingEdge(clock.clk)
        if int(engine.running.value):
            seen = True
            per_instr[max(0, int(engine.pc.value) - 1)] += 1
        elif seen:
            return


@cocotb.test()
async def layer_noise_off(dut):
    """The encoder layer, ideal arrays; output backpressure, input gaps."""
    await layer_engine_test(dut, "layer_noise_off", noise=False)


@cocotb.test()
async def layer_noise_on(dut):
    """The same layer programmed with device noise (4.04 % MLC BER): the RTL still equals
    the golden model word for word (the same programmed arrays answer both)."""
    await layer_engine_test(dut, "layer_noise_on", noise=True)


@cocotb.test()
async def layer_sized(dut):
    """A layer of the sizes in the parameters (``dim``, ``heads``, ``ffn``, ``tokens``;
    ``noise``, default on): the MiniLM-L6 geometry in the slow test."""
    from hyflexpim.tb import lib
    await layer_engine_test(dut, "layer_sized", noise=bool(lib.params().get("noise", True)))


@cocotb.test()
async def layer_causal(dut):
    """A causal layer (query t sees keys 0..t) of the same sizes."""
    await layer_engine_test(dut, "layer_causal", noise=False, causal=True)


@cocotb.test()
async def layer_decoder(dut):
    """A causal decoder layer: a 5-token prompt, then three steps of one token, each
    appending its K and V to the KV cache the digital PIM arrays and the engine's data
    memory kept from the steps before; device noise on (every step's words compared)."""
    await layer_engine_test(dut, "layer_decoder", noise=True, causal=True,
                            steps=[5, 1, 1, 1])
