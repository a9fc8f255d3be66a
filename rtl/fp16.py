"""Pipelined IEEE 754 binary16 operators of the SFU (bit-exact to ``models/fp16/ops.py``).

Every unit is a :class:`wiring.Component` with one input stream ``i`` and one output
stream ``o``. A transfer carries ``lanes`` independent operand sets
(``data.ArrayLayout(lane layout, lanes)``); for ``lanes=1`` the bits are exactly those
of the lane's ``data.StructLayout``. Each lane of ``o`` is ``{"r": result, "flags":
FLAGS}`` where :data:`FLAGS` is ``{nx, uf, of, dz, nv}`` (bit 0 .. bit 4, RISC-V
``fflags`` order, the same mask as the golden model's ``NX .. NV``).

Pipelining: every unit is a chain of ``latency`` register stages sharing one enable,
``en = ~o.valid | o.ready``; ``i.ready = en``. A result leaves ``latency`` cycles after its
operands were accepted; with ``o.ready`` held high the unit accepts and delivers one
transfer (``lanes`` results) every cycle. When ``o`` stalls, the whole pipeline holds
(no data lost; ``o.valid`` never depends on ``o.ready``).

============  ==========================================  =========================
unit          lane input                                  latency (cycles)
============  ==========================================  =========================
Fp16AddSub    a, b, sub (1: a - b)                        4
Fp16Mul       a, b                                        3
Fp16Div       a, b                                        2 + ceil(14 / steps_per_stage)
Fp16Sqrt      a                                           2 + ceil(14 / steps_per_stage)
Fp16Compare   a, b, op (:class:`CmpOp`)                   1
Fp16FromInt32 acc (signed 32), scale                      3
Fp16ToInt8    x, scale (result ``r`` is signed 8 bits)    3
============  ==========================================  =========================

Division and square root are restoring digit recurrences (one quotient / root bit per
step, 14 steps), unrolled, ``steps_per_stage`` steps between pipeline registers; the
remainder gives the sticky bit, so the results are correctly rounded. Every datapath
ends in one shared round-and-pack (:func:`_round_pack`): RNE, gradual underflow,
tininess after rounding, overflow to Inf, canonical NaN 0x7E00.
"""

from types import SimpleNamespace

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ..base import Block, check_int

__all__ = ["FLAGS", "MAX_LANES", "check_lanes", "CmpOp", "Fp16AddSub", "Fp16Mul", "Fp16Div", "Fp16Sqrt", "Fp16Compare",
           "Fp16FromInt32", "Fp16ToInt8", "Fp16Ldexp", "BLOCKS"]

FLAGS = data.StructLayout({"nx": 1, "uf": 1, "of": 1, "dz": 1, "nv": 1})

_QNAN = 0x7E00
_INF = 0x7C00
_STEPS = 14          # quotient / root bits computed by div and sqrt


class CmpOp(enum.Enum, shape=3):
    """Operation of :class:`Fp16Compare`. Other codes give ``r = 0`` and no flags."""
    MIN = 0
    MAX = 1
    LT = 2
    LE = 3
    EQ = 4


# ----------------------------------------------------------------------------- helpers

class _Pipe:
    """Pipeline registers of one lane: ``stage(name=value, ...)`` registers the values."""

    def __init__(self, m, en, prefix):
        self._m, self._en, self._prefix = m, en, prefix
        self.count = 0

    def stage(self, **values):
        regs = {}
        for name, value in values.items():
            value = Value.cast(value)
            reg = Signal(value.shape(), name=f"{self._prefix}s{self.count + 1}_{name}")
            with self._m.If(self._en):
                self._m.d.sync += reg.eq(value)
            regs[name] = reg
        self.count += 1
        return SimpleNamespace(**regs)


def _unpack(x):
    """Fields of a binary16 value: significand with hidden bit, effective exponent field
    ``k`` (value = sig * 2**(k - 25)), class bits."""
    e, f = x[10:15], x[0:10]
    nan = (e == 31) & f.any()
    return SimpleNamespace(
        sign=x[15], sig=Cat(f, e != 0), k=Mux(e == 0, 1, e),
        nan=nan, snan=nan & ~f[9], inf=(e == 31) & ~f.any(), zero=(e == 0) & ~f.any())


def _sx(v):
    """``v`` (unsigned) zero-extended and reinterpreted as signed, for exponent arithmetic."""
    return Cat(v, Const(0, 1)).as_signed()


def _lzc(m, v, name):
    """Leading-zero count of ``v`` (``len(v)`` when zero)."""
    w = len(v)
    n = Signal(range(w + 1), name=name)
    m.d.comb += n.eq(w)
    for i in range(w):              # the most significant set bit is assigned last
        with m.If(v[i]):
            m.d.comb += n.eq(w - 1 - i)
    return n


def _normalize(m, v, name):
    """Shift ``v`` left so that its MSB is set; return ``(normalized, lzc)``."""
    n = _lzc(m, v, f"{name}_lzc")
    norm = Signal(len(v), name=f"{name}_norm")
    m.d.comb += norm.eq(v << n)
    return norm, n


def _round_pack(m, name, sign, exp, sig, sticky):
    """Round ``(-1)**sign * sig * 2**(exp - len(sig) + 1)`` (+ sticky) to binary16, RNE.

    ``sig`` is normalized (MSB set) or zero, ``exp`` (signed) is the exponent of its MSB,
    ``sticky`` says the exact value lies above ``sig`` by less than its last unit.
    Returns ``(bits, flags)`` as 16-bit and 5-bit (FLAGS) values.
    """
    w = len(sig)
    assert w >= 12
    den_raw = Signal(signed(len(exp) + 2), name=f"{name}_den_raw")
    den = Signal(range(w + 1), name=f"{name}_den")
    m.d.comb += den_raw.eq(-14 - exp)
    with m.If(den_raw <= 0):
        m.d.comb += den.eq(0)
    with m.Elif(den_raw >= w):
        m.d.comb += den.eq(w)
    with m.Else():
        m.d.comb += den.eq(den_raw)
    shifted = Signal(w, name=f"{name}_shifted")
    lost = Signal(name=f"{name}_lost")
    m.d.comb += [
        shifted.eq(sig >> den),
        lost.eq((sig & ~(Const((1 << w) - 1, w) << den)[:w]).any()),
    ]
    mant = shifted[w - 11:w]
    guard = shifted[w - 12]
    st = sticky | lost | (shifted[:w - 12].any() if w > 12 else Const(0, 1))
    up = guard & (st | mant[0])
    e_cl = Mux(exp < -14, -14, exp)
    bits = Signal(signed(len(exp) + 13), name=f"{name}_bits")
    m.d.comb += bits.eq(((e_cl + 14) << 10) + mant + up)
    over = bits >= _INF
    zero = ~sig.any() & ~sticky
    inexact = guard | st
    tiny = (exp < -15) | ((exp == -15) & ~sig[w - 12:].all())
    r = Signal(16, name=f"{name}_r")
    nx, uf, of = (Signal(name=f"{name}_{f}") for f in ("nx", "uf", "of"))
    with m.If(zero):
        m.d.comb += r.eq(Cat(Const(0, 15), sign))
    with m.Elif(over):
        m.d.comb += [r.eq(Cat(Const(_INF, 15), sign)), nx.eq(1), of.eq(1)]
    with m.Else():
        m.d.comb += [r.eq(Cat(bits[:15], sign)), nx.eq(inexact), uf.eq(tiny & inexact)]
    # flags as a Cat, not a partly assigned Signal: Icarus (even with -g2005) leaves the
    # never-assigned bits of such a Signal X (tests/test_fp16_cocotb.py shows it)
    return r, Cat(nx, uf, of, Const(0, 2))


def _special_mux(m, name, normal_r, normal_fl, special, sp_r, sp_fl):
    r = Signal(16, name=f"{name}_r")
    fl = Signal(FLAGS, name=f"{name}_fl")
    m.d.comb += [r.eq(Mux(special, sp_r, normal_r)),
                 fl.eq(Mux(special, sp_fl, normal_fl))]
    return r, fl


def _finish(m, p, name, sign, exp, sig, sticky, st):
    """Round-and-pack, override with the special-case result of ``st``, register."""
    r, fl = _round_pack(m, f"{name}_rp", sign, exp, sig, sticky)
    r, fl = _special_mux(m, f"{name}_out", r, fl, st.special, st.sp_r, st.sp_fl)
    out = p.stage(r=r, fl=fl)
    return out.r, out.fl


def _normalize_finish(m, p, name, st, value, bias):
    """Two stages for an exact ``value``: normalize (MSB exponent ``st.k + bias - lzc``),
    then :func:`_finish`. ``st`` carries ``sign``, ``k`` and the special-case fields."""
    norm, lz = _normalize(m, value, f"{name}_n")
    exp = Signal(signed(8), name=f"{name}_exp")
    m.d.comb += exp.eq(_sx(st.k) + bias - lz)
    st = p.stage(sign=st.sign, exp=exp, sig=norm,
                 special=st.special, sp_r=st.sp_r, sp_fl=st.sp_fl)
    return _finish(m, p, name, st.sign, st.exp, st.sig, Const(0, 1), st)


def _product_operands(a, b):
    """The unpacked operands of a product ``a * b``, its sign, NaN (an operand NaN),
    invalid (infinity times zero) and special (either, or an infinite operand)."""
    ua, ub = _unpack(a), _unpack(b)
    nan = ua.nan | ub.nan
    inv = (ua.inf & ub.zero) | (ub.inf & ua.zero)
    return ua, ub, ua.sign ^ ub.sign, nan, inv, nan | inv | ua.inf | ub.inf


def _flags(nv=0, dz=0):
    return Cat(Const(0, 3), dz, nv)


# ----------------------------------------------------------------------------- base unit

#: Largest ``lanes`` of a generated FP16 or SFU unit: the published SFU's 256 inputs per
#: cycle (the parameter's published value, and a bound on elaboration time and memory).
MAX_LANES = 256


def check_lanes(lanes):
    """``lanes`` as an int in ``1..MAX_LANES``.

    Raises:
        ParameterTypeError: ``lanes`` is not an integer.
        ValueError: ``lanes`` is outside ``1..MAX_LANES``.
    """
    return check_int("lanes", lanes, 1, MAX_LANES)


class _Fp16Unit(wiring.Component):
    """``latency`` register stages, one shared enable, ``lanes`` copies of the datapath
    (``1..MAX_LANES``)."""

    _result_shape = unsigned(16)

    def __init__(self, *, lanes=1):
        check_lanes(lanes)
        self._lanes = lanes
        out_lane = data.StructLayout({"r": self._result_shape, "flags": FLAGS})
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(self.lane_layout(), lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(out_lane, lanes))),
        })

    @property
    def lanes(self):
        return self._lanes

    #: Pipeline stages (cycles from an accepted input to its result), a class constant
    #: of every fixed-latency unit; :class:`_Recurrence` units compute it from
    #: ``steps_per_stage`` (:meth:`_Recurrence.latency_of`).
    LATENCY = None

    @property
    def latency(self):
        return self.LATENCY

    @classmethod
    def lane_layout(cls):
        raise NotImplementedError

    def _lane(self, m, p, x, name):
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        n = self.latency
        en = Signal()
        valid = Signal(n)
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en),
                     self.o.valid.eq(valid[n - 1])]
        with m.If(en):
            m.d.sync += valid.eq(Cat(self.i.valid, valid[:n - 1]))
        for lane in range(self._lanes):
            p = _Pipe(m, en, f"l{lane}_")
            r, fl = self._lane(m, p, self.i.payload[lane], f"l{lane}")
            assert p.count == n, (type(self).__name__, p.count, n)
            m.d.comb += [self.o.payload[lane].r.eq(r), self.o.payload[lane].flags.eq(fl)]
        return m


# ----------------------------------------------------------------------------- add / sub

class Fp16AddSub(_Fp16Unit):
    """``r = a + b`` (``sub = 0``) or ``a - b`` (``sub = 1``). Latency 4.

    Far path: the smaller operand is aligned into a window of 13 bits below the larger
    one's LSB; bits shifted out are OR-ed into the window's LSB (sticky), which keeps the
    rounding exact (at most one bit of cancellation when anything was shifted out).
    """

    LATENCY = 4

    @classmethod
    def lane_layout(cls):
        return data.StructLayout({"a": 16, "b": 16, "sub": 1})

    def _lane(self, m, p, x, name):
        a = x.a
        b = x.b ^ (x.sub << 15)
        ua, ub = _unpack(a), _unpack(b)
        swap = b[:15] > a[:15]
        big = Signal(16, name=f"{name}_big")
        small = Signal(16, name=f"{name}_small")
        m.d.comb += [big.eq(Mux(swap, b, a)), small.eq(Mux(swap, a, b))]
        ubig, usmall = _unpack(big), _unpack(small)
        nan = ua.nan | ub.nan
        inv = ua.inf & ub.inf & (ua.sign != ub.sign)
        special = nan | inv | ua.inf | ub.inf
        sp_r = Mux(nan | inv, _QNAN, Mux(ua.inf, a, b))
        sp_fl = _flags(nv=ua.snan | ub.snan | inv)
        s1 = p.stage(sign=ubig.sign, eff_sub=ua.sign ^ ub.sign, zero_sign=ua.sign & ub.sign,
                     k=ubig.k, sig_big=ubig.sig, sig_small=usmall.sig,
                     d=(ubig.k - usmall.k)[:5], special=special, sp_r=sp_r, sp_fl=sp_fl)

        # align and add
        small_ext = Cat(Const(0, 13), s1.sig_small)                 # 24 bits
        aligned = Signal(24, name=f"{name}_aligned")
        lost = Signal(name=f"{name}_align_lost")
        m.d.comb += [
            aligned.eq(small_ext >> s1.d),
            lost.eq((small_ext & ~(Const((1 << 24) - 1, 24) << s1.d)[:24]).any()),
        ]
        jammed = aligned | lost
        big_ext = Cat(Const(0, 13), s1.sig_big)
        total = Signal(25, name=f"{name}_sum")
        with m.If(s1.eff_sub):
            m.d.comb += total.eq(big_ext - jammed)
        with m.Else():
            m.d.comb += total.eq(big_ext + jammed)
        sign = Mux(total.any(), s1.sign, s1.zero_sign)
        s2 = p.stage(sign=sign, k=s1.k, total=total,
                     special=s1.special, sp_r=s1.sp_r, sp_fl=s1.sp_fl)

        return _normalize_finish(m, p, name, s2, s2.total, -14)


# ----------------------------------------------------------------------------- mul

class Fp16Mul(_Fp16Unit):
    """``r = a * b``. Latency 3 (11x11 multiply; normalize; round)."""

    LATENCY = 3

    @classmethod
    def lane_layout(cls):
        return data.StructLayout({"a": 16, "b": 16})

    def _lane(self, m, p, x, name):
        ua, ub, sign, nan, inv, special = _product_operands(x.a, x.b)
        sp_r = Mux(nan | inv, _QNAN, Cat(Const(_INF, 15), sign))
        sp_fl = _flags(nv=ua.snan | ub.snan | inv)
        s1 = p.stage(sign=sign, k=ua.k + ub.k, prod=ua.sig * ub.sig,
                     special=special, sp_r=sp_r, sp_fl=sp_fl)

        return _normalize_finish(m, p, name, s1, s1.prod[:22], -29)


# ----------------------------------------------------------------------------- div / sqrt

class _Recurrence(_Fp16Unit):
    def __init__(self, *, lanes=1, steps_per_stage=2):
        check_int("steps_per_stage", steps_per_stage, 1, _STEPS)
        self._steps_per_stage = steps_per_stage
        super().__init__(lanes=lanes)

    @property
    def steps_per_stage(self):
        return self._steps_per_stage

    @staticmethod
    def latency_of(steps_per_stage=2):
        """Latency of a unit with ``steps_per_stage`` recurrence steps between registers."""
        return 2 + -(-_STEPS // check_int("steps_per_stage", steps_per_stage, 1, _STEPS))

    #: Latency with the default ``steps_per_stage`` (2).
    LATENCY = 2 + -(-_STEPS // 2)

    @property
    def latency(self):
        return self.latency_of(self._steps_per_stage)


class Fp16Div(_Recurrence):
    """``r = a / b`` by restoring division, 14 quotient bits plus a sticky remainder.

    Latency ``2 + ceil(14 / steps_per_stage)`` (default 9).
    """

    @classmethod
    def lane_layout(cls):
        return data.StructLayout({"a": 16, "b": 16})

    def _lane(self, m, p, x, name):
        a, b = x.a, x.b
        ua, ub = _unpack(a), _unpack(b)
        sign = ua.sign ^ ub.sign
        na, lza = _normalize(m, ua.sig, f"{name}_na")
        nb, lzb = _normalize(m, ub.sig, f"{name}_nb")
        nan = ua.nan | ub.nan
        inv = (ua.inf & ub.inf) | (ua.zero & ub.zero)
        to_inf = ua.inf | ub.zero
        to_zero = ub.inf | ua.zero
        special = nan | inv | to_inf | to_zero
        sp_r = Mux(nan | inv, _QNAN, Cat(Mux(to_inf, _INF, 0)[:15], sign))
        dz = ub.zero & ~ua.zero & ~ua.inf & ~ua.nan
        sp_fl = _flags(nv=ua.snan | ub.snan | inv, dz=dz & ~nan)
        exp = Signal(signed(8), name=f"{name}_exp")
        m.d.comb += exp.eq((_sx(ua.k) - lza) - (_sx(ub.k) - lzb))
        st = p.stage(sign=sign, exp=exp, rem=Cat(na, Const(0, 1)), div=nb,
                     q=Const(0, _STEPS), special=special, sp_r=sp_r, sp_fl=sp_fl)

        for step in range(_STEPS):
            ge = st.rem >= st.div
            diff = Mux(ge, st.rem - st.div, st.rem)[:11]
            rem, q = Cat(Const(0, 1), diff), Cat(ge, st.q[:_STEPS - 1])
            last = step == _STEPS - 1
            if last or (step + 1) % self._steps_per_stage == 0:
                st = p.stage(sign=st.sign, exp=st.exp, rem=rem, div=st.div, q=q,
                             special=st.special, sp_r=st.sp_r, sp_fl=st.sp_fl)
            else:
                st = SimpleNamespace(sign=st.sign, exp=st.exp, rem=rem, div=st.div, q=q,
                                     special=st.special, sp_r=st.sp_r, sp_fl=st.sp_fl)

        top = st.q[_STEPS - 1]
        sig = Mux(top, st.q, st.q << 1)[:_STEPS]
        exp = Mux(top, st.exp, st.exp - 1)
        return _finish(m, p, name, st.sign, exp, sig, st.rem.any(), st)


class Fp16Sqrt(_Recurrence):
    """``r = sqrt(a)`` by restoring square root, 14 root bits plus a sticky remainder;
    ``sqrt(-0) = -0``. Latency ``2 + ceil(14 / steps_per_stage)`` (default 9)."""

    @classmethod
    def lane_layout(cls):
        return data.StructLayout({"a": 16})

    def _lane(self, m, p, x, name):
        a = x.a
        ua = _unpack(a)
        na, lz = _normalize(m, ua.sig, f"{name}_na")
        t = Signal(signed(8), name=f"{name}_t")          # value = na * 2**t
        m.d.comb += t.eq(_sx(ua.k) - 25 - lz)
        odd = t[0]
        rad = Mux(odd, Cat(Const(0, 1), na), Cat(na, Const(0, 1)))   # 12 bits, even t
        half = Signal(signed(8), name=f"{name}_half")
        m.d.comb += half.eq((t - odd) >> 1)
        neg = ua.sign & ~ua.zero & ~ua.nan
        special = ua.nan | neg | ua.zero | ua.inf
        sp_r = Mux(ua.nan | neg, _QNAN, a)
        sp_fl = _flags(nv=ua.snan | neg)
        # the radicand is rad << 16: the first 6 digit pairs come from rad, the rest are 0
        st = p.stage(exp=half + 5, rad=rad, rem=Const(0, 17), root=Const(0, _STEPS),
                     special=special, sp_r=sp_r, sp_fl=sp_fl)

        for step in range(_STEPS):
            pair = st.rad[10 - 2 * step:12 - 2 * step] if step < 6 else Const(0, 2)
            rem_s = Cat(pair, st.rem)[:17]
            trial = Cat(Const(1, 2), st.root)[:17]
            ge = rem_s >= trial
            rem = Mux(ge, rem_s - trial, rem_s)[:17]
            root = Cat(ge, st.root[:_STEPS - 1])
            last = step == _STEPS - 1
            vals = dict(exp=st.exp, rad=st.rad, rem=rem, root=root,
                        special=st.special, sp_r=st.sp_r, sp_fl=st.sp_fl)
            if last or (step + 1) % self._steps_per_stage == 0:
                st = p.stage(**vals)
            else:
                st = SimpleNamespace(**vals)

        return _finish(m, p, name, Const(0, 1), st.exp, st.root, st.rem.any(), st)


# ----------------------------------------------------------------------------- compare

class Fp16Compare(_Fp16Unit):
    """min / max (RISC-V ``fmin.h``/``fmax.h``) and lt / le / eq (``flt``/``fle``/``feq``).

    ``r`` is the selected operand for MIN/MAX and 0/1 for LT/LE/EQ. Latency 1.
    """

    LATENCY = 1

    @classmethod
    def lane_layout(cls):
        return data.StructLayout({"a": 16, "b": 16, "op": CmpOp})

    def _lane(self, m, p, x, name):
        a, b = x.a, x.b
        ua, ub = _unpack(a), _unpack(b)
        ka = Signal(signed(17), name=f"{name}_ka")
        kb = Signal(signed(17), name=f"{name}_kb")
        m.d.comb += [ka.eq(Mux(ua.sign, -1 - a[:15], a[:15])),
                     kb.eq(Mux(ub.sign, -1 - b[:15], b[:15]))]
        nan = ua.nan | ub.nan
        snan = ua.snan | ub.snan
        both_zero = ua.zero & ub.zero
        r = Signal(16, name=f"{name}_r")
        nv = Signal(name=f"{name}_nv")
        with m.Switch(x.op):
            for op in (CmpOp.MIN, CmpOp.MAX):
                with m.Case(op):
                    pick_a = (ka >= kb) if op == CmpOp.MAX else (ka <= kb)
                    with m.If(ua.nan & ub.nan):
                        m.d.comb += r.eq(_QNAN)
                    with m.Elif(ua.nan):
                        m.d.comb += r.eq(b)
                    with m.Elif(ub.nan):
                        m.d.comb += r.eq(a)
                    with m.Else():
                        m.d.comb += r.eq(Mux(pick_a, a, b))
                    m.d.comb += nv.eq(snan)
            with m.Case(CmpOp.LT):
                m.d.comb += [r.eq((ka < kb) & ~both_zero & ~nan), nv.eq(nan)]
            with m.Case(CmpOp.LE):
                m.d.comb += [r.eq(((ka <= kb) | both_zero) & ~nan), nv.eq(nan)]
            with m.Case(CmpOp.EQ):
                m.d.comb += [r.eq(((a == b) | both_zero) & ~nan), nv.eq(snan)]
        out = p.stage(r=r, fl=_flags(nv=nv))
        return out.r, out.fl


# ----------------------------------------------------------------------------- conversions

class Fp16FromInt32(_Fp16Unit):
    """``r = fp16(acc * scale)``: the exact int32 x binary16 product, rounded once.

    Latency 3 (32x11 multiply; normalize; round). Rules as ``models.fp16.from_int32``.
    """

    LATENCY = 3

    @classmethod
    def lane_layout(cls):
        return data.StructLayout({"acc": signed(32), "scale": 16})

    def _lane(self, m, p, x, name):
        acc = x.acc
        s = x.scale
        us = _unpack(s)
        mag = Signal(32, name=f"{name}_mag")
        m.d.comb += mag.eq(Mux(acc < 0, -acc, acc))
        sign = (acc < 0) ^ us.sign
        inv = us.inf & (acc == 0)
        special = us.nan | us.inf
        sp_r = Mux(us.nan | inv, _QNAN, Cat(Const(_INF, 15), sign))
        sp_fl = _flags(nv=us.snan | inv)
        s1 = p.stage(sign=sign, k=us.k, prod=mag * us.sig,
                     special=special, sp_r=sp_r, sp_fl=sp_fl)

        return _normalize_finish(m, p, name, s1, s1.prod[:43], 17)


class Fp16ToInt8(_Fp16Unit):
    """``r = int8(x * scale)``: the exact product rounded once (RNE), saturated to
    -128..127; NaN gives 0. NV on saturation or NaN, else NX when inexact. Latency 3."""

    _result_shape = signed(8)

    LATENCY = 3

    @classmethod
    def lane_layout(cls):
        return data.StructLayout({"x": 16, "scale": 16})

    def _lane(self, m, p, x, name):
        ua, us, sign, nan, inv, special = _product_operands(x.x, x.scale)
        nan = nan | inv
        sp_r = Mux(nan, 0, Mux(sign, 0x80, 0x7F))
        s1 = p.stage(sign=sign, k=ua.k + us.k, prod=ua.sig * us.sig,
                     special=special, sp_r=sp_r)

        # value = prod * 2**(k - 50); shift right by 50 - k (k in 2..60)
        sh_raw = Signal(signed(8), name=f"{name}_sh_raw")
        sh = Signal(range(25), name=f"{name}_sh")
        m.d.comb += sh_raw.eq(50 - _sx(s1.k))
        with m.If(sh_raw <= 0):
            m.d.comb += sh.eq(0)
        with m.Elif(sh_raw >= 24):
            m.d.comb += sh.eq(24)
        with m.Else():
            m.d.comb += sh.eq(sh_raw)
        prod = s1.prod[:22]
        q = Signal(46, name=f"{name}_q")
        m.d.comb += q.eq(Cat(Const(0, 24), prod) >> sh)
        guard = q[23]
        sticky = q[:23].any()
        mag = q[24:46] + (guard & (sticky | q[24]))
        big = (sh_raw <= 0) & prod.any()
        s2 = p.stage(sign=s1.sign, mag=mag, big=big, inexact=guard | sticky,
                     special=s1.special, sp_r=s1.sp_r)

        limit = Mux(s2.sign, 128, 127)
        sat = s2.big | (s2.mag > limit)
        val = Mux(sat, limit, s2.mag)[:8]
        r = Signal(8, name=f"{name}_r")
        nv, nx = Signal(name=f"{name}_nv"), Signal(name=f"{name}_nx")
        with m.If(s2.special):
            m.d.comb += [r.eq(s2.sp_r), nv.eq(1)]
        with m.Else():
            m.d.comb += [r.eq(Mux(s2.sign, -val, val)), nv.eq(sat), nx.eq(~sat & s2.inexact)]
        s3 = p.stage(r=r, fl=Cat(nx, Const(0, 3), nv))
        return s3.r, s3.fl


# ----------------------------------------------------------------------------- registry

def _lanes_only(cls):
    return lambda lanes: cls(lanes=lanes)


def _recurrence(cls):
    return lambda lanes, steps_per_stage: cls(lanes=lanes, steps_per_stage=steps_per_stage)


BLOCKS = [
    Block("fp16_add", _lanes_only(Fp16AddSub), {"lanes": 1},
          "binary16 add/sub (RNE, flags), latency 4"),
    Block("fp16_mul", _lanes_only(Fp16Mul), {"lanes": 1},
          "binary16 multiply (RNE, flags), latency 3"),
    Block("fp16_div", _recurrence(Fp16Div), {"lanes": 1, "steps_per_stage": 2},
          "binary16 divide, restoring recurrence, latency 2+ceil(14/steps_per_stage)"),
    Block("fp16_sqrt", _recurrence(Fp16Sqrt), {"lanes": 1, "steps_per_stage": 2},
          "binary16 square root, restoring recurrence, latency 2+ceil(14/steps_per_stage)"),
    Block("fp16_cmp", _lanes_only(Fp16Compare), {"lanes": 1},
          "binary16 min/max (RISC-V fmin/fmax) and lt/le/eq, latency 1"),
    Block("fp16_from_int32", _lanes_only(Fp16FromInt32), {"lanes": 1},
          "INT32 accumulator x binary16 scale -> binary16 (one rounding), latency 3"),
    Block("fp16_to_int8", _lanes_only(Fp16ToInt8), {"lanes": 1},
          "binary16 x binary16 scale -> INT8 (RNE, saturating, NaN -> 0), latency 3"),
]


class Fp16Ldexp(_Fp16Unit):
    """``r = x * 2**e`` rounded once to binary16 (RNE, gradual underflow, +-Inf on
    overflow): the SFU's exponent adjuster, bit-exact to
    :func:`hyflexpim.models.transformer_fp16.ldexp_reference`. ``e`` is a signed 8-bit
    adjustment (the golden model's range is -80..80; anything larger already gives 0 or
    Inf). Zeros and infinities keep their pattern, a NaN gives 0x7E00. Latency 2
    (normalize and add the exponent; round)."""

    LATENCY = 2

    @classmethod
    def lane_layout(cls):
        return data.StructLayout({"x": 16, "e": signed(8)})

    def _lane(self, m, p, x, name):
        ux = _unpack(x.x)
        norm, lz = _normalize(m, ux.sig, f"{name}_n")
        exp = Signal(signed(11), name=f"{name}_exp")
        m.d.comb += exp.eq(_sx(ux.k) - 15 - lz + x.e)
        special = ux.nan | ux.inf
        st = p.stage(sign=ux.sign, exp=exp, sig=Cat(Const(0, 1), norm), special=special,
                     sp_r=Mux(ux.nan, 0x7E00, x.x), sp_fl=Cat(Const(0, 4), ux.snan))
        return _finish(m, p, name, st.sign, st.exp, st.sig, Const(0, 1), st)
