"""genlab.rl.ppo: the PPO config built from PPOHparams, and the initial policy PPOModule sets."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core import DEFAULT_MODULE_ID, Columns

from genlab.rl.hparams import PPOHparams
from genlab.rl.ppo import PPOModule, make_ppo_config


def policy(env_id: str, **ppo) -> DefaultPPOTorchRLModule:
    config = make_ppo_config(env_id, PPOHparams(**ppo))
    return config.get_multi_rl_module_spec(env=gym.make(env_id)).build()[DEFAULT_MODULE_ID]


def dist_inputs(module, env_id: str, n: int = 64) -> torch.Tensor:
    space = gym.make(env_id).observation_space
    space.seed(0)
    obs = torch.as_tensor(np.stack([space.sample() for _ in range(n)]), dtype=torch.float32).clamp(-5, 5)
    with torch.no_grad():
        return module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]


def test_default_settings_keep_rllibs_module():
    assert type(policy("Pendulum-v1")) is DefaultPPOTorchRLModule


def test_gaussian_policy_starts_at_the_asked_log_std_with_small_means():
    torch.manual_seed(0)
    default = dist_inputs(policy("Pendulum-v1"), "Pendulum-v1")
    torch.manual_seed(0)
    module = policy("Pendulum-v1", log_std_init=-0.7, policy_init_scale=0.01)
    assert isinstance(module, PPOModule)
    out = dist_inputs(module, "Pendulum-v1")
    means, log_stds = out[:, 0], out[:, 1]
    assert torch.equal(log_stds, torch.full_like(log_stds, -0.7))  # the same in every state
    assert means.abs().max() < 0.02 * default[:, 0].abs().max()
    # The log std stays learnable per state: its weights are zero, not frozen.
    head = [m for m in module.pi.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert head.weight.requires_grad and torch.equal(head.weight[1], torch.zeros_like(head.weight[1]))


def test_scale_alone_shrinks_discrete_logits_and_keeps_gaussian_log_stds():
    torch.manual_seed(0)
    default = dist_inputs(policy("CartPole-v1"), "CartPole-v1")
    torch.manual_seed(0)
    scaled = dist_inputs(policy("CartPole-v1", policy_init_scale=0.1), "CartPole-v1")
    torch.testing.assert_close(scaled, 0.1 * default)  # same weights, times 0.1 (the hidden layers untouched)
    torch.manual_seed(0)
    default = dist_inputs(policy("Pendulum-v1"), "Pendulum-v1")
    torch.manual_seed(0)
    scaled = dist_inputs(policy("Pendulum-v1", policy_init_scale=0.1), "Pendulum-v1")
    torch.testing.assert_close(scaled[:, 0], 0.1 * default[:, 0])
    torch.testing.assert_close(scaled[:, 1], default[:, 1])


def test_grad_clip_reaches_rllibs_config():
    config = make_ppo_config("Pendulum-v1", PPOHparams(grad_clip=0.5))
    assert (config.grad_clip, config.grad_clip_by) == (0.5, "global_norm")
    assert make_ppo_config("Pendulum-v1").grad_clip is None


def test_kl_penalty_settings_reach_rllibs_config():
    config = make_ppo_config("Pendulum-v1", PPOHparams(use_kl_loss=True, kl_coeff=0.3, kl_target=0.005))
    assert (config.use_kl_loss, config.kl_coeff, config.kl_target) == (True, 0.3, 0.005)
    assert make_ppo_config("Pendulum-v1").use_kl_loss is False  # off unless asked (RLlib's own default is on)


@pytest.mark.parametrize("bad", [{"policy_init_scale": 0}, {"grad_clip": -1.0}, {"kl_target": 0}])
def test_bad_init_settings_are_rejected(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        PPOHparams(**bad)
