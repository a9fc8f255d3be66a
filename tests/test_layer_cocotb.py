# amaranth: UnusedElaboratable=no
"""A whole encoder layer on the generated Verilog of a digital module with the layer
engine (tb/layer_tb.py): hidden 32, 2 heads, 8 tokens, FFN 64; every output word equal
to models.transformer.ChipLayer.forward, noise off and on, causal; the analog vectors
answered at transaction level by the golden model's programmed arrays, the digital PIM
by the array model. Seeds printed; replay with HYFLEXPIM_SEED."""

import os

import pytest

from hyflexpim.sim.cocotb_runner import run_block
from hyflexpim.tb.layer_tb import LAYER_MODULE


def _run(testcase, tb_params=None, report=None):
    seed = int(os.environ.get("HYFLEXPIM_SEED", "1"))
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    env = {"HYFLEXPIM_SEED": seed}
    if report:
        env["HYFLEXPIM_LAYER_REPORT"] = report
    return run_block("digital_module", test_module="hyflexpim.tb.layer_tb",
                     params=LAYER_MODULE, small=False, tb_params=tb_params or {},
                     extra_env=env, testcase=testcase)


def test_layer_on_the_engine_rtl_noise_on():
    """Noise on here; the noise-off layer runs through ``hyflexpim demo --layer``
    (tests/test_cli.py::test_demo_layer_is_bit_exact)."""
    passed, _ = _run(["layer_noise_on"])
    assert passed == 1


@pytest.mark.slow
def test_causal_layer_on_the_engine_rtl():
    """Slow (about 2.5 minutes): the decoder test below runs the causal mask in its
    5-token prompt and in every step."""
    passed, _ = _run(["layer_causal"])
    assert passed == 1


def test_decoder_steps_on_the_engine_rtl():
    """A 5-token prompt and three one-token decoder steps, each a program of its own
    that appends to the KV cache kept in the RTL (noise on)."""
    passed, _ = _run(["layer_decoder"])
    assert passed == 1
