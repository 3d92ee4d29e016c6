"""What a method is told about its run: small, typed, and all it may know of the spec.

A method never sees the whole run spec. The platform builds a :class:`RunContext` from a validated spec
(``genlab.specs.RunSpec.context``) and hands its parts to the method: a generative algorithm gets its
:class:`DataContext`; an RL method's config is built from the :class:`RunContext` (env, demonstrations, PPO
settings, how the run is spread over Ray processes, budget); ``Hparams.check(ctx)`` checks a method's settings
against the rest of the run. Imports nothing heavy (no torch, no Ray), so specs validate fast; the env's spaces are
made on first use.
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
    """Vectorized copies each env runner steps (the run's own process, or each remote runner)."""

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
class ScaleContext:
    """How an RL run is spread over Ray processes (RLlib's ``env_runners()`` / ``learners()`` / evaluation
    settings). The defaults are one process: the run's own samples ``env.num_envs`` copies of the env, learns in
    one local learner and evaluates greedy rollouts itself."""

    env_runners: int = 0
    """Remote env runners, each stepping ``env.num_envs`` copies; 0 = sampling in the run's own process."""
    cpus_per_env_runner: float = 1.0
    """CPUs each remote env runner (and evaluation runner) holds."""
    evaluation_runners: int = 0
    """Remote env runners for the greedy evaluation; 0 = the run's own process rolls the policy out."""
    learners: int = 0
    """Remote learners (data-parallel: each takes an equal share of every batch, gradients are averaged);
    0 = one learner in the run's own process."""
    cpus_per_learner: float = 1.0
    """CPUs each remote learner holds (the local learner shares the run's process and its CPUs)."""
    gpus_per_learner: float = 0.0
    """GPUs per learner: each remote one, or with ``learners`` 0 the local one."""
    main_cpus: float = 1.0
    """CPUs the run's own process holds (``resources.cpus_per_worker``)."""

    @property
    def remote(self) -> bool:
        """Whether any part of the run lives in processes of its own (or on a GPU)."""
        return bool(self.env_runners or self.evaluation_runners or self.learners or self.gpus_per_learner)


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
    scale: ScaleContext = field(default_factory=ScaleContext)
    """RL methods: the env runners, learners and evaluation runners of the run (default: all in one process)."""
    workdir: Path | None = None
    """A folder the method may write to (RL: beside the run's checkpoints); None while a spec is only checked."""
