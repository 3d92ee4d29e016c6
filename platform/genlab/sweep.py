"""Sweeps: Ray Tune + OptunaSearch (TPE) + ASHA over a run spec, resumable, one MLflow parent run.

Each trial is a small driver function that applies its sampled values to the base run spec,
validates it, and calls its kind's fit (``genlab.train.fit``: a ``TorchTrainer`` whose rank-0 metrics
reach Tune through ``TuneReportCallback``; ``genlab.rl.fit``: the RLlib algorithm in the trial itself).
A generative trial's driver holds no CPU (Ray Train's workers hold the trial's real resources), so
on 2 CPUs two 1-worker trials run side by side without deadlock.

Layout: ``<storage>/<sweep name>/`` is Tune's experiment folder (``Tuner.restore`` reads it); the
Ray Train runs of the trials live in ``<storage>/<sweep name>/train/<trial id>/`` with their
checkpoints, so a resumed trial continues from its last checkpoint.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

from genlab import config, registry, tracking
from genlab.config import SpecError, SweepSpec

TAG_SWEEP_DIR = "genlab.sweep_dir"
TRIAL_DRIVER_MEMORY = 64 * 1024**2


def _trial(trial_config: dict, *, base: dict, sweep: str, parent_run_id: str, train_storage: str) -> None:
    from ray import tune

    raw = copy.deepcopy(base)
    for path, value in trial_config.items():
        config.set_path(raw, path, value)
    trial_id = tune.get_context().get_trial_id()
    raw["name"] = f"{sweep}-{trial_id}"
    spec = config.run_from_dict(raw, source=f"trial {trial_id}")
    tags = {tracking.TAG_PARENT: parent_run_id, tracking.TAG_TRIAL: trial_id, tracking.TAG_SWEEP: sweep}
    registry.runner(spec.algorithm)(spec, storage_path=train_storage, run_key=trial_id, in_tune=True,
                                    mlflow_tags=tags)


def _trial_resources(spec: SweepSpec) -> dict:
    if registry.entry(spec.run.algorithm).kind == "rl":
        return {"cpu": spec.run.resources.cpus_per_worker}  # the RLlib algorithm runs in the trial itself
    # A generative trial's driver only waits on its Ray Train workers, which hold the real resources.
    # It asks for no CPU (a fraction would leave 0.98 of 2 CPUs, too little for the second 1-CPU
    # worker), and a little memory because Tune refuses an empty resource request.
    return {"cpu": 0, "memory": TRIAL_DRIVER_MEMORY}


def _tune_domain(dim):
    from ray import tune

    if isinstance(dim, config.Uniform):
        return tune.uniform(*dim.uniform)
    if isinstance(dim, config.LogUniform):
        return tune.loguniform(*dim.loguniform)
    if isinstance(dim, config.IntRange):
        return tune.randint(dim.int[0], dim.int[1] + 1)  # randint's upper bound is exclusive
    return tune.choice(dim.choice)


def _close_trial_runs():
    """A Tune callback that closes a trial's MLflow run when Tune ends the trial.

    A trial that raised in Python closes its own run; this one covers trials stopped early by ASHA
    (their process is ended, not unwound) and trials whose process died (killed, out of memory).
    It also withdraws the trial's Ray Train autoscaling request (see train.release_autoscaling_request).
    """
    from ray.tune import Callback

    from genlab import train

    class CloseTrialRuns(Callback):
        def __init__(self, uri: str, experiment: str, max_t: int):
            self.uri, self.experiment, self.max_t = uri, experiment, max_t

        def _ended(self, trial):
            """Withdraw the ended trial's Ray Train autoscaling request; return its MLflow run if still open."""
            exp_id = tracking.experiment_id(self.uri, self.experiment)
            run = tracking.find_run(self.uri, exp_id, tracking.TAG_TRIAL, trial.trial_id)
            if run is None:
                return None
            # In the background: it waits for the trial's Train controller to die (Tune goes on meanwhile).
            threading.Thread(target=train.release_autoscaling_request, args=(dict(run.data.tags),),
                             daemon=True).start()
            return run if run.info.status == "RUNNING" else None

        def on_trial_complete(self, iteration, trials, trial, **info):
            run = self._ended(trial)
            if run is not None:
                it = trial.last_result.get("training_iteration", 0)
                if it < self.max_t:
                    tracking.client(self.uri).set_tag(run.info.run_id, "genlab.stopped_early", f"epoch {it}")
                tracking.close_run(self.uri, run.info.run_id)

        def on_trial_error(self, iteration, trials, trial, **info):
            run = self._ended(trial)
            if run is not None:
                err = trial.get_error()
                tracking.close_run(self.uri, run.info.run_id, str(err) if err else "trial failed")

    return CloseTrialRuns


def check_can_start(spec: SweepSpec, storage: Path, resume: bool) -> Path:
    """The sweep's folder, after checking that --resume matches what is there (nothing is overwritten)."""
    from ray import tune

    sweep_dir = Path(storage).resolve() / spec.name
    exists = tune.Tuner.can_restore(str(sweep_dir))
    if resume and not exists:
        raise SpecError(f"--resume: no interrupted sweep at {sweep_dir}; run it without --resume first")
    if exists and not resume:
        raise SpecError(f"{sweep_dir} already holds a sweep named {spec.name!r}: pass --resume to finish it, "
                        f"or choose a new name (--set name=...)")
    return sweep_dir


def run(spec: SweepSpec, *, storage_path: str | Path = "results", resume: bool = False):
    """Run (or with ``resume=True`` finish) the sweep; returns Tune's ``ResultGrid``."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    storage = Path(storage_path).resolve()
    sweep_dir = check_can_start(spec, storage, resume)

    uri = tracking.resolve_uri(spec.run.tracking.uri)
    experiment = spec.run.tracking.experiment
    parent = tracking.open_run(uri, experiment, run_name=spec.name, config=spec.model_dump(mode="json"),
                               tags={tracking.TAG_KIND: "sweep", TAG_SWEEP_DIR: str(sweep_dir)},
                               resume_tag=(TAG_SWEEP_DIR, str(sweep_dir)))
    base = spec.run.model_dump(mode="json")
    base["tracking"]["uri"] = uri  # trials run in their own working dirs: pass the resolved store
    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=base, sweep=spec.name,
                             parent_run_id=parent, train_storage=str(sweep_dir / "train")),
        _trial_resources(spec),
    )
    epochs = spec.run.budget.epochs
    s = spec.scheduler
    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=s.grace_period,
                               reduction_factor=s.reduction_factor)
                 if s.type == "asha" else FIFOScheduler())
    run_config = tune.RunConfig(
        name=spec.name, storage_path=str(storage),
        callbacks=[_close_trial_runs()(uri, experiment, epochs)],
        failure_config=tune.FailureConfig(max_failures=0),  # Ray Train already retried inside the trial
    )
    try:
        if resume:
            tuner = tune.Tuner.restore(str(sweep_dir), trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space={path: _tune_domain(dim) for path, dim in spec.search_space.items()},
                tune_config=tune.TuneConfig(
                    metric=spec.metric, mode=spec.mode, num_samples=spec.num_samples, scheduler=scheduler,
                    search_alg=ConcurrencyLimiter(OptunaSearch(seed=spec.seed), spec.max_concurrent),
                ),
                run_config=run_config,
            )
        results = tuner.fit()
    except BaseException as e:
        tracking.close_run(uri, parent, e)
        raise
    _release_autoscaling_requests(uri, experiment, spec.name)
    _log_summary(uri, parent, spec, results)
    if interrupted(results, spec):
        tracking.close_run(uri, parent, KeyboardInterrupt())  # KILLED; --resume reopens it
        return results
    n_err = results.num_errors
    tracking.close_run(uri, parent, f"all {n_err} trials failed" if n_err == len(results) else None)
    return results


def _release_autoscaling_requests(uri: str, experiment: str, sweep: str) -> None:
    """Withdraw every trial's Ray Train autoscaling request once the sweep is over (the callback's
    background releases may not have finished)."""
    from genlab import train

    c = tracking.client(uri)
    runs = c.search_runs([tracking.experiment_id(uri, experiment)],
                         filter_string=f"tags.`{tracking.TAG_SWEEP}` = '{sweep}'", max_results=5000)
    for r in runs:
        train.release_autoscaling_request(r.data.tags)


def interrupted(results, spec: SweepSpec) -> bool:
    """Whether Tune returned from ``fit()`` after Ctrl-C with trials unfinished.

    Tune saves the experiment state before it stops the trials that were still running, so the state
    on disk (what ``--resume`` reads) still shows them unfinished; the in-memory results do not.
    """
    from ray.tune import ExperimentAnalysis
    from ray.tune.experiment import Trial

    saved = ExperimentAnalysis(results.experiment_path).trials
    done = [t for t in saved if t.status in (Trial.TERMINATED, Trial.ERROR)]
    return len(done) < spec.num_samples


def _log_summary(uri: str, parent: str, spec: SweepSpec, results) -> None:
    ok = [r for r in results if r.error is None and spec.metric in r.metrics]
    c = tracking.client(uri)
    c.log_text(parent, best_table(spec, results), "sweep/trials.txt")
    if ok:
        best = results.get_best_result(spec.metric, spec.mode, scope="all")
        c.log_metric(parent, f"best/{spec.metric}", _best_value(spec, best))
        for k, v in _sampled(best.config).items():
            c.set_tag(parent, f"best.{k}", str(v))


def _best_value(spec: SweepSpec, result) -> float:
    """The trial's best value of the metric over its epochs (scope='all', as Tune ranks it)."""
    df = result.metrics_dataframe
    col = df[spec.metric] if df is not None and spec.metric in df else None
    if col is None or col.empty:
        return float(result.metrics[spec.metric])
    return float(col.min() if spec.mode == "min" else col.max())


def _sampled(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if "." in k}


def best_table(spec: SweepSpec, results, top: int = 10) -> str:
    """The trials ranked by the sweep's metric (best value over their epochs), as a text table."""
    import pandas as pd

    rows = []
    for r in results:
        row = {"trial": (r.metrics or {}).get("trial_id", "?"),
               "status": "ERROR" if r.error is not None else "OK",
               "epochs": r.metrics.get("training_iteration", 0) if r.metrics else 0}
        row.update({k: _fmt(v) for k, v in _sampled(r.config or {}).items()})
        row[spec.metric] = _best_value(spec, r) if r.metrics and spec.metric in r.metrics else float("nan")
        rows.append(row)
    df = pd.DataFrame(rows).sort_values(spec.metric, ascending=spec.mode == "min", na_position="last")
    with pd.option_context("display.width", 200, "display.max_columns", None):
        return df.head(top).to_string(index=False)


def _fmt(v):
    return float(f"{v:.4g}") if isinstance(v, float) else v

