"""The MLflow tracking server goes away while a run trains: training does not wait for it, the run says so once, and
what it logged in the meantime reaches MLflow when the server is back, in order and once; a server that never comes
back leaves the run's end with one line naming what was not logged and where it is held on disk, from where
``python -m genlab.outbox`` sends it later.

Against a real ``mlflow server`` (the ``mlflow_server`` fixture: cluster/start_mlflow.sh on loopback) that the tests
stop and start again on the same port and store. Waits are bounded by events (a line printed, an attempt made, a
process gone), never by a tight clock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from conftest import ROOT, genlab_start

from genlab import outbox, runlog, tracking

OUTAGE_LINE = "is unreachable"
BACK_LINE = "is back after"
NOT_LOGGED = "not logged:"


def stop_server(tmp_path: Path) -> None:
    """Stop the fixture's server (and its workers) and wait until they are gone."""
    server = psutil.Process(int((tmp_path / "mlflow" / "server.pid").read_text()))
    procs = [server, *server.children(recursive=True)]
    for p in procs:
        p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=30)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=30)


def start_server(tmp_path: Path, uri: str) -> None:
    """Start the server again on the same port and store, as the fixture started it."""
    env = {**os.environ, "GENLAB_MLFLOW_HOST": "127.0.0.1", "GENLAB_MLFLOW_PORT": uri.rsplit(":", 1)[1],
           "GENLAB_MLFLOW_DIR": str(tmp_path / "mlflow"), "MLFLOW_BIN": str(Path(sys.executable).parent / "mlflow")}
    out = subprocess.run(["bash", ROOT / "cluster" / "start_mlflow.sh"], env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == uri, out.stderr


def wait_for(condition, what: str, timeout: float = 300.0) -> None:
    """Poll ``condition()`` until it holds; ``timeout`` only stops a test that would otherwise hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.2)


def steps(uri: str, run_id: str, metric: str) -> list[int]:
    return sorted(m.step for m in tracking.client(uri).get_metric_history(run_id, metric))


def artifacts(uri: str, run_id: str, path: str | None = None) -> set[str]:
    c, out = tracking.client(uri), set()
    for f in c.list_artifacts(run_id, path):
        out |= artifacts(uri, run_id, f.path) if f.is_dir else {f.path}
    return out


def logged_models(uri: str, run_id: str) -> list:
    c = tracking.client(uri)
    return c.search_logged_models([c.get_run(run_id).info.experiment_id], filter_string=f"source_run_id = '{run_id}'")


def log_epoch(logger: runlog.RunLogger, epoch: int) -> None:
    logger.metrics({"loss/x": 1.0 / epoch, "eval/acc": epoch / 10, "epoch": epoch}, step=epoch)


def held_items(folder: Path) -> list[Path]:
    return sorted(folder.glob("[0-9]*.json"))


def test_logging_goes_on_through_an_outage_and_reaches_mlflow_once(mlflow_server, tmp_path, capsys, monkeypatch):
    """Down for longer than MLflow's own retries of one attempt (which once held a run ~4 minutes and then killed
    its worker): every call returns at once, one line says logging is held, and when the server is back everything
    held arrives, each metric step once, with one line saying so. System metrics (sampled every second here) are
    held like the rest, without a line of their own."""
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    uri = mlflow_server
    run_id = tracking.open_run(uri, "outage", run_name="outage", config={"lr": 0.1}, tags={})
    held_in = tmp_path / "run" / outbox.OUTBOX
    logger = runlog.RunLogger(uri, run_id, outbox=held_in, budget_s=600)
    folder = held_in / run_id
    with logger.system_metrics():
        for epoch in (1, 2):
            log_epoch(logger, epoch)
        assert logger.flush()

        stop_server(tmp_path)
        for epoch in range(3, 7):
            log_epoch(logger, epoch)
        logger.image_grid("samples", torch.rand(4, 1, 8, 8) * 2 - 1, 6)
        logger.tags({"during": "outage"})
        logger.dataset(runlog.DatasetInfo("digits", "sklearn.datasets:load_digits", "0123456789ab", {"n": 1}), "train")
        logger.learning_curves([{"epoch": e, "loss/x": 1.0 / e} for e in range(1, 7)])
        logger.model("net", torch.nn.Linear(4, 2), torch.randn(3, 4), metrics={"eval/acc": 0.6}, step=6)
        err = _wait_for_line(capsys, OUTAGE_LINE)
        assert str(folder) in err
        # The sender tries again and again (each attempt is MLflow's bounded retries); nothing is lost meanwhile.
        attempts = logger.outbox._attempts
        wait_for(lambda: logger.outbox._attempts >= attempts + 2, "two more attempts")
        assert len(held_items(folder)) >= 10  # 4 metric steps, grid, tags, dataset, curves, model, system samples
        wait_for(lambda: any(i["kind"] == "metrics" and i.get("system") for i in logger.outbox.held()),
                 "a system-metrics sample held")

        start_server(tmp_path, uri)
        assert logger.flush()
    err += capsys.readouterr().err
    assert err.count(OUTAGE_LINE) == 1 and err.count(BACK_LINE) == 1, err
    noise = [x for x in err.splitlines() if any(w in x for w in ("Retrying", "Max retries", "Connection", "Traceback"))
             and not x.startswith("[genlab]")]
    assert not noise, err  # urllib3's and MLflow's failed attempts stay quiet
    logger.flush()
    assert not held_items(folder)

    for metric in ("loss/x", "eval/acc", "epoch"):
        assert steps(uri, run_id, metric) == [1, 2, 3, 4, 5, 6], metric
    system = steps(uri, run_id, "system/cpu_utilization_percentage")
    assert system == list(range(len(system))) and len(system) >= 2  # numbered on, none twice
    assert {"samples/epoch_0006.png", "samples/latest.png", "plots/learning_curves.png"} <= artifacts(uri, run_id)
    run = tracking.client(uri).get_run(run_id)
    assert run.data.tags["during"] == "outage" and run.inputs.dataset_inputs[0].dataset.name == "digits"
    (model,) = logged_models(uri, run_id)
    assert model.name == "net" and str(model.status) == "READY" and model.params == {"lr": "0.1"}
    assert [(m.key, m.value, m.step) for m in model.metrics] == [("eval/acc", 0.6, 6)]


def _wait_for_line(capsys, text: str) -> str:
    seen = ""

    def printed() -> bool:
        nonlocal seen
        seen += capsys.readouterr().err
        return text in seen

    wait_for(printed, repr(text))
    return seen


def test_a_tracker_that_never_comes_back_leaves_one_line_and_everything_on_disk(mlflow_server, tmp_path, capsys):
    """The run's end waits ``budget_s`` from when the tracker went away, then says in one line what was not logged
    and where it is; the items stay on disk, and ``python -m genlab.outbox <folder>`` sends them once the server is
    back: the run ends FINISHED with every step once and its model."""
    uri = mlflow_server
    # The run's own error: it ends FAILED, and that end is held like the rest.
    with pytest.raises(RuntimeError), runlog.run_scope(uri, "never", run_name="never", config={}, tags={},
                                                       outbox=tmp_path / "run" / outbox.OUTBOX, budget_s=2) as logger:
        log_epoch(logger, 1)
        assert logger.flush()
        stop_server(tmp_path)
        for epoch in (2, 3):
            log_epoch(logger, epoch)
        logger.model("net", torch.nn.Linear(4, 2), torch.randn(3, 4), metrics={"eval/acc": 0.3}, step=3)
        logger.file(Path(__file__), "code")
        raise RuntimeError("boom")
    err = capsys.readouterr().err
    folder = tmp_path / "run" / outbox.OUTBOX / logger.run_id
    (line,) = [x for x in err.splitlines() if NOT_LOGGED in x]
    assert err.count(OUTAGE_LINE) == 1, err
    assert (f"not logged: 2 metric steps (2-3), artifacts code/{Path(__file__).name}, models net, the run's end "
            f"(FAILED); held on disk at {folder}") in line, line
    assert f"python -m genlab.outbox {folder}" in line
    held = held_items(folder)
    assert len(held) == 5 and (folder / held[2].stem / "model" / "MLmodel").is_file()

    start_server(tmp_path, uri)
    sent = subprocess.run([sys.executable, "-m", "genlab.outbox", str(folder.parent)], capture_output=True,
                          text=True, timeout=300)
    assert sent.returncode == 0 and "5 held items logged" in sent.stderr, sent.stderr
    assert not held_items(folder)
    run = tracking.client(uri).get_run(logger.run_id)
    assert run.info.status == "FAILED" and run.data.tags[tracking.TAG_ERROR] == "RuntimeError: boom"
    assert steps(uri, logger.run_id, "eval/acc") == [1, 2, 3]
    (model,) = logged_models(uri, logger.run_id)
    assert str(model.status) == "READY" and [m.step for m in model.metrics] == [3]


def test_a_tracker_down_at_the_start_is_a_clear_error_before_any_work(tmp_path):
    """Opening the run is the first thing a run does: a server that does not answer stops it there, in seconds."""
    from conftest import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    with (pytest.raises(runlog.TrackerUnreachable, match=f"MLflow tracking server at {uri} does not answer"),
          runlog.run_scope(uri, "x", run_name="x", config={}, tags={})):
        raise AssertionError("the body ran")


RUN = {
    "name": "outage", "algorithm": "improved_gan", "hparams": {"d_hidden": [64, 32], "g_hidden": [32]},
    "data": {"name": "digits", "labels_per_class": 10, "batch_size": 100},
    "budget": {"epochs": 8, "eval_every": 1, "checkpoint_every": 4},
    "resources": {"num_workers": 1, "cpus_per_worker": 1, "max_failures": 1},
}


class Output:
    """A ``genlab`` process's merged output, read as it comes (a thread), for waiting on its lines."""

    def __init__(self, proc: subprocess.Popen):
        import threading

        self.proc, self.lines = proc, []
        self.thread = threading.Thread(target=lambda: self.lines.extend(proc.stdout), daemon=True)
        self.thread.start()

    def wait_for(self, *texts: str) -> None:
        wait_for(lambda: any(t in line for line in self.lines for t in texts) or self.proc.poll() is not None,
                 " or ".join(texts), timeout=600)
        assert any(t in line for line in self.lines for t in texts), self.text()[-4000:]

    def finish(self) -> tuple[int, str]:
        rc = self.proc.wait(timeout=600)
        self.thread.join(timeout=60)
        return rc, self.text()

    def text(self) -> str:
        return "".join(self.lines)


def train_and_stop_the_server(tmp_path: Path, uri: str, budget_s: float) -> Output:
    """`genlab train` of :data:`RUN` logging to ``uri``, with the server stopped once epoch 2 is reported."""
    spec = tmp_path / "run.yaml"
    spec.write_text(yaml.safe_dump({**RUN, "tracking": {"uri": uri, "experiment": "outage",
                                                        "outage_budget_s": budget_s}}))
    out = Output(genlab_start(tmp_path, "train", spec, "--storage", tmp_path / "results", "--num-cpus", "2"))
    out.wait_for("epoch 2/8")
    stop_server(tmp_path)
    return out


@pytest.mark.slow
def test_genlab_train_through_an_outage_logs_every_epoch_once(mlflow_server, tmp_path):
    """`genlab train` on digits (Ray Train, one worker) with the server stopped after epoch 2 and started again once
    the run has said so and trained on: the run finishes without a worker restart, every epoch's metrics are in
    MLflow once, its models are READY logged models with the last evaluation, nothing is left held."""
    uri = mlflow_server
    out = train_and_stop_the_server(tmp_path, uri, budget_s=600)
    out.wait_for(OUTAGE_LINE)
    out.wait_for("epoch 4/8")  # training goes on meanwhile (if the run ends first, its end waits for the server)
    start_server(tmp_path, uri)
    rc, text = out.finish()
    assert rc == 0, text[-4000:]
    assert text.count(OUTAGE_LINE) == 1 and text.count(BACK_LINE) == 1 and NOT_LOGGED not in text, text[-4000:]
    assert "resumed from" not in text and "Error in training function" not in text, text[-4000:]

    (run,) = tracking.search(uri, experiment_ids=[tracking.find_experiment(uri, "outage").experiment_id])
    assert run.info.status == "FINISHED"
    for metric in ("epoch", "eval/test_error", "loss/disc"):
        assert steps(uri, run.info.run_id, metric) == list(range(1, 9)), metric
    assert {"checkpoint/state.pt", "plots/learning_curves.png", "samples/epoch_0008.png"} <= artifacts(
        uri, run.info.run_id)
    models = {m.name: m for m in logged_models(uri, run.info.run_id)}
    assert set(models) == {"classifier", "generator"}
    error = run.data.metrics["eval/test_error"]
    assert all(str(m.status) == "READY" and (error, 8) in [(x.value, x.step) for x in m.metrics if
                                                           x.key == "eval/test_error"] for m in models.values())
    assert not held_items(tmp_path / "results" / "outage" / outbox.OUTBOX / run.info.run_id)
