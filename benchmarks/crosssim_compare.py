"""The golden model side by side with Sandia CrossSim 3.2, in one process.

    nice -n 10 .venv/bin/python benchmarks/crosssim_compare.py \\
        --crosssim /tmp/crosssim-venv/lib/python3.11/site-packages     # 768 x 768 x 128
    ... --small                                                        # 128 x 128 x 16

CrossSim is not a dependency of this project (it is not on PyPI): install it into a
separate virtual environment (``python3 -m venv /tmp/crosssim-venv``, then ``pip install
numpy scipy`` and ``pip install`` its 3.2.0 source tree) and point ``--crosssim`` at
that environment's site-packages (or set ``$CROSSSIM_SITE``). The directory is appended
to ``sys.path``, so numpy and hyflexpim come from this interpreter; the two
environments should have the same numpy version.

Both simulators compute ``y = x @ W`` for INT8 ``W`` (m x n) and INT8 ``x`` (tokens x
m) on ideal (noise-free) arrays, on the data of ``benchmarks/array_bench.py``:
``saturating`` (non-negative weights, small negative inputs: the top slices' bitlines
exceed the ADC range in most reads) and ``realistic`` (Gaussian weights quantized per
output column, Gaussian activations quantized per token), SLC and MLC. It prints, per
case: max |difference| of the two outputs, the number of differing words, the golden
model's count of clipped conversions, wall and CPU seconds of each run (best of
``--repeat``, programming not included) and the ratio CrossSim / golden model.

CrossSim configuration (the mapping of the golden model's definition, see
docs/golden_model.md):

* ``core.style = BITSLICED``, ``bit_sliced.style = OFFSET``, ``weight_bits = 8``,
  ``num_slices = 8`` (SLC, 1 bit per slice) or 4 (MLC, 2 bits): CrossSim stores
  ``rint(w * 256/254 * 127/128) + 128 = w + 128`` (weight range +-127, no clipping,
  so -128 maps to level 0) cut LSB first, the same offset-binary slices as
  ``encoding.encode_weights``; each slice is its own array with its own ADCs, as our
  adjacent columns are.
* ``offset.style = DIGITAL_OFFSET``: ``128 * sum(x)`` subtracted after the shift-add,
  as the wordline driver's sum does.
* ``rows_max = 64`` (64-row partitions whose partial sums are added digitally),
  ``cols_max`` = 16 (SLC) / 32 (MLC) outputs per partition (the 128 cells of a row of
  our array; the column split does not change any result).
* ``device.infinite_on_off_ratio = True``, ``cell_bits = 0``, no programming, drift
  or read noise, no parasitics: the ideal bitline sum is the sum of the cell levels
  (what our reference column leaves in the S&H when ideal).
* ADC: ``QuantizerADC``, 6 (SLC) / 7 (MLC) bits, unsigned, ``adc_per_ibit = True``
  (one conversion per input bit plane), ``adc_range_option = CALIBRATED`` with every
  slice's range ``[0, 2**bits - 1]`` levels (CrossSim's slice unit is the top level,
  so MLC's range is ``[0, 127/3]``): codes are ``rint`` of the bitline in levels
  clipped to ``[0, 2**bits - 1]``.
* Inputs: CrossSim's bit-serial DACs are unsigned (``QuantizerDAC``) or sign-magnitude
  (``SignMagnitudeDAC``); there is no two's-complement input whose top plane has weight
  -128. ``--inputs twos`` (default) feeds the planes of ``x mod 256`` through an 8-bit
  unsigned DAC (the same bitlines and conversions as ours, but the top plane weighted
  +128) and the sign plane once more through a second CrossSim core with a 1-bit DAC on
  the same weights; ``y = y_8bit - 256 * y_sign`` restores the -128 weight exactly (the
  shift-add is linear). CrossSim's time includes both calls (9 planes instead of 8).
  ``--inputs sign-magnitude`` runs CrossSim's native signed path instead (7 magnitude
  planes, signed bitline sums, signed 7 / 8-bit ``SignMagnitudeADC`` with the same
  +-63 / +-127 level range): a different array, shown for the difference it makes.

``--cs-cols all`` drops CrossSim's column split (the same results, CrossSim's fastest
equivalent setup); ``--on-off 150`` gives CrossSim a finite on/off ratio, whose G_off
floor reaches its ADC (it has no reference column) and is subtracted digitally after
it, to show what that convention changes.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from array_bench import workload  # noqa: E402

BITS = {"slc": 6, "mlc": 7}
BPC = {"slc": 1, "mlc": 2}


def import_crosssim(site):
    if site:
        sys.path.append(str(site))
    try:
        import simulator
        from simulator import AnalogCore, CrossSimParameters
    except ImportError as e:
        sys.exit(f"crosssim_compare: cannot import CrossSim ({e}); pass --crosssim "
                 "SITE_PACKAGES of the environment it is installed in")
    version = "?"
    try:
        from importlib.metadata import version as _v, PackageNotFoundError
        try:
            version = _v("CrossSim")
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    return simulator, AnalogCore, CrossSimParameters, version


def crosssim_params(CrossSimParameters, mode, inputs, dac_bits=8, cols=None, on_off=None):
    """CrossSim parameters that model one of our arrays (see the module docstring)."""
    bits, bpc = BITS[mode], BPC[mode]
    slices = 8 // bpc
    top = 2 ** bpc - 1                 # CrossSim's slice conductance unit: level / top
    p = CrossSimParameters()
    p.core.style = "BITSLICED"
    p.core.rows_max = 64
    p.core.cols_max = 128 // slices if cols is None else cols
    p.core.weight_bits = 8
    p.core.output_dtype = "FLOAT64"
    p.core.bit_sliced.style = "OFFSET"
    p.core.bit_sliced.num_slices = slices
    p.core.offset.style = "DIGITAL_OFFSET"
    p.core.mapping.weights.clipping = False
    p.core.mapping.weights.percentile = None
    p.core.mapping.weights.min = -127.0
    p.core.mapping.weights.max = 127.0
    p.core.mapping.weights.row_partition_strategy = "MAX"
    p.core.mapping.weights.col_partition_strategy = "MAX"
    dev = p.xbar.device
    dev.cell_bits = 0
    dev.infinite_on_off_ratio = on_off is None
    dev.Rmin, dev.Rmax = 6000.0, 6000.0 * (on_off or 150)
    dev.read_noise.enable = False
    dev.programming_error.enable = False
    dev.drift_error.enable = False
    p.xbar.array.parasitics.enable = False
    p.simulation.useGPU = False
    inp = p.core.mapping.inputs.mvm
    inp.clipping = False
    inp.percentile = None
    if inputs == "twos":
        dac_model, dac_signed, dac_b = "QuantizerDAC", False, dac_bits
        inp.min, inp.max = 0.0, float(2 ** dac_bits - 1)
        adc_model, adc_signed, adc_b = "QuantizerADC", False, bits
        rng = [0.0, (2 ** bits - 1) / top]
    else:
        dac_model, dac_signed, dac_b = "SignMagnitudeDAC", True, 8
        inp.min, inp.max = -127.0, 127.0
        adc_model, adc_signed, adc_b = "SignMagnitudeADC", True, bits + 1
        rng = [-(2 ** bits - 1) / top, (2 ** bits - 1) / top]
    # setting a model may replace the parameter object: set it first, then the rest
    p.xbar.dac.mvm.model = dac_model
    p.xbar.adc.mvm.model = adc_model
    adc, dac = p.xbar.adc.mvm, p.xbar.dac.mvm
    dac.signed, dac.bits = dac_signed, dac_b
    dac.input_bitslicing = True
    dac.slice_size = 1
    adc.signed, adc.bits = adc_signed, adc_b
    adc.adc_per_ibit = True
    adc.stochastic_rounding = False
    adc.adc_range_option = "CALIBRATED"
    if on_off:          # one LSB = one level spacing (G_on - G_off) / top, as ours
        rng = [r * (1 - 1 / on_off) for r in rng]
    adc.calibrated_range = [list(rng) for _ in range(slices)]
    p.validate()
    got = p.xbar.adc.mvm, p.xbar.dac.mvm
    assert (got[0].model, got[0].bits, got[0].adc_per_ibit, got[1].model, got[1].bits,
            got[1].input_bitslicing) == (adc_model, adc_b, True, dac_model, dac_b, True), got
    return p


class CrossSimLayer:
    """y = x @ W through CrossSim, configured as above."""

    def __init__(self, cs, W, mode, inputs, cols=None, on_off=None):
        _, AnalogCore, CSP, _ = cs
        self.inputs = inputs
        self.sign_cpu = 0.0
        Wt = np.ascontiguousarray(W.T, dtype=np.float64)      # CrossSim: out x in
        self.core = AnalogCore(Wt, crosssim_params(CSP, mode, inputs, cols=cols,
                                                         on_off=on_off))
        self.sign_core = (AnalogCore(Wt, crosssim_params(CSP, mode, inputs, dac_bits=1,
                                                         cols=cols, on_off=on_off))
                          if inputs == "twos" else None)

    def run(self, x):
        x = np.asarray(x, dtype=np.int64)
        if self.inputs == "twos":
            u = (x & 0xFF).astype(np.float64).T              # planes of x mod 256
            s = ((x >> 7) & 1).astype(np.float64).T           # the sign plane alone
            y = self.core.matmat(u)
            c0 = time.process_time()
            y -= 256.0 * self.sign_core.matmat(s)
            self.sign_cpu = time.process_time() - c0
        else:
            y = self.core.matmat(x.astype(np.float64).T)
        return y.T


def timed(fn, repeat):
    best_w = best_c = float("inf")
    out = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best_w = min(best_w, time.perf_counter() - t0)
        best_c = min(best_c, time.process_time() - c0)
    return out, best_w, best_c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--crosssim", default=os.environ.get("CROSSSIM_SITE"),
                    help="site-packages of the environment CrossSim is installed in")
    ap.add_argument("--small", action="store_true", help="128 x 128 weights x 16 vectors")
    ap.add_argument("--size", type=int, nargs=3, metavar=("M", "N", "TOKENS"),
                    help="weights M x N, TOKENS vectors (default 768 768 128)")
    ap.add_argument("--data", default="saturating,realistic")
    ap.add_argument("--modes", default="slc,mlc")
    ap.add_argument("--inputs", default="twos", choices=("twos", "sign-magnitude"))
    ap.add_argument("--cs-cols", default="array",
                    help="CrossSim cols_max (outputs per partition): 'array' (16 SLC / 32 "
                         "MLC, the cells of one of our arrays), 'all' (no column split: "
                         "the same results, less Python overhead) or a number")
    ap.add_argument("--on-off", type=float, default=None,
                    help="give CrossSim a finite on/off ratio (e.g. 150, ours): its G_off "
                         "floor then reaches the ADC and is subtracted digitally after it "
                         "(default: infinite, i.e. no floor, as our ideal reference column)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    m, n, tokens = a.size or ((128, 128, 16) if a.small else (768, 768, 128))

    cols = {"array": None, "all": 0}.get(a.cs_cols)
    if cols is None and a.cs_cols != "array":
        cols = int(a.cs_cols)
    cs = import_crosssim(a.crosssim)
    from hyflexpim.models import program_matrix

    print(f"Golden model vs CrossSim {cs[3]}: {m} x {n} INT8 weights x {tokens} vectors, "
          f"64 x 128 arrays, ideal, inputs {a.inputs}, CrossSim cols_max {a.cs_cols}, "
          f"on/off {a.on_off or 'infinite'}, "
          f"one BLAS thread, "
          f"best of {a.repeat} (numpy {np.__version__})")
    hdr = (f"{'data':<11}{'mode':<5}{'max|d|':>8}{'differ':>9}{'clipped':>10}"
           f"{'ours s':>9}{'ours cpu':>9}{'CS s':>9}{'CS cpu':>9}{'CS/ours':>9}"
           f"{' (cpu)':>8}  {'==x@W ours/CS'}")
    print(hdr)
    for kind in a.data.split(","):
        W, x = workload(kind, m, n, tokens)
        exact = x @ W
        for mode in a.modes.split(","):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pm = program_matrix(W, mode, saturation="allow")
            layer = CrossSimLayer(cs, W, mode, a.inputs, cols, a.on_off)
            y, tw, tc = timed(lambda: pm.run(x), a.repeat)
            yc_f, cw, cc = timed(lambda: layer.run(x), a.repeat)
            yc = np.rint(yc_f).astype(np.int64)
            frac = float(np.max(np.abs(yc_f - yc)))
            d = np.abs(y.astype(np.int64) - yc)
            clipped = pm.saturated(x)
            print(f"{kind:<11}{mode:<5}{int(d.max()):>8}{int((d != 0).sum()):>9}"
                  f"{int(clipped):>10}{tw:>9.3f}{tc:>9.3f}{cw:>9.3f}{cc:>9.3f}"
                  f"{cw / tw:>8.1f}x{cc / tc:>7.1f}x  "
                  f"{bool(np.array_equal(y, exact))}/{bool(np.array_equal(yc, exact))}"
                  f"  (CrossSim off-integer by <= {frac:.2g}"
                  + (f"; its sign-plane core {layer.sign_cpu:.3f} s cpu"
                     if a.inputs == "twos" else "") + ")", flush=True)


if __name__ == "__main__":
    main()
