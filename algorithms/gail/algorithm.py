"""GAIL as an RLlib algorithm: PPO's config and algorithm, plus the discriminator and its hyperparameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.algorithms.ppo import PPO, PPOConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from algorithms.gail.config import GAILHparams
from algorithms.gail.discriminator import DISC_ID, Discriminator
from algorithms.gail.learner import GAILLearner
from algorithms.gail.reward import RewardForm

REWARD_FORMS = ("neg_log_1m_d", "log_d")


class GAILConfig(PPOConfig):
    """PPOConfig plus GAIL's discriminator settings (set them with :meth:`training`).

    The causal-entropy weight λ of the paper is PPO's ``entropy_coeff``.
    """

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class or GAIL)
        self.demos_path: str | None = None
        self.num_trajectories: int | None = None  # None = every recorded trajectory
        self.disc_lr: float = 3e-4
        self.disc_steps: int = 4
        self.disc_hiddens: list[int] = [100, 100]
        self.disc_minibatch_size: int = 500
        self.grad_penalty: float = 0.0
        self.reward_form: RewardForm = "neg_log_1m_d"
        self.freeze_discriminator: bool = False

    def training(
        self,
        *,
        demos_path: str | None = NotProvided,
        num_trajectories: int | None = NotProvided,
        disc_lr: float = NotProvided,
        disc_steps: int = NotProvided,
        disc_hiddens: list[int] = NotProvided,
        disc_minibatch_size: int = NotProvided,
        grad_penalty: float = NotProvided,
        reward_form: RewardForm = NotProvided,
        freeze_discriminator: bool = NotProvided,
        **kwargs,
    ) -> GAILConfig:
        """PPO's ``training()`` plus GAIL's fields (see :class:`algorithms.gail.config.GAILHparams`).

        ``demos_path``: the folder written by ``genlab expert``; ``reward_form``: ``"neg_log_1m_d"`` or
        ``"log_d"`` (:func:`algorithms.gail.reward.gail_reward`).
        """
        super().training(**kwargs)
        gail = {
            "demos_path": demos_path,
            "num_trajectories": num_trajectories,
            "disc_lr": disc_lr,
            "disc_steps": disc_steps,
            "disc_hiddens": disc_hiddens,
            "disc_minibatch_size": disc_minibatch_size,
            "grad_penalty": grad_penalty,
            "reward_form": reward_form,
            "freeze_discriminator": freeze_discriminator,
        }
        for name, value in gail.items():
            if value is not NotProvided:
                setattr(self, name, value)
        return self

    def apply_hparams(self, hp: GAILHparams) -> GAILConfig:
        """Set GAIL's own fields from ``hp``.

        Its PPO knobs go to ``genlab.rl.make_ppo_config(env_id, config_cls=GAILConfig, **hp.ppo_overrides())``.
        """
        return self.training(
            disc_lr=hp.disc_lr,
            disc_steps=hp.disc_steps,
            disc_hiddens=list(hp.disc_hiddens),
            disc_minibatch_size=hp.disc_minibatch_size,
            grad_penalty=hp.grad_penalty,
            reward_form=hp.reward,
            freeze_discriminator=hp.freeze_discriminator,
        )

    def get_default_learner_class(self) -> type[GAILLearner]:
        return GAILLearner

    def validate(self) -> None:
        super().validate()
        if not self.demos_path:
            self._value_error("GAIL: demos_path is not set; set demos_path to the folder written by `genlab expert`")
        if self.reward_form not in REWARD_FORMS:
            self._value_error(f"GAIL: reward_form {self.reward_form!r} is not one of {REWARD_FORMS}")
        for name in ("num_trajectories", "disc_steps", "disc_minibatch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                self._value_error(f"GAIL: {name} is {getattr(self, name)}; it must be at least 1")
        if self.disc_lr <= 0:
            self._value_error(f"GAIL: disc_lr is {self.disc_lr}; it must be > 0")
        if self.grad_penalty < 0:
            self._value_error(f"GAIL: grad_penalty is {self.grad_penalty}; it must be >= 0 (0 = off)")

    def get_multi_rl_module_spec(self, *, env=None, spaces=None, inference_only: bool = False, **kwargs: Any):
        """PPO's module spec plus the learner-only discriminator (left out of the env runners' spec)."""
        spec: MultiRLModuleSpec = super().get_multi_rl_module_spec(
            env=env, spaces=spaces, inference_only=inference_only, **kwargs
        )
        if inference_only or DISC_ID in spec.rl_module_specs:
            return spec
        policy = spec.rl_module_specs[DEFAULT_MODULE_ID]
        model_config: dict[str, Any] = {"hiddens": list(self.disc_hiddens)}
        space = policy.action_space
        if isinstance(space, gym.spaces.Box) and space.is_bounded():
            # D sees the action the env executes: RLlib clips to the bounds (in [-1, 1] when normalizing).
            low, high = (-1.0, 1.0) if self.normalize_actions else (space.low.tolist(), space.high.tolist())
            model_config.update(action_low=low, action_high=high)
        spec.add_modules(
            {
                DISC_ID: RLModuleSpec(
                    module_class=Discriminator,
                    learner_only=True,
                    observation_space=policy.observation_space,
                    action_space=policy.action_space,
                    model_config=model_config,
                )
            }
        )
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


def build_config(spec, workdir: Path) -> GAILConfig:
    """The registry's RL contract: a validated genlab run spec -> the RLlib config that trains it.

    Also registers ``GAIL`` with Tune, so ``tune.Tuner("GAIL", param_space=config)`` works after a genlab run.
    """
    from genlab import rl

    register()
    hp = GAILHparams.model_validate(spec.hparams)
    ppo = hp.ppo_overrides()
    if hp.lr_decay:  # RLlib's piecewise-linear schedule over sampled env steps
        ppo["lr"] = [[0, hp.lr], [spec.budget.epochs * hp.train_batch_size, 0.0]]
    config = rl.make_ppo_config(spec.env.id, config_cls=GAILConfig, seed=spec.seed, num_envs=spec.env.num_envs,
                                **ppo)
    return config.apply_hparams(hp).training(demos_path=str(Path(spec.demos.path).resolve()),
                                             num_trajectories=spec.demos.num_trajectories)
