"""``hyflexpim perf``: JSON output, table, sweep and report files, and one-line errors
(exit 2) for bad input, bad output paths and a closed stdout."""

import json
import os
import re
import subprocess
import sys

import pytest

from hyflexpim.sim.cli import main


def test_json_output(capsys):
    assert main(["perf", "--model", "bert-large", "--seq", "128", "--slc", "0.1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    for k in ("tokens_per_s", "latency_s", "energy_per_token_j", "linear_energy_per_token_j",
              "area_mm2", "area_efficiency"):
        assert isinstance(r[k], float) and r[k] > 0
    assert set(r["energy_breakdown_j"]) >= {"adc", "wl_drivers", "arrays", "shift_add", "digital_pim", "sfu", "bus"}
    assert r["energy_per_token_j"] == pytest.approx(sum(r["energy_breakdown_j"].values()))
    assert r["bottleneck"] in ("analog", "digital_pim", "sfu", "inner_bus", "global_bus", "chip_link")
    assert set(r["utilisation"]) >= {"analog_arrays_placed", "analog_busy", "digital_pim_busy", "sfu_busy"}


@pytest.mark.parametrize("design", ["slc-only", "hyflexpim", "asadi", "asadi-dagger", "sprint", "non-pim", "nmp"])
def test_designs_and_table(capsys, design):
    assert main(["perf", "--model", "gpt2", "--seq", "256", "--design", design]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"gpt2 (decoder), seq 256, design {design}")
    assert "energy per token" in out


def test_workload_and_options(capsys):
    assert main(["perf", "--workload", "cifar10", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["model"], r["seq"], r["generated_tokens"]) == ("vit-base", 197, 0)
    assert main(["perf", "--workload", "wikitext2", "--json", "--schedule", "overlap", "--adc-law", "linear"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["model"], r["seq"], r["generated_tokens"], r["schedule"]) == ("gpt2", 1024, 0, "overlap")


def test_placement_file(tmp_path, capsys):
    f = tmp_path / "pl.json"
    assert main(["perf", "--model", "bert-base", "--seq", "128", "--placement", str(f)]) == 0
    data = json.loads(f.read_text())
    assert data["summary"]["pus_per_layer"] >= 1 and data["layouts"][0]["chunks"] and data["groups"]
    assert len(data["layers"]) == 12


def test_sweep_csv_only(tmp_path, capsys):
    assert main(["perf", "--sweep", "--no-plots", "--out", str(tmp_path)]) == 0
    lines = (tmp_path / "sweep.csv").read_text().splitlines()
    assert len(lines) == 1 + 5 * 7 * 7 * 7
    assert (tmp_path / "scaling.csv").exists()


def test_sweep_plots(tmp_path):
    from hyflexpim.sim.arch import run_sweep
    res = run_sweep(tmp_path, models=("bert-base", "gpt2"), seqs=(128, 512), slcs=(0.0, 0.1))
    for name in ("throughput_vs_seq.png", "energy_vs_seq.png", "vs_slc.png", "energy_breakdown.png", "scaling.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_report_json_rows(tmp_path, capsys):
    assert main(["perf", "--report", "--no-plots", "--json", "--out", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    keys = {"metric", "model", "workload", "seq", "slc", "baseline", "design", "value"}
    metrics = {"speedup", "linear_energy_efficiency", "energy_efficiency", "area_efficiency", "scaling"}
    bases = {"asadi", "asadi_dagger", "sprint", "nmp", "non_pim", "1pu", "2chips"}
    for r in rows:
        assert set(r) == keys and r["metric"] in metrics and r["baseline"] in bases
        assert r["workload"] in ("glue", "wikitext2", "ptb", "cifar10")
        assert isinstance(r["seq"], int) and isinstance(r["value"], float) and r["value"] > 0
    assert {r["metric"] for r in rows} == metrics
    sp = [r for r in rows if r["metric"] == "speedup"]
    assert {r["seq"] for r in sp} == {128, 256, 512, 1024, 2048, 4096, 8192}
    assert {r["slc"] for r in sp} == {0.05, 0.1, 0.2}
    sc = {(r["model"], r["baseline"], r["design"]) for r in rows if r["metric"] == "scaling"}
    assert sc == {("gpt2", "1pu", "2pu"), ("llama-3.2-1b", "2chips", "4chips"), ("llama-3.2-1b", "2chips", "8chips")}
    assert json.loads((tmp_path / "report.json").read_text()) == rows
    md = (tmp_path / "report.md").read_text()
    assert "## Speed-up over asadi_dagger vs sequence length" in md and "SLC-only" in md


def test_report_plots(tmp_path):
    from hyflexpim.sim.arch import run_report
    run_report(tmp_path, models=("bert-base", "gpt2"), seqs=(128, 1024), slcs=(0.1,))
    for name in ("speedup_asadi_dagger.png", "speedup_sprint.png", "energy_breakdown.png"):
        assert (tmp_path / name).stat().st_size > 1000


def _one_line(capsys, argv, msg):
    assert main(["perf", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.fullmatch(rf"hyflexpim perf: error: {msg}\n", err), err


@pytest.mark.parametrize("argv, msg", [
    (["--model", "bert-huge"], r"unknown model 'bert-huge'; presets: bert-base, bert-large, gpt2, llama-3.2-1b, vit-base \(or a .json / .toml config file\)"),
    (["--slc", "1.5"], r"slc must be in \[0, 1\], not 1.5"),
    (["--slc", "-0.2"], r"slc must be in \[0, 1\], not -0.2"),
    (["--slc", "nan"], r"slc must be in \[0, 1\], not nan"),
    (["--seq", "0"], r"seq must be an integer in 1..1048576, not 0"),
    (["--seq", "2000000"], r"seq must be an integer in 1..1048576, not 2000000"),
    (["--seq", "1000000"], r"sequence length 1000000 \(batch 1\) does not fit the digital PIM: .*"),
    (["--design", "gpu"], r"design must be one of 'hyflexpim', 'slc-only', 'asadi', 'asadi-dagger', 'sprint', 'nmp', 'non-pim', not 'gpu'"),
    (["--model", "llama-3.2-1b", "--chips", "1"], r"llama-3.2-1b needs 2 chip\(s\) with 3 PU\(s\) per layer .*"),
    (["--chips", "100000"], r"chips must be an integer in 1..65536, not 100000"),
    (["--batch", "0"], r"batch must be an integer in 1..65536, not 0"),
    (["--model", "nope.json"], r"model config file not found: nope.json"),
    (["--slc-map", "missing.json"], r"mapping file not found: missing.json"),
    (["--workload", "imagenet"], r"workload must be one of 'glue', 'wikitext2', 'ptb', 'cifar10', not 'imagenet'"),
    (["--schedule", "eager"], r"schedule must be one of 'sequence', 'overlap', not 'eager'"),
    (["--adc-law", "cubic"], r"adc-law must be one of 'doubling', 'linear', not 'cubic'"),
    (["--design", "sprint", "--pus-per-layer", "2"], r"pus-per-layer applies to hyflexpim, slc-only, asadi, asadi-dagger, not sprint"),
    (["--sweep", "--report"], r"--sweep and --report are separate runs; give one"),
])
def test_bad_input_one_line_exit_2(capsys, argv, msg):
    _one_line(capsys, argv, msg)


def test_bad_files_one_line_exit_2(tmp_path, capsys):
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"layers": 10**9, "hidden": 768, "heads": 12, "ffn": 3072, "kind": "encoder"}))
    _one_line(capsys, ["--model", str(big)], rf"model config {re.escape(str(big))}: layers must be an integer in 1..1024, not 1000000000")
    m = tmp_path / "m.toml"
    m.write_text("layers = [\n")
    assert main(["perf", "--model", str(m)]) == 2
    assert capsys.readouterr().err.startswith(f"hyflexpim perf: error: model config {m}: malformed")
    gate = tmp_path / "gate.json"
    gate.write_text(json.dumps({"matrices": {"L0.gate": {"slc_fraction": 0.5}}}))
    _one_line(capsys, ["--slc-map", str(gate)], r"mapping entry 'L0.gate': bert-large has no gate matrix \(its matrices: q, k, v, o, ffn1, ffn2\)")
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"matrices": {}}))
    _one_line(capsys, ["--slc-map", str(empty)], rf"mapping file {re.escape(str(empty))}: no matrix entries; .*")
    _one_line(capsys, ["--slc-map", str(tmp_path)], rf"mapping file {re.escape(str(tmp_path))} is a directory, not a file")
    _one_line(capsys, ["--params", str(tmp_path)], rf"parameter file {re.escape(str(tmp_path))} is a directory, not a file")
    _one_line(capsys, ["--model", str(tmp_path)], rf"model config {re.escape(str(tmp_path))} is a directory, not a file")


def test_output_paths_one_line_exit_2(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    _one_line(capsys, ["--report", "--no-plots", "--out", str(afile)],
              rf"output folder {re.escape(str(afile))} exists and is not a folder")
    _one_line(capsys, ["--sweep", "--no-plots", "--out", str(afile / "sub")],
              rf"cannot create the output folder {re.escape(str(afile / 'sub'))}: Not a directory")
    _one_line(capsys, ["--placement", str(tmp_path)], rf"placement file {re.escape(str(tmp_path))} is a directory")
    _one_line(capsys, ["--placement", str(afile / "pl.json")],
              rf"cannot write the placement file {re.escape(str(afile / 'pl.json'))}: Not a directory")
    if os.path.exists("/dev/full"):
        _one_line(capsys, ["--placement", "/dev/full"], r"cannot write the placement file /dev/full: No space left on device")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):                # not when the tests run as root
            _one_line(capsys, ["--report", "--no-plots", "--out", str(ro / "x")],
                      rf"cannot create the output folder {re.escape(str(ro / 'x'))}: Permission denied")
    finally:
        ro.chmod(0o700)


def _cli(argv, stdout):
    return subprocess.run([sys.executable, "-m", "hyflexpim", "perf", *argv], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=120)


def test_closed_stdout_one_line_exit_2():
    """``hyflexpim perf | head -1``: the reader is gone before the table is written."""
    r, w = os.pipe()
    os.close(r)
    try:
        res = _cli(["--model", "bert-base"], w)
    finally:
        os.close(w)
    assert res.returncode == 2
    assert res.stderr == "hyflexpim perf: error: cannot write the output to stdout (broken pipe)\n"
    if os.path.exists("/dev/full"):
        with open("/dev/full", "w") as full:
            res = _cli(["--json"], full)
        assert res.returncode == 2
        assert res.stderr == "hyflexpim perf: error: cannot write the output to stdout (No space left on device)\n"
    shell = subprocess.run(f"{sys.executable} -m hyflexpim perf --model gpt2 | head -1", shell=True,
                           capture_output=True, text=True, timeout=120)
    assert shell.stdout == "gpt2 (decoder), seq 128, design hyflexpim, SLC 10%\n"
    assert shell.stderr in ("", "hyflexpim perf: error: cannot write the output to stdout (broken pipe)\n")
