"""MLflow as its users meet it, checked through a real tracking server's REST API (what the UI itself calls):
the experiment opens in the training view, parent and child runs, dataset inputs, the Source column, system
metrics, readable image grids, models that load in a fresh process and match the run's own evaluation, and the
best trial registered in the Model Registry."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest
import yaml
from conftest import genlab_run

from genlab import tracking

pytestmark = pytest.mark.slow

SWEEP = {
    "name": "ui-sweep",
    "run": {"name": "ui", "algorithm": "improved_gan", "hparams": {"d_hidden": [64, 32], "g_hidden": [32]},
            "data": {"name": "digits", "labels_per_class": 10, "batch_size": 100},
            "budget": {"epochs": 2, "eval_every": 1, "checkpoint_every": 1},
            "resources": {"num_workers": 1, "cpus_per_worker": 1}, "tracking": {"experiment": "ui"}},
    "search_space": {"hparams.lr": {"choice": [0.003, 0.001]}},
    "metric": "eval/test_error", "mode": "min", "num_samples": 2, "max_concurrent": 2, "scheduler": {"type": "fifo"},
}


def rest(server: str, endpoint: str, body: dict | None = None) -> dict:
    """GET (query) or POST (json body) one of MLflow's REST endpoints, as the UI does."""
    url = f"{server}/api/2.0/mlflow/{endpoint}"
    if body is None:
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.loads(r.read())
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_a_sweep_as_the_mlflow_ui_shows_it(tmp_path, mlflow_server, monkeypatch):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump(SWEEP))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    out = genlab_run(tmp_path, "sweep", spec, "--storage", tmp_path / "results", "--num-cpus", "2",
                     "--register", "digits-best").stdout

    exp = rest(mlflow_server, "experiments/get-by-name?experiment_name=ui")["experiment"]
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
        assert "system/cpu_utilization_percentage" in metrics and "system/system_memory_usage_megabytes" in metrics
        files = rest(mlflow_server, f"artifacts/list?run_id={run['info']['run_id']}&path=classifier")["files"]
        assert any(f["path"] == "classifier/MLmodel" for f in files)

    # The best trial: its classifier loads in a fresh process and scores what the run reported.
    best_id = ptags["best.mlflow_run_id"]
    best = next(r for r, _ in trials if r["info"]["run_id"] == best_id)
    accuracy = next(m["value"] for m in best["data"]["metrics"] if m["key"] == "eval/test_accuracy")
    code = (
        "import mlflow, torch\n"
        "from genlab import data\nfrom genlab.config import DataSpec\n"
        f"mlflow.set_tracking_uri({mlflow_server!r})\n"
        f"net = mlflow.pytorch.load_model('runs:/{best_id}/classifier')\n"
        "ds = data.load(DataSpec(name='digits', labels_per_class=10))\n"
        "x, y = data.test_set(ds)\n"
        "acc = (net(x).argmax(1) == y).float().mean().item()\n"
        f"g = mlflow.pytorch.load_model('models:/digits-best-generator/1')\n"
        "print(acc, tuple(g(torch.rand(5, 100)).shape))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded_acc, shape = proc.stdout.strip().splitlines()[-1].split(" ", 1)
    assert abs(float(loaded_acc) - accuracy) < 1e-6 and shape == "(5, 1, 8, 8)"
    registered = rest(mlflow_server, "registered-models/get?name=" + urllib.parse.quote("digits-best-classifier"))
    assert registered["registered_model"]["latest_versions"][0]["run_id"] == best_id

    # genlab load: the algorithm object back, sampling a readable grid.
    png = tmp_path / "samples.png"
    loaded = genlab_run(tmp_path, "load", best_id, "--out", png).stdout
    assert "runs:/" in loaded and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert min(Image.open(png).size) >= 256
    latest = rest(mlflow_server, f"artifacts/list?run_id={best_id}&path=samples")["files"]
    assert {"samples/latest.png", "samples/epoch_0002.png"} <= {f["path"] for f in latest}


def test_a_run_shorter_than_one_sampling_interval_still_has_system_metrics(tmp_path):
    """MLflow's monitor logs a sample only after each 10 s interval and drops the last one on shutdown; genlab logs
    it, so a 1-second run's System metrics tab is not empty."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    rid = tracking.open_run(uri, "short", run_name="short", config={}, tags={})
    with tracking.RunLogger(uri, rid).system_metrics():
        sum(i * i for i in range(10**6))
    metrics = tracking.client(uri).get_run(rid).data.metrics
    assert "system/cpu_utilization_percentage" in metrics and "system/system_memory_usage_megabytes" in metrics
