"""``make_ppo_config``: a ``PPOConfig`` (or a subclass such as ``GAILConfig``) from typed PPO hyperparameters.

Sampling runs in the driver process (``num_env_runners=0``) on one SYNC vector env of ``num_envs`` copies: the
fastest layout measured on 2 CPUs (async vectorization and remote runners cost more than they bring there).
Actions: ``normalize_actions=True`` makes the RLModule act in [-1, 1] for bounded Box spaces; RLlib rescales
them to the env's bounds before ``env.step`` (``genlab.rl.evaluation.to_env_actions`` mirrors it).
"""

from __future__ import annotations

import gymnasium as gym
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

import genlab.envs  # noqa: F401  (genlab's env ids: the env runner makes the env in this process)
from genlab.rl.hparams import PPOHparams


def make_ppo_config(env_id: str, ppo: PPOHparams | None = None, *, num_envs: int = 16, seed: int = 0,
                    iterations: int | None = None, config_cls: type[PPOConfig] = PPOConfig) -> PPOConfig:
    """A ``config_cls`` for ``env_id`` with the settings of ``ppo`` (defaults: ``PPOHparams()``).

    ``iterations`` is the run's budget, needed when ``ppo.lr_decay`` decays lr to 0 over it.
    """
    ppo = ppo or PPOHparams()
    lr: float | list = ppo.lr
    if ppo.lr_decay:
        if not iterations:
            raise ValueError("ppo.lr_decay needs the run's number of iterations to decay over")
        lr = [[0, ppo.lr], [iterations * ppo.train_batch_size, 0.0]]  # piecewise linear over env steps
    return (
        config_cls()
        .environment(env_id, normalize_actions=True, clip_actions=False)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=num_envs,
                     gym_env_vectorize_mode=gym.VectorizeMode.SYNC)
        .training(
            lr=lr,
            gamma=ppo.gamma,
            lambda_=ppo.lambda_,
            train_batch_size_per_learner=ppo.train_batch_size,
            minibatch_size=ppo.minibatch_size,
            num_epochs=ppo.num_epochs,
            entropy_coeff=ppo.entropy_coeff,
            clip_param=ppo.clip_param,
            vf_clip_param=float("inf") if ppo.vf_clip_param is None else ppo.vf_clip_param,
            vf_loss_coeff=ppo.vf_loss_coeff,
            use_kl_loss=ppo.use_kl_loss,
        )
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=list(ppo.hiddens), fcnet_activation=ppo.activation,
                                                   vf_share_layers=ppo.vf_share_layers))
        .debugging(seed=seed)
    )
