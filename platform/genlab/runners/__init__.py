"""The runners: how a validated spec is trained, side by side, each reaching methods only through the registry.

- ``generative``: Ray Train (``TorchTrainer``) drives a ``GenerativeAlgorithm`` on each worker;
- ``rl``: an RLlib algorithm built from the method's config class, iteration by iteration; PPO experts;
- ``sweep`` and ``study``: Ray Tune over either kind (``trials``: the Tune driver they share), one MLflow parent run;
- ``storage``: where results live and when a name is taken; ``result``: ``RunResult``, what a run returns.

:func:`fit` trains one run spec with the runner of its kind.
"""

from __future__ import annotations

from pathlib import Path

from genlab.runners.result import RunResult

__all__ = ["RunResult", "finalize_from_checkpoint", "fit"]


def fit(spec, *, storage_path: str | Path, run_key: str | None = None, mlflow_tags: dict[str, str] | None = None,
        in_tune: bool = False, resume: bool = False) -> RunResult:
    """Train ``spec`` with its kind's runner (Ray Train for generative methods, RLlib for RL); returns its
    ``RunResult`` (the last report's metrics, the history, the MLflow run id)."""
    return _runner(spec).fit(spec, storage_path=storage_path, run_key=run_key, mlflow_tags=mlflow_tags, in_tune=in_tune,
                      resume=resume)


def finalize_from_checkpoint(spec, run_dir: Path, logger, upto: int) -> int | None:
    """Log the end of a run that was stopped before its last epoch (ASHA stopped the trial and its processes with
    it) from its latest checkpoint in ``run_dir`` at or before epoch ``upto`` (where it was stopped; an RL run keeps
    one checkpoint, which may be one epoch past): its checkpoint, learning curves and models, as a finished run logs
    them. Returns the checkpoint's epoch; None when it has none."""
    return _runner(spec).finalize_from_checkpoint(spec, Path(run_dir), logger, upto)


def _runner(spec):
    """The runner module of the spec's kind of method."""
    from genlab import registry

    if registry.entry(spec.algorithm).kind == "generative":
        from genlab.runners import generative

        return generative
    from genlab.runners import rl

    return rl
