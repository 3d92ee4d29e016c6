"""PPO with a learner-only auxiliary module: the config GAIL and VIME are built on.

RLlib's pattern for an extra model trained beside the policy (its curiosity example), as one config class. A method
subclasses :class:`AuxPPOConfig` and names, as class attributes, its hyperparameters (a ``genlab.hparams.Hparams``
class: each field becomes a config attribute with the same default), its auxiliary module (id and class), its
learner (an ``AuxiliaryModules`` learner, ``genlab.rl.auxiliary``) and, where it needs them, further config fields;
it says what the module's ``model_config`` holds (:meth:`AuxPPOConfig.aux_model_config`). The base does the rest:

- ``training(**kwargs)`` sets the method's fields and hands the rest to PPO's ``training()``;
- ``validate()`` checks the further fields (:meth:`AuxPPOConfig.field_problems`), then the hyperparameters through
  their class, and reports a problem as RLlib reports its own (a ValueError, or a warning with validation off);
- ``get_multi_rl_module_spec`` adds the auxiliary module to the learner's modules only (the env runners never see
  it), with the action bounds the env executes (``genlab.rl.auxiliary.action_bounds``);
- ``from_context(hparams, ctx)``, the registry's RL contract, builds a run's config on
  ``genlab.rl.ppo.make_ppo_config`` and registers the algorithm with Tune under :attr:`AuxPPOConfig.algo_name`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
from pydantic import ValidationError
from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModule, RLModuleSpec

from genlab import ray_compat
from genlab.rl.auxiliary import action_bounds
from genlab.rl.ppo import make_ppo_config

if TYPE_CHECKING:
    from genlab.context import RunContext
    from genlab.hparams import Hparams


class AuxPPOConfig(PPOConfig):
    """PPOConfig plus a method's hyperparameters and its learner-only auxiliary module (see the module's docstring).

    A subclass sets the class attributes below and passes its Algorithm class as the default ``algo_class``.
    """

    algo_name: ClassVar[str]
    """The algorithm's name with Tune (``tune.Tuner(algo_name, param_space=config)``) and in error messages."""
    hparams_class: ClassVar[type[Hparams]]
    """The method's hyperparameters: each field is a config attribute, with its default and meaning there."""
    extra_fields: ClassVar[dict[str, Any]] = {}
    """Further config attributes (not hyperparameters: the run's context sets them) and their defaults."""
    aux_module_id: ClassVar[str]
    """The auxiliary module's id in the learner's MultiRLModule (and the namespace of its metrics)."""
    aux_module_class: ClassVar[type[RLModule]]
    default_learner: ClassVar[type[Learner]]

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class)
        for name, value in {**self.hparams_class().model_dump(), **self.extra_fields}.items():
            setattr(self, name, value)

    # --- what a method says ------------------------------------------------------------------------------------
    def aux_model_config(self, observation_space: gym.Space, action_space: gym.Space) -> dict[str, Any]:
        """The auxiliary module's ``model_config`` (the action bounds are added to it); may refuse the spaces."""
        raise NotImplementedError

    def field_problems(self) -> list[str]:
        """What is wrong with the ``extra_fields`` (checked before the hyperparameters). Default: nothing."""
        return []

    @classmethod
    def context_fields(cls, ctx: RunContext) -> dict[str, Any]:
        """The ``extra_fields`` a run's context sets (:meth:`from_context`). Default: none."""
        return {}

    # --- the rest ----------------------------------------------------------------------------------------------
    @classmethod
    def from_context(cls, hparams: Hparams, ctx: RunContext) -> AuxPPOConfig:
        """The registry's RL contract: the config that trains a run (its env, PPO settings, budget, its layout over
        env runners and learners, and what :meth:`context_fields` takes from the context). Also registers the
        algorithm with Tune (:meth:`register`), so ``tune.Tuner(algo_name, param_space=config)`` works after a
        genlab run."""
        config = make_ppo_config(ctx.env.id, ctx.ppo, num_envs=ctx.env.num_envs, seed=ctx.seed,
                                 iterations=ctx.epochs, config_cls=cls, scale=ctx.scale)
        config.register()
        return config.training(**hparams.model_dump(), **cls.context_fields(ctx))

    def register(self) -> None:
        """Register this config's algorithm class with Tune under :attr:`algo_name`."""
        from ray.tune.registry import register_trainable

        register_trainable(self.algo_name, self.algo_class)

    def training(self, **kwargs) -> AuxPPOConfig:
        """PPO's ``training()`` plus any field of :attr:`hparams_class` and any of :attr:`extra_fields`."""
        own = {k: kwargs.pop(k) for k in (*self.hparams_class.model_fields, *self.extra_fields) if k in kwargs}
        super().training(**kwargs)
        for name, value in own.items():
            if value is not NotProvided:
                setattr(self, name, value)
        return self

    def hparams(self) -> Hparams:
        """The method's hyperparameters as this config holds them (pydantic's ValidationError if they are invalid)."""
        return self.hparams_class.model_validate({k: getattr(self, k) for k in self.hparams_class.model_fields})

    def get_default_learner_class(self) -> type[Learner]:
        return self.default_learner

    def validate(self) -> None:
        super().validate()
        for problem in self.field_problems():
            ray_compat.config_error(self, f"{self.algo_name}: {problem}")
        try:
            self.hparams()
        except ValidationError as e:
            ray_compat.config_error(self, f"{self.algo_name}: {e}")

    def get_multi_rl_module_spec(self, *, env=None, spaces=None, inference_only: bool = False, **kwargs: Any):
        """PPO's module spec plus the learner-only auxiliary module (left out of the env runners' spec)."""
        spec: MultiRLModuleSpec = super().get_multi_rl_module_spec(
            env=env, spaces=spaces, inference_only=inference_only, **kwargs)
        if inference_only or self.aux_module_id in spec.rl_module_specs:
            return spec
        policy = spec.rl_module_specs[DEFAULT_MODULE_ID]
        model_config = self.aux_model_config(policy.observation_space, policy.action_space)
        # The module sees the action the env executes: RLlib clips to the bounds (in [-1, 1] when normalizing).
        model_config.update(action_bounds(policy.action_space, self.normalize_actions))
        spec.add_modules({self.aux_module_id: RLModuleSpec(
            module_class=self.aux_module_class, learner_only=True, observation_space=policy.observation_space,
            action_space=policy.action_space, model_config=model_config)})
        return spec
