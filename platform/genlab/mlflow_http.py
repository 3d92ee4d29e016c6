"""How genlab's loggers talk to MLflow's client: short HTTP attempts (a sender thread waits out an outage, not
MLflow's own retries), which errors may go away by themselves, their gist in a few words, urllib3's retry warnings
kept off the terminal, and a dataset input recorded once even when concurrent trials log it at once."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
"""One attempt of MLflow's HTTP client: 3 tries within a few seconds, 30 s per request (MLflow's defaults, 7 tries
with doubling backoff and 120 s, held a caller for about 4 minutes). Set in the processes that log, unless the
environment already sets them; the sender's own loop is what waits out an outage."""


def bounded_http() -> None:
    """Short attempts for MLflow's HTTP client in this process (:data:`HTTP_SETTINGS`), unless already set."""
    for k, v in HTTP_SETTINGS.items():
        os.environ.setdefault(k, v)


def transient(e: BaseException) -> bool:
    """Whether an error from MLflow may go away by itself (the tracker unreachable, overloaded, restarting), rather
    than an answer that no retry changes (a bad value, a run that does not exist)."""
    import requests
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(e, RestException) or (isinstance(e, MlflowException) and e.error_code != "INTERNAL_ERROR"):
        status = e.get_http_status_code()
        return not 400 <= status < 500 or status in (408, 429)
    # MLflow's wrapper of a failed request or a store's internal error; the network itself
    return isinstance(e, MlflowException | requests.RequestException | ConnectionError | TimeoutError)


def reason(e: BaseException) -> str:
    """The gist of an MLflow error, short: "Connection refused" rather than a page of urllib3."""
    text = " ".join(str(e).split())
    for gist in ("Connection refused", "Name or service not known", "timed out", "Connection reset",
                 "Remote end closed connection"):
        if gist in text:
            return gist
    return text[:200] + ("..." if len(text) > 200 else "")


_QUIET: set[int] = set()
"""Threads whose failed HTTP attempts urllib3 does not log (genlab says what matters once)."""


class _QuietRetries(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return threading.get_ident() not in _QUIET


for _name in ("urllib3.connectionpool", "urllib3.util.retry"):
    logging.getLogger(_name).addFilter(_QuietRetries())


@contextmanager
def quiet_retries() -> Iterator[None]:
    me = threading.get_ident()
    added = me not in _QUIET
    _QUIET.add(me)
    try:
        yield
    finally:
        if added:
            _QUIET.discard(me)


def log_dataset(c, run_id: str, info: dict, context: str) -> None:
    """Record a dataset input (genlab.runlog.DatasetInfo, as a dict: name, source, digest, profile) of a run."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.exceptions import MlflowException

    class GenlabDataset(MetaDataset):
        """A dataset as its name, digest and profile (counts worth seeing on the run page)."""

        @property
        def profile(self):
            return info["profile"]

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(info["profile"])}

    # A folder: MLflow's local source ("local", its path); data a package ships: a code source.
    source = (resolve_dataset_source(info["source"]) if info["source"].startswith("/")
              else CodeDatasetSource({"loader": info["source"]}))
    entity = GenlabDataset(source=source, name=info["name"], digest=info["digest"])._to_mlflow_entity()
    inputs = [DatasetInput(entity, tags=[InputTag("mlflow.data.context", context)])]
    for attempt in range(3):
        try:
            c.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as e:
            # Two runs of one experiment logging the same dataset at once (a sweep's concurrent trials) can both
            # miss it in MLflow's lookup and both insert it; the loser's insert breaks the store's unique key.
            # Logging again finds the winner's row and links this run to it.
            if attempt == 2 or not any(m in str(e) for m in ("UNIQUE constraint", "Duplicate entry",
                                                             "duplicate key")):
                raise
            time.sleep(0.5)
