"""The cluster path, with Ray's own tools on this machine: `ray start --head` (token auth on), jobs
submitted with `ray job submit` and `genlab submit`, an MLflow tracking server over HTTP, and an
autoscaling cluster (Ray's fake_multinode provider) that adds GPU nodes for a sweep and removes them.

Each test starts its own head in its own --temp-dir on free ports and, in teardown, ends exactly the
processes of that head (by pid: those whose command line or open files are under its temp dir, and
their children). It never runs `ray stop`, which would end every Ray process on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import ROOT, free_port, sqlite_store
from test_mlflow_ui import check_sweep_as_the_ui_shows_it

from genlab import jobs, tracking

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
SWEEP = "sweeps/improved_gan/digits_sweep.yaml"
TINY = ["--set", "run.budget.epochs=2", "--set", "num_samples=2", "--set", "scheduler.grace_period=1",
        "--set", "run.budget.checkpoint_every=1",
        "--set", "run.hparams.d_hidden=[128, 64]", "--set", "run.hparams.g_hidden=[64]"]


class RayHead:
    """`ray start --head` with token auth, in its own temp dir and ports; `stop()` ends only its processes."""

    def __init__(self, *, num_cpus: int, extra_env: dict[str, str] | None = None, autoscaling: dict | None = None):
        self.tmp = Path(tempfile.mkdtemp(prefix="gl", dir="/tmp"))  # short: Ray's socket paths have a length limit
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY_AUTH_MODE": "token",
                    "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_URI"):
            self.env.pop(k, None)
        args = [f"--num-cpus={num_cpus}", "--num-gpus=0"]
        if autoscaling is not None:
            import ray._private.services

            # The fake provider joins its nodes to <node ip>:6379 unless told the head's real address.
            autoscaling["provider"]["gcs_address"] = f"{ray._private.services.get_node_ip_address()}:{self.gcs_port}"
            cfg = self.tmp / "autoscaling.json"
            cfg.write_text(json.dumps(autoscaling))
            args.append(f"--autoscaling-config={cfg}")
        # Ray 2.60 turns token auth on for `ray start --head` only when a token exists: make sure one does.
        subprocess.run([BIN / "ray", "get-auth-token", "--generate"], env=self.env, check=True,
                       capture_output=True)
        cmd = [BIN / "ray", "start", "--head", f"--port={self.gcs_port}", f"--dashboard-port={self.dashboard_port}",
               "--dashboard-host=127.0.0.1", f"--ray-client-server-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={self.tmp / 'ray'}",
               "--object-store-memory=300000000", "--disable-usage-stats", *args]
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed:\n{out.stdout}\n{out.stderr}")
        # The token, the way a user gets it on the head.
        self.token = subprocess.run([BIN / "ray", "get-auth-token"], env=self.env, check=True, capture_output=True,
                                    text=True).stdout.strip()
        self.client_env = {**self.env, "RAY_AUTH_TOKEN": self.token}

    def job_client(self):
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.address, headers={"Authorization": f"Bearer {self.token}"})

    def nodes(self) -> list[dict]:
        """Alive nodes, from the dashboard's state API."""
        req = urllib.request.Request(f"{self.address}/api/v0/nodes?limit=100",
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            rows = json.load(r)["data"]["result"]["result"]
        return [n for n in rows if n["state"] == "ALIVE"]

    def diagnose(self) -> str:
        """What keeps nodes busy: `ray status` (resource requests, demands), live actors and placement groups."""
        status = subprocess.run([BIN / "ray", "status", f"--address=127.0.0.1:{self.gcs_port}"], env=self.client_env,
                                capture_output=True, text=True, timeout=60).stdout
        live = {}
        for kind in ("actors", "placement_groups"):
            req = urllib.request.Request(f"{self.address}/api/v0/{kind}?limit=200&detail=1",
                                         headers={"Authorization": f"Bearer {self.token}"})
            with urllib.request.urlopen(req, timeout=10) as r:
                rows = json.load(r)["data"]["result"]["result"]
            live[kind] = [{k: v for k, v in row.items() if k in ("class_name", "state", "node_id", "name",
                                                                 "placement_group_id", "bundles", "creator_job_id",
                                                                 "is_detached", "job_id")}
                          for row in rows if row.get("state") not in ("DEAD", "REMOVED")]
        return f"{status}\n{json.dumps(live, indent=1)}"

    def wait_for_job(self, job_id: str, timeout: float) -> str:
        client, deadline = self.job_client(), time.time() + timeout
        while time.time() < deadline:
            status = str(client.get_job_status(job_id).value)
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                return status
            time.sleep(2)
        return "TIMEOUT"

    def stop(self) -> None:
        mine = str(self.tmp)
        procs: dict[int, psutil.Process] = {}
        for p in psutil.process_iter():
            if p.pid != os.getpid() and _uses(p, mine):
                procs[p.pid] = p
                with contextlib.suppress(psutil.Error):
                    procs.update({c.pid: c for c in p.children(recursive=True)})
        for p in procs.values():
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(list(procs.values()), timeout=3)  # some Ray workers ignore SIGTERM
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _uses(p: psutil.Process, path: str) -> bool:
    """Whether the process was started under ``path`` or holds a file there (Ray's renamed ray:: workers do)."""
    try:
        return path in " ".join(p.cmdline()) or any(f.path.startswith(path) for f in p.open_files())
    except psutil.Error:
        return False


@pytest.fixture
def head_factory():
    heads = []

    def make(**kw) -> RayHead:
        heads.append(RayHead(**kw))
        return heads[-1]

    yield make
    for h in heads:
        h.stop()


def trial_runs(uri: str, experiment: str) -> list:
    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} at {uri}"
    runs = c.search_runs([exp.experiment_id])
    return [r for r in runs if tracking.TAG_TRIAL in r.data.tags]


def test_ray_job_submit_runs_a_sweep_that_logs_to_the_mlflow_server_as_its_ui_shows_it(head_factory, mlflow_server,
                                                                                         tmp_path):
    head = head_factory(num_cpus=2)
    storage = tmp_path / "results"

    # Token auth is on: a client without the token is refused, with a message that says how to get it.
    no_token_env = {**head.env, "HOME": str(tmp_path)}  # no ~/.ray/auth_token there
    no_token_env.pop("RAY_AUTH_MODE")
    out = subprocess.run([sys.executable, "-m", "genlab", "submit", SWEEP, "--address", head.address,
                          "--storage", str(storage)], cwd=ROOT, env=no_token_env, capture_output=True, text=True)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "refused" in out.stderr and "RAY_AUTH_TOKEN" in out.stderr, out.stderr

    # The user's command: plain `ray job submit` with genlab's runtime env file, from the repository root.
    out = subprocess.run(
        [BIN / "ray", "job", "submit", "--address", head.address, "--runtime-env", "cluster/runtime_env.yaml",
         "--no-wait", "--", "python", "-m", "genlab", "sweep", SWEEP, "--set", "name=jobs-sweep",
         "--set", f"run.tracking.uri={mlflow_server}", "--set", "run.tracking.experiment=cluster", *TINY,
         "--set", "scheduler.type=fifo", "--storage", str(storage), "--register", "digits-best"],
        cwd=ROOT, env=head.client_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    job_id = re.search(r"raysubmit_[A-Za-z0-9]+", out.stdout).group(0)

    status = head.wait_for_job(job_id, timeout=420)
    client = head.job_client()
    logs = client.get_job_logs(job_id)
    assert status == "SUCCEEDED", logs[-4000:]
    assert "Best trial:" in logs
    # The driver imported genlab from the job's py_modules, not from the checkout or an install.
    assert f"from {head.tmp}/ray/session_" in logs and "/runtime_resources/py_modules_files/" in logs, logs[:3000]
    assert any(j.submission_id == job_id and "genlab sweep" in j.entrypoint for j in client.list_jobs())

    # The trials logged over HTTP to the MLflow server: metrics, images through its artifact proxy.
    runs = trial_runs(mlflow_server, "cluster")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    c = tracking.client(mlflow_server)
    for r in runs:
        assert "/runtime_resources/py_modules_files/" in r.data.tags[tracking.TAG_CODE]  # rank 0 worker's genlab
        assert len(c.get_metric_history(r.info.run_id, "eval/test_error")) >= 1
    png = c.download_artifacts(runs[0].info.run_id, "samples/epoch_0001.png", str(tmp_path))
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((tmp_path / "mlflow" / "artifacts").rglob("epoch_0001.png")), "server did not store the artifact"

    # Tune wrote TensorBoard event files where `tensorboard --logdir <storage>/<sweep>` reads them.
    assert list((storage / "jobs-sweep").rglob("events.out.tfevents.*"))

    # The sweep as the MLflow UI shows it: parent and trials, inputs, Source, system metrics, models that load.
    # (FIFO, not ASHA: a trial ASHA stops after its first 2-second epoch is killed before it logs system metrics.)
    check_sweep_as_the_ui_shows_it(mlflow_server, "cluster", logs, "digits-best", tmp_path)


def test_autoscaling_cluster_adds_gpu_nodes_for_a_sweep_and_removes_them(head_factory, tmp_path):
    config = yaml.safe_load((ROOT / "cluster" / "local-autoscaling.yaml").read_text())
    head = head_factory(num_cpus=1, autoscaling=config,
                        extra_env={"RAY_FAKE_CLUSTER": "1", "GENLAB_LOGICAL_GPUS": "1",
                                   "AUTOSCALER_UPDATE_INTERVAL_S": "1"})
    assert len(head.nodes()) == 1

    seen: dict[str, dict] = {}  # node id -> node, every node seen alive
    counts: list[int] = []
    changes: list[tuple[int, int]] = []  # (seconds since submission, alive nodes) at every change
    stop, scaled_down = threading.Event(), threading.Event()
    t0 = time.time()

    def watch() -> None:
        while not stop.is_set():
            try:
                alive = head.nodes()
            except OSError:
                alive = None
            if alive is not None:
                if not counts or counts[-1] != len(alive):
                    changes.append((round(time.time() - t0), len(alive)))
                counts.append(len(alive))
                seen.update({n["node_id"]: n for n in alive})
                if len(alive) == 1 and max(counts) > 1:
                    scaled_down.set()
            stop.wait(1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    uri = sqlite_store(tmp_path / "mlflow.db")
    try:
        out = subprocess.run(
            [sys.executable, "-m", "genlab", "submit", SWEEP, "--address", head.address, "--storage",
             str(tmp_path / "results"), "--tracking-uri", uri, "--set", "name=gpu-sweep",
             "--set", "run.resources.gpus_per_worker=1", *TINY, "--follow"],
            cwd=ROOT, env=head.client_env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]
        assert "submitted job raysubmit_" in out.stdout and f"{head.address}/#/jobs/raysubmit_" in out.stdout
        job_done = round(time.time() - t0)

        # The nodes go away once idle (idle_timeout_minutes: 0.1 in the YAML): wait for that event, with a bound
        # generous enough for a loaded machine (the autoscaler's loop and node shutdown slow down with it).
        scaled_down.wait(timeout=300)
    finally:
        stop.set()
        watcher.join(timeout=15)

    freed = [line for line in out.stdout.splitlines() if "left by ended trials" in line]
    print(f"\nnodes alive (s after submission, count): {changes}; job ended at {job_done} s; {freed}")
    gpu_nodes = {i for i, n in seen.items() if n["resources_total"].get("GPU", 0) > 0}
    head_ids = {i for i, n in seen.items() if n["is_head_node"]}
    assert max(counts) == 3 and len(gpu_nodes) == 2, (counts, seen.keys())
    assert counts[-1] == 1, f"worker nodes were not removed after the idle timeout: {counts}\n{head.diagnose()}"
    # Each trial's Ray Train worker ran on one of the added GPU nodes, not on the CPU-only head.
    runs = trial_runs(uri, "genlab")
    placed = {r.data.tags[tracking.TAG_NODE_ID] for r in runs}
    assert len(runs) == 2 and placed <= gpu_nodes and not placed & head_ids, (placed, gpu_nodes)
    assert all(r.data.tags[tracking.TAG_DEVICE] == "cpu" for r in runs)  # logical GPUs: computed on the CPU
    # What the sweep needs to withdraw a stopped trial's autoscaling request (generative.release_autoscaling_request).
    assert all({tracking.TAG_TRAIN_RUN, tracking.TAG_TRAIN_CONTROLLER} <= set(r.data.tags) for r in runs)


def test_runtime_env_file_matches_genlab_submit():
    """cluster/runtime_env.yaml (for plain `ray job submit`) ships what `genlab submit` ships."""
    env = yaml.safe_load((ROOT / "cluster" / "runtime_env.yaml").read_text())
    built = jobs.runtime_env(ROOT)
    assert [str((ROOT / p).resolve()) for p in env["py_modules"]] == built["py_modules"]
    assert env["excludes"] == built["excludes"]
    assert env["working_dir"] == "."
