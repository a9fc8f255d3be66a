"""The coverage.dat reader of benchmarks/verilator_coverage.py on a hand-written file
(no simulation): points counted by file, kind and, with an instance, the subtree of the
hierarchy under that instance."""

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "verilator_coverage.py"
_spec = importlib.util.spec_from_file_location("_hyflexpim_verilator_coverage", _PATH)
cov = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cov)


def _point(file, line, kind, module, hier, point, count):
    key = "\x01".join(f"{k}\x02{v}" for k, v in (
        ("f", f"/build/{file}"), ("l", line), ("t", kind), ("page", f"v_{kind}/{module}"),
        ("o", point), ("h", hier)))
    return f"C '\x01{key}' {count}"


POINTS = [
    _point("pu.v", 10, "line", "pu", "pu_sim.core", "block", 3),
    _point("pu.v", 11, "line", "pu", "pu_sim.core", "elsif", 0),
    _point("pu.v", 20, "toggle", "pu", "pu_sim.core", "x[0]:0->1", 1),
    _point("pu.v", 40, "line", "pu.aggregator", "pu_sim.core.aggregator", "if", 0),
    _point("pu.v", 41, "line", "pu.aggregator", "pu_sim.core.aggregator", "block", 7),
    _point("pu.v", 42, "toggle", "pu.aggregator", "pu_sim.core.aggregator", "s[1]:1->0", 0),
    _point("pu.v", 50, "line", "pu.aggregator.fifo", "pu_sim.core.aggregator.fifo", "block",
           2),
    # another instance whose name only starts like the instance asked for
    _point("pu.v", 60, "line", "pu.aggregator_b", "pu_sim.core.aggregator_b", "block", 0),
    _point("pu.v", 70, "branch", "pu", "pu_sim.core", "if", 1),
    # the simulation-only top: another file
    _point("pu_sim.v", 5, "line", "pu_sim", "pu_sim", "block", 1),
]


def test_parse_counts_the_points_of_the_blocks_file(tmp_path):
    dat = tmp_path / "coverage.dat"
    dat.write_text("# SystemC::Coverage-3\n" + "\n".join(POINTS) + "\n")
    counts, missed = cov.parse(dat, "pu.v")
    assert counts == {"line": (3, 6), "toggle": (1, 2), "branch": (1, 1)}
    assert missed == [(11, "elsif"), (40, "if"), (60, "block")]


def test_parse_keeps_an_instance_and_the_instances_under_it(tmp_path):
    dat = tmp_path / "coverage.dat"
    dat.write_text("\n".join(POINTS) + "\n")
    counts, missed = cov.parse(dat, "pu.v", "aggregator")
    assert counts == {"line": (2, 3), "toggle": (0, 1)}
    assert missed == [(40, "if")]
    assert cov.parse(dat, "pu.v", "core.aggregator") == (counts, missed)
    assert cov.parse(dat, "pu.v", "aggregator.fifo")[0] == {"line": (1, 1)}
    assert cov.parse(dat, "pu.v", "digital_0") == ({}, [])


def test_every_contained_block_names_a_run():
    for block, (host, instance) in cov.INSIDE.items():
        assert host in cov.RUNS and block not in cov.RUNS and instance
