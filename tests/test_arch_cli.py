"""``hyflexpim perf``: JSON output, table, sweep files, and one-line errors (exit 2)."""

import json

import pytest

from hyflexpim.sim.cli import main


def test_json_output(capsys):
    assert main(["perf", "--model", "bert-large", "--seq", "128", "--slc", "0.1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    for k in ("tokens_per_s", "latency_s", "energy_per_token_j", "area_mm2"):
        assert isinstance(r[k], float) and r[k] > 0
    assert set(r["energy_breakdown_j"]) >= {"adc", "wl_drivers", "arrays", "shift_add", "digital_pim", "sfu", "bus"}
    assert r["energy_per_token_j"] == pytest.approx(sum(r["energy_breakdown_j"].values()))


@pytest.mark.parametrize("design", ["slc-only", "hyflexpim", "non-pim", "nmp"])
def test_designs_and_table(capsys, design):
    assert main(["perf", "--model", "gpt2", "--seq", "256", "--design", design]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"gpt2 (decoder), seq 256, design {design}")
    assert "energy per token" in out


def test_placement_file(tmp_path, capsys):
    f = tmp_path / "pl.json"
    assert main(["perf", "--model", "bert-base", "--seq", "128", "--placement", str(f)]) == 0
    data = json.loads(f.read_text())
    assert data["summary"]["pus_per_layer"] >= 1 and data["tiles"]


def test_sweep_csv_only(tmp_path, capsys):
    assert main(["perf", "--sweep", "--no-plots", "--out", str(tmp_path)]) == 0
    lines = (tmp_path / "sweep.csv").read_text().splitlines()
    assert len(lines) == 1 + 5 * 7 * 7 * 4
    assert (tmp_path / "scaling.csv").exists()


def test_sweep_plots(tmp_path):
    from hyflexpim.sim.arch import run_sweep
    res = run_sweep(tmp_path, models=("bert-base", "gpt2"), seqs=(128, 512), slcs=(0.0, 0.1))
    for name in ("throughput_vs_seq.png", "energy_vs_seq.png", "vs_slc.png", "energy_breakdown.png", "scaling.png"):
        assert (tmp_path / name).stat().st_size > 1000


@pytest.mark.parametrize("argv, msg", [
    (["--model", "bert-huge"], r"unknown model 'bert-huge'; presets: bert-base, bert-large, gpt2, llama-3.2-1b, vit-base \(or a .json / .toml config file\)"),
    (["--slc", "1.5"], r"slc must be in \[0, 1\], not 1.5"),
    (["--slc", "-0.2"], r"slc must be in \[0, 1\], not -0.2"),
    (["--seq", "0"], r"seq must be a positive integer, not 0"),
    (["--seq", "2000000"], r"sequence length 2000000 \(batch 1\) does not fit the digital PIM: .*"),
    (["--design", "gpu"], r"design must be one of hyflexpim, slc-only, non-pim, nmp, not 'gpu'"),
    (["--model", "llama-3.2-1b", "--chips", "1"], r"llama-3.2-1b needs 2 chip\(s\) with 3 PU\(s\) per layer .*"),
    (["--model", "nope.json"], r"model config file not found: nope.json"),
    (["--slc-map", "missing.json"], r"mapping file not found: missing.json"),
])
def test_bad_input_one_line_exit_2(capsys, argv, msg):
    assert main(["perf", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    import re
    assert re.fullmatch(rf"hyflexpim perf: error: {msg}\n", err), err


def test_malformed_config_exit_2(tmp_path, capsys):
    f = tmp_path / "m.toml"
    f.write_text("layers = [\n")
    assert main(["perf", "--model", str(f)]) == 2
    assert capsys.readouterr().err.startswith(f"hyflexpim perf: error: model config {f}: malformed")
