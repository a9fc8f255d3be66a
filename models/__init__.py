"""NumPy golden models, the RRAM crossbar model and the model-side algorithm.

Stable public API:

* :func:`program_matrix` (from :mod:`.array`): program an INT8 matrix on analog arrays,
  ``.run(x)`` gives the hardware's INT32 outputs.
* :mod:`.crossbar`: device constants, ``sigma_from_ber`` / ``ber_from_sigma``, ``Crossbar``.
* :mod:`.encoding`: the number encoding shared with the RTL.
"""

from .array import ArrayParams, ProgrammedMatrix, program_matrix, saturation_possible
from .crossbar import ber_from_sigma, sigma_from_ber, DEFAULT_MLC_BER
from . import digital_pim  # the digital PIM module model: matmul, cycles, attention products

__all__ = ["ArrayParams", "ProgrammedMatrix", "program_matrix", "saturation_possible",
           "ber_from_sigma", "sigma_from_ber", "DEFAULT_MLC_BER"]
