"""models.stats.wilson against published values of the Wilson score interval."""

import pytest

from hyflexpim.models.stats import wilson


def test_wilson_known_values():
    # 0 of 10: upper bound z^2 / (n + z^2) = 3.8416 / 13.8416
    assert wilson(0, 10) == pytest.approx((0.0, 0.277540), abs=1e-6)
    # 5 of 10: symmetric about 1/2, half-width 0.2366 (textbook table)
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)
