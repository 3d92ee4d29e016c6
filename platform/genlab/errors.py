"""The errors genlab raises on purpose. ``NotRetryable`` marks those that a retry cannot fix.

Ray Train restarts a failed worker group up to ``resources.max_failures`` times, which is right for a crashed
worker or a lost node. A bad spec, missing data or a loss that became NaN fails the same way on every attempt, so
genlab's failure policy (``genlab.ray_compat.torch_trainer_class``) fails such a run at once, and the run's name
is free again when no checkpoint was written.

:func:`format_errors` writes pydantic's validation errors as genlab's one-line-per-field messages.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ValidationError


class NotRetryable(Exception):
    """An error that fails the same way on every attempt."""


class SpecError(NotRetryable, ValueError):
    """A spec that cannot run. The message lists every problem, one per line, each naming its field."""


class DataError(NotRetryable, ValueError):
    """The data a run asks for does not exist or does not fit the spec (files absent, too few labels)."""


class NonFiniteLoss(NotRetryable, FloatingPointError):
    """A loss became NaN or infinite: the run diverged (lower the learning rate, or look at the data)."""


def check_finite(metrics: dict[str, float], at: str, fix: str) -> None:
    """Raise :class:`NonFiniteLoss` naming the ``loss/*`` metrics that are NaN or infinite ``at`` (e.g. "step 212");
    ``fix`` says what to change."""
    bad = {k: v for k, v in metrics.items() if k.startswith("loss/") and not math.isfinite(v)}
    if bad:
        raise NonFiniteLoss(f"non-finite loss at {at}: " + ", ".join(f"{k}={v}" for k, v in bad.items())
                            + f"; the run diverged: {fix}")


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


# ------------------------------------------------------------- pydantic's errors as genlab's lines


def format_errors(e: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> list[str]:
    """Pydantic's errors as ``field: message (got value)`` lines; ``model`` lists the allowed keys of an unknown one."""
    out = []
    for err in e.errors():
        loc = [str(p) for p in err["loc"]]
        field = ".".join(([prefix] if prefix else []) + loc) or "(top level)"
        etype, msg = err["type"], err["msg"]
        if etype == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            msg = f"unknown key {loc[-1]!r}" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
            field = ".".join(([prefix] if prefix else []) + loc[:-1]) or "(top level)"
            out.append(f"{field}: {msg}")
            continue
        if etype == "value_error":
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, SpecError):  # our model-level checks: lines already start with their field
                base = ".".join(([prefix] if prefix else []) + loc)
                out += [_under(base, line) for line in str(cause).splitlines()]
                continue
            msg = msg.removeprefix("Value error, ")
        if etype == "assertion_error":
            msg = msg.removeprefix("Assertion failed, ")
        got = err.get("input")
        if etype not in ("missing", "extra_forbidden") and not isinstance(got, (dict, BaseModel)):
            msg += f" (got {got!r})"
        out.append(f"{field}: {msg}")
    return out


def _under(base: str, line: str) -> str:
    """Put an error line of a nested section under that section's path."""
    if not base:
        return line
    top = "(top level)"
    return base + line[len(top):] if line.startswith(top) else f"{base}.{line}"


def _allowed_keys(model: type[BaseModel] | None, loc: list[str]) -> list[str]:
    """The field names at ``loc`` inside ``model`` (for 'unknown key' messages)."""
    node: Any = model
    for part in loc:
        if node is None or not (isinstance(node, type) and issubclass(node, BaseModel)):
            return []
        field = node.model_fields.get(part)
        if field is None:
            if part == "hparams":
                return []
            node = None
            continue
        node = _model_in(field.annotation)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    return []


def _model_in(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        m = _model_in(arg)
        if m is not None:
            return m
    return None
