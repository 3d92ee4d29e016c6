"""Statistics over seeds, as the field reports them (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice"): mean ± sd, the interquartile mean (IQM), percentile-bootstrap confidence intervals stratified by task,
and the probability of improvement. Built on NumPy and SciPy only.

A "score" here is one number per run (a seed): e.g. a run's final ``eval/test_error``. ``scores`` may be a list (one
task) or a dict task -> list (several tasks, e.g. the datasets of a claim); a stratified bootstrap resamples the
runs *within* each task, so that every resample keeps every task's number of runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sp_stats

Scores = Sequence[float] | Mapping[str, Sequence[float]]


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% (scipy's 25%-trimmed mean; robust to an outlying seed)."""
    return float(sp_stats.trim_mean(np.asarray(values, dtype=float), 0.25))


def _by_task(scores: Scores) -> list[np.ndarray]:
    if isinstance(scores, Mapping):
        return [np.asarray(v, dtype=float) for v in scores.values()]
    return [np.asarray(scores, dtype=float)]


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def bootstrap_ci(scores: Scores, statistic: Callable[[np.ndarray], float] = iqm, *, confidence: float = 0.95,
                 reps: int = 2000, seed: int = 0) -> Interval:
    """A percentile-bootstrap interval of ``statistic`` over all runs, resampling runs within each task.

    With one run per task the interval is the point itself (nothing to resample): say so where it is shown.
    """
    tasks = _by_task(scores)
    if not tasks or any(len(t) == 0 for t in tasks):
        raise ValueError("every task needs at least one score")
    point = float(statistic(np.concatenate(tasks)))
    rng = np.random.default_rng(seed)
    samples = np.empty(reps)
    for i in range(reps):
        samples[i] = statistic(np.concatenate([t[rng.integers(0, len(t), len(t))] for t in tasks]))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    return Interval(point, float(low), float(high))


def probability_of_improvement(x: Sequence[float], y: Sequence[float], *, higher_is_better: bool = True) -> float:
    """P(X > Y): the chance that a run of X beats a run of Y (ties count half), the Mann-Whitney U statistic
    over n·m. 0.5 = no difference; 1 = every run of X beats every run of Y."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if not higher_is_better:
        x, y = -x, -y
    wins = (x[:, None] > y[None, :]).sum() + 0.5 * (x[:, None] == y[None, :]).sum()
    return float(wins / (len(x) * len(y)))


def probability_of_improvement_ci(x: Sequence[float], y: Sequence[float], *, higher_is_better: bool = True,
                                  confidence: float = 0.95, reps: int = 2000, seed: int = 0) -> Interval:
    """P(X > Y) with a percentile-bootstrap interval (X's and Y's runs resampled independently)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    samples = [probability_of_improvement(x[rng.integers(0, len(x), len(x))], y[rng.integers(0, len(y), len(y))],
                                          higher_is_better=higher_is_better) for _ in range(reps)]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    return Interval(probability_of_improvement(x, y, higher_is_better=higher_is_better), float(low), float(high))


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
