"""The FP16 operations of the transformer golden model, in two bit-identical engines.

The chip's FP16 numerics are defined by :mod:`hyflexpim.models.fp16` (exact integer
arithmetic, one rounding per operator, the SFU's functions as sequences of those
operators). That engine is exact but slow: a MiniLM-L6 review through the chip takes
about a minute. :data:`FAST` computes the same bit patterns with NumPy's ``float16``
and ``float64`` arithmetic:

* ``add``, ``sub``, ``mul``, ``div``, ``sqrt``: torch's CPU float16 kernels (NumPy's
  ``float16`` without torch, :data:`NUMPY_OPS`) round the float32 result of two
  binary16 operands to binary16. Rounding twice (to 24 bits, then to 11) gives the
  correctly rounded result for these five operations because 24 >= 2 * 11 + 2
  (Figueroa, "When is double rounding innocuous?", SIGNUM 1995); NaN results are
  replaced by the canonical 0x7E00 as in the reference.
* ``from_int32``, ``to_int8``, :func:`ldexp`: the exact product fits float64's 53 bits
  (an INT32 times an 11-bit significand), then one rounding (to binary16, or to an
  integer and saturation).
* ``max``, ``min``: integer keys of the bit patterns (the RISC-V ``fmax``/``fmin``
  rules of the reference).
* ``softmax``, ``layernorm``, ``gelu``, ``exp``: the reference's own code
  (:mod:`hyflexpim.models.fp16.functions`, loaded a second time) with these operators
  in place of the reference ones, so the sequence of roundings is the same by
  construction; the two element-wise functions ``exp`` and ``gelu`` are then
  tabulated over all 65,536 inputs (per polynomial degree) and looked up, also inside
  ``softmax``.

``tests/test_transformer_fp16.py`` checks the two engines bit for bit (random patterns,
every special value, every input of the element-wise functions). :func:`engine` returns
either by name; both have the same attributes.
"""

import importlib.util
import sys
import warnings
from types import SimpleNamespace

import numpy as np

try:                        # torch's float16 kernels are ~40x faster than NumPy's
    import torch as _torch
except ImportError:         # pragma: no cover - the NumPy operators then
    _torch = None

from ..base import check_choice
from .fp16 import ops as _ref_ops
from .fp16 import functions as _ref_functions

__all__ = ["ENGINES", "REFERENCE", "FAST", "NUMPY_OPS", "engine", "ldexp_reference",
           "ldexp_fast", "exponent", "LDEXP_MAX"]

ENGINES = ("fast", "reference")
_U16, _F16, _I32 = np.uint16, np.float16, np.int32
#: Largest exponent adjustment :func:`ldexp` takes (any larger one already gives +-Inf or 0).
LDEXP_MAX = 80


def _bits(x, name="x"):
    a = np.asarray(x)
    return a if a.dtype == _U16 else _ref_ops._bits(a, name)


def _canon_bits(bits):
    """``bits`` (uint16) with every NaN pattern replaced by 0x7E00."""
    nan = (bits & _U16(0x7FFF)) > _U16(0x7C00)
    return np.where(nan, _U16(_ref_ops.CANONICAL_NAN), bits).astype(_U16) if nan.any() else bits


def _canon(r):
    """Bit patterns of the float16 array ``r``, every NaN as 0x7E00."""
    return _canon_bits(np.asarray(r, dtype=_F16).view(_U16))


def _half(x):
    """A torch float16 view of uint16 patterns (broadcast strides kept)."""
    x = np.asarray(x)
    if x.ndim and min(x.strides) < 0:
        x = np.ascontiguousarray(x)
    with warnings.catch_warnings():         # read-only (broadcast) arrays: torch only reads
        warnings.simplefilter("ignore")
        return _torch.from_numpy(x.view(np.int16)).view(_torch.float16)


def _binary_numpy(name):
    fn = getattr(np, name)

    def op(a, b):
        x, y = _bits(a, "a").view(_F16), _bits(b, "b").view(_F16)
        with np.errstate(all="ignore"):
            return _canon(fn(x, y))
    op.__name__ = name
    return op


def _binary_torch(name):
    fn = getattr(_torch, name)

    def op(a, b):
        r = fn(_half(_bits(a, "a")), _half(_bits(b, "b")))
        return _canon_bits(r.view(_torch.int16).numpy().view(_U16))
    op.__name__ = name
    return op


def _sqrt_numpy(a):
    with np.errstate(all="ignore"):
        return _canon(np.sqrt(_bits(a, "a").view(_F16)))


def _sqrt_torch(a):
    r = _torch.sqrt(_half(_bits(a, "a")))
    return _canon_bits(r.view(_torch.int16).numpy().view(_U16))


def _key(x):
    x = x.astype(_I32)
    return np.where(x >= 0x8000, 0x7FFF - x, x)       # -0 (0x8000) -> -1, below +0


def _minmax(want_max):
    def op(a, b):
        a, b = np.broadcast_arrays(_bits(a, "a"), _bits(b, "b"))
        na, nb = _is_nan(a), _is_nan(b)
        ka, kb = _key(a), _key(b)
        res = np.where((ka >= kb) if want_max else (ka <= kb), a, b)
        res = np.where(na, b, np.where(nb, a, res))
        return np.where(na & nb, _U16(_ref_ops.CANONICAL_NAN), res).astype(_U16)
    return op


def _is_nan(x):
    return (_bits(x).astype(_I32) & 0x7FFF) > 0x7C00


def _from_int32(acc, scale):
    acc = np.asarray(acc)
    if acc.dtype.kind not in "iu":
        raise TypeError(f"acc must be an integer array, not dtype {acc.dtype}")
    if acc.size and (acc.min() < -(1 << 31) or acc.max() >= 1 << 31):
        raise ValueError("acc must hold INT32 values")
    s = _bits(scale, "scale").view(_F16).astype(np.float64)
    with np.errstate(all="ignore"):
        return _canon(np.asarray(acc.astype(np.float64) * s, dtype=_F16))


def _to_int8(x, scale):
    # the product of two 11-bit significands is exact in float32
    xv = _bits(x, "x").view(_F16).astype(np.float32)
    s = _bits(scale, "scale").view(_F16).astype(np.float32)
    with np.errstate(all="ignore"):
        p = xv * s
        r = np.clip(np.rint(p), -128, 127)            # +-Inf saturate
    return np.where(np.isnan(r), 0, r).astype(np.int8)


def _check_shift(e):
    e = np.asarray(e)
    if e.dtype.kind not in "iu":
        raise TypeError(f"e must be an integer array, not dtype {e.dtype}")
    if e.size and np.abs(e).max() > LDEXP_MAX:
        raise ValueError(f"e must be in -{LDEXP_MAX}..{LDEXP_MAX}, not {int(np.abs(e).max())}")
    return e.astype(np.int64)


def ldexp_fast(x, e):
    """``x * 2**e`` rounded once to binary16 (RNE, gradual underflow, +-Inf on overflow)."""
    # float32 holds x * 2**e exactly for |e| <= LDEXP_MAX (2**-104 .. 2**96)
    xv = _bits(x, "x").view(_F16).astype(np.float32)
    with np.errstate(all="ignore"):
        r = np.ldexp(xv, _check_shift(e).astype(np.int32))
    if _torch is None:
        return _canon(r)
    r = _torch.from_numpy(np.ascontiguousarray(r)).to(_torch.float16)    # one RNE rounding
    return _canon_bits(r.view(_torch.int16).numpy().view(_U16))


def ldexp_reference(x, e):
    """:func:`ldexp_fast` by the reference's integer rounding (``fp16.round_pack``):
    the exponent adjuster of the SFU (sign, significand, exponent + ``e``, one rounding).
    Zeros, infinities keep their pattern; a NaN gives 0x7E00."""
    x = _bits(x, "x").astype(np.int64)
    e = _check_shift(e)
    x, e = np.broadcast_arrays(x, e)
    sign, ef, f = x >> 15, (x >> 10) & 0x1F, x & 0x3FF
    sig = np.where(ef != 0, f | 0x400, f)
    k = np.maximum(ef, 1) - 25
    res, _ = _ref_ops.round_pack(sign, sig, k + e)
    special = ef == 0x1F
    res = np.where(special, x, res)
    return np.where(_is_nan(x.astype(_U16)), _U16(_ref_ops.CANONICAL_NAN), res).astype(_U16)


def _load_functions(ops_ns):
    """A second instance of ``fp16/functions.py`` whose operators are ``ops_ns`` and
    whose ``exp`` and ``gelu`` are table look-ups of its own results."""
    name = "hyflexpim.models.fp16._functions_fast"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _ref_functions.__file__)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.ops = ops_ns
    computed = {"exp": mod.exp, "gelu": mod.gelu}
    tables = {}

    def tabulated(kind):
        def fn(a, *, degree=mod.EXP_DEGREE):
            mod.check_degree(degree)
            key = (kind, degree)
            if key not in tables:
                tables[key] = computed[kind](np.arange(1 << 16, dtype=_U16), degree=degree)
            return tables[key][_bits(a, "a")]
        fn.__name__ = fn.__qualname__ = kind
        fn.__doc__ = computed[kind].__doc__
        return fn

    mod.exp, mod.gelu = tabulated("exp"), tabulated("gelu")
    sys.modules[name] = mod
    return mod


#: The element-wise operators of the fast engine without torch (NumPy float16).
NUMPY_OPS = SimpleNamespace(add=_binary_numpy("add"), sub=_binary_numpy("subtract"),
                            mul=_binary_numpy("multiply"), div=_binary_numpy("divide"),
                            sqrt=_sqrt_numpy)
_arith = NUMPY_OPS if _torch is None else SimpleNamespace(
    add=_binary_torch("add"), sub=_binary_torch("sub"), mul=_binary_torch("mul"),
    div=_binary_torch("div"), sqrt=_sqrt_torch)
_fast_ops = SimpleNamespace(
    _bits=_bits, add=_arith.add, sub=_arith.sub, mul=_arith.mul,
    div=_arith.div, sqrt=_arith.sqrt, max=_minmax(True), min=_minmax(False),
    is_nan=_is_nan, from_int32=_from_int32, to_int8=_to_int8,
    CANONICAL_NAN=_ref_ops.CANONICAL_NAN, POS_INF=_ref_ops.POS_INF, NEG_INF=_ref_ops.NEG_INF)


def _engine(name, ops_ns, functions, ldexp):
    return SimpleNamespace(
        name=name, add=ops_ns.add, sub=ops_ns.sub, mul=ops_ns.mul, div=ops_ns.div,
        sqrt=ops_ns.sqrt, max=ops_ns.max, min=ops_ns.min, is_nan=ops_ns.is_nan,
        from_int32=ops_ns.from_int32, to_int8=ops_ns.to_int8, ldexp=ldexp,
        exp=functions.exp, softmax=functions.softmax, layernorm=functions.layernorm,
        gelu=functions.gelu, reduce_row=functions.reduce_row)


#: The reference engine: :mod:`hyflexpim.models.fp16` itself.
REFERENCE = _engine("reference", _ref_ops, _ref_functions, ldexp_reference)
#: The fast engine (module doc), bit-identical to :data:`REFERENCE`.
FAST = _engine("fast", _fast_ops, _load_functions(_fast_ops), ldexp_fast)


def engine(name):
    """:data:`FAST` or :data:`REFERENCE` by name (``"fast"``, ``"reference"``)."""
    return {"fast": FAST, "reference": REFERENCE}[check_choice("fp16 engine", name, ENGINES)]


def exponent(x):
    """Unbiased exponent ``floor(log2|x|)`` of finite nonzero binary16 patterns (int64);
    subnormals included (-24..-15); 0 for zeros, infinities and NaNs."""
    x = _bits(x, "x").astype(np.int64)
    ef, f = (x >> 10) & 0x1F, x & 0x3FF
    sub_e = np.floor(np.log2(np.maximum(f, 1))).astype(np.int64) - 24
    out = np.where(ef == 0, sub_e, ef - 15)
    return np.where(((x & 0x7FFF) == 0) | (ef == 0x1F), 0, out)

