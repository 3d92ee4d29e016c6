"""VIME as an RLlib algorithm: ``VIMEConfig`` (PPO with the Bayesian dynamics model as its learner-only auxiliary
module, ``genlab.rl.aux_ppo``; ``from_context`` builds a run's), ``VIME(PPO)`` (Tune name ``"VIME"``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from ray.rllib.algorithms.ppo import PPO

from algorithms.vime.hparams import BNN_ID, VIMEHparams
from algorithms.vime.learner import VIMELearner
from algorithms.vime.module import BayesianDynamics
from genlab.rl.aux_ppo import AuxPPOConfig


class VIMEConfig(AuxPPOConfig):
    """PPOConfig plus VIME's fields: those of :class:`algorithms.vime.hparams.VIMEHparams` (defaults and meaning
    there), set with ``training()``."""

    algo_name = "VIME"
    hparams_class = VIMEHparams
    aux_module_id, aux_module_class, default_learner = BNN_ID, BayesianDynamics, VIMELearner

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class or VIME)

    def vime_hparams(self) -> VIMEHparams:
        return self.hparams()

    def aux_model_config(self, observation_space, action_space) -> dict[str, Any]:
        if not isinstance(observation_space, gym.spaces.Box):  # before RLlib fails to build the policy
            raise ValueError(f"VIME: the env's observation space is {observation_space}; VIME's dynamics "
                             "model needs a Box observation space (wrap the env, e.g. with FlattenObservation)")
        return {"hiddens": list(self.bnn_hiddens), "init_std": self.init_std}


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
    VIMEConfig().register()
