"""Where a run's or a sweep's results live, and the one rule that decides whether a name is free.

A run's folder is ``<storage>/<name>``; a sweep's is ``<storage>/<sweep name>`` (Tune's experiment folder).
A name is taken once it holds something worth keeping: a checkpoint (of a generative run: Ray Train's; of an RL
run: genlab's RLlib checkpoint) or Tune's experiment state. Then starting it again needs ``--resume`` (or a new
name); a run that failed before its first checkpoint leaves nothing to resume and does not block its name.
"""

from __future__ import annotations

from pathlib import Path

from genlab import ray_compat
from genlab.errors import SpecError

GENERATIVE_STATE = "state.pt"
"""A generative run's checkpoint: nets, optimizers, EMA, step, epoch, metric history (in Ray Train's checkpoint
folder, and in the run's MLflow artifacts under ``CHECKPOINT_ARTIFACT``)."""
RL_STATE = "genlab_state.json"
"""Beside an RL run's RLlib checkpoint (``<run>/checkpoint/``): the iteration it holds and the metric history."""
CHECKPOINT_ARTIFACT = "checkpoint"
"""The MLflow artifact folder of a run's final checkpoint."""


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a run folder holds a checkpoint to resume from (Ray Train's ``checkpoint_*/`` or genlab's RL one)."""
    return bool(ray_compat.train_checkpoints(run_dir)) or (run_dir / "checkpoint" / RL_STATE).is_file()


def has_sweep(sweep_dir: Path) -> bool:
    from ray import tune

    return tune.Tuner.can_restore(str(sweep_dir))


def check_can_start(kind: str, storage: Path, name: str, resume: bool) -> Path:
    """The folder of run, sweep or study ``name`` (``kind``), after checking ``--resume`` against it.

    Raises :class:`SpecError` when ``--resume`` finds nothing to resume, or when the name is taken and ``--resume``
    was not given; nothing is overwritten.
    """
    folder = Path(storage).resolve() / name
    taken = has_sweep(folder) if kind in ("sweep", "study") else has_checkpoint(folder)
    if resume and not taken:
        raise SpecError(f"--resume: {folder} holds no interrupted {kind} to resume "
                        + ("(no checkpoint was written)" if folder.exists() else "(no such folder)")
                        + "; start it without --resume")
    if taken and not resume:
        what = f"a {kind}" if kind in ("sweep", "study") else "a run with checkpoints"
        raise SpecError(f"{folder} already holds {what} named {name!r}: pass --resume to "
                        + ("finish it" if kind in ("sweep", "study") else "continue it from its last checkpoint")
                        + ", or choose a new name (--set name=...)")
    return folder
