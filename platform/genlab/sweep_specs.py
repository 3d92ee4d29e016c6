"""The sweep spec: a run spec, the search space over its fields (``Uniform``, ``LogUniform``, ``IntRange``,
``Choice``), the metric, the search and the scheduler, validated before Ray starts; ``probes`` gives the run specs a
search dimension's ends and choices make (the pre-flight checks them)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from genlab import registry
from genlab.errors import SpecError, format_errors
from genlab.specs import NAME_PATTERN, RunSpec, Strict, set_path


class Uniform(Strict):
    uniform: tuple[float, float]
    """[low, high]"""


class LogUniform(Strict):
    loguniform: tuple[PositiveFloat, PositiveFloat]
    """[low, high], both > 0"""


class IntRange(Strict):
    int: tuple[int, int]
    """[low, high], inclusive"""


class Choice(Strict):
    choice: list[Any] = Field(min_length=1)
    """the values to try"""


SearchDim = Uniform | LogUniform | IntRange | Choice
DIMENSIONS: dict[str, type[BaseModel]] = {"uniform": Uniform, "loguniform": LogUniform, "int": IntRange,
                                          "choice": Choice}


class SchedulerSpec(Strict):
    type: Literal["asha", "fifo"] = "asha"
    """`asha` stops poor trials early (epochs are its time unit); `fifo` runs every trial to the end."""
    grace_period: PositiveInt = 1
    """ASHA: epochs every trial runs before it can be stopped."""
    reduction_factor: float = Field(default=2.0, gt=1)
    """ASHA: keep 1/reduction_factor of the trials at each rung."""

    def rungs(self, epochs: int) -> list[int]:
        """The epochs at which ASHA compares trials and may stop one (before the last): grace_period ×
        reduction_factor^k, as Ray Tune's ASHAScheduler lays them out, each reached at the next whole epoch."""
        count = int(math.log(epochs / self.grace_period) / math.log(self.reduction_factor) + 1)
        return sorted({math.ceil(self.grace_period * self.reduction_factor**k) for k in range(count)} - {epochs})


class SweepSpec(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    """Sweep name: results go to <storage>/<name>, MLflow parent run has this name."""
    run: RunSpec
    """The base run that each trial modifies."""
    search_space: dict[str, SearchDim] = Field(min_length=1)
    """Dotted path into the run spec (e.g. `hparams.lr`) -> {uniform|loguniform|int: [lo, hi]} or {choice: [...]}."""
    metric: str
    """Metric to optimise, as reported by the algorithm (e.g. `eval/test_error`)."""
    mode: Literal["min", "max"]
    num_samples: PositiveInt = 4
    """Number of trials."""
    max_concurrent: PositiveInt = 2
    """Trials running at once (each also needs its run's resources)."""
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    search: Literal["tpe", "gp", "random"] = "tpe"
    """How trials are proposed: Optuna's TPE (learns from finished trials), Optuna's Gaussian-process Bayesian
    optimization (``GPSampler``: a GP fitted to the finished trials, the next trial where it expects most
    improvement) or plain random sampling (the baseline)."""
    tpe_startup_trials: PositiveInt | None = None
    """The model's random trials before it models the finished ones (Optuna's ``n_startup_trials``, for TPE and GP;
    None: Optuna's 10). With the default, a sweep of 16 trials is 10 random ones and 6 that the model proposes."""
    seed: NonNegativeInt = 0
    """Seed of the sampler (TPE, GP or random)."""

    @field_validator("search_space", mode="before")
    @classmethod
    def _dimensions(cls, value):
        """Pick each dimension's class by its one key, so errors speak of that kind only."""
        if not isinstance(value, dict):
            return value
        out, errors = {}, []
        for path, dim in value.items():
            if not (isinstance(dim, dict) and len(dim) == 1 and next(iter(dim)) in DIMENSIONS):
                errors.append(f"{path}: expected one of {{uniform: [low, high]}}, {{loguniform: [low, high]}}, "
                              f"{{int: [low, high]}}, {{choice: [a, b, ...]}} (got {dim!r})")
                continue
            try:
                out[path] = DIMENSIONS[next(iter(dim))].model_validate(dim)
            except ValidationError as e:
                errors += [f"{path}.{line}" for line in format_errors(e)]
        if errors:
            raise SpecError("\n".join(errors))
        return out

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        errors = []
        for path, dim in self.search_space.items():
            errors += _check_dim(path, dim, self.run)
        metrics = registry.metrics(self.run.algorithm)
        unreported = self.run.unreported_metrics()
        if self.metric not in metrics:
            errors.append(
                f"metric: {self.metric!r} is not reported by {self.run.algorithm}; choose one of: "
                + ", ".join(metrics)
            )
        elif self.metric in unreported:
            errors.append(f"metric: {self.run.algorithm} reports {self.metric} only with {unreported[self.metric]}, "
                          "which this sweep's run does not set; set it in run, or sweep another metric")
        if self.metric.startswith("eval/") and self.run.budget.eval_every != 1:
            errors.append(
                f"run.budget.eval_every: {self.run.budget.eval_every}, but the sweep compares trials by "
                f"{self.metric} after every epoch; set run.budget.eval_every: 1"
            )
        if self.tpe_startup_trials is not None and self.search == "random":
            errors.append(f"tpe_startup_trials: {self.tpe_startup_trials}, but search: random does not use TPE or GP; "
                          "remove it or set search: tpe (or gp)")
        if self.scheduler.type == "asha" and self.scheduler.grace_period > self.run.budget.epochs:
            errors.append(
                f"scheduler.grace_period: {self.scheduler.grace_period} is more than run.budget.epochs="
                f"{self.run.budget.epochs}; every trial would end before ASHA could compare them"
            )
        elif self.scheduler.type == "asha":
            unsaved = [e for e in self.scheduler.rungs(self.run.budget.epochs) if not self.run.budget.checkpoint_due(e)]
            if unsaved:
                every = math.gcd(*self.scheduler.rungs(self.run.budget.epochs))
                errors.append(
                    f"run.budget.checkpoint_every: {self.run.budget.checkpoint_every}, but ASHA may stop a trial at "
                    f"epoch {', '.join(map(str, unsaved))}, which would not be a checkpoint: a stopped trial keeps "
                    f"the model of its last checkpoint, and the sweep ranks trials by the model they keep; set "
                    f"run.budget.checkpoint_every to a divisor of {every} (or change scheduler.grace_period)")
        if errors:
            raise SpecError("\n".join(errors))
        return self


def probes(path: str, dim: Any, run: RunSpec) -> list[tuple[Any, dict]]:
    """The values a sweep checks a dimension at (both ends of a range, every choice), each with the base run's raw
    mapping set to it; raises KeyError when ``path`` cannot be set in the run spec."""
    values = list(dim.choice) if isinstance(dim, Choice) else list(next(iter(dim.model_dump().values())))
    out = []
    for value in values:
        raw = run.model_dump(mode="json")
        set_path(raw, path, value)
        out.append((value, raw))
    return out


def _check_dim(path: str, dim: Any, run: RunSpec) -> list[str]:
    where = f"search_space.{path}"
    if isinstance(dim, (Uniform, LogUniform, IntRange)):
        lo, hi = next(iter(dim.model_dump().values()))
        if not lo < hi:
            return [f"{where}: low must be below high (got [{lo}, {hi}])"]
    if path.split(".")[0] in ("name", "tracking"):
        return [f"{where}: {path.split('.')[0]} cannot be swept"]
    try:
        probed = probes(path, dim, run)
    except KeyError as e:
        return [f"{where}: {e.args[0]}"]
    for value, raw in probed:
        try:
            RunSpec.model_validate(raw)
        except (ValidationError, SpecError) as e:
            msgs = format_errors(e, model=RunSpec) if isinstance(e, ValidationError) else str(e).splitlines()
            return [f"{where}: value {value!r} is not a valid run ({'; '.join(msgs)})"]
    return []


