"""What a training run writes into its open MLflow run: metrics, images, files, datasets, models, system metrics.

:func:`run_scope` opens (or reopens) a run through :mod:`genlab.tracking` and yields its :class:`RunLogger`; rank 0
of a Ray Train run makes a :class:`RunLogger` on the run's id. A restarted worker keeps logging into the same run.

Training never waits for the tracker: every call of a :class:`RunLogger` writes what it logs into the run's outbox
(:mod:`genlab.outbox`: ``<run folder>/mlflow-outbox/<run id>/``) and returns; the outbox's sender delivers it.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from genlab import errors
from genlab.mlflow_http import bounded_http, quiet_retries, reason, transient
from genlab.outbox import OUTAGE_BUDGET_S, Outbox, default_root
from genlab.tracking import client, open_run, run_end

SYSTEM_METRICS_INTERVAL_S = 10


class TrackerUnreachable(errors.NotRetryable, ConnectionError):
    """The tracking server did not answer when the run was to be opened: nothing was trained."""


@contextmanager
def run_scope(uri: str, experiment: str, *, run_name: str, config: dict, tags: dict[str, str],
              resume_tag: tuple[str, str] | None = None, close: bool = True, outbox: str | Path | None = None,
              budget_s: float = OUTAGE_BUDGET_S) -> Iterator[RunLogger]:
    """Open (or reopen, by ``resume_tag``) an MLflow run and yield its :class:`RunLogger`; close it on the way out.

    The run ends FINISHED, or FAILED with the error (KILLED on Ctrl-C) when the body raises; a body that ends
    normally may still set ``logger.end_error`` (e.g. a sweep whose trials all failed). ``close=False`` leaves the
    run open for someone else to close (a Tune trial's run: the sweep's callback decides how the trial ended).
    ``outbox`` is the run's folder for what its loggers hold while the tracker is unreachable (default: a folder
    under ``~/.cache/genlab``); closing waits for it within ``budget_s``. A tracker that does not answer at the
    open raises :class:`TrackerUnreachable` before anything else happens.
    """
    bounded_http()
    with quiet_retries():
        try:
            run_id = open_run(uri, experiment, run_name=run_name, config=config, tags=tags, resume_tag=resume_tag)
        except Exception as e:
            if not transient(e):
                raise
            raise TrackerUnreachable(
                f"the MLflow tracking server at {uri} does not answer ({reason(e)}); no run was started. Start it "
                "(cluster/start_mlflow.sh on a cluster's head node) or point tracking.uri (or $MLFLOW_TRACKING_URI) "
                "at one that runs") from None
    logger = RunLogger(uri, run_id, outbox=outbox, budget_s=budget_s, closes=close)
    try:
        yield logger
    except BaseException as e:
        if close:
            logger.end(e)
        else:
            logger.flush()
        raise
    if close:
        logger.end(logger.end_error)
    else:
        logger.flush()


@dataclass(frozen=True)
class DatasetInfo:
    """What MLflow records of a dataset a run used."""

    name: str
    source: str
    """A local folder, or where the data comes from when it ships with a package (e.g. ``sklearn:load_digits``)."""
    digest: str
    profile: dict = field(default_factory=dict)
    """Counts worth seeing on the run page: images, labeled / unlabeled, trajectories, transitions."""


class RunLogger:
    """What a training run logs into an open MLflow run: metrics, images, files, datasets, models, system metrics.

    Every call returns once the item is in the run's outbox (see the module's docstring); :meth:`flush` waits for
    MLflow to have them, :meth:`end` also ends the run. ``with RunLogger(...) as logger:`` flushes on the way out.
    ``closes``: this logger ends the run (:func:`run_scope`), so other loggers of the run (its Ray Train worker)
    leave the line about what was not logged to it.
    """

    def __init__(self, uri: str, run_id: str, *, outbox: str | Path | None = None,
                 budget_s: float = OUTAGE_BUDGET_S, closes: bool = False):
        bounded_http()
        self.uri, self.run_id = uri, run_id
        self.client = client(uri)
        """MLflow's client on the store, for reads (logging goes through the outbox)."""
        self.end_error: BaseException | str | None = None
        """What :func:`run_scope` closes the run with when its body ends normally (None: FINISHED)."""
        root = Path(outbox) if outbox is not None else default_root()
        self.outbox = Outbox(root / run_id, uri, run_id, budget_s, keep_folder=outbox is not None)
        if closes:
            self.outbox.set_state(closer=True)
        self._closes = closes
        self._last: dict[str, tuple[int, int, float]] = {}  # metric -> (step, timestamp, value) last logged
        self._ended = False

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.flush()

    # ------------------------------------------------------------------------------------------- what it logs

    def metrics(self, values: dict[str, float], step: int) -> None:
        now = _now_ms()
        batch = [[k, float(v), now, step] for k, v in values.items() if _is_number(v)]
        for k, v, ts, s in batch:
            self._last[k] = (s, ts, v)
        self.outbox.put({"kind": "metrics", "metrics": batch, "step": step})

    def image_grid(self, name: str, images, epoch: int, nrow: int | None = None) -> None:
        """Log images in [-1, 1] (N x C x H x W) as one grid: ``<name>/epoch_NNNN.png`` and ``<name>/latest.png``.

        The grid is upscaled (nearest neighbour, whole pixels) to at least ``plots.MIN_GRID_PIXELS`` a side, so that
        an 8x8 digit stays readable in the MLflow UI.
        """
        from genlab import plots

        grid = plots.grid_image(images, nrow)
        files = [f"epoch_{epoch:04d}.png", "latest.png"]

        def write(d: Path) -> None:
            for file in files:
                grid.save(d / file)

        self._artifacts(name, files, write)

    def learning_curves(self, history: list[dict[str, float]]) -> None:
        """Log ``plots/learning_curves.png`` (every metric against epoch) if there is any history."""
        if not history:
            return
        import matplotlib.pyplot as plt

        from genlab import plots

        fig = plots.learning_curves(history)
        try:
            self._artifacts("plots", ["learning_curves.png"], lambda d: fig.savefig(d / "learning_curves.png"))
        finally:
            plt.close(fig)

    def tags(self, values: dict[str, str]) -> None:
        self.outbox.put({"kind": "tags", "tags": {k: str(v) for k, v in values.items()}})

    def file(self, local: str | Path, artifact_dir: str) -> None:
        local = Path(local)
        self._artifacts(artifact_dir, [local.name], lambda d: _copy(local, d / local.name))

    def dir(self, local: str | Path, artifact_dir: str) -> None:
        """Log a folder's contents under ``artifact_dir``."""
        local = Path(local)
        names = sorted(p.name for p in local.iterdir())
        self._artifacts(artifact_dir, names, lambda d: shutil.copytree(local, d, dirs_exist_ok=True))

    def text(self, text: str, artifact_file: str) -> None:
        """Log ``text`` as the artifact ``artifact_file`` (e.g. ``sweep/trials.txt``)."""
        folder, _, name = artifact_file.rpartition("/")
        self._artifacts(folder, [name], lambda d: (d / name).write_text(text))

    def dataset(self, info: DatasetInfo, context: str) -> None:
        """Record what the run trained (``context="train"``) or evaluated (``"eval"``) on as an MLflow dataset
        input: the run page's and the runs table's Dataset column show it."""
        self.outbox.put({"kind": "dataset", "info": asdict(info), "context": context})

    def model(self, name: str, module, example_input, *, metrics: dict[str, float] | None = None,
              step: int | None = None) -> None:
        """Log a torch module as an MLflow 3 logged model named ``name``, from this run (the run page's "Logged
        models", the experiment's Models tab), with ``metrics`` (the evaluation of that model, at ``step``; default:
        the last step logged) as its metrics. ``mlflow.pytorch.load_model("models:/<model id>")`` or
        ``("runs:/<run id>/<name>")`` gives the module back; signature and input example from ``example_input``."""
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        module, example_input = copy.deepcopy(module).cpu().eval(), example_input.cpu()  # portable, inference mode
        with torch.no_grad():
            output = module(example_input)
        signature = infer_signature(example_input.numpy(), output.detach().cpu().numpy())
        if step is None:
            step = max((s for s, _, _ in self._last.values()), default=0)
        # The same point as the run's metric at that step (same timestamp): MLflow links it to the model and does
        # not add it to the run's history a second time.
        linked = [[k, float(v), self._stamp(k, step, float(v)), step] for k, v in (metrics or {}).items()
                  if _is_number(v)]

        def save(d: Path) -> None:
            # Pickled, not MLflow's traced "pt2" format: genlab's modules (weight norm's data-dependent init, RLlib
            # policies) do not all trace; loading needs genlab's packages installed, as any run of it does.
            # Requirements stated, not inferred: MLflow's inference loads the model again in a subprocess (seconds
            # of CPU per model, and it finds nothing beyond torch and cloudpickle).
            # MLflow warns at every pickled model that loading one runs code: genlab chose it, said here once.
            with _quiet_logger("mlflow.pytorch"):
                mlflow.pytorch.save_model(module, d / "model", signature=signature, serialization_format="pickle",
                                          input_example=example_input[:2].numpy(),
                                          pip_requirements=mlflow.pytorch.get_default_pip_requirements())

        self.outbox.put({"kind": "model", "name": name, "step": step, "metrics": linked}, save)

    @contextmanager
    def system_metrics(self, enabled: bool = True, node: str | None = None) -> Iterator[None]:
        """Record this machine's CPU, memory, disk, network (and GPU where present) as ``system/*`` metrics every
        10 s while the body runs: the run page's System metrics tab.

        MLflow's samplers, genlab's thread: MLflow's own monitor thread asks the tracker for the run every interval
        and logs through a client of its own, so an outage held it (and the end of the run) for minutes and then
        stopped it for good. Here each sample goes into the outbox like any metric, numbered on from the run's
        last sample (kept in the outbox's state)."""
        if not enabled:
            yield
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # Built for its samplers only: its thread (and the tracker lookups it makes) is never started.
        monitor = SystemMetricsMonitor(self.run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S, node_id=node,
                                       tracking_uri=self.uri)
        stop = threading.Event()
        thread = threading.Thread(target=self._sample_system, args=(monitor, stop), daemon=True,
                                  name="genlab-system-metrics")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=60)
            try:  # what was sampled since the last sample logged; one taken now if the thread never got to sample
                if not monitor.aggregate_metrics():
                    monitor.collect_metrics()
                self._system_sample(monitor)
            except Exception as e:  # system metrics never fail a run
                print(f"[genlab] last system-metrics sample not logged: {e}", file=sys.stderr)

    # ------------------------------------------------------------------------------------------- the end

    def flush(self) -> bool:
        """Wait until MLflow has everything logged so far, or the tracker has been unreachable for ``budget_s``;
        then say in one line what was not logged and where it is held. True when everything was logged."""
        return self.outbox.flush(report=not self.outbox.state().get("closer") or self._closes)

    def end(self, error: BaseException | str | None = None) -> bool:
        """End the run (FINISHED; FAILED with ``error``; KILLED for KeyboardInterrupt) after everything logged so
        far, and :meth:`flush`. Never raises: the run's end is held like any item when the tracker is away."""
        if self._ended:
            return self.flush()
        self._ended = True
        try:
            status, summary, text = run_end(error)
            self.outbox.put({"kind": "end", "status": status, "summary": summary, "text": text})
        except Exception as e:
            print(f"[genlab] the end of MLflow run {self.run_id} could not be recorded: {e}", file=sys.stderr)
        return self.flush()

    # ------------------------------------------------------------------------------------------- helpers

    def _artifacts(self, artifact_dir: str, names: list[str], write: Callable[[Path], None]) -> None:
        prefix = f"{artifact_dir}/" if artifact_dir else ""
        self.outbox.put({"kind": "artifacts", "artifact_dir": artifact_dir or None,
                         "paths": [prefix + n for n in names]}, write)

    def _stamp(self, key: str, step: int, value: float) -> int:
        """The timestamp of ``key``'s point (``step``, ``value``) as the run has it, so that MLflow links that point
        to a model instead of adding it to the run's history again; a new one if the run has no such point."""
        last = self._last.get(key)
        if last is not None:
            return last[1] if last[0] == step and last[2] == value else _now_ms()
        # A logger that did not log this metric itself (Tune's callback ending a trial ASHA stopped, from its
        # checkpoint): the point its worker logged, as MLflow has it.
        try:
            history = self.client.get_metric_history(self.run_id, key)
        except Exception:  # noqa: BLE001  (unreachable tracker: the model's point gets its own timestamp)
            return _now_ms()
        return next((m.timestamp for m in history if m.step == step and m.value == value), _now_ms())

    def _sample_system(self, monitor, stop: threading.Event) -> None:
        try:
            while True:
                monitor.collect_metrics()
                if stop.wait(monitor.sampling_interval):
                    return
                self._system_sample(monitor)
        except Exception as e:  # system metrics never fail a run
            print(f"[genlab] system metrics stopped: {e}", file=sys.stderr)

    def _system_sample(self, monitor) -> None:
        """Put what ``monitor`` sampled since its last sample into the outbox as the next ``system/*`` step."""
        values = monitor.aggregate_metrics()
        for m in monitor.monitors:
            m.clear_metrics()
        if not values:
            return
        prefix = "system/" + (f"{monitor.node_id}/" if monitor.node_id else "")
        step = self.outbox.next_system_step()
        now = _now_ms()
        self.outbox.put({"kind": "metrics", "system": True, "step": step,
                         "metrics": [[prefix + k, float(v), now, step] for k, v in values.items() if _is_number(v)]})


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v  # drops NaN


def _now_ms() -> int:
    return int(time.time() * 1000)


def _copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # a checkpoint need not be copied when the outbox is on the same disk
    except OSError:
        shutil.copy2(src, dst)


@contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Only the errors of logger ``name`` while the body runs."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
