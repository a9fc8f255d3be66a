"""Sweeps beyond one process: seeded tasks on Dask distributed, resumable.

A sweep is a list of :class:`Task` (a picklable callable and its arguments; every
random choice of the task comes from a seed among its arguments, so a task gives the
same result wherever and whenever it runs). :func:`run_tasks` runs them:

* on a Dask ``LocalCluster`` of ``workers`` processes (one thread each) by default;
* on an existing Dask scheduler with ``scheduler="tcp://HOST:PORT"`` (started by hand
  with ``dask scheduler`` / ``dask worker``, or by dask-jobqueue on a SLURM, PBS or LSF
  cluster: docs/simulation.md);
* in this process, one after the other, with ``scheduler="serial"`` (the reference
  the tests compare the cluster's results with).

Results come back in the order of the tasks, identical to a serial run. With
``results_dir`` every finished point is stored as it arrives, in a file named by the
hash of its callable and arguments (:meth:`Task.key`), written whole or not at all
(a temporary file renamed): a sweep that is killed and started again loads the points
it has and runs only the others. A progress bar (tqdm) counts the points, the stored
ones included.

A task that raises stops the sweep: the tasks not started are cancelled, the points
already finished stay stored, and :class:`TaskFailed` names the task.

Dask is the ``dist`` extra (``pip install hyflexpim[dist]``; ``./dev setup`` installs
it); :func:`run_tasks` with ``scheduler="serial"`` needs nothing.
"""

import hashlib
import json
import os
import pickle
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Task", "TaskFailed", "run_tasks", "stored", "SERIAL", "LOCAL", "check_scheduler",
           "cocotb_regression",
           "golden_gemv_point"]

#: ``scheduler`` value that runs the tasks in this process, in order.
SERIAL = "serial"
#: ``--scheduler`` value of the sweep commands (``synth``, ``accuracy``) for a Dask
#: ``LocalCluster`` (``run_tasks(scheduler=None)``).
LOCAL = "local"


def check_scheduler(scheduler, name="scheduler"):
    """A sweep command's ``scheduler``: None, :data:`LOCAL`, :data:`SERIAL` or a Dask
    scheduler address ``tcp://HOST:PORT``; returned as is.

    Raises:
        TypeError / ValueError: anything else, naming ``name``.
    """
    if scheduler is None:
        return None
    if not isinstance(scheduler, str):
        raise TypeError(f"{name} must be a string, not {type(scheduler).__name__}")
    if scheduler not in (LOCAL, SERIAL) and "://" not in scheduler:
        raise ValueError(f"{name} must be '{LOCAL}', '{SERIAL}' or a Dask scheduler "
                         f"address like tcp://HOST:PORT, not {scheduler!r}")
    return scheduler


def _canonical(value):
    """JSON-able form of an argument for the key: containers recursively, numbers and
    strings as they are, anything else by its type and ``repr``."""
    if isinstance(value, dict):
        return {"__dict__": sorted((str(k), _canonical(v)) for k, v in value.items())}
    if isinstance(value, (list, tuple)):
        return [type(value).__name__] + [_canonical(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return ["Path", str(value)]
    return [type(value).__module__, type(value).__qualname__, repr(value)]


def _name(fn):
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


@dataclass(frozen=True)
class Task:
    """One point of a sweep: ``fn(*args, **kwargs)``; ``fn`` and the arguments must be
    picklable (a module-level function, not a lambda, for a cluster)."""
    fn: object
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if not callable(self.fn):
            raise TypeError(f"Task fn must be callable, not {self.fn!r}")
        if not isinstance(self.args, tuple):
            raise TypeError(f"Task args must be a tuple, not {type(self.args).__name__}")
        if not isinstance(self.kwargs, dict):
            raise TypeError(f"Task kwargs must be a dict, not {type(self.kwargs).__name__}")

    def key(self):
        """Hex digest naming the point: the callable's qualified name and the arguments."""
        text = json.dumps([_name(self.fn), _canonical(self.args), _canonical(self.kwargs)],
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def describe(self):
        """The call, for messages and the stored file: ``module.fn(args, k=v)``."""
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{_name(self.fn)}({', '.join(parts)})"

    def __call__(self):
        return self.fn(*self.args, **self.kwargs)


class TaskFailed(RuntimeError):
    """A task of :func:`run_tasks` raised; ``task`` is it, ``__cause__`` its exception."""

    def __init__(self, task, exc):
        super().__init__(f"task {task.describe()} failed: {type(exc).__name__}: {exc}")
        self.task = task


def _call(task):
    """What a worker runs (module level, so that it pickles by reference)."""
    return task()


def _path(results_dir, task):
    return Path(results_dir) / f"{task.key()}.pkl"


def _store(results_dir, task, result):
    """Write the point atomically: a temporary file in the same folder, renamed."""
    path = _path(results_dir, task)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pkl")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump({"task": task.describe(), "result": result}, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stored(results_dir, task):
    """``(True, result)`` when the point of ``task`` is stored in ``results_dir``, else
    ``(False, None)`` (a file that cannot be read counts as not stored)."""
    path = _path(results_dir, task)
    try:
        with open(path, "rb") as f:
            return True, pickle.load(f)["result"]
    except FileNotFoundError:
        return False, None
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, AttributeError, ImportError):
        return False, None


def _check(tasks, workers, scheduler):
    tasks = list(tasks)
    bad = [t for t in tasks if not isinstance(t, Task)]
    if bad:
        raise TypeError(f"tasks must be Task objects, not {type(bad[0]).__name__}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"workers must be a positive integer, not {workers!r}")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler):
        raise ValueError(f"scheduler must be a scheduler address (tcp://HOST:PORT) or "
                         f"{SERIAL!r}, not {scheduler!r}")
    return tasks


def run_tasks(tasks, *, results_dir=None, scheduler=None, workers=None, progress=True,
              desc="tasks", cluster_kwargs=None):
    """Run ``tasks`` (:class:`Task`) and return their results in order.

    ``scheduler``: ``None`` (a ``LocalCluster`` of ``workers`` processes, default the
    number of CPUs, started and closed here), a Dask scheduler address, or ``"serial"``.
    ``results_dir``: folder of the stored points (made when missing); points found there
    are not run again. ``progress``: a tqdm bar on stderr named ``desc``.
    ``cluster_kwargs``: more keywords for ``LocalCluster``.

    Raises ``TypeError`` / ``ValueError`` for bad arguments, :class:`TaskFailed` when a
    task raises, ``ImportError`` when Dask is needed and not installed.
    """
    tasks = _check(tasks, workers, scheduler)
    results = [None] * len(tasks)
    todo = []
    if results_dir is not None:
        Path(results_dir).mkdir(parents=True, exist_ok=True)
    for i, task in enumerate(tasks):
        have, value = stored(results_dir, task) if results_dir is not None else (False, None)
        if have:
            results[i] = value
        else:
            todo.append(i)
    from tqdm import tqdm
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=desc,
               disable=not progress, file=sys.stderr, unit="point")
    try:
        if not todo:
            return results

        def done(i, value):
            results[i] = value
            if results_dir is not None:
                _store(results_dir, tasks[i], value)
            bar.update(1)

        if scheduler == SERIAL:
            for i in todo:
                try:
                    value = tasks[i]()
                except Exception as exc:
                    raise TaskFailed(tasks[i], exc) from exc
                done(i, value)
            return results
        _run_dask(tasks, todo, done, scheduler, workers, dict(cluster_kwargs or {}))
        return results
    finally:
        bar.close()


def _run_dask(tasks, todo, done, scheduler, workers, cluster_kwargs):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise ImportError("Dask is not installed: pip install 'hyflexpim[dist]' (or run "
                          "with scheduler='serial')") from exc
    cluster = None
    if scheduler is None:
        kw = dict(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                  processes=True, dashboard_address=None)
        kw.update(cluster_kwargs)
        cluster = LocalCluster(**kw)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        by_key = {}                 # equal tasks run once
        for i in todo:
            by_key.setdefault(tasks[i].key(), []).append(i)
        futures = {client.submit(_call, tasks[idx[0]], key=f"hyflexpim-{k}"): idx
                   for k, idx in by_key.items()}
        for fut in as_completed(list(futures)):
            idx = futures[fut]
            exc = fut.exception()
            if exc is not None:
                for other in futures:
                    other.cancel()
                raise TaskFailed(tasks[idx[0]], exc) from exc
            value = fut.result()
            for i in idx:
                done(i, value)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ----------------------------------------------------------------------------- seeded regressions

def cocotb_regression(block, test_module, seed, *, params=None, small=True, tb_params=None,
                      testcase=None, simulator=None, build_root=None):
    """One seeded cocotb regression run (a task for :func:`run_tasks`): registry block
    ``block`` under ``test_module`` with ``HYFLEXPIM_SEED=seed``
    (:func:`hyflexpim.sim.cocotb_runner.run_block`; a failing test is a result, not an
    exception).

    Returns a dict: ``seed``, ``simulator``, ``tests``, ``failed``, ``failed_tests``
    (names), ``cycles`` (simulated), all fixed by the arguments, and ``log`` (the build
    folder, which names the machine and process). Builds go under ``build_root``
    (default the runner's): one folder per seed for Icarus (a build takes a moment), one
    per worker process for Verilator (its build is reused by the worker's next seeds).
    """
    import socket
    from . import cocotb_runner as R

    sim = R.simulator_name(simulator)
    root = Path(build_root) if build_root else R.BUILD_ROOT
    conf = hashlib.sha1(json.dumps([block, params, small, tb_params], sort_keys=True,
                                   default=str).encode()).hexdigest()[:10]
    where = (f"seed{seed}" if sim == "icarus" else
             f"{socket.gethostname()}-{os.getpid()}")
    bdir = root / "regress" / f"{block}-{conf}-{sim}" / where
    try:
        R.run_block(block, test_module=test_module, params=params, small=small,
                    tb_params=tb_params, testcase=testcase, simulator=sim, quiet=True,
                    build_dir=bdir, extra_env={"HYFLEXPIM_SEED": seed})
    except R.CocotbFailure:
        pass                        # counted from last_run below
    run = R.last_run()
    if run.get("build_dir") != str(bdir):
        raise RuntimeError(f"the cocotb run of {test_module} (seed {seed}) did not finish; "
                           f"see {bdir}")
    return dict(seed=seed, simulator=sim, tests=run["tests"], failed=run["failed"],
                failed_tests=run["failed_tests"], cycles=run["cycles"], log=str(bdir))


# ----------------------------------------------------------------------------- golden-model points

def golden_gemv_point(seed, mode="mlc", *, ber=0.0404, m=64, n=32, vectors=8):
    """One seeded point of an accuracy sweep on the golden model (a task for
    :func:`run_tasks`, and the example of docs/simulation.md): a random INT8 ``m x n``
    matrix programmed in ``mode`` with bit error rate ``ber`` (seed ``seed``), run on
    ``vectors`` random INT8 inputs. Returns ``seed``, ``mode``, ``ber``, the mean and
    largest absolute error against the exact product, and the outputs' checksum."""
    import numpy as np
    from ..models import program_matrix

    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, (m, n))
    x = rng.integers(-128, 128, (vectors, m))
    y = program_matrix(w, mode, ber=ber, seed=seed, saturation="allow").run(x)
    err = np.abs(np.asarray(y, dtype=np.int64) - x @ w)
    return dict(seed=seed, mode=mode, ber=ber, mean_abs_error=float(err.mean()),
                max_abs_error=int(err.max()),
                checksum=hashlib.sha256(np.asarray(y, dtype=np.int64).tobytes()).hexdigest())
