# amaranth: UnusedElaboratable=no
"""The architecture model's one-array cycle count against the RTL's measured count."""

import json

import pytest

from hyflexpim.rtl.analog import PIPELINE_LATENCY
from hyflexpim.sim.arch.timing import array_cycles
from hyflexpim.sim.cocotb_runner import run_block, build_dir_for

VECTORS = 4


@pytest.mark.parametrize("params", [
    dict(rows=16, cols=32, slc_bits=6, mlc_bits=7, result_width=32, read_cycles=2),
    dict(rows=8, cols=16, slc_bits=3, mlc_bits=4, result_width=24, read_cycles=5),
])
def test_model_cycles_equal_rtl_measurement(params):
    bdir = build_dir_for("analog_array_cycles", params)
    report = bdir / "report.json"
    bdir.mkdir(parents=True, exist_ok=True)
    run_block("analog_array", test_module="hyflexpim.tb.analog_tb", params=params, small=False,
              testcase="stream_throughput", build_dir=bdir, quiet=True,
              extra_env={"HYFLEXPIM_REPORT": report, "HYFLEXPIM_STREAM_VECTORS": VECTORS})
    measured = json.loads(report.read_text())
    for mode, m in measured.items():
        kw = dict(cols=params["cols"], read_cycles=params["read_cycles"],
                  latency=PIPELINE_LATENCY, slc_steps=params["slc_bits"],
                  mlc_steps=params["mlc_bits"])
        assert m["latency"] == array_cycles(1, mode, **kw)
        total = m["latency"] + (VECTORS - 1) * m["cycles_per_vector"]
        assert total == array_cycles(VECTORS, mode, **kw)
