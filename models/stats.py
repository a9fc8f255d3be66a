"""Small statistics shared by the accuracy reports."""

import math

__all__ = ["wilson"]


def wilson(k, n, z=1.96):
    """Wilson score interval ``(low, high)`` of ``k`` successes in ``n`` trials (95% for
    the default ``z``); ``(0.0, 1.0)`` when ``n`` is 0."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)
