"""NumPy golden models, the RRAM crossbar model and the model-side algorithm.

Stable public API:

* :func:`program_matrix` (from :mod:`.array`): program an INT8 matrix on analog arrays,
  ``.run(x)`` gives the hardware's INT32 outputs.
* :func:`load_device` (from :mod:`.device`): an RRAM device (per-level means and sigmas
  for SLC and MLC), by name, from a JSON table, or the default (NeuRRAM one-day fit).
* :mod:`.crossbar`: device constants, ``sigma_from_ber`` / ``ber_from_sigma``, ``Crossbar``.
* :mod:`.encoding`: the number encoding shared with the RTL.
"""

from .array import (ArrayParams, ProgrammedMatrix, program_matrix, saturation_possible,
                    SaturationWarning)
from .crossbar import ber_from_sigma, sigma_from_ber, DEFAULT_MLC_BER
from . import digital_pim  # the digital PIM module model: matmul, cycles, attention products
from .device import Device, DEVICE_NAMES, load_device

__all__ = ["ArrayParams", "ProgrammedMatrix", "program_matrix", "saturation_possible",
           "SaturationWarning", "ber_from_sigma", "sigma_from_ber", "DEFAULT_MLC_BER",
           "Device", "DEVICE_NAMES", "load_device"]
