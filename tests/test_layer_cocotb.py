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


#: A digital module for MiniLM-L6's layer geometry (hidden 384, 12 heads of 32, FFN
#: 1,536): row chunks of 64 (the published array's rows: 16 words of 4 INT8), 43 chunks
#: on 64 arrays, 12-bit tags (up to 1,536 results a vector), the largest data memory
#: (the compiler keeps about 7,500 words of intermediates a token: 4 tokens fit).
MINILM_MODULE = dict(LAYER_MODULE, tag_width=12, n_arrays=64, arrays_per_module=64,
                     word_bits=4,
                     engine=dict(mem_depth=65536, prog_depth=1024, pim_rows=64, head_dim=32,
                                 max_seq=4, heads=12, softmax_n=16, ln_n=384))


def _run(testcase, tb_params=None, report=None, params=LAYER_MODULE, **kw):
    seed = int(os.environ.get("HYFLEXPIM_SEED", "1"))
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    env = {"HYFLEXPIM_SEED": seed}
    if report:
        env["HYFLEXPIM_LAYER_REPORT"] = report
    return run_block("digital_module", test_module="hyflexpim.tb.layer_tb",
                     params=params, small=False, tb_params=tb_params or {},
                     extra_env=env, testcase=testcase, **kw)


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


@pytest.mark.slow
def test_minilm_geometry_layer_on_the_engine_rtl():
    """MiniLM-L6's layer sizes (hidden 384, 12 heads, FFN 1,536), 4 tokens, noise on, on
    Verilator (Icarus takes far longer at this size); docs/layer.md section 6."""
    passed, _ = _run(["layer_sized"], dict(dim=384, heads=12, ffn=1536, tokens=4,
                                          max_cycles=3_000_000),
                     params=MINILM_MODULE, simulator="verilator")
    assert passed == 1
