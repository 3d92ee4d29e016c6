"""Studies: every arm × every seed as one Ray Tune experiment (a grid, no search, no early stopping), resumable,
one MLflow parent run (tag ``genlab.kind: study``) with a child run per arm and seed, tagged with the arm, the
seed and the paper claims it measures. ``genlab report`` turns those runs into the paper-vs-ours page.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

from genlab import errors, runlog, tracking
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


def _trial(trial_config: dict, *, arms: dict, study: str, parent_run_id: str, train_storage: str) -> None:
    arm, seed = trial_config["arm"], trial_config["seed"]
    raw = copy.deepcopy(arms[arm]["run"])
    raw["seed"] = seed
    tags = {tracking.TAG_PARENT: parent_run_id, tracking.TAG_STUDY: study, tracking.TAG_ARM: arm,
            tracking.TAG_SEED: str(seed), tracking.TAG_CLAIMS: ",".join(arms[arm]["claims"])}
    trials.run_trial(raw, source=f"{study}: {arm}, seed {seed}", name=f"{study}-{slug(arm)}-s{seed}", tags=tags,
                     train_storage=train_storage)


def _resources(arms: dict):
    """A trial's resources by its arm, as in sweeps (``trials.trial_resources``)."""

    def resources(trial_config: dict) -> dict:
        run = arms[trial_config["arm"]]["run"]
        return trials.trial_resources(run["algorithm"], run["resources"]["cpus_per_worker"])

    return resources


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
        trainable = tune.with_resources(
            tune.with_parameters(_trial, arms=arms, study=spec.name, parent_run_id=parent.run_id,
                                 train_storage=str(study_dir / "train")),
            _resources(arms))
        results = trials.fit(trainable, name=spec.name, folder=study_dir, uri=uri, experiment=experiment,
                             parent_run_id=parent.run_id, max_t=max(a.run.budget.epochs for a in spec.arms),
                             resume=resume,
                             new_tuner=lambda run_config: tune.Tuner(
                                 trainable, param_space={"arm": tune.grid_search(list(arms)),
                                                         "seed": tune.grid_search(list(spec.seeds))},
                                 tune_config=tune.TuneConfig(max_concurrent_trials=spec.max_concurrent),
                                 run_config=run_config))
        interrupted = trials.unfinished(results, len(arms) * len(spec.seeds))
        failed = [f"{r.config['arm']} seed {r.config['seed']}: {errors.summary(r.error)}"
                  for r in results if r.error is not None]
        if interrupted:
            parent.end_error = KeyboardInterrupt()
        elif failed and len(failed) == len(results):
            parent.end_error = f"all {len(failed)} runs failed; first: {failed[0]}"
    return StudySummary(spec.name, study_dir, parent.run_id, len(results), failed, interrupted)
