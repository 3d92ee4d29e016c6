"""VIME as an RLlib algorithm: ``VIMEConfig(PPOConfig)`` (``from_context`` builds a run's), ``VIME(PPO)`` (Tune
name ``"VIME"``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from pydantic import ValidationError
from ray.rllib.algorithms.ppo import PPO, PPOConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from algorithms.vime.hparams import BNN_ID, VIMEHparams
from algorithms.vime.learner import VIMELearner
from algorithms.vime.module import BayesianDynamics
from genlab.context import RunContext
from genlab.rl.ppo import make_ppo_config

VIME_FIELDS = tuple(VIMEHparams.model_fields)


class VIMEConfig(PPOConfig):
    """PPOConfig plus VIME's fields: those of :class:`algorithms.vime.hparams.VIMEHparams` (defaults and meaning
    there, set with :meth:`training`)."""

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class or VIME)
        for name, value in VIMEHparams().model_dump().items():
            setattr(self, name, value)

    def training(self, **kwargs) -> VIMEConfig:
        """PPO's ``training()`` plus any field of ``VIMEHparams`` (``eta``, ``bnn_hiddens``, ``ig_method``, ...)."""
        vime = {k: kwargs.pop(k) for k in VIME_FIELDS if k in kwargs}
        super().training(**kwargs)
        for name, value in vime.items():
            setattr(self, name, value)
        return self

    @classmethod
    def from_context(cls, hparams: VIMEHparams, ctx: RunContext) -> VIMEConfig:
        """The registry's RL contract: the config that trains a run (its env, PPO settings, budget).

        Also registers ``VIME`` with Tune, so ``tune.Tuner("VIME", param_space=config)`` works after a genlab run.
        """
        register()
        config = make_ppo_config(ctx.env.id, ctx.ppo, num_envs=ctx.env.num_envs, seed=ctx.seed,
                                 iterations=ctx.epochs, config_cls=cls)
        return config.training(**hparams.model_dump())

    def vime_hparams(self) -> VIMEHparams:
        return VIMEHparams.model_validate({k: getattr(self, k) for k in VIME_FIELDS})

    def get_default_learner_class(self) -> type[VIMELearner]:
        return VIMELearner

    def validate(self) -> None:
        super().validate()
        try:
            self.vime_hparams()
        except ValidationError as e:
            self._value_error(f"VIME: {e}")

    def get_multi_rl_module_spec(self, *, env=None, spaces=None, inference_only: bool = False, **kwargs: Any):
        """PPO's module spec plus the learner-only dynamics BNN (left out of the env runners' spec)."""
        spec: MultiRLModuleSpec = super().get_multi_rl_module_spec(
            env=env, spaces=spaces, inference_only=inference_only, **kwargs)
        if inference_only or BNN_ID in spec.rl_module_specs:
            return spec
        policy = spec.rl_module_specs[DEFAULT_MODULE_ID]
        if not isinstance(policy.observation_space, gym.spaces.Box):  # before RLlib fails to build the policy
            raise ValueError(f"VIME: the env's observation space is {policy.observation_space}; VIME's dynamics "
                             "model needs a Box observation space (wrap the env, e.g. with FlattenObservation)")
        model_config: dict[str, Any] = {"hiddens": list(self.bnn_hiddens), "init_std": self.init_std}
        space = policy.action_space
        if isinstance(space, gym.spaces.Box) and space.is_bounded():
            # The dynamics depend on the action the env executes: RLlib clips to the bounds ([-1, 1] normalized).
            low, high = (-1.0, 1.0) if self.normalize_actions else (space.low.tolist(), space.high.tolist())
            model_config.update(action_low=low, action_high=high)
        spec.add_modules({BNN_ID: RLModuleSpec(module_class=BayesianDynamics, learner_only=True,
                                               observation_space=policy.observation_space,
                                               action_space=policy.action_space, model_config=model_config)})
        return spec


class VIME(PPO):
    """Variational Information Maximizing Exploration (Houthooft et al. 2016) on PPO; Tune name ``"VIME"``.

    The paper's policy step is TRPO; genlab's is PPO (clipped objective, standardized advantages). The bonus
    r + η · IG enters PPO's advantages exactly where it entered TRPO's.
    """

    @classmethod
    def get_default_config(cls) -> VIMEConfig:
        return VIMEConfig()


def register() -> None:
    """Register :class:`VIME` with Tune under the name ``"VIME"``."""
    from ray.tune.registry import register_trainable

    register_trainable("VIME", VIME)

