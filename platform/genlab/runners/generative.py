"""Generative runs on Ray Train: a ``TorchTrainer`` drives the algorithm object on each worker.

``fit(spec)`` opens the MLflow run, starts a ``TorchTrainer`` with the spec's workers (DDP when more than one,
GPUs when asked for), and closes the MLflow run as FINISHED or FAILED. Each worker builds its data shard and
the algorithm from the registry, loops ``train_step`` over an epoch, evaluates, reports metrics every epoch and
a checkpoint (nets, optimizers, EMA, step, epoch, history) every ``budget.checkpoint_every`` epochs.

Failures: a crashed worker restarts the group (``resources.max_failures`` times) and the loop resumes from the
latest checkpoint; running the same run name again with ``resume=True`` does the same after an interrupted run.
An error that a retry cannot fix (``genlab.errors.NotRetryable``: a bad spec, missing data, a loss that became
NaN or infinite) fails the run at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from genlab import config, data, fastpath, outbox, ray_compat, registry, runlog, tracking
from genlab.errors import check_finite, not_retryable
from genlab.runners.result import RunResult, latest_evaluation
from genlab.runners.storage import CHECKPOINT_ARTIFACT, GENERATIVE_STATE
from genlab.specs import RunSpec
from genlab.testing import Faults

DIVERGED = "lower the learning rate (hparams.lr) or check the data"
"""What to change when a loss became NaN or infinite."""
LOGICAL_GPUS_ENV = "GENLAB_LOGICAL_GPUS"
"""Set to 1 on clusters whose GPUs are Ray resources only (Ray's fake_multinode test clusters, e.g.
cluster/local-autoscaling.yaml): trials reserve GPUs as usual but compute on the CPU (gloo backend)."""


def release_autoscaling_request(run_tags: dict[str, str], wait_s: float = 60.0) -> None:
    """Withdraw the autoscaling request of the Ray Train run named in these MLflow tags (see ray_compat)."""
    if tracking.TAG_TRAIN_RUN in run_tags:  # RL trials run RLlib in the trial itself: nothing to withdraw
        ray_compat.release_autoscaling_request(run_tags[tracking.TAG_TRAIN_RUN],
                                               run_tags.get(tracking.TAG_TRAIN_CONTROLLER), wait_s)


def logical_gpus() -> bool:
    return os.environ.get(LOGICAL_GPUS_ENV) == "1"


def _device(spec: RunSpec) -> torch.device:
    """The worker's device: its Ray-assigned GPU when the spec asks for GPUs, else the CPU."""
    from ray.train.torch import get_device

    if spec.resources.gpus_per_worker == 0:
        return torch.device("cpu")
    if torch.cuda.is_available():
        return get_device()
    if logical_gpus():
        return torch.device("cpu")
    raise RuntimeError(
        f"the spec asks for {spec.resources.gpus_per_worker} GPU per worker and Ray placed this worker on a GPU "
        f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}), but torch {torch.__version__} sees "
        f"no CUDA device (CUDA build: {torch.version.cuda}). "
        f"Install the NVIDIA driver and a CUDA torch on the GPU nodes, or set resources.gpus_per_worker: 0. "
        f"On a cluster whose GPUs are logical only (Ray's fake_multinode), set {LOGICAL_GPUS_ENV}=1.")


def train_loop_per_worker(cfg: dict) -> None:
    """One Ray Train worker: build data + algorithm, resume if a checkpoint exists, train, report."""
    import ray.train
    from ray.train.torch import prepare_model

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one progress line per epoch is ours
    ray_compat.quiet_train_reports()
    spec = config.run_from_dict(cfg["spec"])
    faults = Faults(**cfg["faults"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = _device(spec)
    torch.set_num_threads(max(1, int(spec.resources.cpus_per_worker)))

    ds = data.load(spec.data)
    torch.manual_seed(spec.seed)  # identical initial weights on every rank
    algo = registry.algorithm_class(spec.algorithm)(spec.hparams_obj(), ds.info, device)
    algo.set_evaluation_data(lambda: (ds.to_float(ds.train_x), ds.train_y))  # converted only if the method asks
    batch_args = dict(batch_size=spec.data.batch_size, seed=spec.seed, rank=rank, world_size=world,
                      steps=spec.budget.steps_per_epoch, device=device, labels=registry.uses_labels(spec.algorithm))

    start_epoch, history, last_eval = 1, [], {}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / GENERATIVE_STATE, map_location=device, weights_only=False)
        algo.load_state_dict(state["algo"])
        start_epoch, history, last_eval = state["epoch"] + 1, state["history"], state["last_eval"]
        _say(rank, f"resumed from {checkpoint.path} at epoch {start_epoch}")
    else:
        algo.initialize(next(iter(data.batches(ds, epoch=0, **batch_args))))

    def ddp(net: torch.nn.Module) -> torch.nn.Module:
        return prepare_model(net, move_to_device=False, parallel_strategy_kwargs={"find_unused_parameters": True})

    # The spec's perf section (bf16 autocast, torch.compile, channels_last) around the training nets, with DDP when
    # there are several workers; with perf all off only DDP, as always.
    fast = fastpath.apply(algo, spec.perf, device, ddp if world > 1 else None)
    if fast:
        _say(rank, f"fast path: {fast}")

    logger = runlog.RunLogger(cfg["mlflow_uri"], cfg["mlflow_run_id"], outbox=cfg["outbox"],
                              budget_s=spec.tracking.outage_budget_s) if rank == 0 else None
    if logger is not None:  # where rank 0 ran, which Ray Train run it belongs to, what it trains on
        train_run, controller = ray_compat.train_run_ids()
        logger.tags({**tracking.placement(), tracking.TAG_DEVICE: str(device), tracking.TAG_TRAIN_RUN: train_run,
                     tracking.TAG_TRAIN_CONTROLLER: controller})
        if checkpoint is None:
            _log_datasets(logger, spec, ds)
    shown = registry.progress(spec.algorithm)
    b = spec.budget
    with logger.system_metrics(spec.tracking.system_metrics) if logger is not None else contextlib.nullcontext():
        for epoch in range(start_epoch, b.epochs + 1):
            torch.manual_seed(spec.seed * 1_000_003 + epoch * 1009 + rank)  # reproducible from any epoch
            t0, n_images, sums, n_steps = time.perf_counter(), 0, defaultdict(float), 0
            for batch in data.batches(ds, epoch=epoch, **batch_args):
                step_metrics = algo.train_step(batch)
                if rank == 0:
                    step_metrics = faults.step_metrics(algo.step, step_metrics)
                check_finite(step_metrics, f"step {algo.step}", DIVERGED)
                for k, v in step_metrics.items():
                    sums[k] += v
                n_steps += 1
                n_images += batch["x"].shape[0]
            algo.end_epoch(epoch)
            dt = time.perf_counter() - t0
            metrics = {k: v / n_steps for k, v in sums.items()}
            metrics.update({"epoch": epoch, "perf/images_per_s": n_images * world / dt, "perf/epoch_time_s": dt})

            is_last = epoch == b.epochs
            evaluation = {}
            if rank == 0 and b.eval_due(epoch):
                evaluation = last_eval = algo.evaluate(*data.test_set(ds, device))
                for name, grid in algo.images().items():
                    logger.image_grid(name, grid.images, epoch, grid.nrow)
            # MLflow and the run's history have an evaluation at the epochs that made it; every report to Tune
            # carries the latest one (its schedulers compare trials at any epoch).
            history.append({**metrics, **evaluation})
            metrics.update(last_eval)

            if rank == 0:
                logger.metrics(history[-1], step=epoch)
                _say(rank, _progress(epoch, b.epochs, metrics, shown))
            if b.checkpoint_due(epoch):
                state = {"algo": algo.state_dict(), "epoch": epoch, "history": history, "last_eval": last_eval}
                _report_with_checkpoint(rank, metrics, state, final=(logger, algo, spec) if is_last else None)
            else:
                ray.train.report(metrics)
            faults.after_report(epoch)


def _progress(epoch: int, total: int, metrics: dict, shown: list[str]) -> str:
    present = [k for k in shown if k in metrics][:6]  # a method's optional metrics may be absent
    values = "  ".join(f"{k}={metrics[k]:.4g}" for k in present)
    return f"epoch {epoch}/{total}  {values}  {metrics['perf/images_per_s']:.0f} img/s"


def _log_datasets(logger: runlog.RunLogger, spec: RunSpec, ds: data.ImageData) -> None:
    n_train, n_labeled = len(ds.train_x), len(ds.labeled_idx)
    profile = {"train_images": n_train, "test_images": len(ds.test_x), "shape": "x".join(map(str, ds.info.shape))}
    if registry.uses_labels(spec.algorithm):
        profile.update(labeled=n_labeled, unlabeled=n_train - n_labeled if n_labeled < n_train else 0)
    digest, source = data.digest(ds), data.source(spec.data)
    logger.dataset(runlog.DatasetInfo(spec.data.name, source, digest, profile), "train")
    logger.dataset(runlog.DatasetInfo(f"{spec.data.name}-test", source, digest,
                                        {"test_images": len(ds.test_x)}), "eval")


def _report_with_checkpoint(rank: int, metrics: dict, state: dict, final: tuple | None) -> None:
    """Report with a checkpoint. After the last epoch (``final``: the logger, algorithm and spec), rank 0 first logs
    the run's end to MLflow (:func:`log_final`): inside a sweep, Tune may end the trial as soon as its last result
    arrives, so nothing after this report is sure to run."""
    import ray.train

    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        torch.save(state, Path(d) / GENERATIVE_STATE)
        if final is not None:
            logger, algo, spec = final
            log_final(logger, algo, Path(d) / GENERATIVE_STATE, state, spec.tracking.log_models)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


def log_final(logger: runlog.RunLogger, algo, state_file: Path, state: dict, log_models: bool) -> None:
    """A run's end in MLflow: its checkpoint (``checkpoint/state.pt``), learning curves and, with ``log_models``,
    its networks as MLflow models carrying the evaluation's metrics of that epoch: the model a run keeps."""
    logger.file(state_file, CHECKPOINT_ARTIFACT)
    logger.learning_curves(state["history"])
    if log_models:  # the metrics at the epoch of the evaluation they come from
        epoch, _ = latest_evaluation(state["history"])
        step = state["epoch"] if epoch is None else epoch
        for name, (module, example) in algo.models().items():
            logger.model(name, module, example, metrics=state["last_eval"], step=step)
    logger.flush()  # MLflow has it all (or the run's outbox holds it) before the last report


def finalize_from_checkpoint(spec: RunSpec, run_dir: Path, logger: runlog.RunLogger, upto: int) -> int | None:
    """Log the end of a run that was stopped (ASHA) from its latest Ray Train checkpoint in ``run_dir`` at or before
    epoch ``upto``, as :func:`log_final` does at a run's last epoch; returns the checkpoint's epoch (None: none)."""
    for folder in reversed(ray_compat.train_checkpoints(run_dir)):
        state_file = folder / GENERATIVE_STATE
        state = torch.load(state_file, map_location="cpu", weights_only=False)
        if state["epoch"] <= upto:
            break
    else:
        return None
    algo = registry.algorithm_class(spec.algorithm)(spec.hparams_obj(), data.info(spec.data), "cpu")
    algo.load_state_dict(state["algo"])
    log_final(logger, algo, state_file, state, spec.tracking.log_models)
    return state["epoch"]


def _say(rank: int, text: str) -> None:
    """Rank 0's progress line. Written to the stream, not print()ed: Ray Train patches print in its workers to
    both log and echo it, which showed every line twice in the driver's output."""
    if rank == 0:
        sys.stdout.write(f"[genlab] {text}\n")
        sys.stdout.flush()


# ------------------------------------------------------------------------------------------- driver


def fit(spec: RunSpec, *, storage_path: str | Path, run_key: str | None = None,
        mlflow_tags: dict[str, str] | None = None, in_tune: bool = False, resume: bool = False):
    """Train ``spec`` on Ray Train and track it in MLflow; returns its :class:`RunResult` (``checkpoint``: Ray
    Train's last, holding ``state.pt``).

    ``run_key`` names the run's storage folder (default: the spec's name); a run started again with
    the same key resumes from its latest checkpoint and keeps logging into the same MLflow run.
    """
    import ray.train
    from ray.train.torch import TorchConfig

    storage_path = Path(storage_path).resolve()
    run_key = run_key or spec.name
    uri = tracking.resolve_uri(spec.tracking.uri)
    key = f"{storage_path}/{run_key}"
    # In a sweep, Tune decides how a trial ends (finished, stopped early by ASHA, failed) and the sweep's callback
    # closes the MLflow run; a stopped trial's workers die mid-fit and must not read as FAILED here.
    with runlog.run_scope(uri, spec.tracking.experiment, run_name=spec.name, config=spec.model_dump(mode="json"),
                            tags={tracking.TAG_RUN_KEY: key, tracking.TAG_KIND: "train", **(mlflow_tags or {})},
                            resume_tag=(tracking.TAG_RUN_KEY, key) if resume or in_tune else None,
                            close=not in_tune, outbox=Path(key) / outbox.OUTBOX,
                            budget_s=spec.tracking.outage_budget_s) as run:
        loop_cfg = {"spec": spec.model_dump(mode="json"), "mlflow_uri": uri, "mlflow_run_id": run.run_id,
                    "outbox": str(Path(key) / outbox.OUTBOX),
                    "faults": Faults.from_env(storage_path, run_key).to_dict()}

        r = spec.resources
        callbacks = []
        if in_tune:
            from ray.tune.integration.ray_train import TuneReportCallback

            callbacks.append(TuneReportCallback())
        trainer = ray_compat.torch_trainer_class(not_retryable)(
            train_loop_per_worker,
            train_loop_config=loop_cfg,
            torch_config=TorchConfig(backend="gloo") if logical_gpus() else None,  # nccl needs real GPUs
            scaling_config=ray.train.ScalingConfig(
                num_workers=r.num_workers, use_gpu=r.gpus_per_worker > 0,
                resources_per_worker={"CPU": r.cpus_per_worker, **({"GPU": r.gpus_per_worker}
                                                                    if r.gpus_per_worker else {})}),
            run_config=ray.train.RunConfig(
                name=run_key, storage_path=str(storage_path),
                failure_config=ray.train.FailureConfig(max_failures=r.max_failures),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
                callbacks=callbacks),
        )
        result = trainer.fit()
        if result.error is not None:
            raise result.error
    history = []
    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as d:
            history = torch.load(Path(d) / GENERATIVE_STATE, map_location="cpu", weights_only=False)["history"]
    return RunResult(metrics=dict(result.metrics or {}), history=history, mlflow_run_id=run.run_id,
                     checkpoint=result.checkpoint)
