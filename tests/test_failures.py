"""Runs that go wrong, through the CLI as a user meets them: a loss that becomes NaN fails the run at once (no retry),
says why in one line at the end and in MLflow, leaves the run's name free when no checkpoint was written; in a
sweep it fails that trial only, and the others finish with their learning curves and checkpoints in MLflow."""

from __future__ import annotations

import pytest
import yaml
from conftest import genlab_run, sqlite_store

from genlab import tracking
from genlab.testing import NAN_ENV

pytestmark = pytest.mark.slow

RUN = {
    "name": "diverges", "algorithm": "improved_gan", "hparams": {"d_hidden": [64, 32], "g_hidden": [32]},
    "data": {"name": "digits", "labels_per_class": 10, "batch_size": 100},
    "budget": {"epochs": 2, "eval_every": 1, "checkpoint_every": 1},
    "resources": {"num_workers": 1, "cpus_per_worker": 1, "max_failures": 2},
}


def runs_of(uri: str, experiment: str = "genlab") -> list:
    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    return c.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]) if exp else []


def artifacts(uri: str, run_id: str, path: str | None = None) -> set[str]:
    c, out = tracking.client(uri), set()
    for f in c.list_artifacts(run_id, path):
        out |= artifacts(uri, run_id, f.path) if f.is_dir else {f.path}
    return out


def test_a_nan_loss_fails_the_run_at_once_and_frees_its_name(tmp_path, monkeypatch):
    spec = tmp_path / "run.yaml"
    spec.write_text(yaml.safe_dump(RUN))
    uri = sqlite_store(tmp_path / "mlflow.db")
    args = ("train", spec, "--storage", tmp_path / "results", "--num-cpus", "2")

    monkeypatch.setenv(NAN_ENV, "5")  # step 5 of epoch 1 (15 steps an epoch): before the first checkpoint
    failed = genlab_run(tmp_path, *args, check=False)
    monkeypatch.delenv(NAN_ENV)
    assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr[-3000:]
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("genlab: error: NonFiniteLoss: non-finite loss at step 5: loss/disc=nan"), last
    assert "lower the learning rate" in last
    assert failed.stdout.count("Error in training function") <= 1 and "Attempting to start training worker group" \
        not in failed.stdout.split("Error in training function")[-1], "a deterministic error was retried"
    (run,) = runs_of(uri)
    assert run.info.status == "FAILED" and "non-finite loss at step 5" in run.data.tags[tracking.TAG_ERROR]

    # Nothing was checkpointed, so the name is free: the same command runs again, a new MLflow run.
    ok = genlab_run(tmp_path, *args)
    assert "Final metrics:" in ok.stdout
    first, second = runs_of(uri)
    assert first.info.run_id == run.info.run_id and second.info.status == "FINISHED"
    # Now it has checkpoints: starting it again without --resume is refused before Ray starts.
    again = genlab_run(tmp_path, *args, check=False)
    assert again.returncode == 2 and "already holds a run with checkpoints named 'diverges'" in again.stderr


def test_a_nan_trial_fails_alone_and_the_sweep_ranks_the_rest(tmp_path, monkeypatch):
    sweep = {"name": "nan-sweep", "run": {**RUN, "tracking": {"experiment": "sweeps"}},
             "search_space": {"hparams.lr": {"choice": [0.003, 0.002]}}, "metric": "eval/test_error", "mode": "min",
             "num_samples": 2, "max_concurrent": 2, "scheduler": {"type": "fifo"}}
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump(sweep))
    uri = sqlite_store(tmp_path / "mlflow.db")  # the CLI's default store in its working directory
    monkeypatch.setenv(NAN_ENV, "20")  # epoch 2 of the first trial to get there: after its first checkpoint
    out = genlab_run(tmp_path, "sweep", spec, "--storage", tmp_path / "results", "--num-cpus", "2")
    assert "Best trial:" in out.stdout and "failed: NonFiniteLoss: non-finite loss at step 20" in out.stdout, out.stdout

    trials = [r for r in runs_of(uri, "sweeps") if tracking.TAG_TRIAL in r.data.tags]
    status = sorted(r.info.status for r in trials)
    assert status == ["FAILED", "FINISHED"], status
    bad = next(r for r in trials if r.info.status == "FAILED")
    assert "non-finite loss at step 20" in bad.data.tags[tracking.TAG_ERROR]
    good = next(r for r in trials if r.info.status == "FINISHED")
    # A finished trial's learning curves and final checkpoint reach MLflow, although Tune ends a trial right
    # after its last report.
    arts = artifacts(uri, good.info.run_id)
    for a in ("plots/learning_curves.png", "checkpoint/state.pt", "samples/latest.png", "samples/epoch_0002.png"):
        assert a in arts, f"{a} not in {sorted(arts)}"

    # `genlab load` of the failed trial says in one line that it has no model, and names the trial that has one.
    load = genlab_run(tmp_path, "load", bad.info.run_id, check=False)
    assert load.returncode == 2 and "Traceback" not in load.stderr, load.stderr
    (line,) = [line for line in load.stderr.splitlines() if line.startswith("genlab: error:")]
    assert f"run {bad.info.run_id} has no trained model to load (it failed: NonFiniteLoss" in line, line
    assert f"genlab load {good.info.run_id}" in line, line
