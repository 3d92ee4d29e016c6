"""GAIL as an RLlib algorithm: ``GAILConfig(PPOConfig)`` (``from_context`` builds a run's), ``GAIL(PPO)`` (Tune
name ``"GAIL"``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from pydantic import ValidationError
from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.algorithms.ppo import PPO, PPOConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from algorithms.gail.hparams import DISC_ID, GAILHparams
from algorithms.gail.learner import GAILLearner
from algorithms.gail.module import Discriminator
from genlab.context import RunContext
from genlab.rl.ppo import make_ppo_config

GAIL_FIELDS = tuple(GAILHparams.model_fields)


class GAILConfig(PPOConfig):
    """PPOConfig plus GAIL's fields: those of :class:`algorithms.gail.hparams.GAILHparams` (defaults and meaning
    there, set with :meth:`training`), the demonstrations' folder and how many of its trajectories to use.

    The causal-entropy weight λ of the paper is PPO's ``entropy_coeff``.
    """

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class or GAIL)
        for name, value in GAILHparams().model_dump().items():
            setattr(self, name, value)
        self.demos_path: str | None = None
        self.num_trajectories: int | None = None  # None = every recorded trajectory

    def training(self, *, demos_path: str | None = NotProvided, num_trajectories: int | None = NotProvided,
                 **kwargs) -> GAILConfig:
        """PPO's ``training()`` plus ``demos_path`` (the folder ``genlab expert`` wrote), ``num_trajectories`` and
        any field of ``GAILHparams`` (``disc_lr``, ``disc_steps``, ``reward``, ...)."""
        gail = {k: kwargs.pop(k) for k in GAIL_FIELDS if k in kwargs}
        super().training(**kwargs)
        for name, value in {**gail, "demos_path": demos_path, "num_trajectories": num_trajectories}.items():
            if value is not NotProvided:
                setattr(self, name, value)
        return self

    @classmethod
    def from_context(cls, hparams: GAILHparams, ctx: RunContext) -> GAILConfig:
        """The registry's RL contract: the config that trains a run (its env, demonstrations, PPO settings, budget).

        Also registers ``GAIL`` with Tune, so ``tune.Tuner("GAIL", param_space=config)`` works after a genlab run.
        """
        register()
        config = make_ppo_config(ctx.env.id, ctx.ppo, num_envs=ctx.env.num_envs, seed=ctx.seed,
                                 iterations=ctx.epochs, config_cls=cls)
        return config.training(**hparams.model_dump(), demos_path=ctx.demos.path,
                               num_trajectories=ctx.demos.num_trajectories)

    def gail_hparams(self) -> GAILHparams:
        return GAILHparams.model_validate({k: getattr(self, k) for k in GAIL_FIELDS})

    def get_default_learner_class(self) -> type[GAILLearner]:
        return GAILLearner

    def validate(self) -> None:
        super().validate()
        if not self.demos_path:
            self._value_error("GAIL: demos_path is not set; set it to the folder written by `genlab expert`")
        if self.num_trajectories is not None and self.num_trajectories < 1:
            self._value_error(f"GAIL: num_trajectories is {self.num_trajectories}; it must be at least 1")
        try:
            self.gail_hparams()
        except ValidationError as e:
            self._value_error(f"GAIL: {e}")

    def get_multi_rl_module_spec(self, *, env=None, spaces=None, inference_only: bool = False, **kwargs: Any):
        """PPO's module spec plus the learner-only discriminator (left out of the env runners' spec)."""
        spec: MultiRLModuleSpec = super().get_multi_rl_module_spec(
            env=env, spaces=spaces, inference_only=inference_only, **kwargs)
        if inference_only or DISC_ID in spec.rl_module_specs:
            return spec
        policy = spec.rl_module_specs[DEFAULT_MODULE_ID]
        model_config: dict[str, Any] = {"hiddens": list(self.disc_hiddens)}
        space = policy.action_space
        if isinstance(space, gym.spaces.Box) and space.is_bounded():
            # D sees the action the env executes: RLlib clips to the bounds (in [-1, 1] when normalizing).
            low, high = (-1.0, 1.0) if self.normalize_actions else (space.low.tolist(), space.high.tolist())
            model_config.update(action_low=low, action_high=high)
        spec.add_modules({DISC_ID: RLModuleSpec(module_class=Discriminator, learner_only=True,
                                                observation_space=policy.observation_space,
                                                action_space=policy.action_space, model_config=model_config)})
        return spec


class GAIL(PPO):
    """Generative Adversarial Imitation Learning (Ho & Ermon 2016) on PPO; Tune name ``"GAIL"``."""

    @classmethod
    def get_default_config(cls) -> GAILConfig:
        return GAILConfig()


def register() -> None:
    """Register :class:`GAIL` with Tune under the name ``"GAIL"``."""
    from ray.tune.registry import register_trainable

    register_trainable("GAIL", GAIL)

