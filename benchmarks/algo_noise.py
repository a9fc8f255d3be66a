"""Per-layer output error of one INT8 GEMV under each noise mode, SLC vs MLC.

    .venv/bin/python benchmarks/algo_noise.py [--m 256] [--n 256] [--batch 64] [--seeds 3]

Random Gaussian weights (per-channel INT8) and Gaussian inputs (per-vector INT8); the
relative error ||y_noisy - y_int8|| / ||y_int8|| for: hardware-faithful (golden array
model with ADC), fast (emulated noisy weights, no ADC), paper (2-bit groups, std 0.025),
each with all ranks in SLC or all in MLC. Explains why the SLC rate matters little
in the hardware modes of this device model (docs/algorithm.md).
"""

import argparse
import time

import numpy as np

from hyflexpim.models import sigma_from_ber, program_matrix
from hyflexpim.models.noise import effective_weights, paper_group_noise


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=256)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ber", type=float, default=0.0404)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    w = rng.standard_normal((a.m, a.n))
    q = np.clip(np.rint(w / np.abs(w).max(0) * 127), -127, 127).astype(np.int64)
    x = rng.standard_normal((a.batch, a.m))
    xq = np.clip(np.rint(x / np.abs(x).max(1, keepdims=True) * 127), -127, 127).astype(np.int64)
    y = xq @ q
    sigma = sigma_from_ber(a.ber)
    print(f"layer {a.m}x{a.n}, batch {a.batch}, BER {a.ber} -> sigma {sigma:.4f}; "
          f"relative output error, mean over {a.seeds} programmings")

    def rel(yn):
        return np.linalg.norm(yn - y) / np.linalg.norm(y)

    for mode in ("slc", "mlc"):
        t = time.time()
        e_f = [rel(program_matrix(q, mode, sigma=sigma, seed=s).run(xq)) for s in range(a.seeds)]
        t_f = time.time() - t
        e_0 = rel(program_matrix(q, mode).run(xq))
        e_q = [rel(xq @ effective_weights(q, sigma, np.random.default_rng(s),
                                          col_modes=[mode] * a.n)) for s in range(a.seeds)]
        e_p = [rel(xq @ paper_group_noise(q, mode == "mlc", 0.025, np.random.default_rng(s)))
               for s in range(a.seeds)]
        print(f"  {mode.upper()}: faithful {np.mean(e_f):.4f} (noise off: {e_0:.4f}, "
              f"{t_f / a.seeds:.2f} s per programming+run)  fast {np.mean(e_q):.4f}  "
              f"paper {np.mean(e_p):.4f}")


if __name__ == "__main__":
    main()
