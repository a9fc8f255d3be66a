# amaranth: UnusedElaboratable=no
"""Launch the cocotb regression of the analog array top on its generated Verilog."""

import os

import pytest

from hyflexpim.sim.cocotb_runner import run_block

# the registry's small array (16 x 32) with a lower ADC resolution and quicker reads
SMALL = dict(small=True, params=dict(slc_bits=4, mlc_bits=5, read_cycles=2))
DEFAULT = dict(small=False)                       # the published 64 x 128 array
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
    passed, _ = _run(SMALL, module="hyflexpim.tb.analog_array_more_tb")
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
    passed, _ = _run(DEFAULT, module="hyflexpim.tb.analog_array_more_tb")
    assert passed == 3
