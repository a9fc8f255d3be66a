# amaranth: UnusedElaboratable=no
"""Launch the cocotb regression of the analog array top on its generated Verilog."""

import os

import pytest

from hyflexpim.sim.cocotb_runner import run_block

# the registry's small array (16 x 32) with a lower ADC resolution and quicker reads
SMALL = dict(small=True, params=dict(slc_bits=4, mlc_bits=5, read_cycles=2))
DEFAULT = dict(small=False)                       # the published 64 x 128 array
#: the tests of tb/analog_array_more_tb.py run on every geometry (geometry_boundary runs
#: only on the boundary geometries, test_geometry_boundaries)
MORE = ["long_stall_then_full_rate", "reconfiguration_fewer_neurons", "reset_in_every_state"]
ODD = dict(small=False, params=dict(rows=24, cols=48, slc_bits=5, mlc_bits=6, result_width=28,
                                    read_cycles=1))


def _run(config, testcase=None, seed=None, quick=False, module="hyflexpim.tb.analog_tb"):
    seed = seed if seed is not None else int(os.environ.get("HYFLEXPIM_SEED", "1"))
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    return run_block("analog_array", test_module=module, **config,
                     extra_env={"HYFLEXPIM_SEED": seed, "HYFLEXPIM_QUICK": int(quick)},
                     testcase=testcase)


def test_small_array_all_cases():
    passed, _ = _run(SMALL)
    assert passed == 5


def test_small_array_long_stall_reconfiguration_reset():
    """tb/analog_array_more_tb.py on the small array: a held stall, a tile with fewer
    neurons after a full one, reset in every state of the control."""
    passed, _ = _run(SMALL, module="hyflexpim.tb.analog_array_more_tb", testcase=MORE)
    assert passed == 3


def test_odd_geometry_and_adc_resolution():
    passed, _ = _run(ODD, testcase=["random_slc_mlc_noise_off_and_on",
                                    "corner_cases_and_saturation"])
    assert passed == 2


def test_published_array_64x128():
    passed, _ = _run(DEFAULT, testcase=["random_slc_mlc_noise_off_and_on",
                                        "corner_cases_and_saturation", "stream_throughput"],
                     quick=True)
    assert passed == 3


@pytest.mark.slow
def test_published_array_64x128_all_cases():
    passed, _ = _run(DEFAULT)
    assert passed == 5
    passed, _ = _run(DEFAULT, module="hyflexpim.tb.analog_array_more_tb", testcase=MORE)
    assert passed == 3


#: Geometry boundaries (ArrayParams: rows 1..1024, cols 8..1024, mlc_bits 1..16), each
#: with the result width at its minimum (ArrayParams.min_result_width), 1-cycle reads.
TALL = dict(small=False, params=dict(rows=1024, cols=8, slc_bits=10, mlc_bits=16,
                                     result_width=31, read_cycles=1))
WIDE = dict(small=False, params=dict(rows=8, cols=1024, slc_bits=4, mlc_bits=5,
                                     result_width=21, read_cycles=1))
#: Every maximum at once: 1024 x 1024, 16-bit ADC (SLC 11 bits: one more than a 1024-row
#: SLC bitline needs), minimum result width.
LARGEST = dict(small=False, params=dict(rows=1024, cols=1024, slc_bits=11, mlc_bits=16,
                                        result_width=31, read_cycles=1))
#: Every minimum at once: one row, 8 columns (one SLC neuron), 1-bit ADC in both modes.
SMALLEST = dict(small=False, params=dict(rows=1, cols=8, slc_bits=1, mlc_bits=1,
                                         result_width=17, read_cycles=1))


@pytest.mark.slow
@pytest.mark.parametrize("config, vectors", [(TALL, 2), (WIDE, 2), (LARGEST, 1), (SMALLEST, 4)],
                         ids=["rows1024_mlc16", "cols1024", "1024x1024_mlc16", "1x8_1bit"])
def test_geometry_boundaries(config, vectors):
    """tb/analog_array_more_tb.py::geometry_boundary at the largest rows (with the 16-bit
    ADC), the largest cols, both at once, and every minimum: random SLC and MLC tiles
    (noise off and on) and the extreme all-max / all-min ones, every word against
    program_matrix."""
    seed = int(os.environ.get("HYFLEXPIM_SEED", "1"))
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    passed, _ = run_block("analog_array", test_module="hyflexpim.tb.analog_array_more_tb",
                          **config, tb_params=dict(vectors=vectors),
                          extra_env={"HYFLEXPIM_SEED": seed},
                          testcase=["geometry_boundary"])
    assert passed == 1
