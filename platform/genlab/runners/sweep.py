"""Sweeps: Ray Tune + OptunaSearch (TPE, or random search) + ASHA over a run spec, resumable, one MLflow parent run.

With TPE, a search space of choices only (an ablation table, a list of seeds) runs every combination first
(``grid_points``); random search stays plain random sampling, the baseline it is there to be.

Each trial applies its sampled values to the base run spec and trains it (``genlab.runners.trials``, the Tune
driver sweeps share with studies). A generative trial's driver holds no CPU (Ray Train's workers hold the trial's
real resources), so two 1-worker trials run side by side on 2 CPUs without deadlock.

Layout: ``<storage>/<sweep name>/`` is Tune's experiment folder (``Tuner.restore`` reads it); the runs of the
trials live in ``<storage>/<sweep name>/train/<trial id>/`` with their checkpoints, so a resumed trial continues
from its last checkpoint. ``run`` returns a :class:`SweepSummary` (ranking, best trial, whether it was
interrupted) that the CLI prints and the parent MLflow run records.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path

from genlab import config, errors, runlog, tracking
from genlab.errors import SpecError
from genlab.runners import storage, trials
from genlab.specs import set_path
from genlab.sweep_specs import Choice, IntRange, LogUniform, SweepSpec, Uniform


@dataclass(frozen=True)
class TrialRow:
    trial_id: str
    status: str
    """"OK", "ERROR" (with ``error``) or "STOPPED" (by ASHA before the last epoch)."""
    epochs: int
    value: float
    """The sweep's metric of the model the trial keeps (its last epoch's; NaN when it reported none): what trials are
    ranked by, what `genlab runs` shows and what `genlab load` loads."""
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
        ok = [t for t in self.trials if t.status != "ERROR" and t.value == t.value]
        return ok[0] if ok else None

    @property
    def failed(self) -> list[TrialRow]:
        return [t for t in self.trials if t.status == "ERROR"]

    def table(self, top: int = 10) -> str:
        """The ranked trials as text: id, status, epochs, sampled values and best metric to 4 significant digits."""
        import pandas as pd

        rows = [{"trial": t.trial_id, "status": t.status, "epochs": t.epochs,
                 **{k.removeprefix("hparams."): _fmt(v) for k, v in t.params.items()}, self.metric: _fmt(t.value)}
                for t in self.trials[:top]]
        if not rows:
            return "(no trials)"
        with pd.option_context("display.width", 200, "display.max_columns", None):
            return pd.DataFrame(rows).to_string(index=False, na_rep="-")


def _trial_plan(trial_config: dict, trial_id: str, *, base: dict, sweep: str, parent_run_id: str):
    """A trial's run: the base run with its sampled values, named after the sweep and the trial."""
    raw = copy.deepcopy(base)
    for path, value in trial_config.items():
        set_path(raw, path, value)
    raw["name"] = f"{sweep}-{trial_id}"
    spec = config.run_from_dict(raw, source=f"trial {trial_id}")
    return spec, {tracking.TAG_PARENT: parent_run_id, tracking.TAG_SWEEP: sweep, tracking.TAG_SEED: str(spec.seed)}


def _tune_domain(dim):
    from ray import tune

    if isinstance(dim, Uniform):
        return tune.uniform(*dim.uniform)
    if isinstance(dim, LogUniform):
        return tune.loguniform(*dim.loguniform)
    if isinstance(dim, IntRange):
        return tune.randint(dim.int[0], dim.int[1] + 1)  # randint's upper bound is exclusive
    return tune.choice(dim.choice)


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
    with runlog.run_scope(uri, experiment, run_name=spec.name, config=spec.model_dump(mode="json"),
                            tags={tracking.TAG_KIND: "sweep", tracking.TAG_SWEEP_DIR: str(sweep_dir)},
                            resume_tag=(tracking.TAG_SWEEP_DIR, str(sweep_dir)) if resume else None) as parent:
        base = spec.run.with_absolute_paths().model_dump(mode="json")  # trials run in folders of their own
        base["tracking"]["uri"] = uri  # trials run in their own working dirs: pass the resolved store
        epochs = spec.run.budget.epochs
        s = spec.scheduler
        scheduler = (ASHAScheduler(time_attr=trials.EPOCH, max_t=epochs, grace_period=s.grace_period,
                                   reduction_factor=s.reduction_factor)
                     if s.type == "asha" else FIFOScheduler())
        results = trials.fit(
            plan=functools.partial(_trial_plan, base=base, sweep=spec.name, parent_run_id=parent.run_id),
            resources=trials.trial_resources(spec.run.algorithm, spec.run.resources.cpus_per_worker),
            name=spec.name, folder=sweep_dir, uri=uri, experiment=experiment, parent_run_id=parent.run_id,
            resume=resume,
            new_tuner=lambda trainable, run_config: tune.Tuner(
                trainable, param_space={path: _tune_domain(dim) for path, dim in spec.search_space.items()},
                tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, num_samples=spec.num_samples,
                                            scheduler=scheduler, search_alg=search_algorithm(spec)),
                run_config=run_config))
        trial_runs = _trial_runs(uri, experiment, parent.run_id)
        summary = _summarize(spec, results, sweep_dir, parent.run_id, trial_runs, uri)
        _log_summary(parent, summary)
        seeds = sorted({int(r.data.params["seed"]) for r in trial_runs.values() if "seed" in r.data.params})
        parent.tags({tracking.TAG_SEEDS: ",".join(map(str, seeds))})  # what this sweep tuned on
        if summary.interrupted:
            parent.end_error = KeyboardInterrupt()  # KILLED; --resume reopens it
        elif summary.trials and len(summary.failed) == len(summary.trials):
            parent.end_error = f"all {len(summary.trials)} trials failed; first error: {summary.failed[0].error}"
    return summary


def search_algorithm(spec: SweepSpec):
    """The Tune searcher of ``spec.search``: Optuna's TPE (a choices-only space's ``grid_points`` first) or GP, at
    most ``max_concurrent`` trials at once; or plain random sampling."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    if spec.search == "random":
        return BasicVariantGenerator(max_concurrent=spec.max_concurrent, random_state=spec.seed)
    from optuna.samplers import GPSampler, TPESampler

    startup = {} if spec.tpe_startup_trials is None else {"n_startup_trials": spec.tpe_startup_trials}
    sampler = (GPSampler if spec.search == "gp" else TPESampler)(seed=spec.seed, **startup)
    searcher = OptunaSearch(sampler=sampler, points_to_evaluate=grid_points(spec))
    return ConcurrencyLimiter(searcher, spec.max_concurrent)


def grid_points(spec: SweepSpec) -> list[dict] | None:
    """Every combination of the choices, in order, when the search space is choices only (an ablation table, seeds):
    TPE (Optuna) evaluates these first, so ``num_samples`` = their number runs each once (TPE alone may repeat a choice
    and miss another). None when a dimension is a range."""
    import itertools

    dims = spec.search_space
    if not all(isinstance(d, Choice) for d in dims.values()):
        return None
    return [dict(zip(dims, values)) for values in itertools.product(*(d.choice for d in dims.values()))]


def _trial_runs(uri: str, experiment: str, parent_run_id: str) -> dict:
    """Trial id -> its MLflow run, for the trials of this sweep."""
    runs = tracking.children(uri, parent_run_id, tracking.experiment_id(uri, experiment))
    return {r.data.tags[tracking.TAG_TRIAL]: r for r in runs if tracking.TAG_TRIAL in r.data.tags}


def register_best(summary: SweepSummary, spec: SweepSpec, name: str) -> list[tuple[str, str]]:
    """Register the best trial's MLflow models in the Model Registry as ``<name>-<model>``; (name, version) each."""
    from genlab import models

    best = summary.best
    if best is None or best.mlflow_run_id is None:
        raise SpecError(f"--register {name}: the sweep has no successful trial to register")
    return models.register(tracking.resolve_uri(spec.run.tracking.uri), best.mlflow_run_id, name,
                           tags={"genlab.sweep": spec.name, "genlab.trial_id": best.trial_id})


def _summarize(spec: SweepSpec, results, sweep_dir: Path, run_id: str, trial_runs: dict, uri: str) -> SweepSummary:
    """The trials ranked by the sweep's metric of the model each keeps (``tracking.kept_model_metrics``: what `genlab
    runs` shows too)."""
    from ray.tune import ExperimentAnalysis

    ids = {t.path: t.trial_id for t in ExperimentAnalysis(results.experiment_path).trials}  # trials that never reported
    rows = []
    for r in results:
        trial_id = (r.metrics or {}).get("trial_id") or ids.get(r.path, "?")
        epochs = int((r.metrics or {}).get(trials.EPOCH, 0))
        status = "ERROR" if r.error is not None else "OK" if epochs >= spec.run.budget.epochs else "STOPPED"
        run = trial_runs.get(trial_id)
        value = tracking.kept_model_metrics(uri, run).get(spec.metric, float("nan")) if run else float("nan")
        rows.append(TrialRow(
            trial_id=trial_id, status=status, epochs=epochs, value=value,
            params={k: v for k, v in (r.config or {}).items() if "." in k},
            error=errors.summary(r.error) if r.error is not None else "",
            mlflow_run_id=run.info.run_id if run else None))
    sign = 1 if spec.mode == "min" else -1
    rows.sort(key=lambda t: (t.status == "ERROR", t.value != t.value, sign * t.value if t.value == t.value else 0))
    return SweepSummary(spec.name, spec.metric, spec.mode, sweep_dir, run_id, rows,
                        trials.unfinished(results, spec.num_samples))


def _log_summary(parent: runlog.RunLogger, summary: SweepSummary) -> None:
    parent.text(summary.table(top=len(summary.trials)), "sweep/trials.txt")
    best = summary.best
    if best is not None:
        parent.metrics({f"best/{summary.metric}": best.value}, step=0)
        parent.tags({"best.trial_id": best.trial_id, "best.mlflow_run_id": str(best.mlflow_run_id),
                     **{f"best.{k}": str(v) for k, v in best.params.items()}})


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else v
