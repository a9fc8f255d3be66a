"""HyFlexPIM: a hybrid SLC/MLC RRAM processing-in-memory accelerator for transformers.

Subpackages:

* :mod:`hyflexpim.rtl`: Amaranth components (synthesizable hardware).
* :mod:`hyflexpim.models`: NumPy golden models, RRAM crossbar model, model-side algorithm.
* :mod:`hyflexpim.sim`: Verilog generation, simulation runners, synthesis flows,
  architecture model, command-line interface.
* :mod:`hyflexpim.tb`: cocotb testbenches that drive the generated Verilog.
"""

__version__ = "0.1.0"
