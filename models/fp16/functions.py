"""FP16 exponential and vector functions of the SFU, bit-exact golden model of ``rtl/sfu.py``.

Every value is a ``uint16`` binary16 bit pattern. Each function is written as the exact
sequence of :mod:`.ops` operations (each correctly rounded, RNE) that the RTL performs,
plus a few bit-level selections (multiplexers) named in the docstrings. Nothing here
calls ``np.exp``, ``np.tanh`` or float arithmetic on the data.

Exponential (:func:`exp`), per element:

1. clamp: ``xc = min(max(x, -18), 12)`` (exp(-18) < 2**-25 rounds to +0, exp(12) >
   65504 overflows, so the clamp changes no result and keeps every later step in range);
2. ``y = xc * (1/ln2)``; ``s = y + 1536``; ``kf = s - 1536``: ``kf`` is ``y`` rounded to
   an integer (ties to even) because the unit in the last place of 1536 is 1; the
   integer ``k = (s & 0x3FF) - 512`` is read from the fraction bits of ``s``;
3. Cody-Waite reduction with a split ln2: ``t = xc - kf * LN2_HI`` (exact: ``LN2_HI =
   0.6875`` has 4 significant bits and ``|kf| <= 26``), ``f = t - kf * LN2_LO``;
4. Horner's rule for the Taylor polynomial of degree ``degree``:
   ``q = c_d; q = c_i + f * q`` for ``i = d-1 .. 0`` with ``c_i = fp16(1/i!)``;
5. scaling by ``2**k``: ``kc = clip(k, -24, 15)``, ``j = k - kc`` (in -2..2);
   ``r = (q * 2**j) * 2**kc``; the first product is exact, the second is the only
   rounding of the scaling (it makes subnormal results and overflows to +Inf);
6. a NaN input gives 0x7E00 (the clamp would otherwise turn it into a number).

At the default degree 4 the result is within 1 ULP of the correctly rounded exp for all
65,536 inputs (checked against MPFR in ``tests/test_fp16_functions.py``).

Vector functions work on the last axis (a row of ``N`` elements) and use one reduction
order, :func:`reduce_row`, identical to the RTL's: the row arrives as ``N / lanes`` beats of
``lanes`` elements; each beat is reduced by a pairwise tree over the lanes (lane pairs
(0,1), (2,3), ... then pairs of those); the beat results are folded into ``slots``
round-robin partials through a queue, and the partials are finally folded pairwise
through the same queue (see :func:`reduce_row`).
"""

from collections import deque
from math import factorial

import numpy as np

from . import ops

__all__ = ["exp", "softmax", "layernorm", "mean_scales", "gelu", "reduce_row",
           "EXP_DEGREE", "GELU_A", "GELU_B", "EPS_MIN", "EPS_MAX", "check_row_params",
           "check_eps"]

EXP_DEGREE = 4
_U16 = np.uint16


def _h(v):
    """binary16 bit pattern of the Python float ``v`` (rounded to nearest even)."""
    return int(np.array(v, dtype=np.float16).view(_U16))


X_MIN = _h(-18.0)
X_MAX = _h(12.0)
INV_LN2 = _h(1.0 / np.log(2.0))
ROUNDER = _h(1536.0)
LN2_HI = _h(0.6875)
LN2_LO = _h(np.log(2.0) - 0.6875)
ONE = _h(1.0)
POS_ZERO = 0x0000
NEG_ZERO = 0x8000

# GELU as x * sigmoid(-w), w = x * (A + B * x**2): the tanh form 0.5 x (1 + tanh(z)) is
# x * sigmoid(2z), z = sqrt(2/pi) (x + 0.044715 x**3). A and B are refitted (minimax
# over |x| <= 8 against the erf GELU, then rounded to binary16): max approximation
# error 3.0e-4 instead of the textbook constants' 4.7e-4.
GELU_A = _h(-1.601)
GELU_B = _h(-0.0694)


def taylor_coefficients(degree):
    """binary16 patterns of ``1/i!`` for ``i = 0 .. degree``."""
    return [_h(1.0 / factorial(i)) for i in range(degree + 1)]


def pow2(n):
    """binary16 pattern of ``2**n`` for integer arrays ``n`` in -24..15 (subnormal below -14)."""
    n = np.asarray(n, np.int64)
    return np.where(n >= -14, (n + 15) << 10, 1 << np.clip(n + 24, 0, 9)).astype(_U16)


def check_degree(degree):
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) \
            or not 1 <= degree <= 8:
        raise ValueError(f"degree must be an integer in 1..8, not {degree!r}")


def exp(a, *, degree=EXP_DEGREE):
    """``e**a`` element-wise over binary16 bit patterns (see the module doc for the steps)."""
    check_degree(degree)
    x = ops._bits(a, "a")
    xc = ops.min(ops.max(x, X_MIN), X_MAX)
    y = ops.mul(xc, INV_LN2)
    s = ops.add(y, ROUNDER)
    kf = ops.sub(s, ROUNDER)
    k = (s.astype(np.int64) & 0x3FF) - 512
    t = ops.sub(xc, ops.mul(kf, LN2_HI))
    f = ops.sub(t, ops.mul(kf, LN2_LO))
    c = taylor_coefficients(degree)
    q = np.full(x.shape, c[degree], _U16)
    for i in range(degree - 1, -1, -1):
        q = ops.add(c[i], ops.mul(f, q))
    kc = np.clip(k, -24, 15)
    r = ops.mul(ops.mul(q, pow2(k - kc)), pow2(kc))
    return np.where(ops.is_nan(x), _U16(ops.CANONICAL_NAN), r).astype(_U16)


# ----------------------------------------------------------------------------- rows

def _is_pos_int(v):
    return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v > 0


def check_row_params(n, lanes, slots):
    """ValueError unless ``lanes`` is a power of two, ``n`` a positive multiple of it,
    and ``slots`` a positive integer."""
    if not _is_pos_int(lanes) or lanes & (lanes - 1):
        raise ValueError(f"lanes must be a power of two, not {lanes!r}")
    if not _is_pos_int(n) or n % lanes:
        raise ValueError(f"row length must be a positive multiple of lanes ({lanes}), not {n!r}")
    if not _is_pos_int(slots):
        raise ValueError(f"slots must be a positive integer, not {slots!r}")


#: Layer norm ``eps``: the positive finite binary16 patterns, 0x0001 (2**-24, the
#: smallest subnormal) .. 0x7BFF (65504). Zero is refused too: a constant row has
#: ``var = 0`` and would give ``0 / sqrt(0)`` = NaN in every element.
EPS_MIN, EPS_MAX = 0x0001, 0x7BFF


def check_eps(eps):
    """``eps`` as a ``uint16`` binary16 pattern if it is one positive finite value
    (``EPS_MIN..EPS_MAX``); ValueError (TypeError for a non-integer) otherwise."""
    arr = ops._bits(eps, "eps")
    if arr.shape != ():
        raise ValueError(f"eps must be one binary16 pattern, not an array of shape {arr.shape}")
    v = int(arr)
    if not EPS_MIN <= v <= EPS_MAX:
        what = float(np.array(v, _U16).view(np.float16))
        raise ValueError(f"eps must be a positive finite binary16 pattern in "
                         f"0x{EPS_MIN:04X}..0x{EPS_MAX:04X} (2**-24..65504), "
                         f"not 0x{v:04X} ({what!r})")
    return _U16(v)


def reduce_row(op, x, identity, *, lanes, slots):
    """Reduce the last axis of ``x`` with the binary operator ``op`` in the RTL's order.

    Beat ``b`` holds elements ``b*lanes .. b*lanes+lanes-1``; its lanes are reduced by a
    pairwise tree to ``v_b``. A queue then holds the partials: beat ``b`` pops a partial
    (``identity`` for the first ``slots`` beats) and pushes ``op(partial, v_b)``; at the
    end, while two or more remain, pop ``p`` then ``q`` and push ``op(p, q)``.
    """
    x = ops._bits(x, "x")
    n = x.shape[-1]
    check_row_params(n, lanes, slots)
    beats = x.reshape(x.shape[:-1] + (n // lanes, lanes))
    while beats.shape[-1] > 1:
        beats = op(beats[..., 0::2], beats[..., 1::2])
    v = beats[..., 0]
    queue = deque()
    for b in range(v.shape[-1]):
        part = np.full(v.shape[:-1], identity, _U16) if b < slots else queue.popleft()
        queue.append(op(part, v[..., b]))
    while len(queue) > 1:
        p = queue.popleft()
        queue.append(op(p, queue.popleft()))
    return queue[0]


def _fp16_of_int(n, name="row length"):
    h = _h(float(n))
    if float(np.array(h, _U16).view(np.float16)) != n:
        raise ValueError(f"{name} must be exactly representable in binary16, not {n!r}")
    return h


def softmax(x, *, lanes=4, slots=4, degree=EXP_DEGREE):
    """Softmax over the last axis, divide form: ``y_i = e_i / sum(e)``.

    ``m = max(row)`` (RISC-V fmax: NaN entries are skipped by the max), ``m' = +0`` if
    ``m`` is -Inf else ``m``; ``e_i = exp(x_i - m')``; ``s = sum(e)``; ``y_i = e_i / s``
    (one correctly rounded division per element), and ``y_i = +0`` for every element
    when ``s`` is zero, which happens exactly when every entry is -Inf (a fully masked
    row gives all +0). A NaN entry makes the whole row 0x7E00; so does a +Inf entry
    (its ``x - m`` is Inf - Inf).
    """
    x = ops._bits(x, "x")
    m = reduce_row(ops.max, x, ops.NEG_INF, lanes=lanes, slots=slots)
    m = np.where(m == ops.NEG_INF, _U16(POS_ZERO), m)[..., None]
    e = exp(ops.sub(x, m), degree=degree)
    s = reduce_row(ops.add, e, POS_ZERO, lanes=lanes, slots=slots)[..., None]
    y = ops.div(e, s)
    return np.where((s & 0x7FFF) == 0, _U16(POS_ZERO), y).astype(_U16)


def mean_scales(n):
    """The binary16 patterns ``(2**-k, n * 2**-k)`` of :func:`layernorm`'s mean, ``2**k``
    the power of two at or above ``n`` (both exact for an ``n`` exact in binary16)."""
    k = (int(n) - 1).bit_length()
    return _h(2.0 ** -k), _h(n / 2.0 ** k)


def layernorm(x, gamma, beta, eps=_h(1e-5), *, lanes=4, slots=4):
    """Layer normalisation over the last axis (``N`` elements).

    ``mean = sum(x_i * 2**-k) / (N * 2**-k)`` with ``2**k`` the power of two at or above
    ``N`` (both scalings exact, except that terms below 2**-14 round as subnormals: the
    sum of the scaled terms cannot overflow for any finite row; for rows whose scaled
    terms are normal it is the plain sum scaled, so the mean is that of ``sum(x) / N``
    wherever that sum does not overflow); ``d_i = x_i - mean``; ``u_i = d_i * R`` with
    ``R = fp16(1/sqrt(N))``, ``var = sum(u_i * u_i)`` (the scaling before squaring keeps
    the sum of squares from overflowing when the row's RMS exceeds sqrt(65504/N));
    ``r = sqrt(var + eps)``; ``y_i = (d_i / r) * gamma_i + beta_i``. ``eps`` is a
    binary16 pattern of a positive finite value (default fp16(1e-5); :func:`check_eps`:
    negative, zero, Inf and NaN are refused); ``gamma`` and ``beta`` broadcast against ``x``.
    Sums use :func:`reduce_row`. ``N`` must be exactly representable in binary16.
    """
    x = ops._bits(x, "x")
    n = x.shape[-1]
    check_row_params(n, lanes, slots)
    _fp16_of_int(n)
    s_in, n_s = mean_scales(n)
    rs = _h(1.0 / np.sqrt(n))
    gamma, beta = np.broadcast_arrays(ops._bits(gamma, "gamma"), ops._bits(beta, "beta"), x)[:2]
    eps = check_eps(eps)
    xs = ops.mul(x, s_in)
    mean = ops.div(reduce_row(ops.add, xs, POS_ZERO, lanes=lanes, slots=slots), n_s)[..., None]
    d = ops.sub(x, mean)
    u = ops.mul(d, rs)
    var = reduce_row(ops.add, ops.mul(u, u), POS_ZERO, lanes=lanes, slots=slots)
    r = ops.sqrt(ops.add(var, eps))[..., None]
    return ops.add(ops.mul(ops.div(d, r), gamma), beta)


def gelu(a, *, degree=EXP_DEGREE):
    """GELU element-wise, tanh form written as ``x * sigmoid(-w)`` through :func:`exp`.

    ``w = x * (A + B * (x*x))``, ``e = exp(w)``. For ``x`` with sign bit 0:
    ``y = x - (x*e) / (1 + e)``; with sign bit 1: ``y = x / (1 + e)`` (the two forms keep
    the rounding of ``1 + e`` out of the large results). ``+Inf -> +Inf``,
    ``-Inf -> -0``, NaN -> 0x7E00.
    """
    check_degree(degree)
    x = ops._bits(a, "a")
    w = ops.mul(x, ops.add(GELU_A, ops.mul(GELU_B, ops.mul(x, x))))
    e = exp(w, degree=degree)
    pos = (x & 0x8000) == 0
    q = ops.div(np.where(pos, ops.mul(x, e), x), ops.add(ONE, e))
    y = np.where(pos, ops.sub(x, q), q)
    y = np.where(x == ops.POS_INF, _U16(ops.POS_INF), y)
    return np.where(x == ops.NEG_INF, _U16(NEG_ZERO), y).astype(_U16)
