# amaranth: UnusedElaboratable=no
"""Processing unit: the end-to-end cocotb layer test (tb/pu_tb.py). Parameter checks,
addresses and the bridge in the Amaranth simulator are tests/test_pu_amaranth.py."""

import os

import pytest

from hyflexpim.sim.blocks import get_block
from hyflexpim.sim.cocotb_runner import run_block

#: On top of a configuration: quicker crossbar reads, at most 4 row chunks per output and
#: the 2-bit global addresses of a two-PU chip.
QUICK = dict(read_cycles=2, max_parts=4, ext_addr_width=2)
#: The registry's small PU (2 modules x 2 arrays of 16 x 32, tag_width 6), quick.
SMALL = get_block("pu").resolve(small=True, **QUICK)
# 128 inputs x 64 outputs on 64 x 128 arrays: 16 SLC + 48 MLC outputs per 64-row chunk
# = 1 SLC + 2 MLC arrays, two chunks: 6 arrays.
FULL = get_block("pu").resolve(n_modules=3, read_cycles=4, max_parts=4, ext_addr_width=2)
#: The layer tests of tb/pu_tb.py (the attention tests need a PU with the layer engine).
LAYER_TESTS = ["layer_noise_off", "layer_noise_on", "sfu_noise_off", "sfu_noise_on",
               "sfu_gelu_off"]


def _run(pu_params, layer, testcase=None, seed=None, report=None):
    seed = seed if seed is not None else int(os.environ.get("HYFLEXPIM_SEED", "1"))
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    env = {"HYFLEXPIM_SEED": seed}
    if report:
        env["HYFLEXPIM_PU_REPORT"] = report
    return run_block("pu", test_module="hyflexpim.tb.pu_tb", params=pu_params, small=False,
                     tb_params=layer, extra_env=env, testcase=testcase)


#: Reconfiguration and long stalls on the same build (their layers are their own).
PU_STALL_TESTS = ["narrower_layer_after_a_wider_one", "long_stall_then_full_rate"]


def test_pu_layer_small_noise_off_and_on():
    """32 inputs x 12 outputs (4 SLC + 8 MLC) on 16 x 32 arrays: 4 arrays, 2 row chunks;
    INT32 results (noise off / on), then through the digital module to INT8 (GELU on with
    noise off / on, GELU off). On the same build: a 16 x 6 layer after the 32 x 12 one
    on other arrays in the other cell modes (no stale TABLE, MASK, PARTS entry), a third
    layer's arrays and mask rewritten while the second's results are in flight; the
    output held for 3 vector times, then one word per cycle."""
    passed, _ = _run(SMALL, dict(m=32, n=12, n_slc=4, vectors=2),
                     testcase=LAYER_TESTS + PU_STALL_TESTS)
    assert passed == len(LAYER_TESTS) + len(PU_STALL_TESTS)


@pytest.mark.slow
def test_pu_reset_in_every_state():
    """The small PU reset configured and idle, mid-input, converting and with results
    waiting behind a held output: masks back to 0 (nothing converted or sent), then the
    layer reconfigured exact (INT32 and SFU path)."""
    passed, _ = _run(SMALL, {}, testcase=["reset_in_every_state"])
    assert passed == 1


@pytest.mark.slow
def test_pu_layer_128x64_published_arrays():
    """The issue's layer: 128 inputs x 64 outputs, mixed SLC/MLC, 64 x 128 arrays,
    INT32 and through the SFU path."""
    passed, _ = _run(FULL, dict(m=128, n=64, n_slc=16, vectors=2), testcase=LAYER_TESTS)
    assert passed == 5


#: A PU with the layer engine (digital PIM + SFU operators) and one small analog array.
ENGINE_PU = get_block("pu").resolve(small=True, n_modules=1, arrays_per_module=1, **QUICK)
ENGINE_PU["engine"] = {}


def test_pu_attention_head_through_the_digital_module():
    """Q/K/V INT32 rows -> INT8 -> KV cache -> scores -> SFU softmax -> INT8 P -> context
    -> INT8 words out of the PU: S, P and O bit-exact with models.digital_pim, with and
    without the causal mask, IO gaps and backpressure."""
    passed, _ = _run(ENGINE_PU, {}, testcase=["attention_head", "attention_head_causal"])
    assert passed == 2
