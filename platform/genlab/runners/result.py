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
