"""GAIL as an RLlib algorithm: ``GAILConfig`` (PPO with the discriminator as its learner-only auxiliary module,
``genlab.rl.aux_ppo``; ``from_context`` builds a run's), ``GAIL(PPO)`` (Tune name ``"GAIL"``)."""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.ppo import PPO

from algorithms.gail.hparams import DISC_ID, GAILHparams
from algorithms.gail.learner import GAILLearner
from algorithms.gail.module import Discriminator
from genlab.context import RunContext
from genlab.rl.aux_ppo import AuxPPOConfig


class GAILConfig(AuxPPOConfig):
    """PPOConfig plus GAIL's fields: those of :class:`algorithms.gail.hparams.GAILHparams` (defaults and meaning
    there), ``demos_path`` (the folder ``genlab expert`` wrote) and ``num_trajectories`` (use its first k
    trajectories; None = all), each set with ``training()``.

    The causal-entropy weight λ of the paper is PPO's ``entropy_coeff``.
    """

    algo_name = "GAIL"
    hparams_class = GAILHparams
    extra_fields = {"demos_path": None, "num_trajectories": None}
    aux_module_id, aux_module_class, default_learner = DISC_ID, Discriminator, GAILLearner

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class or GAIL)

    @classmethod
    def context_fields(cls, ctx: RunContext) -> dict[str, Any]:
        return {"demos_path": ctx.demos.path, "num_trajectories": ctx.demos.num_trajectories}

    def gail_hparams(self) -> GAILHparams:
        return self.hparams()

    def field_problems(self) -> list[str]:
        problems = []
        if not self.demos_path:
            problems.append("demos_path is not set; set it to the folder written by `genlab expert`")
        if self.num_trajectories is not None and self.num_trajectories < 1:
            problems.append(f"num_trajectories is {self.num_trajectories}; it must be at least 1")
        return problems

    def aux_model_config(self, observation_space, action_space) -> dict[str, Any]:
        return {"hiddens": list(self.disc_hiddens)}


class GAIL(PPO):
    """Generative Adversarial Imitation Learning (Ho & Ermon 2016) on PPO; Tune name ``"GAIL"``."""

    @classmethod
    def get_default_config(cls) -> GAILConfig:
        return GAILConfig()


def register() -> None:
    """Register :class:`GAIL` with Tune under the name ``"GAIL"``."""
    GAILConfig().register()
