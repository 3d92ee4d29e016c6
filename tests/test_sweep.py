"""`genlab sweep` end to end, as a user runs it: interrupted with Ctrl-C, resumed, tracked, compared."""

from __future__ import annotations

import io
import re
import shlex
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import genlab_start, sqlite_store

from genlab import config, tracking
from genlab.runners import trials

SWEEP = {
    "name": "resume-me",
    "run": {
        "name": "base",
        "algorithm": "improved_gan",
        "hparams": {"d_hidden": [128, 64], "g_hidden": [64], "ema_decay": 0.9},
        "data": {"name": "digits", "labels_per_class": 10, "batch_size": 100},
        "budget": {"epochs": 3},
        "resources": {"num_workers": 1, "cpus_per_worker": 1},
        "tracking": {"experiment": "sweeps"},
    },
    "search_space": {"hparams.lr": {"loguniform": [1e-3, 1e-2]}, "hparams.unlabeled_weight": {"uniform": [0.5, 1.0]}},
    "metric": "eval/test_error",
    "mode": "min",
    "num_samples": 3,
    "max_concurrent": 2,
    "scheduler": {"type": "asha", "grace_period": 2, "reduction_factor": 2},
}


def finished_trials(uri: str) -> dict[str, object]:
    c = tracking.client(uri)
    exp = c.get_experiment_by_name("sweeps")
    if exp is None:
        return {}
    runs = c.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'")
    return {r.data.tags[tracking.TAG_TRIAL]: r for r in runs if tracking.TAG_TRIAL in r.data.tags}


def terminated_in_saved_state(experiment: Path) -> set[str]:
    """The trials Tune's saved experiment state in ``experiment`` records as finished."""
    from ray.tune import ExperimentAnalysis
    from ray.tune.experiment import Trial

    if not any(experiment.glob("experiment_state-*.json")):
        return set()
    try:
        return {t.trial_id for t in ExperimentAnalysis(str(experiment)).trials if t.status == Trial.TERMINATED}
    except Exception:  # noqa: BLE001  (the state file is being rewritten)
        return set()


@pytest.mark.slow
def test_sweep_interrupted_then_resumed_finishes_without_redoing_trials(tmp_path):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump(SWEEP))
    uri = sqlite_store(tmp_path / "mlflow.db")  # the CLI's default store in its working directory
    args = ("sweep", str(spec), "--set", "run.budget.epochs=3", "--storage", str(tmp_path / "results"),
            "--num-cpus", "2")

    # The store exists before the sweep starts: the polling below and the sweep must not both create its tables
    # (two processes migrating a new SQLite store at once can fail one of them).
    assert finished_trials(uri) == {}

    # 1. Start the sweep; press Ctrl-C once the first trial has finished, as MLflow and Tune's saved state (what
    # --resume reads) both record it. (Between the two a Ctrl-C races Tune's state save: a trial MLflow has as
    # FINISHED can then be trained again on resume. Known, not fixed: see the README's sweep section.)
    proc = genlab_start(tmp_path, *args)
    experiment = tmp_path / "results" / SWEEP["name"]
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (
            (done := set(finished_trials(uri))) and done <= terminated_in_saved_state(experiment)):
        time.sleep(2)
    before = finished_trials(uri)
    if not before:
        proc.kill()
        pytest.fail(f"no trial finished within 300 s (exit code {proc.poll()}):\n{proc.communicate()[0][-3000:]}")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, out[-3000:]
    # The line it prints finishes it as printed: the same spec, overrides and storage, with --resume.
    resume = shlex.split(out.split("interrupted; finish it with:")[1].strip().splitlines()[0])
    assert Path(resume[0]).name == "genlab" and resume[1:] == [*args, "--resume"], resume

    # 2. Resume: the remaining trials run, the finished ones are not redone.
    proc = genlab_start(tmp_path, *resume[1:])
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert "Best trial:" in out and "hparams.lr" in out
    after = finished_trials(uri)
    assert len(after) == SWEEP["num_samples"], sorted(after)
    c = tracking.client(uri)
    for trial_id, run in before.items():
        assert after[trial_id].info.run_id == run.info.run_id
        assert after[trial_id].info.end_time == run.info.end_time  # untouched by the resumed sweep
        epochs = [m.step for m in c.get_metric_history(run.info.run_id, "eval/test_error")]
        assert len(epochs) == len(set(epochs)), "a finished trial was trained again"

    # 3. MLflow: one parent run (reopened by --resume) with every trial nested under it.
    exp = c.get_experiment_by_name("sweeps")
    parents = c.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.TAG_KIND}` = 'sweep'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert {r.data.tags[tracking.TAG_PARENT] for r in after.values()} == {parents[0].info.run_id}
    assert "best/eval/test_error" in parents[0].data.metrics

    # 4. `genlab runs` compares them in a table that fits a terminal: short run names, the params that differ
    # (d_hidden is the same in every run: not a column), the sweep's metric first, 4 significant digits.
    proc = genlab_start(tmp_path, "runs", "sweeps")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    header, *rows = out.strip().splitlines()
    columns = header.split()
    assert columns[:3] == ["run", "status", "sweep"], header
    assert {"lr", "unlabeled_weight"} <= set(columns) and "d_hidden" not in columns, header
    assert columns.index("eval/test_error") == min(i for i, c in enumerate(columns) if "/" in c), header
    assert sorted(r.split()[0] for r in rows) == sorted(after), rows  # the trial ids, not "resume-me-<id>"
    significant = [len(m.group(1).lstrip("0").replace(".", "").lstrip("0")) for m in re.finditer(r"(\d+\.\d+)", out)]
    assert significant and max(significant) <= 4, out  # no long floats

    # 5. Starting the same sweep again without --resume refuses instead of overwriting it.
    proc = genlab_start(tmp_path, *args)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "pass --resume to finish it" in out


def test_a_trial_holds_the_cpus_its_run_needs_and_leaves_ray_datas_free():
    """An RL trial holds its CPUs; BC's holds none, else Ray Data's read task and batch actor (a CPU each) waited
    forever behind it on 2 CPUs (a study of BC hung so); a generative trial's driver holds none."""
    from genlab.runners.trials import TRIAL_DRIVER_MEMORY, trial_resources

    assert trial_resources("gail", 1) == {"cpu": 1}
    assert trial_resources("bc", 1) == {"cpu": 0, "memory": TRIAL_DRIVER_MEMORY}
    assert trial_resources("improved_gan", 1) == {"cpu": 0, "memory": TRIAL_DRIVER_MEMORY}


def test_a_trial_resumed_from_its_checkpoint_finishes_at_the_runs_epoch_count_not_tunes_iteration(tmp_path):
    """A trial that a resumed sweep restored from its epoch-2 checkpoint reports its epoch 3 as Tune's
    ``training_iteration`` 1 (Tune counts again from 1). Its progress line says epoch 3/3, and Tune's end of it is a
    finished run: not one ASHA stopped at epoch 1 (tagged so, its model logged again from an older checkpoint), as
    the callbacks made of it when they read Tune's count."""
    uri = sqlite_store(tmp_path / "mlflow.db")
    spec = config.run_from_dict(SWEEP["run"])
    run_id = tracking.open_run(uri, "sweeps", run_name="t", config={}, tags={tracking.TAG_TRIAL: "t1"})

    def plan(trial_config, trial_id):
        return spec, {}

    trial = SimpleNamespace(trial_id="t1", config={}, last_result={"epoch": 3, "training_iteration": 1})
    out = io.StringIO()
    lines = trials.progress_lines(plan, out)
    lines.on_trial_result(0, [], trial, result={**trial.last_result, "eval/test_error": 0.125})
    lines.on_trial_complete(0, [], trial)
    trials.close_trial_runs(uri, "sweeps", plan, tmp_path / "train").on_trial_complete(0, [], trial)

    assert out.getvalue().splitlines() == ["[genlab] trial t1 epoch 3/3  eval/test_error=0.125",
                                           "[genlab] trial t1 finished"], out.getvalue()
    run = tracking.client(uri).get_run(run_id)
    assert run.info.status == "FINISHED" and tracking.TAG_STOPPED_EARLY not in run.data.tags, run.data.tags
