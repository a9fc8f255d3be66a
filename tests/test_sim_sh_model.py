# amaranth: UnusedElaboratable=no
"""The simulation-only S&H bank model and sim top (sim/sh_model.py, sim/hdl/): the port
parsing and packing helpers, the errors of :func:`sim_top_verilog`, and on Icarus the
same results, cycle for cycle, from the HDL model and the Python per-cycle bank, with
the HDL clock and cocotb's, read noise on and off (tb/analog_speed_tb.py).
The same on Verilator: tests/test_verilator.py."""

import json
import re
import shutil

import numpy as np
import pytest

from hyflexpim.models.crossbar import FRAC_BITS, ONE_LSB
from hyflexpim.sim.blocks import get_block
from hyflexpim.sim.sh_model import (BANK_MODULE, BANK_SOURCE, CLOCK_HALF, CLOCK_RUN,
                                    CrossbarPort, crossbar_ports, held_range, held_width,
                                    pack_held, sim_top_verilog, verilog_ports, write_sim_top)
from hyflexpim.sim.verilog import write_verilog

needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="no iverilog")

#: the registry's small analog array (16 x 32), lower ADC resolution, quick reads
SMALL = dict(slc_bits=4, mlc_bits=5, read_cycles=2)


def _array(**params):
    blk = get_block("analog_array")
    return blk.factory(**blk.resolve(True, **params))


@pytest.fixture(scope="module")
def array_verilog(tmp_path_factory):
    path = write_verilog(_array(**SMALL), "analog_array",
                         tmp_path_factory.mktemp("v") / "analog_array.v")
    return path.read_text()


# ----------------------------------------------------------------------------- helpers

def test_crossbar_ports_of_an_array_and_a_pu():
    assert crossbar_ports(_array(**SMALL)) == [CrossbarPort("xbar", 16, 32, 5)]
    blk = get_block("pu")
    pu = blk.factory(**blk.resolve(True))
    ports = crossbar_ports(pu)
    assert [p.prefix for p in ports] == [f"xbar__{i}" for i in range(len(ports))]
    assert len(ports) == 4 and all((p.rows, p.cols) == (16, 32) for p in ports)


def test_held_words_are_clamped_twos_complement():
    adc = 5
    w = held_width(adc)
    assert w == adc + FRAC_BITS + 2
    lo, hi = held_range(adc)
    assert (lo, hi) == (-ONE_LSB, 32 * ONE_LSB)
    held = np.array([-5 * ONE_LSB, -1, 0, 1, 700, hi + 99, hi])
    bits = pack_held(held, adc)
    words = [(bits >> (c * w)) & ((1 << w) - 1) for c in range(len(held))]
    signed = [v - (1 << w) if v >> (w - 1) else v for v in words]
    assert signed == [lo, -1, 0, 1, 700, hi, hi]
    assert bits >> (len(held) * w) == 0


def test_verilog_ports_of_the_generated_array(array_verilog):
    ports = verilog_ports(array_verilog, "analog_array")
    names = {n: (d, w) for d, w, n in ports}
    assert names["clk"] == ("input", 1) and names["rst"] == ("input", 1)
    assert names["xbar__wl"] == ("output", 16)
    assert names["xbar__cmp"] == ("input", 1)
    assert names["i__valid"] == ("input", 1) and names["o__ready"] == ("input", 1)


def test_verilog_ports_errors(array_verilog):
    with pytest.raises(ValueError, match=r"^module nosuch not found in the Verilog$"):
        verilog_ports(array_verilog, "nosuch")
    text = "module m(a, b);\n  input a;\nendmodule\n"
    with pytest.raises(ValueError, match=r"^module m: no declaration of port\(s\) b$"):
        verilog_ports(text, "m")


def test_sim_top_missing_crossbar_ports(array_verilog):
    other = CrossbarPort("nope", 16, 32, 7)
    with pytest.raises(ValueError, match=r"^module analog_array has no port\(s\) nope__cmp, "
                                         r"nope__sample, nope__sel, nope__trial, nope__wl$"):
        sim_top_verilog(array_verilog, "analog_array", "top", [other])


def test_sim_top_missing_clock_and_reset():
    text = "module m(a, y);\n  input a;\n  output y;\nendmodule\n"
    with pytest.raises(ValueError, match=r"^module m has no port\(s\) clk$"):
        sim_top_verilog(text, "m", "m_sim", [], clock=True)
    with pytest.raises(ValueError, match=r"^module m has no port\(s\) clk, rst, x__cmp, "):
        sim_top_verilog(text, "m", "m_sim", [CrossbarPort("x", 4, 4, 3)])


def test_sim_top_wires_the_bank_and_the_clock(array_verilog, tmp_path):
    groups = crossbar_ports(_array(**SMALL))
    text = sim_top_verilog(array_verilog, "analog_array", "analog_array_sim", groups,
                           clock=True)
    header = re.search(r"^module analog_array_sim\(([^)]*)\);", text, re.M).group(1)
    outer = [n.strip() for n in header.split(",")]
    # the crossbar group is inside, the model's ports and the clock inputs outside
    assert not any(n.startswith("xbar__") and n.rsplit("__", 1)[1] in
                   ("wl", "sample", "sel", "trial", "cmp") for n in outer)
    assert {"xbar__held", "xbar__wl_q", "xbar__count", CLOCK_HALF, CLOCK_RUN} <= set(outer)
    assert "clk" not in outer and "rst" in outer and "i__valid" in outer
    assert f"input wire [{32 * held_width(5) - 1}:0] xbar__held;" in text
    assert f"{BANK_MODULE} #(.ROWS(16), .COLS(32), .SEL_BITS(5), .ADC_BITS(5)" in text
    assert "reg clk = 1'b0;" in text and f"#({CLOCK_HALF}) clk = 1'b0;" in text
    # without the clock, clk stays a port of the top
    text = sim_top_verilog(array_verilog, "analog_array", "t", groups)
    assert "clk" in re.search(r"^module t\(([^)]*)\);", text, re.M).group(1).split(", ")
    src = tmp_path / "analog_array.v"
    src.write_text(array_verilog)
    sources, top = write_sim_top(src, "analog_array", groups, tmp_path)
    assert top == "analog_array_sim"
    assert sources == [src, BANK_SOURCE, tmp_path / "analog_array_sim.v"]
    assert write_sim_top(src, "analog_array", [], tmp_path, clock=True)[0] == \
        [src, tmp_path / "analog_array_sim.v"]


# ----------------------------------------------------------------------------- on Icarus

def speed_run(tmp_path, simulator="icarus", sh_model="hdl", clock="hdl", build_dir=None,
              **tb_params):
    """One run of tb/analog_speed_tb.py on the small array; its report line."""
    from hyflexpim.sim.cocotb_runner import last_run, run_block
    report = tmp_path / f"{simulator}-{sh_model}-{clock}-{len(list(tmp_path.iterdir()))}.jsonl"
    p = dict(mode="mlc", vectors=3, seed=7)
    p.update(tb_params)
    passed, _ = run_block("analog_array", test_module="hyflexpim.tb.analog_speed_tb",
                          params=SMALL, tb_params=p, simulator=simulator, sh_model=sh_model,
                          clock=clock, quiet=True, build_dir=build_dir,
                          extra_env={"HYFLEXPIM_REPORT": report})
    assert passed == 1
    run = last_run()
    assert (run["simulator"], run["sh_model"], run["clock"]) == (simulator, sh_model, clock)
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["sh_model"] == sh_model and rows[0]["clock"] == clock
    assert len(rows[0]["results"]) == p["vectors"]
    assert run["cycles"] >= rows[0]["cycles"] > 0
    return rows[0]


@needs_icarus
def test_hdl_and_python_sh_models_and_clocks_agree(tmp_path):
    """Read noise on, input gaps and output backpressure, MLC: the same result words at
    the same cycles from the HDL S&H model and from the Python bank, with either clock."""
    p = dict(mode="mlc", read_noise=0.05, idle=0.3, ready_prob=0.5)
    runs = {(m, c): speed_run(tmp_path, sh_model=m, clock=c, **p)
            for m in ("hdl", "python") for c in ("hdl", "cocotb")}
    ref = runs["python", "cocotb"]          # the per-cycle Python bank, cocotb's clock
    for key, run in runs.items():
        assert run["results"] == ref["results"], key
        assert run["cycles"] == ref["cycles"], key


@needs_icarus
def test_read_noise_off_and_on(tmp_path):
    """SLC, noise off: both models agree; the noisy reads (numbered by vector) that the
    HDL model is loaded with change the results."""
    ideal = {m: speed_run(tmp_path, sh_model=m, mode="slc") for m in ("hdl", "python")}
    noisy = speed_run(tmp_path, sh_model="hdl", mode="slc", read_noise=0.08)
    assert ideal["hdl"]["results"] == ideal["python"]["results"]
    assert noisy["results"] != ideal["hdl"]["results"]
    assert [c for _, c in noisy["results"]] == [c for _, c in ideal["hdl"]["results"]]
    assert noisy["read_noise"] and not ideal["hdl"]["read_noise"]
