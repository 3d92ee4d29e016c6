"""The errors genlab raises on purpose. ``NotRetryable`` marks those that a retry cannot fix.

Ray Train restarts a failed worker group up to ``resources.max_failures`` times, which is right for a crashed
worker or a lost node. A bad spec, missing data or a loss that became NaN fails the same way on every attempt, so
genlab's failure policy (``genlab.ray_compat.torch_trainer_class``) fails such a run at once, and the run's name
is free again when no checkpoint was written.
"""

from __future__ import annotations


class NotRetryable(Exception):
    """An error that fails the same way on every attempt."""


class SpecError(NotRetryable, ValueError):
    """A spec that cannot run. The message lists every problem, one per line, each naming its field."""


class DataError(NotRetryable, ValueError):
    """The data a run asks for does not exist or does not fit the spec (files absent, too few labels)."""


class NonFiniteLoss(NotRetryable, FloatingPointError):
    """A loss became NaN or infinite: the run diverged (lower the learning rate, or look at the data)."""


def root_cause(error: BaseException) -> NotRetryable | None:
    """The :class:`NotRetryable` error behind ``error``: itself, one it was raised from, or, for Ray Train's
    ``WorkerGroupError``, the one every failed worker raised. None when there is none (a crash: retry it)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, NotRetryable):
            return error
        failures = getattr(error, "worker_failures", None)
        if failures:
            causes = [root_cause(e) for e in failures.values()]
            return causes[0] if all(causes) else None
        error = error.__cause__ or getattr(error, "cause", None)
    return None


def not_retryable(error: BaseException) -> bool:
    return root_cause(error) is not None


def summary(error: BaseException | str) -> str:
    """One line for a person: the NotRetryable cause as ``Type: message``, else the error's last line."""
    cause = None if isinstance(error, str) else root_cause(error)
    if cause is not None:
        return f"{type(cause).__name__}: {' '.join(str(cause).split())}"
    lines = str(error).strip().splitlines()
    if not lines:
        return "unknown error" if isinstance(error, str) else type(error).__name__
    last = lines[-1].removeprefix(f"{__name__}.")  # a worker's genlab error, as Ray's traceback text ends
    return last if isinstance(error, str) or ": " in last else f"{type(error).__name__}: {last}"
