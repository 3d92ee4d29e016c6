"""The Tune driver that sweeps and studies share: trials that train run specs, what each holds, the MLflow runs closed
as Tune ends them, resuming, and whether Ctrl-C left trials unfinished.

A trial is a small driver function: it validates its run spec, tags its MLflow run (parent, trial id, and what the
sweep or study adds) and calls its kind's runner (``genlab.runners.fit`` with ``in_tune=True``): a generative
trial starts a ``TorchTrainer`` whose rank-0 metrics reach Tune through ``TuneReportCallback``; an RL trial runs
RLlib in the trial itself. The runs of the trials live in ``<folder>/train/<trial id>/`` with their checkpoints, so
a resumed trial continues from its last checkpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from genlab import ray_compat, registry, runlog, runners, tracking
from genlab.runners import generative
from genlab.specs import RunSpec

TRIAL_DRIVER_MEMORY = 64 * 1024**2


Plan = Callable[[dict, str], tuple[RunSpec, dict[str, str]]]
"""How a trial's run spec and MLflow tags come from its Tune config and id (a sweep's sampled values, a study's arm
and seed): a picklable function (``functools.partial`` of a module-level one)."""


def run_trial(trial_config: dict, *, plan: Plan, train_storage: str) -> None:
    """Inside a Tune trial: the run that ``plan`` makes of this trial, trained with its tags and the trial's id."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    spec, tags = plan(trial_config, trial_id)
    runners.fit(spec, storage_path=train_storage, run_key=trial_id, in_tune=True,
                mlflow_tags={**tags, tracking.TAG_TRIAL: trial_id})


def trial_resources(algorithm: str, cpus_per_worker: float) -> dict:
    """What a Tune trial of a run of ``algorithm`` holds (sweeps and studies alike).

    An RLlib algorithm runs in the trial itself and holds its CPUs. One that needs more than one CPU of the local
    Ray (``Hparams.local_cpus``: BC, whose demonstrations Ray Data reads with a task and a batch actor of a CPU
    each) holds none: those tasks take the cluster's CPUs as they run, as under `genlab train`, and behind a CPU
    held by the trial they would wait forever on a machine with few CPUs. A generative trial's driver only waits on
    its Ray Train workers, which hold the real resources. A trial that holds no CPU asks for no fraction of one
    either (0.02 of 2 CPUs would leave too little for a second 1-CPU worker), and for a little memory because Tune
    refuses an empty resource request.
    """
    if registry.entry(algorithm).kind == "rl" and registry.hparams_class(algorithm).local_cpus <= 1:
        return {"cpu": cpus_per_worker}
    return {"cpu": 0, "memory": TRIAL_DRIVER_MEMORY}


def close_trial_runs(uri: str, experiment: str, plan: Plan, train_storage: Path):
    """A Tune callback that closes a trial's MLflow run when Tune ends the trial.

    A trial whose driver raised closes nothing itself (it runs with ``in_tune=True``): this callback records how
    Tune ended it: FINISHED, or FAILED with the error. A trial ASHA stopped before its last epoch was killed with its
    processes, so its end is logged here from its latest checkpoint (its checkpoint, curves and models, as a
    finished run logs them: the model a trial keeps is that of the epoch it stopped at) and it is tagged
    ``genlab.stopped_early``. It also withdraws the trial's Ray Train autoscaling request
    (``ray_compat.release_autoscaling_request``).
    """
    from ray.tune import Callback

    class CloseTrialRuns(Callback):
        def _ended(self, trial):
            """Withdraw the ended trial's autoscaling request; return its MLflow run if still open."""
            run = tracking.find_run(uri, tracking.experiment_id(uri, experiment), tracking.TAG_TRIAL, trial.trial_id)
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
                spec, _ = plan(trial.config, trial.trial_id)
                if it < spec.budget.epochs:
                    tracking.client(uri).set_tag(run.info.run_id, tracking.TAG_STOPPED_EARLY, f"epoch {it}")
                    kept = runners.finalize_from_checkpoint(spec, train_storage / trial.trial_id,
                                                            runlog.RunLogger(uri, run.info.run_id), upto=it)
                    if kept is not None:  # its workers may have logged an epoch past it before they were killed
                        tracking.client(uri).set_tag(run.info.run_id, tracking.TAG_MODEL_EPOCH, str(kept))
                tracking.close_run(uri, run.info.run_id)

        def on_trial_error(self, iteration, trials, trial, **info):
            run = self._ended(trial)
            if run is not None:
                tracking.close_run(uri, run.info.run_id, ray_compat.trial_error(trial))

    return CloseTrialRuns()


def progress_lines(plan: Plan, out=None):
    """A Tune callback that prints what a person follows a sweep or study by, one line per event: a trial started
    (with what sets it apart), each epoch's progress line (the method's own, as ``genlab train`` prints it), and how
    it ended. Tune's tables and the trials' processes' own output stay in Ray's logs."""
    import sys

    from ray.tune import Callback

    out = out or sys.stdout

    def say(text: str) -> None:
        out.write(f"[genlab] {text}\n")
        out.flush()

    class ProgressLines(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            spec, tags = plan(trial.config, trial.trial_id)
            setting = ", ".join(f"{k.removeprefix('hparams.')}={_short(v)}" for k, v in trial.config.items())
            say(f"trial {trial.trial_id} started: {setting}")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            spec, _ = plan(trial.config, trial.trial_id)
            shown = [k for k in registry.progress(spec.algorithm) if k in result][:6]
            say(f"trial {trial.trial_id} epoch {result.get('training_iteration')}/{spec.budget.epochs}  "
                + "  ".join(f"{k}={result[k]:.4g}" for k in shown))

        def on_trial_complete(self, iteration, trials, trial, **info):
            spec, _ = plan(trial.config, trial.trial_id)
            it = trial.last_result.get("training_iteration", 0)
            say(f"trial {trial.trial_id} " + ("finished" if it >= spec.budget.epochs else
                                               f"stopped by the scheduler at epoch {it}; it keeps that epoch's model"))

        def on_trial_error(self, iteration, trials, trial, **info):
            from genlab import errors

            say(f"trial {trial.trial_id} failed: {errors.summary(ray_compat.trial_error(trial))}")

    return ProgressLines()


def _once_per_trial(plan: Plan) -> Plan:
    """``plan`` computed once per trial in the driver (validating a run spec can make an env)."""
    made: dict[str, tuple] = {}

    def cached(trial_config: dict, trial_id: str):
        if trial_id not in made:
            made[trial_id] = plan(trial_config, trial_id)
        return made[trial_id]

    return cached


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def fit(*, plan: Plan, resources, name: str, folder: Path, uri: str, experiment: str, parent_run_id: str,
        resume: bool, new_tuner: Callable[..., object]):
    """Run the trials ``plan`` makes, each holding ``resources`` (a dict, or a function of the trial's config), in
    ``folder`` (Tune's experiment folder): a new experiment from ``new_tuner(trainable, run_config)``, or with
    ``resume`` the interrupted one restored (finished trials kept, unfinished and errored ones run again). When it
    is over, nothing the trials reserved is left behind. Returns Tune's ``ResultGrid``."""
    from ray import tune

    train_storage = folder / "train"  # the runs of the trials, with their checkpoints
    in_driver = _once_per_trial(plan)
    trainable = tune.with_resources(tune.with_parameters(run_trial, plan=plan, train_storage=str(train_storage)),
                                    resources)
    run_config = tune.RunConfig(name=name, storage_path=str(folder.parent), verbose=0,
                                callbacks=[close_trial_runs(uri, experiment, in_driver, train_storage),
                                           progress_lines(in_driver)],
                                failure_config=tune.FailureConfig(max_failures=0))  # Ray Train retries inside
    if resume:
        tuner = tune.Tuner.restore(str(folder), trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = new_tuner(trainable, run_config)
    results = tuner.fit()
    _release_autoscaling_requests(uri, tracking.experiment_id(uri, experiment), parent_run_id)
    _remove_leftover_placement_groups()
    return results


def unfinished(results, expected: int) -> bool:
    """Whether Tune returned from ``fit()`` after Ctrl-C with fewer than ``expected`` trials finished.

    Tune saves the experiment state before it stops the trials that were still running, so the state on disk
    (what ``--resume`` reads) still shows them unfinished; the in-memory results do not.
    """
    from ray.tune import ExperimentAnalysis
    from ray.tune.experiment import Trial

    saved = ExperimentAnalysis(results.experiment_path).trials
    return sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in saved) < expected


def _release_autoscaling_requests(uri: str, experiment_id: str, parent_run_id: str) -> None:
    """Withdraw every trial's Ray Train autoscaling request once the experiment is over (the callback's background
    releases may not have finished)."""
    for trial_run in tracking.children(uri, parent_run_id, experiment_id):
        generative.release_autoscaling_request(trial_run.data.tags)


def _remove_leftover_placement_groups() -> None:
    """Free what ended trials still reserve (see ``ray_compat.remove_job_placement_groups``), saying so."""
    try:
        removed = ray_compat.remove_job_placement_groups()
    except Exception as e:  # the state API is unreachable: the results matter more
        print(f"genlab: could not check for placement groups left by ended trials: {e}", flush=True)
        return
    if removed:
        print(f"genlab: removed {len(removed)} placement group(s) left by ended trials: {', '.join(removed)}",
              flush=True)
