"""A run's outbox: what its loggers hold for MLflow, on disk in the run's folder, and the one thread that sends it.

Training never waits for the tracker (genlab.runlog writes every item here and returns). One sender thread per
outbox delivers the items to MLflow in order and deletes each once MLflow has it; each attempt is short
(``genlab.mlflow_http``); while the tracker is unreachable the sender says so once, keeps the items and tries again
every few seconds, and says when it is back. :meth:`Outbox.flush` waits for the outbox to empty, but at most
``budget_s`` from when the tracker became unreachable; then it says in one line what was not logged and where it is
held. ``python -m genlab.outbox <folder>`` sends held items later; so does the next logger of the same run. Metric
points keep the timestamp they were logged with, so a retried batch is not logged twice.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import shutil
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path

from genlab.mlflow_http import bounded_http, log_dataset, quiet_retries, reason, transient
from genlab.tracking import client, end_run

OUTBOX = "mlflow-outbox"
"""The folder, in a run's folder (beside its checkpoints), of what its loggers hold for MLflow: one per MLflow run."""
OUTAGE_BUDGET_S = 300.0
"""How long the end of a run waits for an unreachable tracker (the default of ``tracking.outage_budget_s``)."""
RETRY_MAX_S = 10.0
"""The longest pause between two attempts of the sender while the tracker is unreachable."""


def default_root() -> Path:
    """Where a logger without a run folder keeps its outbox."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "genlab" / OUTBOX


# --------------------------------------------------------------------------------------------------- the outbox


class Outbox:
    """A run's items for MLflow, held on disk in ``folder`` and delivered in order by one sender thread.

    ``folder`` holds ``outbox.json`` (the tracking URI, the run, since when the tracker is unreachable, the next
    system-metrics step), ``NNNNNN.json`` per item with its files in ``NNNNNN/``, and ``refused/``: items MLflow
    refused (a client error that no retry fixes), kept and reported. Items left by an earlier process of the run
    (a crashed worker, a run that ended during an outage) are delivered first.
    """

    def __init__(self, folder: Path, uri: str, run_id: str, budget_s: float = OUTAGE_BUDGET_S, *,
                 keep_folder: bool = True):
        self.folder, self.uri, self.run_id, self.budget_s = Path(folder), uri, run_id, float(budget_s)
        self.keep_folder = keep_folder
        """False: remove the folder once nothing is held (a default location, not a run's own folder)."""
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, dict]] = deque()
        self._next: int | None = None  # None: the folder was not read yet
        self._running = self._stop = self._wake = False
        self.gave_up = False
        """The last flush stopped waiting and said what is held (cleared by the next item)."""
        self._attempts = 0
        self._delivered = 0
        self._refused = 0
        _OUTBOXES.add(self)

    # ------------------------------------------------------------------------------ state shared through the folder

    def state(self) -> dict:
        try:
            return json.loads((self.folder / "outbox.json").read_text())
        except (OSError, ValueError):
            return {}

    def set_state(self, **values) -> None:
        with self._cond:
            state = {**self.state(), "uri": self.uri, "run_id": self.run_id, **values}
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_json(self.folder / "outbox.json", state)

    def next_system_step(self) -> int:
        with self._cond:
            step = int(self.state().get("next_system_step", 0))
            self.set_state(next_system_step=step + 1)
            return step

    # ------------------------------------------------------------------------------ producers

    def put(self, item: dict, write: Callable[[Path], None] | None = None) -> None:
        """Hold ``item`` (JSON), with the files ``write(folder)`` makes, and have it sent."""
        with self._cond:
            self._load()  # before this item's files appear: what an earlier process left half-written goes
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = None
        if write is not None:
            tmp = self.folder / f"tmp-{uuid.uuid4().hex}"
            tmp.mkdir()
            write(tmp)
        with self._cond:
            seq = self._next
            self._next += 1
            if tmp is not None:
                tmp.rename(self.folder / f"{seq:06d}")
            _write_json(self.folder / f"{seq:06d}.json", item)
            self._queue.append((seq, item))
            self._stop = self.gave_up = False
            self._start()
            self._cond.notify_all()

    def held(self) -> list[dict]:
        with self._cond:
            self._load()
            return [item for _, item in self._queue]

    def flush(self, report: bool = True) -> bool:
        """Wait until everything held is delivered (True), or the tracker has been unreachable for ``budget_s``
        (after at least one more attempt): then stop trying, print what is held where (``report``) and return
        False."""
        with self._cond:
            self._load()
            self._stop, self._wake = False, True  # a flush that gave up earlier stopped the sender: try again
            if self._queue:
                self._start()
            self._cond.notify_all()
            attempts = self._attempts
            since = None
            while self._queue and self._running:  # not running: it stopped on an unexpected error (and said so)
                since = self.state().get("unreachable_since")
                if since is not None and self._attempts > attempts and time.time() >= since + self.budget_s:
                    break
                self._cond.wait(timeout=0.5)
            if not self._queue:
                self._tidy()
                return True
            self._stop = self.gave_up = True
            self._cond.notify_all()
            held = [item for _, item in self._queue]
        if report:
            _say(f"MLflow at {self.uri}" + (f" unreachable for {time.time() - since:.0f} s" if since else "")
                 + f": not logged: {describe(held)}; held on disk at {self.folder} (send them once it is back: "
                 f"python -m genlab.outbox {self.folder})"
                 + (f"; {self._refused} refused by MLflow, in {self.folder / 'refused'}" if self._refused else ""))
        return False

    # ------------------------------------------------------------------------------ the sender

    def _load(self) -> None:
        """Read what an earlier process of the run left in the folder (once): it goes first."""
        if self._next is not None:
            return
        self._next = 1
        if not self.folder.is_dir():
            return
        for stray in self.folder.glob("tmp-*"):  # an item whose files were being written when its process died
            shutil.rmtree(stray, ignore_errors=True)
        for path in sorted(self.folder.glob("[0-9]*.json"), key=lambda p: int(p.stem)):
            self._queue.append((int(path.stem), json.loads(path.read_text())))  # written atomically: whole
        items = {seq for seq, _ in self._queue}
        for files in self.folder.glob("[0-9]*"):  # files whose item was never written (its process died between)
            if files.is_dir() and int(files.name) not in items:
                shutil.rmtree(files, ignore_errors=True)
        self._next = self._queue[-1][0] + 1 if self._queue else 1

    def _start(self) -> None:
        """Start the sender unless it runs (called holding the lock)."""
        if not self._running:
            self._running = True
            threading.Thread(target=self._send, daemon=True, name="genlab-mlflow-sender").start()

    def _send(self) -> None:
        try:
            with quiet_retries():
                self._send_all()
        except BaseException as e:
            with self._cond:
                self._running = False
                self._cond.notify_all()
            _say(f"sending to MLflow stopped on an unexpected error ({type(e).__name__}: {e}); what is not sent yet "
                 f"stays in {self.folder}")
            raise

    def _send_all(self) -> None:
        c = client(self.uri)
        failures = 0
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    self._running = False  # under the lock: a put() from now on starts a new sender
                    return
                seq, item = self._queue[0]
            try:
                if (self.folder / f"{seq:06d}.json").exists():  # else sent meanwhile (python -m genlab.outbox)
                    self._deliver(c, seq, item)
            except Exception as e:
                if transient(e):
                    failures += 1
                    self._unreachable(e)
                    with self._cond:
                        self._attempts += 1
                        self._cond.notify_all()
                        if not self._wake:
                            self._cond.wait_for(lambda: self._wake or self._stop,
                                                timeout=min(RETRY_MAX_S, 2.0 ** failures))
                        self._wake = False
                    continue
                self._refuse(seq, item, e)
            else:
                self._done(seq)
                self._reachable()
            failures = 0
            with self._cond:
                self._attempts += 1
                self._queue.popleft()
                self._delivered += 1
                if not self._queue:
                    self._back()
                self._cond.notify_all()

    def _deliver(self, c, seq: int, item: dict) -> None:
        from mlflow.entities import Metric, RunTag

        files = self.folder / f"{seq:06d}"
        kind = item["kind"]
        if kind == "metrics":
            metrics = [Metric(k, v, ts, step) for k, v, ts, step in item["metrics"]]
            for i in range(0, len(metrics), 1000):  # MLflow's limit per batch
                c.log_batch(self.run_id, metrics=metrics[i : i + 1000])
        elif kind == "tags":
            c.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in item["tags"].items()])
        elif kind == "artifacts":
            c.log_artifacts(self.run_id, str(files), item["artifact_dir"])
        elif kind == "dataset":
            log_dataset(c, self.run_id, item["info"], item["context"])
        elif kind == "model":
            self._deliver_model(c, seq, item, files / "model")
        elif kind == "end":
            end_run(self.uri, self.run_id, item["status"], item["summary"], item["text"])
        else:
            raise ValueError(f"unknown outbox item kind {kind!r}")

    def _deliver_model(self, c, seq: int, item: dict, local: Path) -> None:
        """An MLflow 3 logged model from this run, in steps that each happen once (the item records them): as
        ``mlflow.pytorch.log_model`` makes it, with the run's params, linked to the run at ``step`` with its
        metrics, then READY."""
        from mlflow.entities import LoggedModelOutput, Metric
        from mlflow.models import Model

        if "model_id" not in item:
            run = c.get_run(self.run_id)
            model = c.create_logged_model(run.info.experiment_id, name=item["name"], source_run_id=self.run_id,
                                          params=dict(run.data.params))
            item["model_id"] = model.model_id
            self._rewrite(seq, item)
            # What log_model writes into MLmodel: where the model lives and which run and logged model it is.
            mlmodel = Model.load(local / "MLmodel")
            mlmodel.artifact_path, mlmodel.model_uuid = model.artifact_location, model.model_id
            mlmodel.run_id, mlmodel.model_id = self.run_id, model.model_id
            mlmodel.save(local / "MLmodel")
        model_id = item["model_id"]
        if not item.get("uploaded"):
            c.log_model_artifacts(model_id, str(local))
            item["uploaded"] = True
            self._rewrite(seq, item)
        if not item.get("linked"):
            c.log_outputs(self.run_id, [LoggedModelOutput(model_id, step=item["step"])])
            item["linked"] = True
            self._rewrite(seq, item)
        if item["metrics"]:
            c.log_batch(self.run_id, metrics=[Metric(k, v, ts, step, model_id=model_id)
                                              for k, v, ts, step in item["metrics"]])
        c.finalize_logged_model(model_id, "READY")

    def _rewrite(self, seq: int, item: dict) -> None:
        with self._cond:
            _write_json(self.folder / f"{seq:06d}.json", item)

    def _done(self, seq: int) -> None:
        (self.folder / f"{seq:06d}.json").unlink(missing_ok=True)  # first: an item without its JSON is gone
        shutil.rmtree(self.folder / f"{seq:06d}", ignore_errors=True)

    def _refuse(self, seq: int, item: dict, e: Exception) -> None:
        refused = self.folder / "refused"
        refused.mkdir(exist_ok=True)
        _write_json(refused / f"{seq:06d}.json", {**item, "error": f"{type(e).__name__}: {e}"})
        if (self.folder / f"{seq:06d}").exists():
            shutil.rmtree(refused / f"{seq:06d}", ignore_errors=True)
            (self.folder / f"{seq:06d}").rename(refused / f"{seq:06d}")
        (self.folder / f"{seq:06d}.json").unlink(missing_ok=True)
        self._refused += 1
        if self._refused <= 5:
            _say(f"MLflow refused {describe([item])} of run {self.run_id}: {reason(e)}; kept in {refused}")

    def _unreachable(self, e: Exception) -> None:
        """An attempt failed: the tracker has been unreachable since ``unreachable_since`` (the end's deadline counts
        from it; any delivery resets it), in an outage that began at ``outage_since`` (said once, whichever process
        of the run meets it first, until what it held is delivered)."""
        state, now = self.state(), time.time()
        updates = {k: now for k in ("unreachable_since", "outage_since") if state.get(k) is None}
        if not state.get("announced"):
            updates["announced"] = True
            _say(f"MLflow at {self.uri} is unreachable ({reason(e)}); training goes on and logging is held in "
                 f"{self.folder} until it is back")
        if updates:
            self.set_state(**updates)

    def _reachable(self) -> None:
        """An item was delivered: the tracker answers again."""
        if self.state().get("unreachable_since") is not None:
            self.set_state(unreachable_since=None)

    def _back(self) -> None:
        """Everything held is delivered: the outage, if one was said, is over."""
        state = self.state()
        if state.get("outage_since") is None:
            return
        self.set_state(unreachable_since=None, outage_since=None, announced=False)
        if state.get("announced"):
            _say(f"MLflow at {self.uri} is back after {time.time() - state['outage_since']:.0f} s: everything held "
                 "is logged")

    def _tidy(self) -> None:
        """Nothing is held: a default-location folder goes (a run's own folder keeps its state)."""
        if not self.keep_folder and not (self.folder / "refused").exists():
            shutil.rmtree(self.folder, ignore_errors=True)


_OUTBOXES: weakref.WeakSet[Outbox] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """A process that ends normally without flushing its loggers (a script, a callback) still sends what they hold,
    within their budget, or says what is left on disk. (A killed process leaves it on disk for the next logger of
    the run or ``python -m genlab.outbox``.)"""
    for box in list(_OUTBOXES):
        if box.held() and not box.gave_up:
            box.flush()


def describe(items: list[dict]) -> str:
    """What held items are, for a person: metric steps, system-metric samples, artifacts, models, the run's end."""
    steps = sorted({it["step"] for it in items if it["kind"] == "metrics" and not it.get("system")})
    system = sum(1 for it in items if it["kind"] == "metrics" and it.get("system"))
    paths = list(dict.fromkeys(p for it in items if it["kind"] == "artifacts" for p in it["paths"]))
    parts = []
    if steps:
        parts.append(f"{len(steps)} metric step{'s' * (len(steps) > 1)} ({_ranges(steps)})")
    if system:
        parts.append(f"{system} system-metric sample{'s' * (system > 1)}")
    if paths:
        parts.append("artifacts " + ", ".join(paths[:8]) + (f" and {len(paths) - 8} more" if len(paths) > 8 else ""))
    models = [it["name"] for it in items if it["kind"] == "model"]
    if models:
        parts.append("models " + ", ".join(models))
    datasets = [f"{it['info']['name']} ({it['context']})" for it in items if it["kind"] == "dataset"]
    if datasets:
        parts.append("datasets " + ", ".join(datasets))
    if any(it["kind"] == "tags" for it in items):
        parts.append("tags")
    parts += [f"the run's end ({it['status']})" for it in items if it["kind"] == "end"]
    return ", ".join(parts) or "nothing"


def _ranges(steps: list[int]) -> str:
    out = []
    for _, group in itertools.groupby(enumerate(steps), lambda p: p[1] - p[0]):
        run = [s for _, s in group]
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ", ".join(out)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)  # atomic: a reader sees the old or the new file, never half of one


def _say(text: str) -> None:
    sys.stderr.write(f"[genlab] {text}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    """``python -m genlab.outbox FOLDER... [--wait S]``: send what runs held on disk (their outbox folders) to
    MLflow, waiting at most S seconds (default 60) for an unreachable tracker."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m genlab.outbox", description=main.__doc__)
    p.add_argument("folders", nargs="+", type=Path, help=f"a run's {OUTBOX}/<run id> folder (or its {OUTBOX})")
    p.add_argument("--wait", type=float, default=60.0)
    args = p.parse_args(argv)
    bounded_http()
    folders = [f for folder in args.folders for f in ([folder] if (folder / "outbox.json").exists()
                                                      else [p.parent for p in sorted(folder.glob("*/outbox.json"))])]
    ok = True
    for folder in folders:
        state = json.loads((folder / "outbox.json").read_text())
        box = Outbox(folder, state["uri"], state["run_id"], args.wait)
        box.set_state(unreachable_since=None)  # --wait counts from now, not from when the run lost the tracker
        n = len(box.held())
        if box.flush():
            _say(f"run {state['run_id']}: {n} held item{'s' * (n != 1)} logged to {state['uri']}")
        else:
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
