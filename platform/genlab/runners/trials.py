"""The Tune driver that sweeps and studies share: trials that train run specs, what each holds, the MLflow runs closed
as Tune ends them, resuming, and whether Ctrl-C left trials unfinished.

A trial is a small driver function: it validates its run spec, tags its MLflow run (parent, trial id, and what the
sweep or study adds) and calls its kind's runner (``genlab.runners.fit`` with ``in_tune=True``): a generative
trial starts a ``TorchTrainer`` whose rank-0 metrics reach Tune through ``TuneReportCallback``; an RL trial runs
RLlib in the trial itself. The runs of the trials live in ``<folder>/train/<trial id>/`` with their checkpoints, so
a resumed trial continues from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from genlab import ray_compat, registry, runlog, runners, tracking
from genlab.runners import generative
from genlab.specs import RunSpec

log = logging.getLogger(__name__)

TRIAL_DRIVER_MEMORY = 64 * 1024**2

EPOCH = "epoch"
"""The result field that counts a trial's epochs (RL: iterations), which every runner reports: the run's own count,
so it goes on from a checkpoint when a resumed sweep or study restores the trial, where Tune's
``training_iteration`` starts again from 1. ASHA's milestones, a trial's end and its progress lines read it."""


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


@dataclass(frozen=True)
class Bundles:
    """``count`` identical resource bundles of a trial, what holds them and the spec fields that size them."""

    count: int
    resources: dict[str, float]
    """Ray's resource names: CPU, GPU, memory (bytes); zero amounts left out."""
    what: str
    """What runs in each, for messages ("env runner", "Ray Train worker", ...)."""
    fields: dict[str, str]
    """Resource name -> the spec field that sets it ("CPU" -> "rl.cpus_per_env_runner"); ``count`` is "#"'s."""


@dataclass(frozen=True)
class TrialNeeds:
    """Everything one trial of a run spec reserves, as Ray will ask for it."""

    bundles: list[Bundles]
    strategy: str
    """Ray's placement strategy for them (PACK: as few nodes as possible, spreading when they do not fit one)."""
    holder: str
    """Who reserves them: the trial's placement group, or the trial's Ray Train workers' own."""


def _nonzero(resources: dict) -> dict[str, float]:
    return {k: float(v) for k, v in resources.items() if v}


def trial_needs(spec: RunSpec) -> TrialNeeds:
    """What a trial of ``spec`` reserves (the same for ``genlab train``, except that there the driver is the
    trial's process and holds nothing itself).

    - Generative: ``resources.num_workers`` Ray Train workers of ``cpus_per_worker`` CPUs and ``gpus_per_worker``
      GPUs, in Ray Train's placement group (PACK); the trial's driver only waits on them (a little memory).
    - RL on PPO (GAIL, VIME): RLlib's own request for the run's config (``Algorithm.default_resource_request``): the
      trial's process (``resources.cpus_per_worker`` CPUs, and the local learner's GPU), then each env runner,
      evaluation runner and remote learner, as one placement group (RLlib's ``placement_strategy``, PACK).
    - Offline RL (BC): no CPU (Ray Data's read task and batch actor take the cluster's as they run; behind a CPU held
      by the trial they would wait forever on a machine with few CPUs), its local learner's GPU if it has one.
    """
    kind, r = registry.entry(spec.algorithm), spec.resources
    if kind.kind == "generative":
        fields = {"#": "resources.num_workers", "CPU": "resources.cpus_per_worker", "GPU": "resources.gpus_per_worker"}
        worker = _nonzero({"CPU": r.cpus_per_worker, "GPU": r.gpus_per_worker})
        return TrialNeeds([Bundles(r.num_workers, worker, "Ray Train worker", fields)], "PACK",
                          "Ray Train's placement group")
    if not kind.uses_ppo or registry.hparams_class(spec.algorithm).local_cpus > 1:
        gpus = spec.rl.gpus_per_learner if spec.rl is not None else 0
        return TrialNeeds([Bundles(1, _nonzero({"GPU": gpus, "memory": TRIAL_DRIVER_MEMORY}),
                                   "the trial's process (its learner)", {"GPU": "rl.gpus_per_learner"})],
                          "PACK", "the trial")
    return _rllib_needs(spec)


def _rllib_needs(spec: RunSpec) -> TrialNeeds:
    """RLlib's request for the run's config, its bundles named: [the trial's process] + env runners + evaluation
    runners + learners (the order of ``Algorithm.default_resource_request``)."""
    pgf = _rllib_request(spec)
    rl = spec.rl
    local = {"CPU": "resources.cpus_per_worker"} | ({} if rl.learners else {"GPU": "rl.gpus_per_learner"})
    parts = [(1, "the trial's process" + ("" if rl.learners else " and its learner"), local),
             (rl.env_runners, "env runner", {"#": "rl.env_runners", "CPU": "rl.cpus_per_env_runner"}),
             (rl.evaluation_runners, "evaluation runner",
              {"#": "rl.evaluation_runners", "CPU": "rl.cpus_per_env_runner"}),
             (rl.learners, "learner", {"#": "rl.learners", "CPU": "rl.cpus_per_learner", "GPU": "rl.gpus_per_learner"})]
    bundles, at = [], 0
    for count, what, fields in parts:
        if count:
            same = {tuple(sorted(_nonzero(b).items())) for b in pgf.bundles[at:at + count]}
            if len(same) != 1 or at + count > len(pgf.bundles):
                raise RuntimeError(f"RLlib's resource request {pgf.bundles} does not have {count} {what} bundles "
                                   f"at {at}: is ray the pinned version (constraints.txt)?")
            bundles.append(Bundles(count, dict(next(iter(same))), what, fields))
            at += count
    if at != len(pgf.bundles):
        raise RuntimeError(f"RLlib's resource request {pgf.bundles} has bundles genlab does not know")
    return TrialNeeds(bundles, pgf.strategy, "the trial's placement group")


def _rllib_request(spec: RunSpec):
    """RLlib's ``PlacementGroupFactory`` for the run's config (what ``tune.Tuner(<Algorithm>)`` would reserve)."""
    config = registry.rllib_config(spec.algorithm, spec.hparams_obj(), spec.context())
    return config.algo_class.default_resource_request(config)


def run_resources(spec: RunSpec):
    """What a Tune trial of ``spec`` holds (sweeps and studies alike; :func:`trial_needs` says why): for RL on PPO,
    RLlib's own placement group for the run's config (so trials pack onto a cluster's nodes and the autoscaler sees
    the whole demand); otherwise a dict: the trial's CPUs (none for generative and offline runs, whose Ray Train
    workers or Ray Data tasks hold the real resources) and a little memory because Tune refuses an empty request.
    A trial that holds no CPU asks for no fraction of one either (0.02 of 2 CPUs would leave too little for a
    second 1-CPU worker)."""
    kind = registry.entry(spec.algorithm)
    if kind.kind == "rl" and kind.uses_ppo and registry.hparams_class(spec.algorithm).local_cpus <= 1:
        return _rllib_request(spec)
    gpus = spec.rl.gpus_per_learner if kind.kind == "rl" and spec.rl is not None else 0
    return {"cpu": 0, "memory": TRIAL_DRIVER_MEMORY, **({"gpu": gpus} if gpus else {})}


def trial_resources(algorithm: str, cpus_per_worker: float) -> dict:
    """Superseded by :func:`run_resources` (what a trial holds, from its own run spec), which :func:`fit` uses for
    every trial whatever its caller passes: this is today's layout only (an RL trial's CPUs in its own process)."""
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
                it = trial.last_result.get(EPOCH, 0)
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

    def say(text: str) -> None:
        stream = out or sys.stdout  # looked up per line: Tune pickles its callbacks, and a stream does not pickle
        stream.write(f"[genlab] {text}\n")
        stream.flush()

    class ProgressLines(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            spec, tags = plan(trial.config, trial.trial_id)
            setting = ", ".join(f"{k.removeprefix('hparams.')}={_short(v)}" for k, v in trial.config.items())
            say(f"trial {trial.trial_id} started: {setting}")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            spec, _ = plan(trial.config, trial.trial_id)
            shown = [k for k in registry.progress(spec.algorithm) if k in result][:6]
            say(f"trial {trial.trial_id} epoch {result.get(EPOCH)}/{spec.budget.epochs}  "
                + "  ".join(f"{k}={result[k]:.4g}" for k in shown))

        def on_trial_complete(self, iteration, trials, trial, **info):
            spec, _ = plan(trial.config, trial.trial_id)
            it = trial.last_result.get(EPOCH, 0)
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


def _resources_by_run(plan: Plan) -> Callable[[dict], object]:
    """Tune's per-trial resources: :func:`run_resources` of the run ``plan`` makes of a trial's config (computed once
    per distinct config; the trial's id only names the run, so a placeholder stands in for it)."""
    made: dict[str, object] = {}

    def resources(trial_config: dict):
        key = json.dumps(trial_config, sort_keys=True, default=str)
        if key not in made:
            made[key] = run_resources(plan(trial_config, "resources")[0])
        return made[key]

    return resources


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def fit(*, plan: Plan, resources=None, name: str, folder: Path, uri: str, experiment: str, parent_run_id: str,
        resume: bool, new_tuner: Callable[..., object]):
    """Run the trials ``plan`` makes, each holding what its own run spec needs (:func:`run_resources`), in
    ``folder`` (Tune's experiment folder): a new experiment from ``new_tuner(trainable, run_config)``, or with
    ``resume`` the interrupted one restored (finished trials kept, unfinished and errored ones run again). When it
    is over, nothing the trials reserved is left behind. Returns Tune's ``ResultGrid``.

    ``resources`` is what callers computed before a trial's run spec said it (``trial_resources``); it is not used:
    a trial's env runners, learners and GPUs come from its run spec, and a swept one may differ between trials."""
    from ray import tune

    del resources
    train_storage = folder / "train"  # the runs of the trials, with their checkpoints
    in_driver = _once_per_trial(plan)
    trainable = tune.with_resources(tune.with_parameters(run_trial, plan=plan, train_storage=str(train_storage)),
                                    _resources_by_run(plan))
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
    """Free what ended trials still reserve (see ``ray_compat.remove_job_placement_groups``). Housekeeping, not news
    for the user's terminal: logged at INFO on the ``genlab.runners.trials`` logger (``logging.basicConfig(level=
    logging.INFO)`` shows it)."""
    try:
        removed = ray_compat.remove_job_placement_groups()
    except Exception as e:  # the state API is unreachable: the results matter more
        log.warning("could not check for placement groups left by ended trials: %s", e)
        return
    if removed:
        log.info("removed %d placement group(s) left by ended trials: %s", len(removed), ", ".join(removed))
