"""Fault injection: the one place where genlab breaks its own runs on purpose, for tests and recovery drills.

Set in the driver's environment (every Ray process of the run gets the ``GENLAB_*`` variables):

- ``GENLAB_FAIL_AT_EPOCH=N``: a worker raises once, right after reporting epoch N (a crash: Ray Train restarts the
  worker group from the latest checkpoint, up to ``resources.max_failures`` times);
- ``GENLAB_NAN_AT_STEP=N``: rank 0's losses read NaN at training step N (the run diverged: it fails at once).
  Only the first run under a results folder to get there does it (in a sweep: one trial).

A run without them gets :data:`NO_FAULTS`, whose hooks do nothing.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

FAIL_ENV = "GENLAB_FAIL_AT_EPOCH"
NAN_ENV = "GENLAB_NAN_AT_STEP"


@dataclass(frozen=True)
class Faults:
    """What to break in one run; travels to its Ray Train workers as a dict (:meth:`to_dict`)."""

    fail_at_epoch: int | None = None
    fail_marker: str | None = None
    """Written when the failure happens: it happens once, not again after the restart."""
    nan_at_step: int | None = None
    nan_marker: str | None = None
    """Created atomically by the one run that gets the NaN losses."""

    @classmethod
    def from_env(cls, storage: Path, run_key: str) -> Faults:
        """The faults the environment asks for in the run ``<storage>/<run_key>`` (none: :data:`NO_FAULTS`)."""
        faults = {}
        if os.environ.get(FAIL_ENV):
            (storage / run_key).mkdir(parents=True, exist_ok=True)
            faults.update(fail_at_epoch=int(os.environ[FAIL_ENV]),
                          fail_marker=str(storage / run_key / ".injected_failure"))
        if os.environ.get(NAN_ENV):
            storage.mkdir(parents=True, exist_ok=True)
            faults.update(nan_at_step=int(os.environ[NAN_ENV]), nan_marker=str(storage / ".injected_nan"))
        return cls(**faults)

    def to_dict(self) -> dict:
        return asdict(self)

    def step_metrics(self, step: int, metrics: dict[str, float]) -> dict[str, float]:
        """A training step's metrics, with every ``loss/*`` NaN at the step ``GENLAB_NAN_AT_STEP`` names (rank 0)."""
        if self.nan_at_step != step:
            return metrics
        try:
            Path(self.nan_marker).touch(exist_ok=False)  # atomic: one run under this storage gets it
        except FileExistsError:
            return metrics
        return {k: (float("nan") if k.startswith("loss/") else v) for k, v in metrics.items()}

    def after_report(self, epoch: int) -> None:
        """Raise once after epoch ``GENLAB_FAIL_AT_EPOCH`` was reported."""
        marker = self.fail_marker
        if self.fail_at_epoch == epoch and marker and not Path(marker).exists():
            Path(marker).touch()
            raise RuntimeError(f"{FAIL_ENV}={epoch}: injected worker failure after epoch {epoch}")


NO_FAULTS = Faults()
