"""Shared fixtures and helpers (import the helpers with ``from conftest import ROOT, genlab_run``)."""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

import genlab

ROOT = Path(__file__).resolve().parents[1]
"""The repository root (specs are under ROOT / "sweeps")."""


def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


def side_by_side(fn, *calls: tuple) -> list:
    """``fn(*args)`` for each ``args`` in ``calls``, each in a fresh process on one torch thread, all at once.

    For learning tests that train a method and its baseline: the two runs share nothing, so on 2 cores they take
    the time of one (and on one free core, of both, as in-process). ``fn`` must be a module-level function."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(len(calls), mp_context=mp.get_context("spawn"), initializer=_one_torch_thread) as pool:
        return [f.result() for f in [pool.submit(fn, *args) for args in calls]]


_STORE_TEMPLATE: Path | None = None


def sqlite_store(path: Path) -> str:
    """The URI of a new, empty MLflow SQLite store at ``path`` (a file), as MLflow makes one on first use: a copy of
    one store that MLflow migrated once per test session. MLflow runs its ~60 schema migrations on every new store,
    5-10 s of CPU each time, and the suite makes dozens. The copy leaves out the Default experiment, which MLflow
    adds with its artifact location when the store is first opened, as it does for a store it made itself.
    (The demo test keeps a store MLflow makes: the first run's output is what it checks.)"""
    global _STORE_TEMPLATE
    if _STORE_TEMPLATE is None:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        folder = Path(tempfile.mkdtemp(prefix="genlab-mlflow-template-"))
        atexit.register(shutil.rmtree, folder, True)
        db = folder / "mlflow.db"
        SqlAlchemyStore(f"sqlite:///{db}", str(folder / "artifacts")).engine.dispose()
        with sqlite3.connect(db) as con:
            con.execute("DELETE FROM experiments WHERE experiment_id = 0")
        con.close()
        _STORE_TEMPLATE = db
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists: sqlite_store makes a new store, before anything logs to it")
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_STORE_TEMPLATE, path)
    return f"sqlite:///{path}"


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)  # always a local Ray, never a cluster the machine happens to point at
    env.pop("GENLAB_COMMAND", None)  # each command records its own argv as the run's source
    env["COLUMNS"] = "120"  # tables cut to the terminal's width come out the same wherever the suite runs
    return env


def genlab_start(cwd: Path, *args: str, **kw) -> subprocess.Popen:
    """Start ``python -m genlab ARGS`` in ``cwd`` as a user would, stdout and stderr merged into ``.stdout``."""
    return subprocess.Popen([sys.executable, "-m", "genlab", *map(str, args)], cwd=cwd, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def genlab_run(cwd: Path, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m genlab ARGS`` in ``cwd`` to the end; with ``check``, fail the test on a non-zero exit."""
    proc = subprocess.run([sys.executable, "-m", "genlab", *map(str, args)], cwd=cwd, env=_env(), text=True,
                          capture_output=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def train_like_the_runner(make_algo, spec, **batch_args):
    """Train ``make_algo(hparams, dataset)`` on ``spec`` as the generative runner's worker loop does (same seeding,
    same batches), in this process, for learning tests; returns ``(algo, dataset)``. ``batch_args`` go to
    ``data.batches`` (e.g. ``labels=False`` for unsupervised methods)."""
    import torch

    from genlab import data

    ds = data.load(spec.data)
    torch.manual_seed(spec.seed)
    algo = make_algo(spec.hparams_obj(), ds)
    args = dict(batch_size=spec.data.batch_size, seed=spec.seed, steps=spec.budget.steps_per_epoch, **batch_args)
    algo.initialize(next(iter(data.batches(ds, epoch=0, **args))))
    for epoch in range(1, spec.budget.epochs + 1):
        torch.manual_seed(spec.seed * 1_000_003 + epoch * 1009)
        for batch in data.batches(ds, epoch=epoch, **args):
            algo.train_step(batch)
        algo.end_epoch(epoch)
    return algo, ds


@pytest.fixture
def one_torch_thread():
    """Small nets: one torch thread is fastest, and on a shared 2-core machine a second one mostly spins (a module
    opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _tracking_uri_restored():
    """``mlflow.set_tracking_uri`` (called by some tests and by genlab's runners in-process) also sets
    MLFLOW_TRACKING_URI in os.environ, so every later ``genlab`` subprocess would log into that test's store."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules and os.environ.get("MLFLOW_TRACKING_URI") != before:
        import mlflow

        mlflow.set_tracking_uri(before)  # None unsets the variable
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture(scope="module")
def ray_local():
    """A local 2-CPU Ray for the tests of one module, shut down after them (nothing is left running).

    The dashboard is on: Ray Train's placement-group cleaner needs its state API (see genlab.launch).
    """
    import ray

    from genlab import ray_compat
    from genlab.launch import local_ray_options

    options = local_ray_options(2, {"env_vars": genlab.RAY_ENV_VARS})
    ray_compat.patient_dashboard_start()
    ray.init(logging_level="ERROR", **options)
    # The state API in this process asks this Ray's dashboard, whatever other Ray runs on the machine.
    before = os.environ.get("RAY_API_SERVER_ADDRESS")
    os.environ["RAY_API_SERVER_ADDRESS"] = options["runtime_env"]["env_vars"]["RAY_API_SERVER_ADDRESS"]
    yield
    ray.shutdown()
    if before is None:
        os.environ.pop("RAY_API_SERVER_ADDRESS", None)
    else:
        os.environ["RAY_API_SERVER_ADDRESS"] = before


def free_port() -> int:
    """A port for a server the test starts next, outside the range other processes' connections draw from."""
    from genlab.launch import unused_port

    return unused_port()


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server on 127.0.0.1 (SQLite store, proxied artifacts), started as a cluster's head
    starts it (cluster/start_mlflow.sh), stopped by pid afterwards; yields its URL."""
    port = free_port()
    sqlite_store(tmp_path / "mlflow" / "mlflow.db")  # the script's default store, already migrated
    env = {**os.environ, "GENLAB_MLFLOW_HOST": "127.0.0.1", "GENLAB_MLFLOW_PORT": str(port),
           "GENLAB_MLFLOW_DIR": str(tmp_path / "mlflow"), "MLFLOW_BIN": str(Path(sys.executable).parent / "mlflow")}
    out = subprocess.run(["bash", ROOT / "cluster" / "start_mlflow.sh"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    uri = out.stdout.strip().splitlines()[-1]
    assert uri == f"http://127.0.0.1:{port}"
    yield uri
    server = psutil.Process(int((tmp_path / "mlflow" / "server.pid").read_text()))
    procs = [server, *server.children(recursive=True)]
    for p in procs:
        p.terminate()
    psutil.wait_procs(procs, timeout=10)
