"""Sweeps on Dask (sim/distributed.py) and ``hyflexpim regress``: a 2-worker local
cluster (processes) gives the results of a serial run; stored points are not run again,
also after a killed sweep; bad arguments; the CLI's seeds, errors and resume."""

import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hyflexpim.sim.distributed import (SERIAL, Task, TaskFailed, cocotb_regression,
                                       golden_gemv_point, run_tasks, stored)

dask = pytest.importorskip("distributed")


def _sweep(seeds=range(4)):
    return [Task(golden_gemv_point, (s,), dict(mode=m, ber=b))
            for s in seeds for m in ("slc", "mlc") for b in (None, 0.0404)]


def _inodes(folder):
    return {p.name: p.stat().st_ino for p in folder.glob("*.pkl")}


@pytest.fixture(scope="module")
def serial():
    return run_tasks(_sweep(), scheduler=SERIAL, progress=False)


def test_local_cluster_equals_serial_and_resume_skips_stored(tmp_path, serial):
    tasks = _sweep()
    assert len({t.key() for t in tasks}) == len(tasks) == 16
    got = run_tasks(tasks, workers=2, results_dir=tmp_path, progress=False)
    assert got == serial
    assert len(set(r["checksum"] for r in got)) >= 8         # the seeds really differ
    first = _inodes(tmp_path)
    assert sorted(first) == sorted(f"{t.key()}.pkl" for t in tasks)
    # drop three points: only those run again (the others' files are not rewritten)
    for t in tasks[:3]:
        (tmp_path / f"{t.key()}.pkl").unlink()
    again = run_tasks(tasks, workers=2, results_dir=tmp_path, progress=False)
    assert again == serial
    after = _inodes(tmp_path)
    kept = {f"{t.key()}.pkl" for t in tasks[3:]}
    assert {k: after[k] for k in kept} == {k: first[k] for k in kept}
    # everything stored: nothing runs, no scheduler is contacted
    assert run_tasks(tasks, scheduler="tcp://127.0.0.1:9", results_dir=tmp_path,
                     progress=False) == serial


def test_existing_scheduler_address(tmp_path, serial):
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        got = run_tasks(_sweep(), scheduler=cluster.scheduler_address, progress=False)
    assert got == serial


def test_killed_sweep_resumes(tmp_path, serial):
    """A serial sweep killed after some points: the restart loads them (not rewritten)
    and runs the rest; the results equal an uninterrupted run."""
    script = textwrap.dedent(f"""
        import time
        from hyflexpim.sim import distributed as D
        tasks = [D.Task(D.golden_gemv_point, (s,), dict(mode=m, ber=b))
                 for s in range(4) for m in ("slc", "mlc") for b in (None, 0.0404)]
        real = D.Task.__call__
        def slow(self):
            time.sleep(0.4)
            return real(self)
        D.Task.__call__ = slow
        D.run_tasks(tasks, scheduler="serial", results_dir={str(tmp_path)!r}, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("*.pkl"))) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "sweep ended early"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _inodes(tmp_path)
    assert 3 <= len(before) < 16
    got = run_tasks(_sweep(), workers=2, results_dir=tmp_path, progress=False)
    assert got == serial
    after = _inodes(tmp_path)
    assert len(after) == 16 and all(after[k] == v for k, v in before.items())


def test_a_failing_task_stops_the_sweep_and_keeps_the_finished(tmp_path):
    tasks = [Task(golden_gemv_point, (1,)), Task(golden_gemv_point, (2,), dict(mode="nope")),
             Task(golden_gemv_point, (3,))]
    with pytest.raises(TaskFailed, match=r"golden_gemv_point\(2, mode='nope'\) failed: "
                                         r"ValueError"):
        run_tasks(tasks, scheduler=SERIAL, results_dir=tmp_path, progress=False)
    assert stored(tmp_path, tasks[0])[0] and not stored(tmp_path, tasks[1])[0]
    with pytest.raises(TaskFailed, match=r"mode='nope'"):
        run_tasks(tasks, workers=2, results_dir=tmp_path / "c", progress=False)


def test_unreadable_stored_point_runs_again(tmp_path):
    t = Task(golden_gemv_point, (5,))
    (tmp_path / f"{t.key()}.pkl").write_bytes(b"not a pickle")
    assert stored(tmp_path, t) == (False, None)
    [r] = run_tasks([t], scheduler=SERIAL, results_dir=tmp_path, progress=False)
    assert stored(tmp_path, t) == (True, r)
    with open(tmp_path / f"{t.key()}.pkl", "rb") as f:
        assert pickle.load(f)["task"] == "hyflexpim.sim.distributed.golden_gemv_point(5)"


def test_keys_follow_the_arguments():
    a = Task(golden_gemv_point, (1,), dict(mode="slc"))
    assert a.key() == Task(golden_gemv_point, (1,), dict(mode="slc")).key()
    assert a.key() != Task(golden_gemv_point, (1,), dict(mode="mlc")).key()
    assert a.key() != Task(golden_gemv_point, (2,), dict(mode="slc")).key()
    assert a.key() != Task(golden_gemv_point, (1.0,), dict(mode="slc")).key()
    assert a.key() != Task(cocotb_regression, (1,), dict(mode="slc")).key()


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(workers=0), ValueError, r"^workers must be a positive integer, not 0$"),
    (dict(workers=True), ValueError, r"^workers must be a positive integer, not True$"),
    (dict(scheduler=""), ValueError, r"^scheduler must be a scheduler address"),
])
def test_bad_arguments(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        run_tasks(_sweep(range(1)), progress=False, **kwargs)


def test_bad_tasks():
    with pytest.raises(TypeError, match=r"^tasks must be Task objects, not tuple$"):
        run_tasks([(golden_gemv_point, 1)], scheduler=SERIAL)
    with pytest.raises(TypeError, match=r"^Task fn must be callable, not 3$"):
        Task(3)
    with pytest.raises(TypeError, match=r"^Task args must be a tuple, not list$"):
        Task(golden_gemv_point, [1])
    with pytest.raises(TypeError, match=r"^Task kwargs must be a dict, not list$"):
        Task(golden_gemv_point, (1,), [])


# ----------------------------------------------------------------------------- the CLI

def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hyflexpim.sim.cli", *args],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("args, msg", [
    (["nope", "analog_tb"], "unknown block 'nope'"),
    (["analog_array", "nope_tb"], "test module 'nope_tb' not found"),
    (["analog_array", "analog_tb", "--seeds", "3..1"], "--seeds N..M needs N <= M"),
    (["analog_array", "analog_tb", "--seeds", "x"], "--seeds takes integers"),
    (["analog_array", "analog_tb", "--seeds", "1,1"], "--seeds names a seed twice"),
    (["analog_array", "analog_tb", "--seeds", "0..100000"], "at most 100000 seeds"),
    (["analog_array", "analog_tb", "--workers", "0"], "--workers must be in 1..1024"),
    (["analog_array", "analog_tb", "--scheduler", "nope"], "--scheduler must be an address"),
    (["analog_array", "analog_tb", "--tb-params", "[1]"], "--tb-params must be a JSON object"),
    (["analog_array", "analog_tb", "-p", "zz=1"], "has no parameter 'zz'"),
])
def test_regress_cli_errors(args, msg):
    from hyflexpim.sim.cli import main
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["regress", *args]) == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hyflexpim regress: error: ") and msg in lines[0]


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="no iverilog")
def test_regress_cli_two_workers_then_resume(tmp_path):
    """Two seeds of the small analog array's random test on a 2-worker local cluster,
    then again: every seed is loaded from the results folder (no simulation)."""
    env = dict(os.environ, HYFLEXPIM_BUILD=str(tmp_path / "build"))
    args = ["regress", "analog_array", "analog_tb", "--seeds", "1..2", "--workers", "2",
            "--testcase", "random_slc_mlc_noise_off_and_on", "--results", str(tmp_path / "pts"),
            "-p", "slc_bits=4", "-p", "mlc_bits=5", "-p", "read_cycles=2", "--no-progress"]
    first = _cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert "2 seeds (0 stored" in lines[0] and "a local cluster of 2 workers" in lines[0]
    assert [ln.split(":")[0] for ln in lines[1:3]] == ["seed 1", "seed 2"]
    assert all(" 1 passed, " in ln and ln.endswith(" cycles") for ln in lines[1:3])
    assert lines[-1] == "2 of 2 seeds passed"
    logs = sorted((tmp_path / "build" / "regress").glob("*/seed*"))
    assert [p.name for p in logs] == ["seed1", "seed2"]
    shutil.rmtree(tmp_path / "build")
    again = _cli(*args, env=env)
    assert again.returncode == 0, again.stderr
    assert "2 seeds (2 stored" in again.stdout.splitlines()[0]
    assert again.stdout.splitlines()[1:] == lines[1:]
    assert not (tmp_path / "build" / "regress").exists()       # nothing was simulated
    # the same seeds through the serial path give the same points
    serial = [cocotb_regression("analog_array", "hyflexpim.tb.analog_tb", s,
                                params=dict(slc_bits=4, mlc_bits=5, read_cycles=2),
                                tb_params={}, testcase=["random_slc_mlc_noise_off_and_on"],
                                simulator="icarus", build_root=str(tmp_path / "b2"))
              for s in (2,)]
    stored_pts = run_tasks([Task(cocotb_regression, ("analog_array", "hyflexpim.tb.analog_tb", 2),
                                 dict(params=dict(slc_bits=4, mlc_bits=5, read_cycles=2),
                                      small=True, tb_params={},
                                      testcase=["random_slc_mlc_noise_off_and_on"],
                                      simulator="icarus",
                                      build_root=str((tmp_path / "build").resolve())))],
                           scheduler="tcp://127.0.0.1:9", results_dir=tmp_path / "pts",
                           progress=False)
    drop = lambda r: {k: v for k, v in r.items() if k != "log"}     # noqa: E731
    assert [drop(r) for r in stored_pts] == [drop(r) for r in serial]
