# amaranth: UnusedElaboratable=no
"""FPGA builds through amaranth-boards and the YoWASP nextpnr tools."""

import re

import pytest

from hyflexpim.rtl.board_top import BoardTop, io_bits
from hyflexpim.sim.blocks import get_block
from hyflexpim.sim.cli import main
from hyflexpim.sim.fpga import FpgaBuildError, fpga_build, parse_nextpnr_fmax


def test_board_top_covers_every_port_bit():
    comp = get_block("sar_adc").build(cols=8, rows=4)
    top = BoardTop(comp)
    ins, outs = io_bits(comp)
    # i.valid, i.payload, o.ready, cmp in; i.ready, o.valid, o.payload, sample, sel, trial out
    assert top.in_bits == sum(len(v) for v in ins) == 1 + len(comp.i.p.as_value()) + 1 + 1
    assert top.out_bits == sum(len(v) for v in outs) > 0


def test_parse_nextpnr_fmax_takes_the_last_report():
    log = ("Info: Max frequency for clock 'clk': 50.00 MHz (PASS at 12.00 MHz)\n"
           "Info: Max frequency for clock 'clk': 61.73 MHz (PASS at 12.00 MHz)\n")
    assert parse_nextpnr_fmax(log) == 61.73
    assert parse_nextpnr_fmax("no timing here") is None


def test_ice40_build_of_small_sar_adc():
    r = fpga_build("sar_adc", "ice40", {"cols": 8, "rows": 4}, outdir="build/test_fpga")
    assert r["luts"] > 0 and r["flip_flops"] >= r["wrapper_flip_flops"]
    assert r["fmax_mhz"] and r["fmax_mhz"] > 12.0
    used, avail = r["utilisation"]["ICESTORM_LC"]
    assert 0 < used <= avail == 5280


@pytest.mark.slow
def test_ecp5_build_of_small_sar_adc():
    r = fpga_build("sar_adc", "ecp5", {"cols": 8, "rows": 4}, outdir="build/test_fpga")
    assert r["luts"] > 0 and r["fmax_mhz"] and r["fmax_mhz"] > 25.0


def test_bad_board():
    with pytest.raises(ValueError, match=r"^board must be one of ice40, ecp5, not 'xilinx'$"):
        fpga_build("sar_adc", "xilinx")


def test_failed_build_is_one_line(capfd):
    # A build the tools reject (an option synth_ice40 does not know): one line on
    # stderr naming the block, board, the tool's error and its log; exit status 1.
    argv = ["fpga", "sar_adc", "-p", "cols=8", "-p", "rows=4", "--board", "ice40",
            "--synth-opts=-nosuchoption", "-o", "build/test_fpga_fail"]
    assert main(argv) == 1
    out, err = capfd.readouterr()
    assert out == ""
    assert re.fullmatch(r"hyflexpim fpga: error: sar_adc on ice40: build failed: ERROR: "
                        r"Command syntax error: .* \(log: \S+/top\.rpt\)\n", err), err
    with pytest.raises(FpgaBuildError, match=r"^ERROR: Command syntax error"):
        fpga_build("sar_adc", "ice40", {"cols": 8, "rows": 4}, outdir="build/test_fpga_fail",
                   synth_opts="-nosuchoption")


@pytest.mark.slow
def test_ecp5_build_of_small_analog_array_with_workaround():
    # Yosys 0.70's synth_ecp5 stops on an internal assertion for this design; the flow
    # retries with -dff and says so.
    r = fpga_build("analog_array", "ecp5", outdir="build/test_fpga")
    assert r["luts"] > 0 and r["fmax_mhz"]
    if r["workaround"]:
        assert r["synth_opts"] == "-dff" and "GetSize(conn.first)" in r["workaround"]
