"""The kept rank of the SVD factorisation (no PyTorch needed).

``r = floor(m n / (m + n))`` keeps ``r (m + n) <= m n``: the two factors A (m x r) and
B (r x n) have no more parameters, and no more multiply-accumulates per input vector,
than the m x n matrix they replace. Used by :mod:`hyflexpim.models.svd` and by the
architecture mapper.
"""

import numpy as np

__all__ = ["svd_rank"]


def svd_rank(m, n):
    """Kept rank ``floor(m n / (m + n))`` of an m x n matrix (both positive integers)."""
    for name, v in (("m", m), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, not {v!r}")
    return (int(m) * int(n)) // (int(m) + int(n))
