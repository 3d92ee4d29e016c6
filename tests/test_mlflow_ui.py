"""MLflow as its users meet it, checked through a real tracking server's REST API (what the UI itself calls) and,
for the logged models, in the UI itself (headless Chromium): the experiment opens in the training view, parent and
child runs, dataset inputs, the Source column, system metrics, readable image grids, logged models in the run page
and the experiment's Models tab (compared there by their metrics and parameters) that load in a fresh process and
match the run's own evaluation, and the best trial registered in the Model Registry. The sweep behind the REST
checks is the `ray job submit` test's (tests/test_cluster_jobs.py): it logs to a tracking server as a cluster's
sweeps do."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest
import torch
from conftest import genlab_run, sqlite_store

from genlab import models, runlog, tracking


def rest(server: str, endpoint: str, body: dict | None = None) -> dict:
    """GET (query) or POST (json body) one of MLflow's REST endpoints, as the UI does."""
    url = f"{server}/api/2.0/mlflow/{endpoint}"
    if body is None:
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.loads(r.read())
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def check_sweep_as_the_ui_shows_it(mlflow_server: str, experiment: str, out: str, registered: str, tmp_path) -> None:
    """What the MLflow UI shows of a finished 2-trial Improved-GAN sweep on digits (10 labels per class, 2 epochs)
    that logged to ``mlflow_server`` as ``experiment`` and registered its best trial's models as ``registered``-*;
    ``out`` is the sweep's output. Called by the `ray job submit` test (tests/test_cluster_jobs.py), whose sweep
    logs to a tracking server as a cluster's does: one sweep for both checks."""
    exp = rest(mlflow_server, f"experiments/get-by-name?experiment_name={experiment}")["experiment"]
    tags = {t["key"]: t["value"] for t in exp.get("tags", [])}
    assert tags.get("mlflow.experimentKind") == "custom_model_development"  # opens in the training view
    url = f"{mlflow_server}/#/experiments/{exp['experiment_id']}/runs?workflowType=machine_learning"
    assert url in out, out[-2000:]

    runs = rest(mlflow_server, "runs/search", {"experiment_ids": [exp["experiment_id"]]})["runs"]
    by_kind = {}
    for r in runs:
        rtags = {t["key"]: t["value"] for t in r["data"].get("tags", [])}
        by_kind.setdefault(rtags.get(tracking.TAG_KIND), []).append((r, rtags))
    (parent, ptags), = by_kind["sweep"]
    trials = by_kind["train"]
    assert len(trials) == 2 and all(t[1][tracking.TAG_PARENT] == parent["info"]["run_id"] for t in trials)
    assert ptags[tracking.TAG_SOURCE].startswith("genlab sweep ")  # the Source column
    for run, rtags in trials:
        assert rtags[tracking.TAG_SOURCE] == ptags[tracking.TAG_SOURCE]
        inputs = run["inputs"]["dataset_inputs"]
        contexts = {i["tags"][0]["value"]: i["dataset"] for i in inputs}
        train = contexts["train"]
        assert train["name"] == "digits" and train["source_type"] == "code" and len(train["digest"]) == 12
        assert json.loads(train["profile"]) == {"train_images": 1500, "test_images": 297, "shape": "1x8x8",
                                                "labeled": 100, "unlabeled": 1400}
        assert "eval" in contexts
        metrics = {m["key"] for m in run["data"]["metrics"]}
        assert "system/cpu_utilization_percentage" in metrics and "system/system_memory_usage_megabytes" in metrics, \
            [line for line in out.splitlines() if "system" in line.lower()]
        logged = rest(mlflow_server, "logged-models/search", {
            "experiment_ids": [exp["experiment_id"]], "filter": f"source_run_id = '{run['info']['run_id']}'"})
        assert {m["info"]["name"] for m in logged["models"]} == {"classifier", "generator"}
        assert all(m["info"]["status"] == "LOGGED_MODEL_READY" for m in logged["models"]), logged

    # The best trial: its classifier loads in a fresh process and scores what the run reported.
    best_id = ptags["best.mlflow_run_id"]
    best = next(r for r, _ in trials if r["info"]["run_id"] == best_id)
    accuracy = next(m["value"] for m in best["data"]["metrics"] if m["key"] == "eval/test_accuracy")
    code = (
        "import mlflow, torch\n"
        "from genlab import data\nfrom genlab.specs import DataSpec\n"
        f"mlflow.set_tracking_uri({mlflow_server!r})\n"
        f"net = mlflow.pytorch.load_model('runs:/{best_id}/classifier')\n"
        "ds = data.load(DataSpec(name='digits', labels_per_class=10))\n"
        "x, y = data.test_set(ds)\n"
        "acc = (net(x).argmax(1) == y).float().mean().item()\n"
        f"g = mlflow.pytorch.load_model('models:/{registered}-generator/1')\n"
        "print(acc, tuple(g(torch.rand(5, 100)).shape))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server})
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded_acc, shape = proc.stdout.strip().splitlines()[-1].split(" ", 1)
    assert abs(float(loaded_acc) - accuracy) < 1e-6 and shape == "(5, 1, 8, 8)"
    model = rest(mlflow_server, "registered-models/get?name=" + urllib.parse.quote(f"{registered}-classifier"))
    assert model["registered_model"]["latest_versions"][0]["run_id"] == best_id

    # genlab load: the algorithm object back, sampling a readable grid.
    png = tmp_path / "samples.png"
    loaded = genlab_run(tmp_path, "load", best_id, "--out", png, "--tracking-uri", mlflow_server).stdout
    assert "classifier" in loaded and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert min(Image.open(png).size) >= 256
    latest = rest(mlflow_server, f"artifacts/list?run_id={best_id}&path=samples")["files"]
    assert {"samples/latest.png", "samples/epoch_0002.png"} <= {f["path"] for f in latest}


def test_a_run_shorter_than_one_sampling_interval_still_has_system_metrics(tmp_path):
    """MLflow's monitor logs a sample only after each 10 s interval and drops the last one on shutdown; genlab logs
    it, so a 1-second run's System metrics tab is not empty."""
    uri = sqlite_store(tmp_path / "mlflow.db")
    rid = tracking.open_run(uri, "short", run_name="short", config={}, tags={})
    with runlog.RunLogger(uri, rid, outbox=tmp_path / "outbox") as logger, logger.system_metrics():
        sum(i * i for i in range(10**6))
    metrics = tracking.client(uri).get_run(rid).data.metrics
    assert "system/cpu_utilization_percentage" in metrics and "system/system_memory_usage_megabytes" in metrics


def test_a_run_whose_sampler_never_sampled_still_has_system_metrics(tmp_path, monkeypatch):
    """On a busy machine a run of seconds can end before the sampling thread takes its first sample (seen in a
    job-submitted sweep's 2-epoch trials); genlab then samples once itself."""
    monkeypatch.setattr(runlog.RunLogger, "_sample_system", lambda self, monitor, stop: None)  # never samples
    uri = sqlite_store(tmp_path / "mlflow.db")
    rid = tracking.open_run(uri, "short", run_name="short", config={}, tags={})
    with runlog.RunLogger(uri, rid, outbox=tmp_path / "outbox") as logger, logger.system_metrics():
        pass
    metrics = tracking.client(uri).get_run(rid).data.metrics
    assert "system/cpu_utilization_percentage" in metrics and "system/system_memory_usage_megabytes" in metrics


def test_a_dataset_logged_by_two_trials_at_once_links_both(tmp_path, monkeypatch, capsys):
    """Concurrent trials of a sweep log the same dataset; the one whose insert loses the race (seen in a GAIL sweep:
    "UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest") logs again and is linked to
    the winner's row instead of failing the trial. An error no retry fixes is reported and kept on disk, and the
    run goes on."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
    from mlflow.tracking import MlflowClient

    uri = sqlite_store(tmp_path / "mlflow.db")
    info = runlog.DatasetInfo("demos-Pendulum-v1", "/demos", "0123456789ab", {"trajectories": 10})
    winner = tracking.open_run(uri, "race", run_name="a", config={}, tags={})
    with runlog.RunLogger(uri, winner, outbox=tmp_path / "outbox") as logger:
        logger.dataset(info, "train")

    real, calls = MlflowClient.log_inputs, []

    def loses_the_race_once(self, run_id, datasets=None, models=None):
        calls.append(run_id)
        if len(calls) == 1:
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, "
                                  "datasets.name, datasets.digest")
        return real(self, run_id, datasets=datasets, models=models)

    monkeypatch.setattr(MlflowClient, "log_inputs", loses_the_race_once)
    loser = tracking.open_run(uri, "race", run_name="b", config={}, tags={})
    with runlog.RunLogger(uri, loser, outbox=tmp_path / "outbox") as logger:
        logger.dataset(info, "train")
    assert len(calls) == 2
    c = tracking.client(uri)
    for rid in (winner, loser):
        (inp,) = c.get_run(rid).inputs.dataset_inputs
        assert inp.dataset.name == "demos-Pendulum-v1" and inp.dataset.digest == "0123456789ab"

    def fails(self, run_id, datasets=None, models=None):
        raise MlflowException("run not found", error_code=RESOURCE_DOES_NOT_EXIST)

    monkeypatch.setattr(MlflowClient, "log_inputs", fails)
    with runlog.RunLogger(uri, loser, outbox=tmp_path / "outbox") as logger:
        logger.dataset(info, "eval")
        logger.metrics({"loss/x": 1.0}, step=1)  # what comes after it is logged
    assert "MLflow refused datasets demos-Pendulum-v1 (eval)" in capsys.readouterr().err
    assert len(list((tmp_path / "outbox" / loser / "refused").glob("*.json"))) == 1
    assert c.get_run(loser).data.metrics == {"loss/x": 1.0}


def dom_text(page: str, tmp_path, width: int = 4000) -> str:
    """The text of ``page`` once headless Chromium has run its scripts (the MLflow UI is a React app)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium here (.ci/run installs Debian's chromium)")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'chrome'}", f"--window-size={width},1500",
                          "--virtual-time-budget=30000", "--dump-dom", page],
                         capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom.stdout, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def test_logged_models_show_on_the_run_page_and_compare_in_the_models_tab(mlflow_server, tmp_path):
    """Two runs' classifiers as the runners log them (``RunLogger.model`` with the final evaluation): in the MLflow
    UI the run page lists its logged model and the metric it carries, and the experiment's Models tab lists both
    models with their metric and parameters side by side (table view) and charts the metric (chart view). Each
    loads back by ``models:/<model id>`` and ``runs:/<run id>/classifier``; ``models.register`` registers them."""
    import mlflow.pytorch

    uri, runs = mlflow_server, []
    for lr, accuracy in ((0.1, 0.7), (0.2, 0.9)):
        with runlog.run_scope(uri, "models", run_name=f"lr{lr}", config={"hparams": {"lr": lr}}, tags={},
                              outbox=tmp_path / "outbox") as logger:
            logger.metrics({"eval/test_accuracy": accuracy, "epoch": 2}, step=2)
            logger.model("classifier", torch.nn.Linear(4, 2), torch.randn(3, 4),
                         metrics={"eval/test_accuracy": accuracy}, step=2)
        runs.append(logger.run_id)
    exp = tracking.experiment_id(uri, "models")

    run_page = dom_text(f"{uri}/#/experiments/{exp}/runs/{runs[1]}?workflowType=machine_learning", tmp_path)
    assert "eval/test_accuracy 0.9 classifier" in run_page, run_page[:3000]  # the metric, and the model it belongs to
    assert re.search(r"Logged models \(1\).* classifier Ready", run_page), run_page[:3000]
    table = dom_text(f"{uri}/#/experiments/{exp}/models?workflowType=machine_learning", tmp_path)
    assert table.count("classifier Ready") == 2 and "eval/test_accuracy hparams.lr" in table, table[:3000]
    assert re.search(r"lr0\.2 .*0\.9 0\.2 .*lr0\.1 .*0\.7 0\.1", table), table[:3000]  # metric, param per model
    chart = dom_text(f"{uri}/#/experiments/{exp}/models?workflowType=machine_learning&viewMode=CHART", tmp_path, 2000)
    assert "eval/test_accuracy 0.70 0.90" in chart, chart[:3000]

    net = torch.nn.Linear(4, 2)
    x = torch.randn(5, 4)
    uris = models.model_uris(uri, runs[1])
    assert list(uris) == ["classifier"] and uris["classifier"].startswith("models:/m-")
    mlflow.set_tracking_uri(uri)
    for model_uri in (uris["classifier"], f"runs:/{runs[1]}/classifier"):
        assert mlflow.pytorch.load_model(model_uri)(x).shape == net(x).shape
    assert models.register(uri, runs[1], "best", tags={"genlab.sweep": "s"}) == [("best-classifier", "1")]
    assert models.register(uri, runs[0], "best", tags={}) == [("best-classifier", "2")]
    assert mlflow.pytorch.load_model("models:/best-classifier/1")(x).shape == (5, 2)


def test_a_model_logged_for_an_earlier_epoch_by_another_logger_adds_no_point_to_the_history(tmp_path):
    """A trial ASHA stopped at epoch 2 whose worker had logged epoch 3 before it was killed: Tune's callback logs the
    kept model from the epoch-2 checkpoint with a logger of its own. The model carries epoch 2's metrics, and the
    run's history keeps one point per epoch (it had two more at epoch 2, one per model, when the callback's points
    got timestamps of their own)."""
    uri = sqlite_store(tmp_path / "mlflow.db")
    with runlog.run_scope(uri, "stopped", run_name="t", config={}, tags={}, outbox=tmp_path / "outbox") as worker:
        for epoch, error in ((1, 0.5), (2, 0.25), (3, 0.2)):
            worker.metrics({"eval/test_error": error, "eval/loss": 3.0 - epoch}, step=epoch)
        worker.flush()
        callback = runlog.RunLogger(uri, worker.run_id)
        for name in ("generator", "classifier"):
            callback.model(name, torch.nn.Linear(4, 2), torch.randn(3, 4),
                           metrics={"eval/test_error": 0.25, "eval/loss": 1.0}, step=2)
        callback.flush()
    c = tracking.client(uri)
    for key in ("eval/test_error", "eval/loss"):
        assert [m.step for m in c.get_metric_history(worker.run_id, key)] == [1, 2, 3], key
    models_ = c.search_logged_models([tracking.experiment_id(uri, "stopped")])
    assert sorted(m.name for m in models_) == ["classifier", "generator"]
    for m in models_:
        assert {(x.key, x.step, x.value) for x in m.metrics} == {("eval/test_error", 2, 0.25), ("eval/loss", 2, 1.0)}


def test_a_kept_model_takes_the_latest_evaluation_and_its_epoch_from_the_runs_history():
    """A run evaluates every few epochs; its history has eval/* only at those. The kept model's metrics are the
    latest evaluation, logged at the epoch that made it, not at the last epoch (MLflow would then show a point that
    was never measured)."""
    from genlab.runners.result import latest_evaluation

    history = [{"epoch": 1, "loss": 3.0}, {"epoch": 2, "loss": 2.0, "eval/log_px": -95.0, "eval/kl": 20.0},
               {"epoch": 3, "loss": 1.5}]
    assert latest_evaluation(history) == (2, {"eval/log_px": -95.0, "eval/kl": 20.0})
    assert latest_evaluation(history[:1]) == (None, {})  # no evaluation yet: no model metrics
