# amaranth: UnusedElaboratable=no
"""Synthesis flow: every block's small configuration synthesizes and stays inside its
recorded area band (constraints/area_bands.json, updated on purpose with
``benchmarks/synth_bands.py --update``); scaling, timing, errors and fallbacks."""

import csv
import json
import re
from pathlib import Path

import pytest

from hyflexpim.sim import synth as S
from hyflexpim.sim.blocks import all_blocks
from hyflexpim.sim.cli import main

ROOT = Path(__file__).resolve().parent.parent
BANDS = json.loads((ROOT / "constraints" / "area_bands.json").read_text())
#: Blocks above this many cells (recorded) only run with -m slow.
SLOW_CELLS = 15000
OUT = ROOT / "build" / "test_synth"


def _block_params():
    out = []
    for name in sorted(all_blocks()):
        band = BANDS.get(name)
        marks = [pytest.mark.slow] if band and band["cells"][1] > SLOW_CELLS else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", _block_params())
def test_small_block_area_band(name):
    band = BANDS.get(name)
    if band is None:
        pytest.skip(f"no area band recorded for {name}: run benchmarks/synth_bands.py --update")
    liberty = S.find_liberty()
    if liberty is None:
        pytest.skip("no liberty: run scripts/setup.d/20-liberty.sh")
    r = S.synth_block(name, small=True, outdir=OUT, timing=False)
    assert r.library == "osu018"
    lo, hi = band["area_um2"]
    assert lo <= r.area_um2 <= hi, (
        f"{name}: area {r.area_um2} um^2 left its band [{lo}, {hi}]; if intended, "
        f"run benchmarks/synth_bands.py --update")
    clo, chi = band["cells"]
    assert clo <= r.cells <= chi, f"{name}: {r.cells} cells left the band [{clo}, {chi}]"
    assert r.flip_flops > 0 and r.logic_depth > 0


def _poly(coeffs, v):
    return sum(c * v ** (len(coeffs) - 1 - i) for i, c in enumerate(coeffs))


def test_scaling_matches_published_erratum_example():
    # Stillmaker & Baas' erratum: 65 nm energy factor at 1.3 V is 2.604 (their Eq. 13).
    e65 = _poly(S.StillmakerBaas.ENERGY[65], 1.3)
    assert round(e65, 3) == 2.604
    # factor(65 nm, 1.1 V) / factor(180 nm, 1.8 V), evaluated here by hand.
    d = _poly((-53.3, 230.4, -333.9, 178.6), 1.1) / _poly((0, 97.09, -356.7, 406.5), 1.8)
    assert S.StillmakerBaas.delay_factor() == pytest.approx(d, rel=1e-12)
    assert S.scale_180_to_65(area_um2=1000.0)["area_um2"] == pytest.approx(80.0)


def test_sdc_period_is_1ghz_at_65nm():
    period = S.clock_period_ns()
    assert period * S.StillmakerBaas.delay_factor() == pytest.approx(1.0, abs=1e-3)


def _liberty_or_skip():
    if S.find_liberty() is None:
        pytest.skip("no liberty: run scripts/setup.d/20-liberty.sh")


def test_timing_of_sar_adc():
    _liberty_or_skip()
    if S.sta_command() is None:
        pytest.skip("OpenSTA not installed")
    r = S.synth_block("sar_adc", small=True, outdir=OUT, cache=False)
    assert r.cache == "off" and r.tools["yosys"].startswith("Yosys ")
    t = r.timing
    assert t["available"], r.notes
    assert t["critical_path_ns"] == pytest.approx(t["period_ns"] - t["worst_slack_ns"], abs=1e-3)
    assert t["fmax_mhz"] == pytest.approx(1000 / t["critical_path_ns"], rel=1e-3)
    assert r.scaled_65nm["fmax_mhz"] > t["fmax_mhz"]


def test_cli_single_block_writes_json_and_markdown(capsys):
    _liberty_or_skip()
    out = OUT / "cli"
    assert main(["synth", "sar_adc", "--small", "-p", "cols=8", "--no-timing",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.match(r"^sar_adc\s+cells\s+\d+", printed)
    doc = json.loads((out / "sar_adc-cols8-rows16.json").read_text())
    assert doc["results"][0]["params"]["cols"] == 8
    assert "| sar_adc |" in (out / "sar_adc-cols8-rows16.md").read_text()


def test_bad_parameter_is_one_clear_line(capsys):
    assert main(["synth", "sar_adc", "-p", "cols=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"hyflexpim synth: error: cols must be an integer in 1\.\.1024, not 0", err)


def test_unknown_block(capsys):
    assert main(["synth", "no_such_block"]) == 2
    assert re.fullmatch(r"hyflexpim synth: error: unknown block 'no_such_block'; known blocks: .+",
                        capsys.readouterr().err.strip())


def test_needs_exactly_one_mode(capsys):
    assert main(["synth"]) == 2
    assert re.fullmatch(r"hyflexpim synth: error: give exactly one of BLOCK, --all, "
                        r"--overhead or --sweep PARAM", capsys.readouterr().err.strip())


def test_missing_liberty_file(capsys):
    assert main(["synth", "sar_adc", "--liberty", "/nonexistent/cells.lib"]) == 2
    assert re.fullmatch(r"hyflexpim synth: error: liberty file not found: /nonexistent/cells\.lib",
                        capsys.readouterr().err.strip())


def test_no_liberty_falls_back_to_generic_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HYFLEXPIM_CACHE", str(tmp_path / "empty"))
    monkeypatch.delenv("HYFLEXPIM_LIBERTY", raising=False)
    assert S.find_liberty() is None
    assert main(["synth", "sar_adc", "--small", "-p", "cols=8", "-o", str(tmp_path)]) == 0
    cap = capsys.readouterr()
    assert re.search(r"^warning: no standard-cell liberty found", cap.err, re.M)
    assert "transistors (generic)" in cap.out
    doc = json.loads((tmp_path / "sar_adc-cols8-rows16.json").read_text())
    r = doc["results"][0]
    assert r["library"] == "generic-cmos" and r["area_um2"] is None and r["transistors"] > 0
    assert r["timing"]["available"] is False


def test_reconfigurability_overhead_small():
    _liberty_or_skip()
    rows = S.overhead(small=True, outdir=OUT)
    fixed, dedicated = rows[:3], rows[3:]
    assert [r["label"].split()[0] for r in fixed] == ["SAR", "S&A", "array"]
    for r in rows:
        assert r["area_pct"] == pytest.approx(
            100 * (r["area_um2"] - r["base_area_um2"]) / r["base_area_um2"], abs=0.01)
    for r in fixed:
        # the fixed-function baselines of the same columns are strictly smaller
        assert r["base_cells"] < r["cells"] and r["base_area_um2"] < r["area_um2"]
    # the dedicated peripheries, synthesized here part by part: a 7-bit MLC-only one of
    # the same 32 columns and a 6-bit SLC-only one of as many neurons (64 columns)
    assert "MLC-only" in dedicated[0]["label"] and "(64 columns)" in dedicated[1]["label"]
    parts = [dict(wl_driver={}, sar_adc=dict(slc_bits=7, mlc_bits=7),
                  shift_add=dict(variant="mlc_only")),
             dict(wl_driver={}, sar_adc=dict(cols=64, slc_bits=6, mlc_bits=6),
                  shift_add=dict(cols=64, variant="slc_only"))]
    for r, p in zip(dedicated, parts):
        got = [S.synth_block(n, o, small=True, outdir=OUT, timing=False) for n, o in p.items()]
        assert r["base_cells"] == sum(g.cells for g in got)
        assert r["base_area_um2"] == pytest.approx(sum(g.area_um2 for g in got))
        # measured: +1.1 % and +0.6 % area (docs/synthesis.md); a band, not the figure
        assert abs(r["area_pct"]) < 5


def test_sweep_writes_csv(tmp_path):
    _liberty_or_skip()
    blk, rows = S.sweep("adc_steps", values=[4, 6], small=True, outdir=tmp_path, timing=False)
    assert blk == "sar_adc" and [r["adc_steps"] for r in rows] == [4, 6]
    paths = S.write_sweep("adc_steps", rows, tmp_path, plot=False)
    with open(paths[0]) as f:
        got = list(csv.DictReader(f))
    assert [int(r["adc_steps"]) for r in got] == [4, 6]


def test_bad_sweep_name():
    with pytest.raises(ValueError, match=r"^sweep must be one of rows, cols, adc_steps, lanes, "
                                         r"not 'depth'$"):
        S.sweep("depth")


def test_critical_paths_are_named_by_registers():
    _liberty_or_skip()
    if S.sta_command() is None:
        pytest.skip("OpenSTA not installed")
    r = S.synth_block("shift_add", small=True, outdir=OUT, cache=False)
    t = r.timing
    assert t["paths"] and t["paths"][0]["critical_path_ns"] == pytest.approx(
        t["critical_path_ns"], abs=1e-3)
    regs = {p["from"] for p in t["paths"]} | {p["to"] for p in t["paths"]}
    # every start and end is an RTL register or a port, never a mapped cell's _NNN_ name
    assert not any(re.fullmatch(r"_\d+_", n) for n in regs), regs
    # the S&A's own registers: accumulator, plane sum, pipeline stages s1..s4, output buffer
    assert any(n in ("acc", "partial", "o__payload") or re.fullmatch(r"s[1-4]", n)
               or n.startswith(("input ", "output ")) for n in regs), regs
    assert t["start_register"] == t["paths"][0]["from"]
    assert len({(p["from"], p["to"]) for p in t["paths"]}) == len(t["paths"])


def test_flip_flop_names_from_netlist(tmp_path):
    net = tmp_path / "n.v"
    net.write_text("""module t(clk);
  DFFPOSX1 _12_ (
    .CLK(clk),
    .D(_3_),
    .Q(\\adc.o__payload [8])
  );
  DFFSR \\keep.me  (.CLK(clk), .D(a), .Q(count), .R(r), .S(s));
  NAND2X1 _13_ (.A(a), .B(b), .Y(c));
endmodule
""")
    names = S.flip_flop_names(net, {"DFFPOSX1", "DFFSR"})
    assert names == {"_12_": "adc.o__payload[8]", "keep.me": "count"}


def test_cache_hit_is_the_same_result_and_keyed_by_the_netlist(tmp_path):
    _liberty_or_skip()
    cache = tmp_path / "cache"
    a = S.synth_block("sar_adc", {"cols": 8}, small=True, outdir=tmp_path, cache=cache)
    assert a.cache == "miss" and len(a.cache_key) == 64
    assert len(list(cache.glob("*/*.json"))) == 1
    b = S.synth_block("sar_adc", {"cols": 8}, small=True, outdir=tmp_path, cache=cache)
    assert b.cache == "hit" and b.cache_key == a.cache_key
    for k in ("cells", "flip_flops", "logic_depth", "area_um2", "cell_types", "timing",
              "scaled_65nm", "tools", "runtime_s"):
        assert getattr(a, k) == getattr(b, k), k
    # another netlist, another key; timing off is another flow
    c = S.synth_block("sar_adc", {"cols": 16}, small=True, outdir=tmp_path, cache=cache)
    d = S.synth_block("sar_adc", {"cols": 8}, small=True, outdir=tmp_path, cache=cache,
                      timing=False)
    assert c.cache == d.cache == "miss"
    assert len({a.cache_key, c.cache_key, d.cache_key}) == 3
    assert d.timing == {}
    # an entry of another flow version is not used
    entry = next(cache.glob(f"*/{a.cache_key}.json"))
    doc = json.loads(entry.read_text())
    doc["flow_version"] = "0"
    entry.write_text(json.dumps(doc))
    assert S.synth_block("sar_adc", {"cols": 8}, small=True, outdir=tmp_path,
                         cache=cache).cache == "miss"


def test_parallel_runs_equal_serial_ones(tmp_path):
    _liberty_or_skip()
    names = ["fp16_cmp", "sar_adc"]
    par = S.synth_all(small=True, outdir=tmp_path, timing=False, names=names, jobs=2,
                      cache=False)
    ser = S.synth_all(small=True, outdir=tmp_path, timing=False, names=names, jobs=1,
                      cache=False)
    assert [r.block for r in par] == names
    assert [(r.cells, r.area_um2) for r in par] == [(r.cells, r.area_um2) for r in ser]


def test_cli_jobs_and_cache_options(tmp_path, capsys):
    assert main(["synth", "sar_adc", "-j", "0"]) == 2
    assert capsys.readouterr().err.strip() == (
        "hyflexpim synth: error: --jobs must be an integer in 1..256, not 0")
    assert main(["synth", "sar_adc", "--no-cache", "--cache-dir", str(tmp_path)]) == 2
    assert "exclude each other" in capsys.readouterr().err
    _liberty_or_skip()
    args = ["synth", "sar_adc", "--small", "-p", "cols=8", "--no-timing", "-o", str(tmp_path),
            "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "0 from the cache" in err and "Yosys " in err
    assert main(args) == 0
    assert "1 from the cache" in capsys.readouterr().err
    md = (tmp_path / "sar_adc-cols8-rows16.md").read_text()
    assert re.search(r"^Tools: .*yosys: Yosys \d", md, re.M)


def test_dask_runs_equal_serial_ones(tmp_path):
    """The blocks of ``synth --all`` as Dask tasks on a 2-worker local cluster: the same
    cells and area as the in-process runs, in the order asked for."""
    pytest.importorskip("distributed")
    _liberty_or_skip()
    names = ["sar_adc", "fp16_cmp"]
    kw = dict(small=True, outdir=tmp_path, timing=False, names=names, cache=False)
    dask = S.synth_all(jobs=2, scheduler="local", **kw)
    ser = S.synth_all(jobs=1, **kw)
    assert [r.block for r in dask] == sorted(names)
    figures = [(r.cells, r.flip_flops, r.area_um2, r.cell_types) for r in ser]
    assert [(r.cells, r.flip_flops, r.area_um2, r.cell_types) for r in dask] == figures


def test_scheduler_option_is_checked(capsys):
    assert main(["synth", "--all", "--scheduler", "somewhere"]) == 2
    assert capsys.readouterr().err.strip() == (
        "hyflexpim synth: error: --scheduler must be 'local', 'serial' or a Dask scheduler "
        "address like tcp://HOST:PORT, not 'somewhere'")
    assert main(["synth", "sar_adc", "--scheduler", "local"]) == 2
    assert capsys.readouterr().err.strip() == (
        "hyflexpim synth: error: --scheduler applies to --all, --overhead and --sweep")
    from hyflexpim.sim.distributed import check_scheduler
    with pytest.raises(TypeError, match=r"^scheduler must be a string, not int$"):
        check_scheduler(3)
