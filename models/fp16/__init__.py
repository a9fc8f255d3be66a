"""IEEE 754 binary16 golden model of the SFU, over uint16 bit-pattern arrays.

Element-wise operators live in :mod:`.ops`, the exponential and the vector functions
in :mod:`.functions`; this package re-exports the stable public names.
"""

from .ops import (NX, UF, OF, DZ, NV, CANONICAL_NAN, POS_INF, NEG_INF,
                  add, sub, mul, div, sqrt, max, min, lt, le, eq,
                  from_int32, to_int8, round_pack, is_nan, is_snan, from_float, to_float)
from .functions import exp, softmax, layernorm, gelu
