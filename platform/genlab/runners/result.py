"""What a run returns, whatever its kind (the generative and the RL runner both build it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunResult:
    """What a run returns, whatever its kind."""

    metrics: dict[str, float]
    """The last report's metrics."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Every report's metrics, in order."""
    mlflow_run_id: str = ""
    checkpoint: Any = None
    """The final checkpoint as a ``ray.train.Checkpoint`` (``as_directory()``), or None."""


def latest_evaluation(history: list[dict[str, float]]) -> tuple[int | None, dict[str, float]]:
    """The epoch and the ``eval/*`` metrics of the latest entry of a run's history that evaluated (a history has
    ``eval/*`` only at the epochs that evaluated); ``(None, {})`` when none did. Both runners log a kept model's
    metrics at that epoch, so that MLflow links them to the run's own points."""
    for entry in reversed(history):
        evaluation = {k: v for k, v in entry.items() if k.startswith("eval/")}
        if evaluation:
            return entry.get("epoch"), evaluation
    return None, {}
