# amaranth: UnusedElaboratable=no
"""Digital module, SFU path (rtl/digital.py ``DigitalModule``) on its own: the cocotb
regression tb/digital_module_tb.py (Icarus), every ACTIVATION word against the golden
chain of models/fp16 (from_int32, gelu, to_int8). Inside the PU it is also run by
tests/test_pu_cocotb.py; parameter checks are tests/test_pu_amaranth.py."""

import os

from hyflexpim.sim.cocotb_runner import run_block

TESTS = ["random_noise_off_and_on_gelu_on_and_off", "gelu_switched_with_items_in_flight",
         "long_stall_then_full_rate", "reset_in_every_state",
         "scales_written_with_items_in_flight"]


def _run(testcase, params=None, tb_params=None):
    seed = int(os.environ.get("HYFLEXPIM_SEED", "1"))
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    return run_block("digital_module", test_module="hyflexpim.tb.digital_module_tb",
                     params=params, tb_params=tb_params or {},
                     extra_env={"HYFLEXPIM_SEED": seed}, testcase=testcase)


def test_digital_module_all_cases():
    """The registry's small module (tag_width 6: 32 outputs, 4 bytes per word): random
    layer outputs with noise off / on, GELU on / off, GELU switched with items in
    flight, long output stalls, reset in five states."""
    passed, _ = _run(TESTS, tb_params={"vectors": 2})
    assert passed == len(TESTS)
