"""What a method is told about its run: small, typed, and all it may know of the spec.

A method never sees the whole run spec. The platform builds a :class:`RunContext` from a validated spec
(``genlab.specs.RunSpec.context``) and hands its parts to the method: a generative algorithm gets its
:class:`DataContext`; an RL method's config is built from the :class:`RunContext` (env, demonstrations, PPO
settings, budget); ``Hparams.check(ctx)`` checks a method's settings against the rest of the run. Imports nothing
heavy (no torch, no Ray), so specs validate fast; the env's spaces are made on first use.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gymnasium as gym

    from genlab.rl.hparams import PPOHparams


@dataclass(frozen=True)
class DataContext:
    """The images a generative method trains on."""

    shape: tuple[int, int, int]
    """C, H, W."""
    num_classes: int
    """Classes of its labels; 0 when it has none (CelebA)."""
    name: str = ""
    """The dataset's catalogue name (``genlab.datasets``), for messages."""
    shapes: dict[str, tuple[int, int, int]] = field(default_factory=dict, compare=False, repr=False)
    """Every catalogued dataset's shape, for messages that suggest another dataset."""


@dataclass(frozen=True)
class EnvContext:
    """The environment an RL method acts in."""

    id: str
    """Gymnasium id (genlab's own ids are registered when the spaces are first asked for)."""
    num_envs: int = 16
    """Vectorized copies sampled per iteration."""

    @functools.cached_property
    def spaces(self) -> tuple[gym.Space, gym.Space]:
        """(observation space, action space) of one copy of the env, made once and closed."""
        import gymnasium as gym

        import genlab.envs  # noqa: F401  (genlab's env ids)

        env = gym.make(self.id)
        try:
            return env.observation_space, env.action_space
        finally:
            env.close()


@dataclass(frozen=True)
class DemosContext:
    """The expert demonstrations an imitation method learns from."""

    path: str
    """Folder written by `genlab expert` (absolute)."""
    num_trajectories: int | None = None
    """Use the first k recorded trajectories; None = all."""


@dataclass(frozen=True)
class RunContext:
    """What a method may know of its run besides its own hyperparameters."""

    seed: int = 0
    epochs: int = 1
    """The budget: epochs (generative) or training iterations (RL)."""
    eval_every: int = 1
    """Evaluations happen every this many epochs and after the last."""
    data: DataContext | None = None
    env: EnvContext | None = None
    demos: DemosContext | None = None
    ppo: PPOHparams | None = None
    """RL methods built on PPO: the policy step's settings."""
    workdir: Path | None = None
    """A folder the method may write to (RL: beside the run's checkpoints); None while a spec is only checked."""
