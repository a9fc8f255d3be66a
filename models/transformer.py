"""Bit-true golden model of a transformer on the chip (DESIGN.md 8; docs/transformer.md).

A transformer layer runs in the chip's formats and order: the static matrices on the
analog arrays (:func:`~.array.program_matrix`: the SVD factors A then B on their SLC /
MLC mapping, noise from the device model), INT32 outputs dequantised to FP16, the
attention products Q K^T and P V in INT8 x INT8 -> INT32 on the digital PIM
(:func:`~.digital_pim.matmul`), softmax with the 1/sqrt(d_head) scale, residual
additions, layer norm and GELU in FP16 on the SFU (:mod:`.fp16`), every product input
requantised to INT8. The choices the published design leaves open are fields or
constants of one place, :class:`ChipFormats` and the functions :func:`quantize`,
:func:`dequantize`, written down in docs/transformer.md:

* INT8 rows: every INT8 operand row (one token's vector, one head's row, one P row)
  has its own scale, ``value = q * s * 2**e`` with ``s = fp16(mm / 127)`` in
  [1/127, 2/127) and ``e`` an integer (``mm * 2**e`` = the row's largest magnitude,
  ``mm`` in [1, 2)): :class:`Rows`. Weights: one such scale per output column.
* Dequantisation of an INT32 ``acc`` with row scale ``(s_a, e_a)`` and column scale
  ``(s_b, e_b)``: ``ldexp(from_int32(acc, s_a * s_b), e_a + e_b)``: two FP16
  roundings, never an overflow of the intermediate (:func:`dequantize`).
* Softmax: scores dequantised with the 1/sqrt(d_head) factor folded into the scale,
  masked keys -Inf, rows padded with -Inf to a multiple of ``lanes * slots``.
* P V: the per-token V scales are folded into P before it is quantised (``w = P *
  s_v[t] * 2**(e_v[t] - E)``, ``E`` the largest visible exponent), so V keeps one
  scale per token (the KV cache never rescales) and P's INT8 row uses its full range.
* Residuals: added in FP16; a layer's input arrives from the previous PU as INT8 rows
  (the published transfer), so its residual is that input dequantised; the residual
  inside a layer (after the first add) is held in FP16.
* Host: embeddings (and MiniLM's embedding layer norm), the final layer norm of pre-LN
  models, pooling and the classifier / LM head run in float on the host.

Any of the operations in :data:`OPS` can be run in float64 instead
(``ChipFormats(float_ops=...)``), which measures what each format costs.
"""

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..base import check_bool, check_choice, check_float, check_int
from . import digital_pim
from . import transformer_fp16 as t16
from .array import program_matrix
from .fp16 import ops as _ops
from .fp16.functions import EXP_DEGREE, EPS_MIN

__all__ = ["OPS", "ATTENTION_ENGINES", "ANALOG_ENGINES", "QMAX", "ChipFormats", "Noise", "Rows", "quantize",
           "dequantize", "guard_shift", "quantize_weight", "int8_matmul", "AnalogMatrix",
           "AnalogLinear", "LayerConfig", "ChipLayer", "KVCache", "Run"]

#: Operations that can be swapped back to float64 (``ChipFormats.float_ops``):
#: ``linear`` the analog GEMVs (INT8 inputs, weights, INT32, dequantisation, bias),
#: ``attention`` the digital PIM products (INT8 Q, K, V, P; scores and context),
#: ``softmax``, ``layernorm``, ``gelu`` the SFU functions, ``residual`` the FP16
#: residual additions, ``transport`` the INT8 hidden state between layers.
OPS = ("linear", "attention", "softmax", "layernorm", "gelu", "residual", "transport")
ATTENTION_ENGINES = ("digital-pim", "integer")
ANALOG_ENGINES = ("faithful", "fast")
#: Largest INT8 magnitude a quantised row or weight uses (symmetric, -127..127).
QMAX = 127
FP16_MAX = 65504.0
_Q16 = _ops.from_float(float(QMAX))
_ONE16 = np.uint16(0x3C00)
_MAX_FINITE = np.uint16(0x7BFF)
_NORMAL_MIN = 2.0 ** -14
#: Smallest column maximum of a weight matrix (smaller columns are programmed as 0).
W_MIN = 2.0 ** -40


@dataclass(frozen=True)
class ChipFormats:
    """The number formats and units of a transformer on the chip, shared by the golden
    model, the RTL and the accuracy flow.

    lanes, slots      the SFU's row reduction order (:func:`~.fp16.functions.reduce_row`);
                      softmax rows are padded with -Inf to a multiple of ``lanes * slots``
    exp_degree        the SFU exponential's polynomial degree (softmax, GELU)
    fp16              ``"fast"`` or ``"reference"`` engine (:mod:`.transformer_fp16`,
                      the same bits)
    attention_engine  ``"digital-pim"`` (:func:`~.digital_pim.matmul`, the NOR-level
                      model) or ``"integer"`` (int64 matmul: the same INT32 values,
                      as the digital PIM's tests check, thousands of times faster)
    analog_engine     ``"faithful"``: every GEMV by the golden array model
                      (:meth:`~.array.ProgrammedMatrix.run`; with ideal arrays the
                      vectors that provably cannot saturate an ADC take the exact
                      integer product, which is what the model gives them, see
                      :class:`AnalogMatrix`); ``"fast"``: a statistical stand-in for
                      noisy arrays, ``rint(x @ w')`` with the noisy weights ``w'`` of
                      :func:`~.noise.effective_weights` (the same per-cell statistics,
                      no ADC rounding or saturation), not bit-true
    rows, cols, slc_bits, mlc_bits   the analog array geometry (:class:`~.array.ArrayParams`)
    float_ops         operations of :data:`OPS` run in float64 instead (ablation)
    """
    lanes: int = 4
    slots: int = 4
    exp_degree: int = EXP_DEGREE
    fp16: str = "fast"
    attention_engine: str = "digital-pim"
    analog_engine: str = "faithful"
    rows: int = 64
    cols: int = 128
    slc_bits: int = 6
    mlc_bits: int = 7
    float_ops: frozenset = field(default_factory=frozenset)

    def __post_init__(self):
        from .fp16.functions import check_row_params, check_degree
        check_int("lanes", self.lanes, 1, 256)
        check_int("slots", self.slots, 1, 256)
        check_row_params(self.lanes, self.lanes, self.slots)
        check_degree(self.exp_degree)
        check_choice("fp16", self.fp16, t16.ENGINES)
        check_choice("attention_engine", self.attention_engine, ATTENTION_ENGINES)
        check_choice("analog_engine", self.analog_engine, ANALOG_ENGINES)
        if isinstance(self.float_ops, str) or not hasattr(self.float_ops, "__iter__"):
            raise ValueError(f"float_ops must be a collection of {', '.join(OPS)}, "
                             f"not {self.float_ops!r}")
        ops = frozenset(self.float_ops)
        for op in ops:
            check_choice("float_ops entry", op, OPS)
        object.__setattr__(self, "float_ops", ops)
        from .array import ArrayParams
        ArrayParams(rows=self.rows, cols=self.cols, slc_bits=self.slc_bits,
                    mlc_bits=self.mlc_bits)

    def with_float(self, *ops):
        """A copy with ``ops`` (names of :data:`OPS`) run in float64."""
        return replace(self, float_ops=self.float_ops | frozenset(ops))

    def chip(self, op):
        """True when operation ``op`` runs in the chip's formats."""
        return op not in self.float_ops

    @property
    def row_pad(self):
        """Softmax rows are padded to a multiple of this (one SFU reduction round)."""
        return self.lanes * self.slots

    @property
    def f(self):
        """The FP16 engine."""
        return t16.engine(self.fp16)

    def array_kwargs(self):
        return dict(rows=self.rows, cols=self.cols, slc_bits=self.slc_bits,
                    mlc_bits=self.mlc_bits)


@dataclass(frozen=True)
class Noise:
    """RRAM noise of a programming, passed to :func:`~.array.program_matrix`.

    ``ber``: the 2-bit MLC bit error rate the device is calibrated to (the default
    device when ``device`` is None); ``device``: a device name, table or object;
    neither (and no ``read_noise``): ideal arrays. Matrix ``i`` of the model (model
    order, factor by factor) is programmed with seed ``seed * 1_000_003 + i``.
    """
    ber: object = None
    device: object = None
    seed: int = 0
    offset: str = "reference"
    read_noise: object = None

    def __post_init__(self):
        if self.ber is not None:
            check_float("ber", self.ber, 0.0, 0.5, lo_open=True, hi_open=True)
        check_int("seed", self.seed, 0, 2 ** 32 - 1)
        if self.read_noise is not None:
            check_float("read_noise", self.read_noise, 0.0, 1.0)

    @property
    def off(self):
        return self.ber is None and self.device is None and not self.read_noise

    def kwargs(self, index):
        from .quant import SEED_STRIDE
        return dict(ber=self.ber, device=self.device, offset=self.offset,
                    read_noise=self.read_noise, seed=self.seed * SEED_STRIDE + index)


class Run:
    """State of one forward pass: formats, FP16 engine, optional trace and counters.

    ``trace`` (a list, or None): every analog GEMV appends ``dict(name, factor, xq,
    acc, q, programs)``. ``stats``: ``nonfinite`` (FP16 Inf/NaN met by a quantiser),
    ``gemv_rows`` (vectors through the analog arrays).
    """

    def __init__(self, formats, trace=None):
        self.formats = formats
        self.f = formats.f
        self.trace = trace
        self.stats = {"nonfinite": 0, "gemv_rows": 0}


# ================================================================== INT8 rows and scales

@dataclass
class Rows:
    """INT8 rows with one scale each: ``value[..., j] = q[..., j] * s[...] * 2**e[...]``.

    ``q`` int64 (..., n) in -128..127, ``s`` uint16 binary16 patterns (...) in
    [1/127, 2/127], ``e`` int64 (...).
    """
    q: np.ndarray
    s: np.ndarray
    e: np.ndarray

    def value(self, f):
        """The FP16 value of every element (``ldexp(from_int32(q, s), e)``)."""
        return f.ldexp(f.from_int32(self.q, self.s[..., None]), self.e[..., None])

    def take(self, idx, axis):
        return Rows(np.take(self.q, idx, axis), np.take(self.s, idx, axis),
                    np.take(self.e, idx, axis))

    @staticmethod
    def concat(parts, axis):
        return Rows(np.concatenate([p.q for p in parts], axis),
                    np.concatenate([p.s for p in parts], axis),
                    np.concatenate([p.e for p in parts], axis))


def quantize(x16, run):
    """INT8 rows of the FP16 patterns ``x16`` (last axis = one row), on the SFU.

    ``m`` = the largest magnitude of the row (an integer max of the patterns with the
    sign cleared: NaNs skipped, +-Inf taken as 65504), ``m = mm * 2**e`` with ``mm`` in
    [1, 2) (exponent field); ``q = to_int8(ldexp(x, -e), 127 / mm)``, ``s = mm / 127``
    (two FP16 divisions). A zero row gives ``q = 0``, ``s = fp16(1/127)``, ``e = 0``.
    """
    f = run.f
    x16 = np.asarray(x16, dtype=np.uint16)
    a = x16 & np.uint16(0x7FFF)
    nonfinite = a >= np.uint16(0x7C00)
    if nonfinite.any():
        run.stats["nonfinite"] += int(nonfinite.sum())
        a = np.where(a > np.uint16(0x7C00), np.uint16(0), a)
    m = np.minimum(a.max(axis=-1, initial=0), _MAX_FINITE)
    zero = m == 0
    m = np.where(zero, _ONE16, m).astype(np.uint16)
    e = t16.exponent(m)
    mm = f.ldexp(m, -e)
    inv = f.div(_Q16, mm)
    q = f.to_int8(f.ldexp(x16, -e[..., None]), inv[..., None]).astype(np.int64)
    q = np.where(zero[..., None], 0, q)
    return Rows(q, f.div(mm, _Q16), np.where(zero, 0, e))


def guard_shift(k, c_max, c_min):
    """Static exponent shift ``b`` of a dequantisation (see :func:`dequantize`): the
    smallest ``b >= 0`` with ``128 * 128 * k * c_max * 2**-b <= 65504`` (no INT32 sum of
    ``k`` INT8 products can overflow the FP16 intermediate); ValueError if then the
    scale ``c_min * 2**-b`` would leave the FP16 normal range (``k`` too large)."""
    k = check_int("reduction length", k, 1)
    b = max(0, math.ceil(math.log2(128 * 128 * k * c_max / FP16_MAX)))
    if c_min * 2.0 ** -b < _NORMAL_MIN:
        raise ValueError(f"a reduction of {k} INT8 products is too long for the FP16 "
                         f"dequantisation (shift {b} makes its scale subnormal)")
    return b


def dequantize(acc, c, e, b, run):
    """FP16 of ``acc * c * 2**e``: ``ldexp(from_int32(acc, ldexp(c, -b)), e + b)``.

    ``acc`` INT32 sums, ``c`` the FP16 product of the operands' scale mantissas,
    ``e`` the sum of their exponents, ``b`` the static :func:`guard_shift`.
    """
    f = run.f
    acc = np.asarray(acc, dtype=np.int64)
    cc = f.ldexp(c, np.full(np.shape(c), -b, dtype=np.int64)) if b else np.asarray(c)
    return f.ldexp(f.from_int32(acc, cc), np.asarray(e, dtype=np.int64) + b)


def quantize_weight(w):
    """INT8 weights with one FP16 scale per output column (host, offline): ``(q, s, e)``
    with ``w[:, j] ~ q[:, j] * s[j] * 2**e[j]``, the same scale format as :class:`Rows`."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or not np.isfinite(w).all():
        raise ValueError(f"weights must be a finite 2-D matrix, not shape {w.shape}")
    mx = np.abs(w).max(axis=0)
    dead = mx < W_MIN
    fr, ex = np.frexp(np.where(dead, 1.0, mx))
    e = (ex - 1).astype(np.int64)
    s = _ops.from_float(2.0 * fr / QMAX)
    step = _ops.to_float(s) * np.ldexp(1.0, e)
    q = np.clip(np.rint(w / step), -QMAX, QMAX).astype(np.int64)
    q[:, dead] = 0
    return q, s, np.where(dead, 0, e)


def _exact_matmul(a, b):
    """``a @ b`` of INT8 stacks in floating point, exact: every partial sum is an integer
    below 128 * 128 * q, held exactly by float32 (< 2**24) or float64 (< 2**53)."""
    q = a.shape[-1]
    if 128 * 128 * q >= 1 << 53:
        raise ValueError(f"reduction of {q} INT8 products too long for an exact product")
    dt = np.float32 if 128 * 128 * q < 1 << 24 else np.float64
    try:
        import torch
    except ImportError:         # pragma: no cover
        return np.matmul(a.astype(dt), b.astype(dt)).astype(np.int64)
    r = torch.matmul(torch.from_numpy(np.ascontiguousarray(a, dtype=dt)),
                     torch.from_numpy(np.ascontiguousarray(b, dtype=dt)))
    return r.numpy().astype(np.int64)


def int8_matmul(a, b, formats):
    """INT32 products of INT8 stacks ``a`` (..., p, q) and ``b`` (..., q, r) on the
    digital PIM (``formats.attention_engine``)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    if formats.attention_engine == "integer":
        return _exact_matmul(a, b)
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, lead + a.shape[-2:])
    b = np.broadcast_to(b, lead + b.shape[-2:])
    out = np.empty(lead + (a.shape[-2], b.shape[-1]), dtype=np.int64)
    for idx in np.ndindex(*lead):
        out[idx] = digital_pim.matmul(a[idx], b[idx])
    return out


# ================================================================== analog linears

def _mode_args(spec, n):
    """program_matrix arguments of a mode spec: ``"slc"``/``"mlc"``, ``("cols", modes)``,
    ``("rows", modes)``; ``("mask", bool m x n)`` gives two programmings."""
    if isinstance(spec, str):
        return [dict(mode=spec, mask=None)]
    kind, val = spec
    if kind == "cols":
        return [dict(mode=list(val), mask=None)]
    if kind == "rows":
        return [dict(mode="mlc", row_modes=list(val), mask=None)]
    if kind == "mask":
        mask = np.asarray(val, dtype=bool)
        return [dict(mode=md, mask=mk) for md, mk in (("slc", mask), ("mlc", ~mask))
                if mk.any()]
    raise ValueError(f"mode spec must be 'slc', 'mlc', ('cols', ...), ('rows', ...) or "
                     f"('mask', ...), not {spec!r}")


class AnalogMatrix:
    """One stored matrix (``w``: m x n, ``y = x @ w``) programmed on analog arrays.

    ``modes``: see :func:`_mode_args`; ``index``: its number in the model (the noise
    seed). ``q, s, e`` from :func:`quantize_weight`; ``programs`` the
    :class:`~.array.ProgrammedMatrix` list (two for a per-weight SLC mask, whose INT32
    outputs are added).

    Ideal arrays (no noise): a conversion can only differ from the exact bitline sum
    when it saturates the ADC. For every array, ``K`` is the largest number of active
    wordlines that no column can saturate with (the column's ``K`` largest cell levels
    sum to at most the top code); a vector whose every bit-plane drives at most ``K``
    rows of every array it meets gets ``x @ q`` (the golden model's own result for it,
    ``tests/test_transformer.py`` checks), the other vectors go through
    :meth:`~.array.ProgrammedMatrix.run`.
    """

    def __init__(self, w, modes, formats, noise=Noise(), index=0):
        self.w = np.asarray(w, dtype=np.float64)
        self.q, self.s, self.e = quantize_weight(self.w)
        self.m, self.n = self.w.shape
        self.engine = formats.analog_engine
        self.programs, self._qs, self._screens, self._fast = [], [], [], []
        for j, a in enumerate(_mode_args(modes, self.n)):
            q = self.q if a["mask"] is None else np.where(a["mask"], self.q, 0)
            kw = noise.kwargs(index)
            if j:
                kw["seed"] += 1_000_003 // 2
            self._qs.append(q)
            if self.engine == "fast":
                self._fast.append(self._fast_weights(q, a, kw, formats))
                continue
            p = program_matrix(q, a["mode"], row_modes=a.get("row_modes"),
                               saturation="allow", **kw, **formats.array_kwargs())
            self.programs.append(p)
            ideal = p.device is None and not p.read_noise and p.sigma == 0
            self._screens.append(_screen(p, q) if ideal else None)
        self.vectors = 0
        self.exact_vectors = 0
        self.b = guard_shift(self.m, 4.0 / QMAX ** 2 * 1.001, 1.0 / QMAX ** 2 * 0.999)

    @staticmethod
    def _fast_weights(q, a, kw, formats):
        from .array import resolve_device
        from .noise import effective_weights
        dev, _, _ = resolve_device(kw["device"], kw["ber"], None, None, kw["read_noise"])
        if a.get("row_modes") is not None:
            mk = dict(row_modes=a["row_modes"])
        else:
            mk = dict(col_modes=[a["mode"]] * q.shape[1] if isinstance(a["mode"], str)
                      else a["mode"])
        rng = np.random.default_rng(kw["seed"])
        return effective_weights(q, dev, rng, cols=formats.cols, offset=kw["offset"], **mk)

    def run(self, xq):
        """INT32 outputs (int64 array) of the arrays for INT8 inputs ``xq`` (N, m)."""
        xq = np.asarray(xq, dtype=np.int64)
        acc = np.zeros((xq.shape[0], self.n), dtype=np.int64)
        if self.engine == "fast":
            xf = xq.astype(np.float64)
            for wf in self._fast:
                acc += np.rint(xf @ wf).astype(np.int64)
            return acc
        for p, q, scr in zip(self.programs, self._qs, self._screens):
            if scr is None:
                acc += p.run(xq, first_vector=self.vectors, wide=True)
                continue
            safe = _safe(xq, scr)
            self.exact_vectors += int(safe.sum())
            acc[safe] += _exact_matmul(xq[safe], q)
            if not safe.all():
                acc[~safe] += p.run(xq[~safe], wide=True)
        self.vectors += xq.shape[0]
        return acc


def _screen(prog, q):
    """``[(rows_idx, K), ...]`` of an ideal programming (see :class:`AnalogMatrix`)."""
    from . import encoding as enc
    out = {}
    for t in prog.tiles:
        if len(t.out_idx) == 0 or len(t.rows_idx) == 0:
            continue
        lv = enc.encode_weights(q[np.ix_(t.rows_idx, t.out_idx)], t.mode).astype(np.int64)
        top = np.cumsum(-np.sort(-lv, axis=0), axis=0)          # sum of the k largest
        k = int((top <= prog.params.max_code(t.mode)).sum(axis=0).min())
        key = (int(t.rows_idx[0]), len(t.rows_idx), t.rows_idx.tobytes())
        out[key] = (t.rows_idx, min(k, out.get(key, (None, k))[1]))
    return list(out.values())


def _safe(xq, screen):
    """Vectors of ``xq`` that no ADC of the screened programming can saturate."""
    u = (xq & 0xFF).astype(np.uint8)
    safe = np.ones(xq.shape[0], dtype=bool)
    for rows, k in screen:
        if k >= len(rows):
            continue
        sub = u[:, rows]
        most = np.zeros(xq.shape[0], dtype=np.int64)
        for b in range(8):
            np.maximum(most, ((sub >> b) & 1).sum(axis=1, dtype=np.int64), out=most)
        safe &= most <= k
    return safe


class AnalogLinear:
    """A static linear on the chip: its stored matrices (W, or the factors A then B)
    and a bias added in FP16 on the SFU."""

    def __init__(self, name, matrices, bias=None):
        self.name, self.matrices = name, list(matrices)
        self.m, self.n = self.matrices[0].m, self.matrices[-1].n
        self.bias = None if bias is None else np.asarray(bias, dtype=np.float64)
        self.bias16 = None if bias is None else _ops.from_float(self.bias)

    def float_weight(self):
        w = self.matrices[0].w
        for mat in self.matrices[1:]:
            w = w @ mat.w
        return w

    def __call__(self, x, run, valid=None):
        """Outputs (float64, FP16 values on the chip path) for the input ``x``: float
        (..., m) or :class:`Rows`. ``valid`` (bool, ``x.shape[:-1]``): only those rows
        go through the arrays (the others give the bias)."""
        f = run.f
        if not run.formats.chip("linear"):
            xv = _ops.to_float(x.value(f)) if isinstance(x, Rows) else np.asarray(x, float)
            y = xv
            for mat in self.matrices:
                y = y @ mat.w
            return y if self.bias is None else y + self.bias
        rows = x if isinstance(x, Rows) else quantize(_ops.from_float(x), run)
        lead = rows.q.shape[:-1]
        flat = Rows(rows.q.reshape(-1, self.m), rows.s.reshape(-1), rows.e.reshape(-1))
        keep = None if valid is None else np.flatnonzero(np.asarray(valid).reshape(-1))
        if keep is not None:
            flat = flat.take(keep, 0)
        run.stats["gemv_rows"] += flat.q.shape[0]
        for i, mat in enumerate(self.matrices):
            acc = mat.run(flat.q)
            if run.trace is not None:
                run.trace.append(dict(name=self.name, factor=i, xq=flat.q, acc=acc,
                                      q=mat.q, programs=mat.programs, matrix=mat))
            c = f.mul(flat.s[:, None], mat.s[None, :])
            y16 = dequantize(acc, c, flat.e[:, None] + mat.e[None, :], mat.b, run)
            if i + 1 < len(self.matrices):
                flat = quantize(y16, run)
        if self.bias16 is not None:
            y16 = f.add(y16, self.bias16)
        y = np.zeros((int(np.prod(lead)), self.n), dtype=np.uint16)
        if keep is None:
            y = y16
        else:
            y[:] = self.bias16 if self.bias16 is not None else 0
            y[keep] = y16
        return _ops.to_float(y).reshape(lead + (self.n,))


# ================================================================== one layer

@dataclass(frozen=True)
class LayerConfig:
    """``dim`` hidden size, ``heads``, ``ffn`` FFN width, ``post_ln`` (BERT order: add then
    norm) or pre-LN, ``causal`` (decoder), ``eps`` layer norm epsilon, ``max_seq`` the
    longest sequence (KV-cache capacity; fixes the P V dequantisation shift)."""
    dim: int
    heads: int
    ffn: int
    post_ln: bool = True
    causal: bool = False
    eps: float = 1e-5
    max_seq: int = 512

    def __post_init__(self):
        check_int("dim", self.dim, 1, 1 << 16)
        check_int("heads", self.heads, 1, self.dim)
        if self.dim % self.heads:
            raise ValueError(f"dim must be a multiple of heads, not {self.dim} with "
                             f"{self.heads} heads")
        check_int("ffn", self.ffn, 1, 1 << 18)
        check_bool("post_ln", self.post_ln)
        check_bool("causal", self.causal)
        check_float("eps", self.eps, 0.0, 1.0, lo_open=True)
        check_int("max_seq", self.max_seq, 1, 1 << 16)

    @property
    def head_dim(self):
        return self.dim // self.heads


class KVCache:
    """The K and V of one layer's past tokens, as the digital PIM holds them (INT8 rows
    with their scales; float arrays where attention runs in float). ``batch`` sequences
    of up to ``capacity`` tokens."""

    def __init__(self, capacity):
        self.capacity = check_int("capacity", capacity, 1, 1 << 16)
        self.k = self.v = None
        self.length = 0

    def append(self, k, v):
        n = (k.q if isinstance(k, Rows) else k).shape[2]
        if self.length + n > self.capacity:
            raise ValueError(f"KV cache holds at most {self.capacity} tokens: "
                             f"{self.length} + {n} do not fit")
        if self.k is None:
            self.k, self.v = k, v
        elif isinstance(k, Rows):
            self.k, self.v = Rows.concat([self.k, k], 2), Rows.concat([self.v, v], 2)
        else:
            self.k, self.v = np.concatenate([self.k, k], 2), np.concatenate([self.v, v], 2)
        self.length += n


def _gelu_float(x):
    from scipy.special import erf
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _softmax_float(s, visible):
    s = np.where(visible, s, -np.inf)
    m = np.max(s, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.where(visible, np.exp(s - m), 0.0)
    tot = e.sum(-1, keepdims=True)
    return e / np.where(tot > 0, tot, 1.0)


class ChipLayer:
    """One transformer layer (encoder, or decoder with ``causal`` and a :class:`KVCache`).

    ``linears``: ``{"q", "k", "v", "proj", "fc1", "fc2"}`` -> :class:`AnalogLinear`;
    ``ln1``, ``ln2``: ``(gamma, beta)`` float arrays. Call :meth:`forward`.
    """

    NAMES = ("q", "k", "v", "proj", "fc1", "fc2")

    def __init__(self, config, linears, ln1, ln2):
        self.config = config
        missing = [n for n in self.NAMES if n not in linears]
        if missing:
            raise ValueError(f"linears lack {', '.join(missing)}")
        d, h = config.dim, config.ffn
        want = dict(q=(d, d), k=(d, d), v=(d, d), proj=(d, d), fc1=(d, h), fc2=(h, d))
        for n, shp in want.items():
            if (linears[n].m, linears[n].n) != shp:
                raise ValueError(f"linear {n} must be {shp[0]} x {shp[1]}, not "
                                 f"{linears[n].m} x {linears[n].n}")
        self.linears = dict(linears)
        self.ln = []
        for g, b in (ln1, ln2):
            g, b = np.asarray(g, np.float64), np.asarray(b, np.float64)
            if g.shape != (d,) or b.shape != (d,):
                raise ValueError(f"layer norm parameters must have shape ({d},)")
            self.ln.append((g, b, _ops.from_float(g), _ops.from_float(b)))
        eps16 = _ops.from_float(config.eps)
        #: FP16 eps of the SFU layer norm: fp16(eps), at least the smallest subnormal.
        self.eps16 = np.uint16(max(int(eps16), EPS_MIN))
        dh = config.head_dim
        r = _ops.from_float(1.0 / math.sqrt(dh))
        self._r_e = int(t16.exponent(r))
        self._r_m = t16.FAST.ldexp(r, -self._r_e)
        self._b_scores = guard_shift(dh, 8.0 / QMAX ** 2 * 1.001, 1.0 / QMAX ** 2 * 0.999)
        self._b_pv = guard_shift(config.max_seq, 2.0 / QMAX * 1.001, 1.0 / QMAX * 0.999)

    # ---- SFU operations, each in FP16 or in float64 -----------------------------------
    def _add(self, a, b, run):
        if not run.formats.chip("residual"):
            return a + b
        f = run.f
        return _ops.to_float(f.add(_ops.from_float(a), _ops.from_float(b)))

    def _norm(self, x, i, run):
        g, b, g16, b16 = self.ln[i]
        fm = run.formats
        if not fm.chip("layernorm"):
            mu = x.mean(-1, keepdims=True)
            var = ((x - mu) ** 2).mean(-1, keepdims=True)
            return (x - mu) / np.sqrt(var + self.config.eps) * g + b
        y = run.f.layernorm(_ops.from_float(x), g16, b16, self.eps16, lanes=fm.lanes,
                            slots=fm.slots)
        return _ops.to_float(y)

    def _gelu(self, x, run):
        if not run.formats.chip("gelu"):
            return _gelu_float(x)
        return _ops.to_float(run.f.gelu(_ops.from_float(x), degree=run.formats.exp_degree))

    def _softmax16(self, s16, run):
        fm = run.formats
        n = s16.shape[-1]
        pad = -(-n // fm.row_pad) * fm.row_pad - n
        if pad:
            s16 = np.concatenate([s16, np.full(s16.shape[:-1] + (pad,), _ops.NEG_INF,
                                               np.uint16)], -1)
        p = run.f.softmax(s16, lanes=fm.lanes, slots=fm.slots, degree=fm.exp_degree)
        return p[..., :n]

    # ---- attention --------------------------------------------------------------------
    def _heads(self, x):
        B, T, _ = x.shape
        return x.reshape(B, T, self.config.heads, -1).transpose(0, 2, 1, 3)

    def _attention(self, q, k, v, visible, run, cache):
        """q, k, v: (B, T, D) float; visible (B, 1, T, Tk) bool. Returns (B, T, D)."""
        fm, f = run.formats, run.f
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        if not fm.chip("attention"):
            if cache is not None:
                cache.append(k, v)
                k, v = cache.k, cache.v
            s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(self.config.head_dim)
            if fm.chip("softmax"):
                s16 = np.where(visible, _ops.from_float(s), np.uint16(_ops.NEG_INF))
                p = _ops.to_float(self._softmax16(s16, run))
            else:
                p = _softmax_float(s, visible)
            o = p @ v
        else:
            qr = quantize(_ops.from_float(q), run)
            kr = quantize(_ops.from_float(k), run)
            vr = quantize(_ops.from_float(v), run)
            if cache is not None:
                cache.append(kr, vr)
                kr, vr = cache.k, cache.v
            s_int = int8_matmul(qr.q, np.swapaxes(kr.q, -1, -2), fm)
            c = f.mul(f.mul(qr.s, self._r_m)[..., None], kr.s[..., None, :])
            e = qr.e[..., None] + kr.e[..., None, :] + self._r_e
            s16 = dequantize(s_int, c, e, self._b_scores, run)
            s16 = np.where(visible, s16, np.uint16(_ops.NEG_INF))
            if fm.chip("softmax"):
                p16 = self._softmax16(s16, run)
            else:
                p16 = _ops.from_float(_softmax_float(_ops.to_float(s16), visible))
            vis = np.broadcast_to(visible, s16.shape)
            ev = np.broadcast_to(vr.e[..., None, :], s16.shape)
            big = np.where(vis, ev, np.iinfo(np.int64).min).max(-1)
            big = np.where(vis.any(-1), big, 0)                           # (B, H, T)
            shift = np.maximum(ev - big[..., None], -t16.LDEXP_MAX)
            sv = f.ldexp(np.broadcast_to(vr.s[..., None, :], shift.shape), shift)
            pr = quantize(f.mul(p16, sv), run)
            o_int = int8_matmul(pr.q, vr.q, fm)
            o16 = dequantize(o_int, pr.s[..., None], (pr.e + big)[..., None], self._b_pv, run)
            o = _ops.to_float(o16)
        B, H, T, dh = o.shape
        return o.transpose(0, 2, 1, 3).reshape(B, T, H * dh)

    # ---- the layer --------------------------------------------------------------------
    def forward(self, x, run, key_mask=None, cache=None):
        """One layer on ``x``: :class:`Rows` (INT8 hidden state from the previous PU) or
        float (B, T, D) (``transport`` in float). ``key_mask`` (B, Tk) bool: real
        tokens (padding keys are masked). ``cache``: a :class:`KVCache` the new
        tokens' K and V are appended to (decoder steps: the queries are the last
        ``T`` positions). Returns the output in the same kind as ``x`` goes to the
        next layer: INT8 rows, or float with ``transport`` in float."""
        cfg, fm, f = self.config, run.formats, run.f
        is_rows = isinstance(x, Rows)
        xq = x.q if is_rows else np.asarray(x)
        if xq.ndim != 3 or xq.shape[-1] != cfg.dim:
            raise ValueError(f"x must have shape (batch, tokens, {cfg.dim}), not {xq.shape}")
        B, T, _ = xq.shape
        past = 0 if cache is None else cache.length
        Tk = past + T
        if cache is not None and Tk > cache.capacity:
            raise ValueError(f"KV cache holds at most {cache.capacity} tokens: "
                             f"{past} + {T} do not fit")
        if key_mask is None:
            key_mask = np.ones((B, Tk), dtype=bool)
        key_mask = np.asarray(key_mask, dtype=bool)
        if key_mask.shape != (B, Tk):
            raise ValueError(f"key_mask must have shape {(B, Tk)}, not {key_mask.shape}")
        visible = np.broadcast_to(key_mask[:, None, None, :], (B, 1, T, Tk))
        if cfg.causal:
            qpos = past + np.arange(T)
            visible = visible & (np.arange(Tk)[None, :] <= qpos[:, None])[None, None]
        valid = key_mask[:, past:]
        res = _ops.to_float(x.value(f)) if is_rows else xq.astype(np.float64)
        if cfg.post_ln:
            a = x if is_rows else res
        else:
            a = self._norm(res, 0, run)
        if fm.chip("linear") and not isinstance(a, Rows):
            a = quantize(_ops.from_float(a), run)
        L = self.linears
        q, k, v = (L[n](a, run, valid) for n in ("q", "k", "v"))
        o = self._attention(q, k, v, visible, run, cache)
        z = self._add(res, L["proj"](o, run, valid), run)
        if cfg.post_ln:
            z = self._norm(z, 0, run)
            hin = z
        else:
            hin = self._norm(z, 1, run)
        h = self._gelu(L["fc1"](hin, run, valid), run)
        out = self._add(z, L["fc2"](h, run, valid), run)
        if cfg.post_ln:
            out = self._norm(out, 1, run)
        if fm.chip("transport"):
            return quantize(_ops.from_float(out), run)
        return out
