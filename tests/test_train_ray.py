"""Ray Train runs through the platform: DDP workers, recovery from a worker failure, MLflow records."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from conftest import sqlite_store

from genlab import config, testing, tracking
from genlab.runners import generative as train
from genlab.runners import storage
from genlab.specs import RunSpec, set_path

pytestmark = pytest.mark.slow

RUN = {
    "name": "ray-run",
    "algorithm": "improved_gan",
    "hparams": {"d_hidden": [128, 64], "g_hidden": [64], "lr": 0.003, "ema_decay": 0.9},
    "data": {"name": "digits", "labels_per_class": 10, "batch_size": 50},
    "budget": {"epochs": 3, "eval_every": 1, "checkpoint_every": 1},
    "resources": {"num_workers": 2, "cpus_per_worker": 1, "max_failures": 1},
}


def spec_with(tmp_path: Path, **changes) -> RunSpec:
    raw = copy.deepcopy(RUN)
    raw["tracking"] = {"uri": sqlite_store(tmp_path / "mlflow.db"), "experiment": "t"}
    for dotted, value in changes.items():
        set_path(raw, dotted, value)
    return config.run_from_dict(raw)


def test_ddp_run_recovers_from_a_worker_failure_and_is_tracked(tmp_path, ray_local, monkeypatch):
    monkeypatch.setenv(testing.FAIL_ENV, "2")  # one worker raises once, right after epoch 2 is reported
    spec = spec_with(tmp_path)
    result = train.fit(spec, storage_path=tmp_path / "results")

    assert (tmp_path / "results" / spec.name / ".injected_failure").exists(), "the failure never happened"
    assert result.metrics["epoch"] == 3
    with result.checkpoint.as_directory() as d:
        state = torch.load(Path(d) / storage.GENERATIVE_STATE, weights_only=False)
    # Resumed from epoch 2's checkpoint: every epoch appears once, the optimizer step count continues.
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]
    steps_per_epoch = 1500 // 2 // 50
    assert state["algo"]["step"] == 3 * steps_per_epoch
    errors = [h["eval/test_error"] for h in state["history"]]
    assert errors[-1] < errors[0] and errors[-1] < 0.5, errors  # it learns (chance is 0.9)

    c = tracking.client(spec.tracking.uri)
    run = c.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["hparams.lr"] == "0.003" and run.data.params["resources.num_workers"] == "2"
    assert run.data.tags["genlab.git_commit"]
    steps = [m.step for m in c.get_metric_history(run.info.run_id, "eval/test_error")]
    assert sorted(steps) == [1, 2, 3]
    arts = _artifacts(c, run.info.run_id)
    for a in ["samples/epoch_0001.png", "samples/epoch_0003.png", "checkpoint/state.pt", "spec/resolved.yaml",
              "spec/environment.json", "spec/command.txt", "plots/learning_curves.png"]:
        assert a in arts, f"{a} not in {sorted(arts)}"
    env = c.download_artifacts(run.info.run_id, "spec/environment.json", str(tmp_path))
    assert '"ray": "2.60.0"' in Path(env).read_text()

    # A local Ray runs Ray Train without its preemption watcher (one machine has no spot nodes to watch; the actor
    # printed a core_worker error line at every run): none was started, not even one that has since died.
    from ray.util.state import list_actors

    # (120 s for the state API's answer on a loaded machine; its default 30 s ran out once)
    assert not list_actors(filters=[("class_name", "=", "PreemptionWatcher")], limit=10, timeout=120)


def test_a_failing_run_is_recorded_as_failed_with_its_reason(tmp_path, ray_local):
    spec = spec_with(tmp_path, **{"data.batch_size": 1000, "resources.max_failures": 0, "name": "too-big"})
    with pytest.raises(Exception, match="data.batch_size"):
        train.fit(spec, storage_path=tmp_path / "results")
    c = tracking.client(spec.tracking.uri)
    exp = c.get_experiment_by_name("t")
    (run,) = c.search_runs([exp.experiment_id], filter_string="attributes.run_name = 'too-big'")
    assert run.info.status == "FAILED"
    assert "data.batch_size" in run.data.tags[tracking.TAG_ERROR]
    assert "error.txt" in _artifacts(c, run.info.run_id)


def _artifacts(c, run_id: str, path: str | None = None) -> set[str]:
    out = set()
    for f in c.list_artifacts(run_id, path):
        out |= _artifacts(c, run_id, f.path) if f.is_dir else {f.path}
    return out


def test_a_sweep_frees_the_placement_groups_its_ended_trials_left(ray_local):
    """What a sweep does at its end (ray_compat.remove_job_placement_groups): its job's reserved placement groups
    go (a leftover one kept a GPU node of an autoscaling cluster from ever going idle); detached ones stay."""
    import ray
    from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group

    from genlab import ray_compat

    left = placement_group([{"CPU": 0.1}])
    kept = placement_group([{"CPU": 0.1}], lifetime="detached")
    ray.get([left.ready(), kept.ready()], timeout=60)
    try:
        # No waiting: the waits are for a sweep's ending trials (its Train controllers, then Ray Train's own
        # cleaners), which the demo and the autoscaling tests go through. Here a Train controller of this module's
        # earlier runs is still alive in this driver's job, and waiting for it took the full 60 s.
        removed = ray_compat.remove_job_placement_groups(wait_s=0, grace_s=0)
        assert left.id.hex() in removed and kept.id.hex() not in removed
        assert placement_group_table(left)["state"] == "REMOVED"
        assert placement_group_table(kept)["state"] == "CREATED"
    finally:
        remove_placement_group(kept)
