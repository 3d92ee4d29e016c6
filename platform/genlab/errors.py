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


def not_retryable(error: BaseException) -> bool:
    """Whether ``error`` (or an error it wraps, as Ray wraps a worker's exception) is :class:`NotRetryable`."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, NotRetryable):
            return True
        error = error.__cause__ or getattr(error, "cause", None)
    return False
