"""Sweeps: Ray Tune + OptunaSearch (TPE, or random search) + ASHA over a run spec, resumable, one MLflow parent run.

With TPE, a search space of choices only (an ablation table, a list of seeds) runs every combination first
(``grid_points``); random search stays plain random sampling, the baseline it is there to be.

Each trial is a small driver function that applies its sampled values to the base run spec, validates it, and
calls its kind's runner through the registry (generative: a ``TorchTrainer`` whose rank-0 metrics reach Tune
through ``TuneReportCallback``; RL: the RLlib algorithm in the trial itself). A generative trial's driver holds
no CPU (Ray Train's workers hold the trial's real resources), so on 2 CPUs two 1-worker trials run side by side
without deadlock.

Layout: ``<storage>/<sweep name>/`` is Tune's experiment folder (``Tuner.restore`` reads it); the runs of the
trials live in ``<storage>/<sweep name>/train/<trial id>/`` with their checkpoints, so a resumed trial continues
from its last checkpoint. ``run`` returns a :class:`SweepSummary` (ranking, best trial, whether it was
interrupted) that the CLI prints and the parent MLflow run records.
"""

from __future__ import annotations

import copy
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from genlab import config, errors, ray_compat, registry, runners, tracking
from genlab.errors import SpecError
from genlab.runners import generative, storage
from genlab.specs import Choice, IntRange, LogUniform, SweepSpec, Uniform, set_path

TAG_SWEEP_DIR = "genlab.sweep_dir"
TRIAL_DRIVER_MEMORY = 64 * 1024**2


@dataclass(frozen=True)
class TrialRow:
    trial_id: str
    status: str
    """"OK", "ERROR" (with ``error``) or "STOPPED" (by ASHA before the last epoch)."""
    epochs: int
    best: float
    """The trial's best value of the sweep's metric over its epochs (NaN when it reported none)."""
    params: dict
    """The sampled values, by dotted path."""
    error: str = ""
    mlflow_run_id: str | None = None


@dataclass(frozen=True)
class SweepSummary:
    name: str
    metric: str
    mode: str
    sweep_dir: Path
    mlflow_run_id: str
    trials: list[TrialRow] = field(default_factory=list)
    """Ranked, best first; trials without the metric last."""
    interrupted: bool = False
    """Ctrl-C stopped it with trials unfinished: ``--resume`` finishes it."""

    @property
    def best(self) -> TrialRow | None:
        ok = [t for t in self.trials if t.status != "ERROR" and t.best == t.best]
        return ok[0] if ok else None

    @property
    def failed(self) -> list[TrialRow]:
        return [t for t in self.trials if t.status == "ERROR"]

    def table(self, top: int = 10) -> str:
        """The ranked trials as text: id, status, epochs, sampled values and best metric to 4 significant digits."""
        import pandas as pd

        rows = [{"trial": t.trial_id, "status": t.status, "epochs": t.epochs,
                 **{k.removeprefix("hparams."): _fmt(v) for k, v in t.params.items()}, self.metric: _fmt(t.best)}
                for t in self.trials[:top]]
        if not rows:
            return "(no trials)"
        with pd.option_context("display.width", 200, "display.max_columns", None):
            return pd.DataFrame(rows).to_string(index=False, na_rep="-")


def _trial(trial_config: dict, *, base: dict, sweep: str, parent_run_id: str, train_storage: str) -> None:
    from ray import tune

    raw = copy.deepcopy(base)
    for path, value in trial_config.items():
        set_path(raw, path, value)
    trial_id = tune.get_context().get_trial_id()
    raw["name"] = f"{sweep}-{trial_id}"
    spec = config.run_from_dict(raw, source=f"trial {trial_id}")
    tags = {tracking.TAG_PARENT: parent_run_id, tracking.TAG_TRIAL: trial_id, tracking.TAG_SWEEP: sweep}
    runners.fit(spec, storage_path=train_storage, run_key=trial_id, in_tune=True,
                                    mlflow_tags=tags)


def trial_resources(algorithm: str, cpus_per_worker: float) -> dict:
    """What a Tune trial of a run of ``algorithm`` holds (sweeps and studies alike).

    An RLlib algorithm runs in the trial itself and holds its CPUs. One that needs more than one CPU of the local
    Ray (``Hparams.local_cpus``: BC, whose demonstrations Ray Data reads with a task and a batch actor of a CPU
    each) holds none: those tasks take the cluster's CPUs as they run, as under `genlab train`, and behind a CPU
    held by the trial they would wait forever on 2 CPUs. A generative trial's driver only waits on its Ray Train
    workers, which hold the real resources. A trial that holds no CPU asks for no fraction of one either (0.02 of
    2 CPUs would leave too little for a second 1-CPU worker), and for a little memory because Tune refuses an empty
    resource request.
    """
    if registry.entry(algorithm).kind == "rl" and registry.hparams_class(algorithm).local_cpus <= 1:
        return {"cpu": cpus_per_worker}
    return {"cpu": 0, "memory": TRIAL_DRIVER_MEMORY}


def _tune_domain(dim):
    from ray import tune

    if isinstance(dim, Uniform):
        return tune.uniform(*dim.uniform)
    if isinstance(dim, LogUniform):
        return tune.loguniform(*dim.loguniform)
    if isinstance(dim, IntRange):
        return tune.randint(dim.int[0], dim.int[1] + 1)  # randint's upper bound is exclusive
    return tune.choice(dim.choice)


def _close_trial_runs():
    """A Tune callback that closes a trial's MLflow run when Tune ends the trial.

    A trial whose driver raised closes nothing itself (it runs with ``in_tune=True``): this callback records how
    Tune ended it: FINISHED (tagged ``genlab.stopped_early`` when ASHA stopped it), or FAILED with the error. It
    also withdraws the trial's Ray Train autoscaling request (see ``ray_compat.release_autoscaling_request``).
    """
    from ray.tune import Callback

    class CloseTrialRuns(Callback):
        def __init__(self, uri: str, experiment: str, max_t: int):
            self.uri, self.experiment, self.max_t = uri, experiment, max_t

        def _ended(self, trial):
            """Withdraw the ended trial's autoscaling request; return its MLflow run if still open."""
            exp_id = tracking.experiment_id(self.uri, self.experiment)
            run = tracking.find_run(self.uri, exp_id, tracking.TAG_TRIAL, trial.trial_id)
            if run is None:
                return None
            # In the background: it waits for the trial's Train controller to die (Tune goes on meanwhile).
            threading.Thread(target=generative.release_autoscaling_request, args=(dict(run.data.tags),),
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
                tracking.close_run(self.uri, run.info.run_id, _trial_error(trial))

    return CloseTrialRuns


def _trial_error(trial) -> BaseException | str:
    """The error Tune recorded for a failed trial. When Tune calls back, it has written it to the trial's local
    folder (the pickled exception, else its text), not yet to the experiment's storage."""
    import cloudpickle

    for path, read in ((trial.pickled_error_file, lambda f: cloudpickle.load(f)),
                       (trial.error_file, lambda f: f.read().decode())):
        if path and Path(path).is_file():
            try:
                with open(path, "rb") as f:
                    return read(f)
            except Exception:  # an error that does not unpickle here: try its text
                continue
    return "trial failed (Tune recorded no error)"


def check_can_start(spec: SweepSpec, storage_path: Path, resume: bool) -> Path:
    """The sweep's folder, after checking that --resume matches what is there (nothing is overwritten)."""
    return storage.check_can_start("sweep", storage_path, spec.name, resume)


def run(spec: SweepSpec, *, storage_path: str | Path = "results", resume: bool = False) -> SweepSummary:
    """Run (or with ``resume=True`` finish) the sweep; returns its summary."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    sweep_dir = check_can_start(spec, Path(storage_path), resume)
    uri = tracking.resolve_uri(spec.run.tracking.uri)
    experiment = spec.run.tracking.experiment
    with tracking.run_scope(uri, experiment, run_name=spec.name, config=spec.model_dump(mode="json"),
                            tags={tracking.TAG_KIND: "sweep", TAG_SWEEP_DIR: str(sweep_dir)},
                            resume_tag=(TAG_SWEEP_DIR, str(sweep_dir)) if resume else None) as parent:
        base = spec.run.with_absolute_paths().model_dump(mode="json")  # trials run in folders of their own
        base["tracking"]["uri"] = uri  # trials run in their own working dirs: pass the resolved store
        trainable = tune.with_resources(
            tune.with_parameters(_trial, base=base, sweep=spec.name, parent_run_id=parent.run_id,
                                 train_storage=str(sweep_dir / "train")),
            trial_resources(spec.run.algorithm, spec.run.resources.cpus_per_worker),
        )
        epochs = spec.run.budget.epochs
        s = spec.scheduler
        scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=s.grace_period,
                                   reduction_factor=s.reduction_factor)
                     if s.type == "asha" else FIFOScheduler())
        run_config = tune.RunConfig(
            name=spec.name, storage_path=str(sweep_dir.parent),
            callbacks=[_close_trial_runs()(uri, experiment, epochs)],
            failure_config=tune.FailureConfig(max_failures=0),  # Ray Train already retried inside the trial
        )
        if resume:
            tuner = tune.Tuner.restore(str(sweep_dir), trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space={path: _tune_domain(dim) for path, dim in spec.search_space.items()},
                tune_config=tune.TuneConfig(
                    metric=spec.metric, mode=spec.mode, num_samples=spec.num_samples, scheduler=scheduler,
                    search_alg=search_algorithm(spec),
                ),
                run_config=run_config,
            )
        results = tuner.fit()
        _release_autoscaling_requests(uri, experiment, spec.name)
        _remove_leftover_placement_groups()
        summary = _summarize(spec, results, sweep_dir, parent.run_id, _trial_runs(uri, experiment, spec.name))
        _log_summary(parent, summary)
        if summary.interrupted:
            parent.end_error = KeyboardInterrupt()  # KILLED; --resume reopens it
        elif summary.trials and len(summary.failed) == len(summary.trials):
            parent.end_error = f"all {len(summary.trials)} trials failed; first error: {summary.failed[0].error}"
    return summary


def search_algorithm(spec: SweepSpec):
    """The Tune searcher of ``spec.search``: Optuna's TPE (a choices-only space's ``grid_points`` first), at most
    ``max_concurrent`` trials at once; or plain random sampling."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    if spec.search == "random":
        return BasicVariantGenerator(max_concurrent=spec.max_concurrent, random_state=spec.seed)
    return ConcurrencyLimiter(OptunaSearch(seed=spec.seed, points_to_evaluate=grid_points(spec)), spec.max_concurrent)


def grid_points(spec: SweepSpec) -> list[dict] | None:
    """Every combination of the choices, in order, when the search space is choices only (an ablation table, seeds):
    TPE (Optuna) evaluates these first, so ``num_samples`` = their number runs each once (TPE alone may repeat a choice
    and miss another). None when a dimension is a range."""
    import itertools

    dims = spec.search_space
    if not all(isinstance(d, Choice) for d in dims.values()):
        return None
    return [dict(zip(dims, values)) for values in itertools.product(*(d.choice for d in dims.values()))]


def _release_autoscaling_requests(uri: str, experiment: str, sweep: str) -> None:
    """Withdraw every trial's Ray Train autoscaling request once the sweep is over (the callback's background
    releases may not have finished)."""
    c = tracking.client(uri)
    runs = c.search_runs([tracking.experiment_id(uri, experiment)],
                         filter_string=f"tags.`{tracking.TAG_SWEEP}` = '{sweep}'", max_results=5000)
    for r in runs:
        generative.release_autoscaling_request(r.data.tags)


def _remove_leftover_placement_groups() -> None:
    """Free what ended trials still reserve (see ``ray_compat.remove_job_placement_groups``), saying so."""
    try:
        removed = ray_compat.remove_job_placement_groups()
    except Exception as e:  # the state API is unreachable: the sweep's results matter more
        print(f"genlab: could not check for placement groups left by ended trials: {e}", flush=True)
        return
    if removed:
        print(f"genlab: removed {len(removed)} placement group(s) left by ended trials: {', '.join(removed)}",
              flush=True)


def _interrupted(results, spec: SweepSpec) -> bool:
    """Whether Tune returned from ``fit()`` after Ctrl-C with trials unfinished.

    Tune saves the experiment state before it stops the trials that were still running, so the state on disk
    (what ``--resume`` reads) still shows them unfinished; the in-memory results do not.
    """
    from ray.tune import ExperimentAnalysis
    from ray.tune.experiment import Trial

    saved = ExperimentAnalysis(results.experiment_path).trials
    done = [t for t in saved if t.status in (Trial.TERMINATED, Trial.ERROR)]
    return len(done) < spec.num_samples


def _best_value(spec: SweepSpec, result) -> float:
    """The trial's best value of the metric over its epochs (how Tune ranks with scope='all'); NaN if none."""
    df = result.metrics_dataframe
    if df is not None and spec.metric in df and not df[spec.metric].dropna().empty:
        col = df[spec.metric].dropna()
        return float(col.min() if spec.mode == "min" else col.max())
    value = (result.metrics or {}).get(spec.metric)
    return float(value) if value is not None else float("nan")


def _trial_runs(uri: str, experiment: str, sweep: str) -> dict[str, str]:
    """Trial id -> MLflow run id, for the trials of this sweep."""
    runs = tracking.client(uri).search_runs([tracking.experiment_id(uri, experiment)],
                                            filter_string=f"tags.`{tracking.TAG_SWEEP}` = '{sweep}'", max_results=5000)
    return {r.data.tags[tracking.TAG_TRIAL]: r.info.run_id for r in runs if tracking.TAG_TRIAL in r.data.tags}


def register_best(summary: SweepSummary, spec: SweepSpec, name: str) -> list[tuple[str, str]]:
    """Register the best trial's MLflow models in the Model Registry as ``<name>-<model>``; (name, version) each."""
    import mlflow

    from genlab import models

    best = summary.best
    if best is None or best.mlflow_run_id is None:
        raise SpecError(f"--register {name}: the sweep has no successful trial to register")
    uri = tracking.resolve_uri(spec.run.tracking.uri)
    mlflow.set_tracking_uri(uri)
    out = []
    for model in models.model_names(uri, best.mlflow_run_id):
        version = mlflow.register_model(f"runs:/{best.mlflow_run_id}/{model}", f"{name}-{model}",
                                        tags={"genlab.sweep": spec.name, "genlab.trial_id": best.trial_id})
        out.append((version.name, version.version))
    return out


def _summarize(spec: SweepSpec, results, sweep_dir: Path, run_id: str, trial_runs: dict[str, str]) -> SweepSummary:
    rows = []
    for r in results:
        epochs = int((r.metrics or {}).get("training_iteration", 0))
        status = "ERROR" if r.error is not None else "OK" if epochs >= spec.run.budget.epochs else "STOPPED"
        rows.append(TrialRow(
            trial_id=_trial_id(r),
            status=status, epochs=epochs, best=_best_value(spec, r),
            params={k: v for k, v in (r.config or {}).items() if "." in k},
            error=errors.summary(r.error) if r.error is not None else "", mlflow_run_id=trial_runs.get(_trial_id(r))))
    sign = 1 if spec.mode == "min" else -1
    rows.sort(key=lambda t: (t.status == "ERROR", t.best != t.best, sign * t.best if t.best == t.best else 0))
    return SweepSummary(spec.name, spec.metric, spec.mode, sweep_dir, run_id, rows, _interrupted(results, spec))


def _trial_id(result) -> str:
    """The trial's id: in its metrics once it reported, else in its folder's name (``_trial_<id>_<n>_...``)."""
    if (result.metrics or {}).get("trial_id"):
        return result.metrics["trial_id"]
    found = re.search(r"[0-9a-f]{5}_\d{5}", Path(result.path).name) if result.path else None
    return found.group(0) if found else "?"


def _log_summary(parent: tracking.RunLogger, summary: SweepSummary) -> None:
    parent.client.log_text(parent.run_id, summary.table(top=len(summary.trials)), "sweep/trials.txt")
    best = summary.best
    if best is not None:
        parent.client.log_metric(parent.run_id, f"best/{summary.metric}", best.best)
        parent.tags({"best.trial_id": best.trial_id, "best.mlflow_run_id": str(best.mlflow_run_id),
                     **{f"best.{k}": str(v) for k, v in best.params.items()}})


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else v
