"""Studies: every arm × every seed as one Ray Tune experiment (a grid, no search, no early stopping), resumable,
one MLflow parent run (tag ``genlab.kind: study``) with a child run per arm and seed, tagged with the arm, the
seed and the paper claims it measures. ``genlab report`` turns those runs into the paper-vs-ours page.

A study's seed is the whole of a run's randomness: its ``seed`` and, for a dataset, its ``data.seed`` (the labeled
subset, and the split of data that has no fixed test set). The seeds are held out from those the arms' settings were
tuned on (``StudySpec.tuning_seeds``; the held-out-seed protocol of genlab.studies).
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass
from pathlib import Path

from genlab import config, errors, runlog, tracking
from genlab.runners import storage, trials
from genlab.studies import StudySpec


@dataclass(frozen=True)
class StudySummary:
    name: str
    study_dir: Path
    mlflow_run_id: str
    runs: int
    failed: list[str]
    """"<arm> seed <s>: <reason>" for each run that failed."""
    interrupted: bool


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-").lower()


def _trial_plan(trial_config: dict, trial_id: str, *, arms: dict, study: str, parent_run_id: str):
    """A trial's run: its arm's run with the trial's seed, named after the study, the arm and the seed."""
    arm, seed = trial_config["arm"], trial_config["seed"]
    raw = {**copy.deepcopy(arms[arm]["run"]), "seed": seed, "name": f"{study}-{slug(arm)}-s{seed}"}
    if raw.get("data"):  # a seed is all of a run's randomness: its labeled subset and split too
        raw["data"]["seed"] = seed
    tags = {tracking.TAG_PARENT: parent_run_id, tracking.TAG_STUDY: study, tracking.TAG_ARM: arm,
            tracking.TAG_SEED: str(seed), tracking.TAG_CLAIMS: ",".join(arms[arm]["claims"])}
    return config.run_from_dict(raw, source=f"{study}: {arm}, seed {seed}"), tags


def _resources(arms: dict):
    """A trial's resources by its arm, as in sweeps (``trials.trial_resources``)."""

    def resources(trial_config: dict) -> dict:
        run = arms[trial_config["arm"]]["run"]
        return trials.trial_resources(run["algorithm"], run["resources"]["cpus_per_worker"])

    return resources


def check_resume(spec: StudySpec, study_dir: Path) -> None:
    """Refuse ``--resume`` of a study whose arms or seeds changed since it started: Tune restores the grid it
    started, so a new seed or arm would never run and the study would end "interrupted" again and again."""
    from genlab.mlflow_http import bounded_http, quiet_retries, transient

    uri = tracking.resolve_uri(spec.tracking.uri)
    bounded_http()
    try:
        with quiet_retries():
            exp = tracking.find_experiment(uri, spec.tracking.experiment)
            parent = exp and tracking.find_run(uri, exp.experiment_id, tracking.TAG_STUDY_DIR, str(study_dir))
            if not parent:  # started before it could log its spec: nothing to compare
                return
            started = tracking.read_spec(uri, parent.info.run_id)
    except Exception as e:
        if transient(e):  # the tracker does not answer: the study's own start says so, in one line
            return
        raise
    was = [a["label"] for a in started["arms"]], sorted(started["seeds"])
    now = [a.label for a in spec.arms], sorted(spec.seeds)
    if was != now:
        raise errors.SpecError(
            f"--resume: study {spec.name!r} was started with arms {was[0]} on seeds {was[1]}, and its spec now has "
            f"arms {now[0]} on seeds {now[1]}; --resume only finishes the runs it started. Restore the spec to "
            f"finish them, and run new seeds or arms as a study of their own name (e.g. --set name={spec.name}-more)")


def run(spec: StudySpec, *, storage_path: str | Path = "results", resume: bool = False) -> StudySummary:
    """Run (or with ``resume=True`` finish) the study; returns its summary."""
    from ray import tune

    study_dir = storage.check_can_start("study", Path(storage_path), spec.name, resume)
    uri = tracking.resolve_uri(spec.tracking.uri)
    experiment = spec.tracking.experiment
    arms = {a.label: {"run": {**a.run.with_absolute_paths().model_dump(mode="json"),  # trials run in folders of
                              "tracking": {"uri": uri, "experiment": experiment}},           # their own
                      "claims": a.claims} for a in spec.arms}
    with runlog.run_scope(uri, experiment, run_name=spec.name, config=spec.model_dump(mode="json"),
                            tags={tracking.TAG_KIND: "study", tracking.TAG_STUDY: spec.name,
                                  tracking.TAG_STUDY_DIR: str(study_dir)},
                            resume_tag=(tracking.TAG_STUDY_DIR, str(study_dir)) if resume else None) as parent:
        results = trials.fit(
            plan=functools.partial(_trial_plan, arms=arms, study=spec.name, parent_run_id=parent.run_id),
            resources=_resources(arms), name=spec.name, folder=study_dir, uri=uri, experiment=experiment,
            parent_run_id=parent.run_id, resume=resume,
            new_tuner=lambda trainable, run_config: tune.Tuner(
                trainable,
                param_space={"arm": tune.grid_search(list(arms)), "seed": tune.grid_search(list(spec.seeds))},
                tune_config=tune.TuneConfig(max_concurrent_trials=spec.max_concurrent), run_config=run_config))
        interrupted = trials.unfinished(results, len(arms) * len(spec.seeds))
        failed = [f"{r.config['arm']} seed {r.config['seed']}: {errors.summary(r.error)}"
                  for r in results if r.error is not None]
        if interrupted:
            parent.end_error = KeyboardInterrupt()
        elif failed and len(failed) == len(results):
            parent.end_error = f"all {len(failed)} runs failed; first: {failed[0]}"
    return StudySummary(spec.name, study_dir, parent.run_id, len(results), failed, interrupted)
