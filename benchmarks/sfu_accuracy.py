"""Accuracy of the SFU functions (golden model = RTL, bit for bit) against float64.

    .venv/bin/python benchmarks/sfu_accuracy.py [--seed S] [--n N] [--rows R]

Prints max / mean absolute error (and max relative error where it means something) of
exp, GELU, softmax and layer norm on realistic transformer activations and on
adversarial rows. Inputs are first rounded to binary16; the float64 reference is
computed from those binary16 inputs, so the table measures only the SFU's own error.
"""

import argparse
import math

import numpy as np

from hyflexpim.models import fp16
from hyflexpim.models.fp16 import functions as F


def softmax64(x):
    x = np.where(np.isneginf(x), -np.inf, x)
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isneginf(m), 0, m)
    e = np.exp(x - m)
    s = e.sum(axis=-1, keepdims=True)
    return np.where(s == 0, 0, e / np.where(s == 0, 1, s))


def layernorm64(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + eps) * g + b


def gelu64(x):
    return np.vectorize(lambda v: v * 0.5 * (1 + math.erf(v / math.sqrt(2))))(x)


def heavy(rng, shape, outlier=60.0, frac=0.01):
    x = rng.standard_normal(shape)
    mask = rng.random(shape) < frac
    return np.where(mask, rng.choice([-1, 1], shape) * outlier * rng.uniform(0.5, 1.5, shape), x)


def stats(got, want):
    ok = np.isfinite(want)
    err = np.abs(got[ok] - want[ok])
    return err.max(), err.mean()


def main(argv=None):
    np.seterr(over="ignore")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=128, help="row length (multiple of 4)")
    ap.add_argument("--rows", type=int, default=64)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    print(f"seed {a.seed}, rows of {a.n}, {a.rows} rows per case (lanes=4, slots=4)")
    n, R = a.n, a.rows
    rows = []

    def add(func, case, xb, want, got):
        mx, mean = stats(fp16.to_float(got), want)
        rows.append((func, case, mx, mean))

    # exp: all finite inputs, relative error
    allx = np.arange(1 << 16, dtype=np.uint16)
    xf = fp16.to_float(allx)
    fin = np.isfinite(xf) & (xf < 11.09) & (np.exp(xf) >= 2.0 ** -14)
    want = np.exp(xf[fin])
    got = fp16.to_float(F.exp(allx))[fin]
    rel = np.abs(got - want) / want
    rows.append(("exp", "all inputs, normal results (rel.)", rel.max(), rel.mean()))
    sub = np.isfinite(xf) & (np.exp(xf) < 2.0 ** -14)
    add("exp", "all inputs, subnormal/zero (abs.)", allx[sub], np.exp(xf[sub]), F.exp(allx[sub]))

    # GELU
    fin = np.isfinite(xf) & (np.abs(xf) <= 8)
    add("gelu", "all fp16 |x|<=8", allx[fin], gelu64(xf[fin]), F.gelu(allx[fin]))
    for case, x in [("gaussian sd 1", rng.standard_normal(20000)),
                    ("heavy tail, 1% outliers", heavy(rng, 20000, 8.0))]:
        xb = fp16.from_float(x)
        add("gelu", case, xb, gelu64(fp16.to_float(xb)), F.gelu(xb))

    # softmax: attention scores
    def sm(case, x):
        xb = fp16.from_float(x)
        add("softmax", case, xb, softmax64(fp16.to_float(xb)), F.softmax(xb))
    sm("scores sd 1", rng.standard_normal((R, n)))
    sm("scores sd 4", rng.standard_normal((R, n)) * 4)
    x = rng.standard_normal((R, n)) * 3
    causal = np.tril(np.ones((n, n), bool))[np.linspace(0, n - 1, R).astype(int)]
    sm("causal mask (-inf)", np.where(causal, x, -np.inf))
    sm("large range sd 1000", rng.standard_normal((R, n)) * 1000)
    sm("all equal (ties)", np.full((R, n), 3.25))
    x = rng.standard_normal((R, n)); x[:, 0] = 60000
    sm("one huge value", x)
    sm("fully masked rows", np.full((R, n), -np.inf))

    # layer norm
    g = rng.uniform(0.5, 1.5, n)
    b = rng.standard_normal(n) * 0.1

    def ln(case, x):
        xb, gb, bb = fp16.from_float(x), fp16.from_float(g), fp16.from_float(b)
        want = layernorm64(fp16.to_float(xb), fp16.to_float(gb), fp16.to_float(bb))
        add("layernorm", case, xb, want, F.layernorm(xb, gb, bb))
    ln("gaussian sd 1, mean 0.5", rng.standard_normal((R, n)) + 0.5)
    ln("residual stream, 1% outliers 60", heavy(rng, (R, n)))
    ln("large RMS (sd 200)", rng.standard_normal((R, n)) * 200)
    ln("tiny (sd 1e-3)", rng.standard_normal((R, n)) * 1e-3)
    ln("one huge value 3000", np.where(np.arange(n) == 0, 3000.0, rng.standard_normal((R, n))))
    ln(f"large mean {65504 // n + 100} (sum > 65504), sd 50",
       65504 // n + 100 + 50 * rng.standard_normal((R, n)))

    print(f"{'function':10s} {'case':34s} {'max err':>10s} {'mean err':>10s}")
    for func, case, mx, mean in rows:
        print(f"{func:10s} {case:34s} {mx:10.3e} {mean:10.3e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
