"""What a training run writes into its open MLflow run: metrics, images, files, datasets, models, system metrics.

:func:`run_scope` opens (or reopens) a run through :mod:`genlab.tracking` and yields its :class:`RunLogger`; rank 0
of a Ray Train run makes a :class:`RunLogger` on the run's id. A restarted worker keeps logging into the same run.
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from genlab.tracking import client, close_run, open_run


@contextmanager
def run_scope(uri: str, experiment: str, *, run_name: str, config: dict, tags: dict[str, str],
              resume_tag: tuple[str, str] | None = None, close: bool = True) -> Iterator[RunLogger]:
    """Open (or reopen, by ``resume_tag``) an MLflow run and yield its :class:`RunLogger`; close it on the way out.

    The run ends FINISHED, or FAILED with the error (KILLED on Ctrl-C) when the body raises; a body that ends
    normally may still set ``logger.end_error`` (e.g. a sweep whose trials all failed). ``close=False`` leaves the
    run open for someone else to close (a Tune trial's run: the sweep's callback decides how the trial ended).
    """
    logger = RunLogger(uri, open_run(uri, experiment, run_name=run_name, config=config, tags=tags,
                                     resume_tag=resume_tag))
    try:
        yield logger
    except BaseException as e:
        if close:
            close_run(uri, logger.run_id, e)
        raise
    if close:
        close_run(uri, logger.run_id, logger.end_error)


SYSTEM_METRICS_INTERVAL_S = 10


@dataclass(frozen=True)
class DatasetInfo:
    """What MLflow records of a dataset a run used."""

    name: str
    source: str
    """A local folder, or where the data comes from when it ships with a package (e.g. ``sklearn:load_digits``)."""
    digest: str
    profile: dict = field(default_factory=dict)
    """Counts worth seeing on the run page: images, labeled / unlabeled, trajectories, transitions."""


def _meta_dataset_class():
    from mlflow.data.meta_dataset import MetaDataset

    class GenlabDataset(MetaDataset):
        def __init__(self, info: DatasetInfo):
            from mlflow.data.code_dataset_source import CodeDatasetSource
            from mlflow.data.dataset_source_registry import resolve_dataset_source

            # A folder: MLflow's local source ("local", its path); data a package ships: a code source.
            source = (resolve_dataset_source(info.source) if info.source.startswith("/")
                      else CodeDatasetSource({"loader": info.source}))
            self.info = info
            super().__init__(source=source, name=info.name, digest=info.digest)

        @property
        def profile(self):
            return self.info.profile

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self.info.profile)}

    return GenlabDataset


def _MetaDataset(info: DatasetInfo):  # noqa: N802 - a class built on first use (mlflow.data imports are heavy)
    return _meta_dataset_class()(info)


class RunLogger:
    """What rank 0 of a training run logs into an open MLflow run: metrics, images, files."""

    def __init__(self, uri: str, run_id: str):
        self.uri, self.run_id = uri, run_id
        self.client = client(uri)
        self.end_error: BaseException | str | None = None
        """What :func:`run_scope` closes the run with when its body ends normally (None: FINISHED)."""

    def metrics(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in values.items() if _is_number(v)]
        self.client.log_batch(self.run_id, metrics=batch)

    def image_grid(self, name: str, images, epoch: int, nrow: int | None = None) -> None:
        """Log images in [-1, 1] (N x C x H x W) as one grid: ``<name>/epoch_NNNN.png`` and ``<name>/latest.png``.

        The grid is upscaled (nearest neighbour, whole pixels) to at least ``plots.MIN_GRID_PIXELS`` a side, so that
        an 8x8 digit stays readable in the MLflow UI.
        """
        from genlab import plots

        with tempfile.TemporaryDirectory() as d:
            grid = plots.grid_image(images, nrow)
            for file in (f"epoch_{epoch:04d}.png", "latest.png"):
                grid.save(Path(d) / file)
                self.client.log_artifact(self.run_id, str(Path(d) / file), name)

    def learning_curves(self, history: list[dict[str, float]]) -> None:
        """Log ``plots/learning_curves.png`` (every metric against epoch) if there is any history."""
        if not history:
            return
        import matplotlib.pyplot as plt

        from genlab import plots

        fig = plots.learning_curves(history)
        self.client.log_figure(self.run_id, fig, "plots/learning_curves.png")
        plt.close(fig)

    def tags(self, values: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in values.items()])

    def file(self, local: str | Path, artifact_dir: str) -> None:
        self.client.log_artifact(self.run_id, str(local), artifact_dir)

    def dir(self, local: str | Path, artifact_dir: str) -> None:
        """Log a folder's contents under ``artifact_dir``."""
        self.client.log_artifacts(self.run_id, str(local), artifact_dir)

    def dataset(self, info: DatasetInfo, context: str) -> None:
        """Record what the run trained (``context="train"``) or evaluated (``"eval"``) on as an MLflow dataset
        input: the run page's and the runs table's Dataset column show it."""
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.exceptions import MlflowException

        entity = _MetaDataset(info)._to_mlflow_entity()
        inputs = [DatasetInput(entity, tags=[InputTag("mlflow.data.context", context)])]
        for attempt in range(3):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except MlflowException as e:
                # Two runs of one experiment logging the same dataset at once (a sweep's concurrent trials) can
                # both miss it in MLflow's lookup and both insert it; the loser's insert breaks the store's
                # unique key. Logging again finds the winner's row and links this run to it.
                if attempt == 2 or not any(m in str(e) for m in ("UNIQUE constraint", "Duplicate entry",
                                                                 "duplicate key")):
                    raise
                time.sleep(0.5)

    def model(self, name: str, module, example_input) -> None:
        """Log a torch module as an MLflow model at ``<name>/`` (signature and input example from
        ``example_input``), so that ``mlflow.pytorch.load_model("runs:/<run id>/<name>")`` gives it back."""
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        module, example_input = copy.deepcopy(module).cpu().eval(), example_input.cpu()  # portable, inference mode
        with torch.no_grad():
            output = module(example_input)
        signature = infer_signature(example_input.cpu().numpy(), output.detach().cpu().numpy())
        with tempfile.TemporaryDirectory() as d:
            # Pickled, not MLflow's traced "pt2" format: genlab's modules (weight norm's data-dependent init, RLlib
            # policies) do not all trace; loading needs genlab's packages installed, as any run of it does.
            # Requirements stated, not inferred: MLflow's inference loads the model again in a subprocess (seconds
            # of CPU per model, and it finds nothing beyond torch and cloudpickle).
            mlflow.pytorch.save_model(module, Path(d) / name, signature=signature, serialization_format="pickle",
                                      input_example=example_input[:2].cpu().numpy(),
                                      pip_requirements=mlflow.pytorch.get_default_pip_requirements())
            self.client.log_artifacts(self.run_id, str(Path(d) / name), name)

    @contextmanager
    def system_metrics(self, enabled: bool = True, node: str | None = None) -> Iterator[None]:
        """Record this machine's CPU, memory, disk, network (and GPU where present) as ``system/*`` metrics every
        10 s while the body runs: the run page's System metrics tab."""
        if not enabled:
            yield
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(self.run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S,
                                       resume_logging=True, node_id=node, tracking_uri=self.uri)
        monitor.start()
        try:
            yield
        finally:
            monitor.finish()
            # MLflow's loop returns on shutdown without logging what it sampled since its last log, so a run
            # shorter than one interval would show an empty System metrics tab: log that last sample here (taken
            # now if the monitor's thread never got to sample: a run of seconds on a busy machine).
            try:
                last = monitor.aggregate_metrics()
                if not last:
                    monitor.collect_metrics()
                    last = monitor.aggregate_metrics()
                if last:
                    monitor.publish_metrics(last)
                    monitor.mlflow_logger.flush()
            except Exception as e:  # system metrics never fail a run
                print(f"[genlab] last system-metrics sample not logged: {e}", file=sys.stderr)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v  # drops NaN
