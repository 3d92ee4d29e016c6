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

from genlab import config, ray_compat, registry, runners, tracking
from genlab.runners import generative

TRIAL_DRIVER_MEMORY = 64 * 1024**2


def run_trial(raw: dict, *, source: str, name: str, tags: dict[str, str], train_storage: str) -> None:
    """Inside a Tune trial: validate ``raw`` as a run spec named ``name`` and train it, tagged with ``tags`` and the
    trial's id."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    raw = {**raw, "name": name.format(trial_id=trial_id)}
    spec = config.run_from_dict(raw, source=source.format(trial_id=trial_id))
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


def close_trial_runs(uri: str, experiment: str, max_t: int):
    """A Tune callback that closes a trial's MLflow run when Tune ends the trial.

    A trial whose driver raised closes nothing itself (it runs with ``in_tune=True``): this callback records how
    Tune ended it: FINISHED (tagged ``genlab.stopped_early`` when ASHA stopped it before ``max_t``), or FAILED with
    the error. It also withdraws the trial's Ray Train autoscaling request (``ray_compat.release_autoscaling_request``).
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
                if it < max_t:
                    tracking.client(uri).set_tag(run.info.run_id, tracking.TAG_STOPPED_EARLY, f"epoch {it}")
                tracking.close_run(uri, run.info.run_id)

        def on_trial_error(self, iteration, trials, trial, **info):
            run = self._ended(trial)
            if run is not None:
                tracking.close_run(uri, run.info.run_id, ray_compat.trial_error(trial))

    return CloseTrialRuns()


def fit(trainable, *, name: str, folder: Path, uri: str, experiment: str, parent_run_id: str, max_t: int,
        resume: bool, new_tuner: Callable[..., object]):
    """Run the experiment in ``folder`` (Tune's experiment folder): a new one from ``new_tuner(run_config)``, or with
    ``resume`` the interrupted one restored (finished trials kept, unfinished and errored ones run again). When it
    is over, nothing the trials reserved is left behind. Returns Tune's ``ResultGrid``."""
    from ray import tune

    run_config = tune.RunConfig(name=name, storage_path=str(folder.parent),
                                callbacks=[close_trial_runs(uri, experiment, max_t)],
                                failure_config=tune.FailureConfig(max_failures=0))  # Ray Train retries inside
    if resume:
        tuner = tune.Tuner.restore(str(folder), trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = new_tuner(run_config)
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
