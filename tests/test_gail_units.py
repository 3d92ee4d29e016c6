"""GAIL unit and component tests: reward math, discriminator, reward connector, learner, one RLlib iteration.

The learner gets its expert pairs from arrays (``ArrayExpertLearner``), not from demo files. Tests that
build a whole Algorithm start Ray and are marked slow.
"""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from ray.rllib.connectors.learner import GeneralAdvantageEstimation
from ray.rllib.core import DEFAULT_MODULE_ID, Columns
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

from algorithms.gail import objective
from algorithms.gail.hparams import DISC_ID, GAILHparams
from algorithms.gail.learner import GAILLearner
from algorithms.gail.module import Discriminator
from algorithms.gail.objective import gail_reward
from algorithms.gail.rllib import GAILConfig
from genlab import config as gconfig
from genlab import ray_compat
from genlab.rl.connectors import ModuleReward
from genlab.rl.hparams import PPOHparams
from genlab.rl.ppo import make_ppo_config

DISC_METRICS = ("loss", "expert_acc", "policy_acc", "expert_prob", "policy_prob", "reward_mean")
"""What D reports in an iteration where it trained (a frozen D reports only the mean reward it gave)."""


# --------------------------------------------------------------------------------------------- helpers


def rollout_pairs(env_id: str, policy, n_steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(obs, env actions) of ``n_steps`` steps of ``policy(obs, env)`` on one env, resetting at episode ends."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    all_obs, all_actions = [], []
    for _ in range(n_steps):
        action = policy(obs, env)
        all_obs.append(obs)
        all_actions.append(action)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.asarray(all_obs, np.float32), np.asarray(all_actions)


def balancing_cartpole_policy(obs: np.ndarray, env: gym.Env) -> int:
    """Push toward the side the pole falls to: keeps CartPole up for hundreds of steps."""
    return int(obs[2] + 0.5 * obs[3] > 0)


def random_policy(obs: np.ndarray, env: gym.Env):
    return env.action_space.sample()


class ArrayExpertLearner(GAILLearner):
    """GAILLearner whose expert pairs are the class attribute ``expert`` instead of a demos folder."""

    expert: tuple[np.ndarray, np.ndarray] = rollout_pairs("CartPole-v1", balancing_cartpole_policy, 600)

    def load_expert(self) -> tuple[np.ndarray, np.ndarray]:
        return self.expert


def tiny_config(env: str = "CartPole-v1", learner_class: type = None, num_envs: int = 2, **training) -> GAILConfig:
    """A tiny GAIL config (default CartPole: ~200 steps per iteration, 2 epochs of 50-step minibatches)."""
    settings = dict(train_batch_size_per_learner=200, minibatch_size=50, num_epochs=2, disc_minibatch_size=64)
    return (
        GAILConfig()
        .environment(env)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=num_envs)
        .training(demos_path="unused: the learner class supplies the expert", **{**settings, **training})
        .rl_module(model_config={"fcnet_hiddens": [32, 32]})
        .learners(learner_class=learner_class or ArrayExpertLearner)
        .debugging(seed=0)
    )



def learner_and_episodes(config: GAILConfig, n_steps: int):
    """A built learner and ``n_steps`` of episodes sampled by an env runner (its own random policy); no Ray."""
    learner = config.build_learner(env=gym.make(config.env))
    return learner, SingleAgentEnvRunner(config=config).sample(num_timesteps=n_steps)


def disc_params(learner: GAILLearner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learner.module[DISC_ID].parameters()]


def adam_steps(learner: GAILLearner, module_id: str) -> set[int]:
    """The distinct per-parameter Adam step counts of a module's optimizer (empty: it never stepped)."""
    return {int(s["step"]) for s in learner.get_optimizer(module_id).state.values()}


# ------------------------------------------------------------------------------------------ (1) reward


def test_reward_forms_match_the_log_formulas_with_the_right_signs():
    logits = torch.linspace(-8, 8, 101, dtype=torch.float64)
    d = torch.sigmoid(logits)
    pays = gail_reward(logits, "neg_log_1m_d")
    costs = gail_reward(logits, "log_d")
    torch.testing.assert_close(pays, -torch.log(1 - d))
    torch.testing.assert_close(costs, torch.log(d))
    assert (pays > 0).all() and (costs < 0).all()
    assert (pays.diff() > 0).all() and (costs.diff() > 0).all()  # monotone increasing in the logit
    # Finite where the naive formulas overflow.
    assert torch.isfinite(gail_reward(torch.tensor([-200.0, 200.0]), "log_d")).all()
    with pytest.raises(ValueError, match="reward form"):
        gail_reward(logits, "log_1m_d")


# ---------------------------------------------------------------------------------- (3) discriminator


def make_disc(seed: int = 0) -> Discriminator:
    torch.manual_seed(seed)
    return Discriminator(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
        model_config={"hiddens": [32, 32], "action_low": -1.0, "action_high": 1.0},
    )


def test_discriminator_steps_separate_expert_from_policy():
    gen = torch.Generator().manual_seed(0)
    expert_obs, policy_obs = torch.randn(256, 3, generator=gen) + 2, torch.randn(256, 3, generator=gen) - 2
    expert_act, policy_act = torch.rand(256, 2, generator=gen) * 2 - 1, torch.rand(256, 2, generator=gen) * 2 - 1
    disc = make_disc()
    disc.set_input_stats(expert_obs, expert_act)
    optimizer = torch.optim.Adam(disc.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        expert_logits, policy_logits = disc.logits(expert_obs, expert_act), disc.logits(policy_obs, policy_act)
        loss = objective.discriminator_loss(expert_logits, policy_logits)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 1.0 > 0.1 > losses[-1]  # starts near 2·log 2, ends near 0
    assert (expert_logits > 0).float().mean() > 0.98 and (policy_logits < 0).float().mean() > 0.98


def test_discriminator_loss_is_the_logistic_loss_by_hand():
    expert, policy = torch.tensor([0.0, 2.0], dtype=torch.float64), torch.tensor([-1.0], dtype=torch.float64)
    d_expert, d_policy = torch.sigmoid(expert), torch.sigmoid(policy)
    expected = -torch.log(d_expert).mean() - torch.log(1 - d_policy).mean()
    torch.testing.assert_close(objective.discriminator_loss(expert, policy), expected)


def test_r1_penalty_is_half_the_squared_input_gradient_on_expert_pairs():
    disc = make_disc()
    x = disc.inputs(torch.randn(16, 3), torch.rand(16, 2) * 2 - 1).requires_grad_(True)
    penalty = objective.r1_penalty(disc.net(x).squeeze(-1), x)
    by_hand = []
    for row in x.detach():  # the gradient of each example's logit, one at a time
        row = row.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(disc.net(row).sum(), row)
        by_hand.append(0.5 * grad.pow(2).sum())
    torch.testing.assert_close(penalty, torch.stack(by_hand).mean())
    penalty.backward()  # differentiable (double backward); the output bias does not change ∇_x logit
    last_bias = disc.net[-1].bias
    assert all(p.grad is not None for p in disc.parameters() if p is not last_bias)


def test_discriminator_clips_and_standardizes_actions():
    disc = make_disc()
    disc.set_input_stats(torch.randn(100, 3) * 5 + 1, torch.rand(100, 2) * 2 - 1)
    obs = torch.zeros(2, 3)
    # Beyond the bounds the env clips, so D must see the same input as at the bound.
    torch.testing.assert_close(disc.inputs(obs, torch.full((2, 2), 7.0)), disc.inputs(obs, torch.ones(2, 2)))
    assert disc.inputs(obs, torch.zeros(2, 2)).shape == (2, 5)


def test_running_stats_match_numpy_over_all_rows_seen():
    from algorithms.gail.module import RunningStats

    gen = torch.Generator().manual_seed(0)
    parts = [torch.randn(n, 3, generator=gen, dtype=torch.float64) * s + m for n, s, m in ((5, 1, 0), (50, 3, 2),
                                                                                            (1, 1, 1), (20, 0.1, -4))]
    stats = RunningStats(3).double()
    for part in parts:
        stats.update(part)
    every = torch.cat(parts).numpy()
    assert stats.count.item() == len(every)
    np.testing.assert_allclose(stats.mean.numpy(), every.mean(0))
    np.testing.assert_allclose(stats.var.numpy(), every.var(0))


def test_running_input_norm_uses_an_even_mix_of_expert_and_policy_pairs():
    """Equal-sized expert and policy sets: the even mixture's statistics are those of their union."""
    gen = torch.Generator().manual_seed(0)
    expert_obs, expert_act = torch.randn(200, 3, generator=gen), torch.rand(200, 2, generator=gen) * 2 - 1
    policy_obs, policy_act = torch.randn(200, 3, generator=gen) * 4 + 5, torch.rand(200, 2, generator=gen) * 2 - 1
    disc = make_disc()
    disc.set_input_stats(expert_obs, expert_act)
    union = torch.cat([torch.cat([expert_obs, expert_act], 1), torch.cat([policy_obs, policy_act], 1)])
    torch.testing.assert_close(disc.in_mean, torch.cat([expert_obs, expert_act], 1).mean(0))
    for half in (slice(0, 100), slice(100, 200)):  # the policy's pairs arrive over two iterations
        disc.update_policy_stats(policy_obs[half], policy_act[half])
    torch.testing.assert_close(disc.in_mean, union.mean(0))
    torch.testing.assert_close(disc.in_std, union.std(0, unbiased=False))
    # Far-off policy pairs now sit a few mixture stds out, not tens of expert stds.
    assert disc.inputs(policy_obs, policy_act).abs().max() < 4
    disc.set_input_stats(expert_obs, expert_act)  # new demos replace the expert's part
    torch.testing.assert_close(disc.in_mean, union.mean(0))


@pytest.mark.parametrize("norm", ["none", "scale", "standardize"])
def test_reward_normalization_by_running_statistics(norm: str):
    learner, episodes = learner_and_episodes(tiny_config(reward_norm=norm, disc_input_norm="running"), n_steps=100)
    batch = ray_compat.learner_connector(learner)(rl_module=learner.module, batch={},
                                                  episodes=copy.deepcopy(episodes), shared_data={})
    policy = batch[DEFAULT_MODULE_ID]
    mask = policy[Columns.LOSS_MASK]
    rewards = policy[Columns.REWARDS][mask].double()
    disc = learner.module[DISC_ID].unwrapped()
    raw = gail_reward(disc.logits(policy[Columns.OBS], policy[Columns.ACTIONS]), "neg_log_1m_d")[mask].double()
    assert disc.policy_stats.count.item() == mask.sum().item()  # the batch joined D's input statistics first
    if norm == "none":
        torch.testing.assert_close(rewards, raw)
        assert disc.reward_stats.count.item() == 0
    elif norm == "scale":  # divided by the std of every reward given so far (here: this batch): signs kept
        torch.testing.assert_close(rewards, raw / raw.std(unbiased=False), rtol=1e-4, atol=1e-5)
        assert (rewards > 0).all()
    else:
        torch.testing.assert_close(rewards.mean().item(), 0.0, atol=1e-5, rtol=0)
        torch.testing.assert_close(rewards.std(unbiased=False).item(), 1.0, rtol=1e-4, atol=0)


# -------------------------------------------------------------------------------- (2) reward connector


def test_connector_rewrites_only_the_reward_column_right_before_gae():
    learner, episodes = learner_and_episodes(tiny_config(reward="log_d"), n_steps=100)
    pipeline = ray_compat.learner_connector(learner)
    names = [type(c).__name__ for c in pipeline.connectors]
    assert names.index("ModuleReward") == names.index("GeneralAdvantageEstimation") - 1

    with_gail = pipeline(rl_module=learner.module, batch={}, episodes=copy.deepcopy(episodes), shared_data={})
    pipeline.remove(ModuleReward)
    assert isinstance(pipeline.connectors[-1], GeneralAdvantageEstimation)
    plain = pipeline(rl_module=learner.module, batch={}, episodes=copy.deepcopy(episodes), shared_data={})

    gail_policy, plain_policy = with_gail[DEFAULT_MODULE_ID], plain[DEFAULT_MODULE_ID]
    assert set(gail_policy) == set(plain_policy)
    for column in set(plain_policy) - {Columns.REWARDS, Columns.ADVANTAGES, Columns.VALUE_TARGETS}:
        assert torch.equal(gail_policy[column], plain_policy[column]), column

    mask = plain_policy[Columns.LOSS_MASK]
    assert (~mask).sum() == len(episodes)  # PPO's one bootstrap row per episode
    with torch.no_grad():
        logits = learner.module[DISC_ID].logits(plain_policy[Columns.OBS], plain_policy[Columns.ACTIONS])
    torch.testing.assert_close(gail_policy[Columns.REWARDS][mask], gail_reward(logits, "log_d")[mask])
    assert (gail_policy[Columns.REWARDS][mask] < 0).all()  # log D, not CartPole's +1
    assert torch.equal(gail_policy[Columns.REWARDS][~mask], plain_policy[Columns.REWARDS][~mask])
    # What the learner keeps for D's steps: the policy's valid pairs (outside RLlib's minibatches).
    assert DISC_ID not in with_gail
    for column in (Columns.OBS, Columns.ACTIONS):
        assert torch.equal(learner.aux_data[DISC_ID][column], plain_policy[column][mask])


def test_advantages_unstandardized_or_scaled_by_their_running_std():
    """advantage_norm: "batch" keeps RLlib's per-batch standardization; "none" hands the policy GAE's raw advantages
    (value targets minus the value function's estimates); "running" divides those by the running std of all raw
    advantages so far (two batches here: the second is scaled by the std over both)."""
    out = {}
    for norm in ("batch", "none", "running"):
        learner, episodes = learner_and_episodes(tiny_config(advantage_norm=norm), n_steps=100)
        pipeline = ray_compat.learner_connector(learner)
        names = [type(c).__name__ for c in pipeline.connectors]
        assert names[-1] == ("GeneralAdvantageEstimation" if norm == "batch" else "PolicyAdvantages")
        out[norm] = [pipeline(rl_module=learner.module, batch={}, episodes=copy.deepcopy(episodes), shared_data={})
                     [DEFAULT_MODULE_ID] for _ in range(2)]
        module = learner.module[DEFAULT_MODULE_ID]
    batch, raw, running = (out[k][1] for k in ("batch", "none", "running"))
    mask = batch[Columns.LOSS_MASK]
    with torch.no_grad():
        expected = batch[Columns.VALUE_TARGETS] - module.compute_values(batch)
    torch.testing.assert_close(raw[Columns.ADVANTAGES], expected)
    standardized = (expected - expected.mean()) / expected.std(unbiased=False)
    torch.testing.assert_close(batch[Columns.ADVANTAGES], standardized, rtol=1e-4, atol=1e-4)
    both = torch.cat([expected[mask], expected[mask]])  # the same episodes twice
    torch.testing.assert_close(running[Columns.ADVANTAGES], expected / both.std(unbiased=False))
    for column in (Columns.REWARDS, Columns.VALUE_TARGETS):
        torch.testing.assert_close(raw[column], batch[column])


# -------------------------------------------------------------------- (4) D steps per update, freezing


@pytest.mark.parametrize("freeze", [False, True])
def test_discriminator_takes_disc_steps_per_update_or_none_when_frozen(freeze: bool):
    disc_steps = 3
    learner, episodes = learner_and_episodes(
        tiny_config(disc_steps=disc_steps, freeze_discriminator=freeze), n_steps=200
    )
    before = disc_params(learner)
    for update in (1, 2):  # the step budget is per update
        result = learner.update(
            episodes=copy.deepcopy(episodes),
            timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: 200 * update},
            num_epochs=2,
            minibatch_size=50,
        )
        assert adam_steps(learner, DISC_ID) == (set() if freeze else {disc_steps * update})
        assert min(adam_steps(learner, DEFAULT_MODULE_ID)) >= 8 * update  # 2 epochs × >= 4 minibatches
    after = disc_params(learner)
    unchanged = all(torch.equal(b, a) for b, a in zip(before, after))
    assert unchanged == freeze
    assert set(result[DISC_ID]) >= ({"reward_mean"} if freeze else set(DISC_METRICS))


def test_bc_weight_adds_the_policys_nll_of_expert_pairs_and_pulls_it_toward_the_expert():
    """``bc_weight`` β > 0, discrete actions: each policy minibatch's loss adds β × the policy's mean NLL of expert
    pairs (by hand: the cross-entropy of its logits and the expert's actions); after a few updates the expert's
    actions are likelier under the policy than without it, and the learner reports the loss (``loss/bc_loss``)."""
    nll = {}
    for beta in (0.0, 1.0):
        learner, episodes = learner_and_episodes(tiny_config(bc_weight=beta, lr=1e-2), n_steps=200)
        obs, actions = learner.expert_obs, learner.expert_actions
        logits = learner.module[DEFAULT_MODULE_ID].unwrapped().forward_train({Columns.OBS: obs})[
            Columns.ACTION_DIST_INPUTS]
        torch.testing.assert_close(learner.bc_loss(obs, actions), torch.nn.functional.cross_entropy(logits, actions))
        before = learner.bc_loss(obs, actions).item()
        for update in (1, 2, 3):
            result = learner.update(episodes=copy.deepcopy(episodes),
                                    timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: 200 * update}, num_epochs=2,
                                    minibatch_size=50)
        nll[beta] = (before, learner.bc_loss(obs, actions).item())
        assert ("bc_loss" in result[DEFAULT_MODULE_ID]) == (beta > 0)
    assert nll[1.0][1] < nll[1.0][0] - 0.05, nll
    assert nll[1.0][1] < nll[0.0][1] - 0.05, nll


def test_bc_loss_of_continuous_actions_is_on_the_policys_mean_and_leaves_its_std_alone():
    """Continuous actions: half the squared distance of the policy's mean action to the expert's (in the policy's
    [-1, 1]); no gradient reaches the log-std half, so a deterministic expert does not end the policy's exploration."""
    class PendulumExpert(ArrayExpertLearner):
        expert = (np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32),
                  np.linspace(-2.0, 2.0, 8, dtype=np.float32)[:, None])

    config = GAILConfig().environment("Pendulum-v1").training(demos_path="unused", bc_weight=1.0).learners(
        learner_class=PendulumExpert)
    learner = config.build_learner(env=gym.make("Pendulum-v1"))
    obs, actions = learner.expert_obs, learner.expert_actions
    inputs = learner.module[DEFAULT_MODULE_ID].unwrapped().forward_train({Columns.OBS: obs})[
        Columns.ACTION_DIST_INPUTS]
    mean = inputs[:, :1].detach()
    torch.testing.assert_close(actions, torch.linspace(-1.0, 1.0, 8)[:, None])  # the env's [-2, 2] in the policy's
    torch.testing.assert_close(learner.bc_loss(obs, actions), 0.5 * ((mean - actions) ** 2).sum(-1).mean())
    policy, seen = learner.module[DEFAULT_MODULE_ID].unwrapped(), []
    forward = policy._forward_train

    def keep_inputs(batch, **kw):
        out = forward(batch, **kw)
        out[Columns.ACTION_DIST_INPUTS].retain_grad()
        seen.append(out[Columns.ACTION_DIST_INPUTS])
        return out

    policy._forward_train = keep_inputs
    learner.bc_loss(obs, actions).backward()
    (grad,) = [x.grad for x in seen]
    assert grad[:, :1].abs().sum() > 0 and not grad[:, 1:].any()  # the means move; the log-stds get nothing


def test_discriminator_is_not_even_run_on_minibatches_past_its_budget():
    """D's forward pass and loss happen only on the minibatches that train it (PPO's speed)."""
    learner, episodes = learner_and_episodes(tiny_config(disc_steps=2), n_steps=200)
    disc, calls = learner.module[DISC_ID].unwrapped(), []
    forward = disc._forward_train
    disc._forward_train = lambda batch, **kw: calls.append(len(batch[Columns.OBS])) or forward(batch, **kw)
    learner.update(episodes=copy.deepcopy(episodes), timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: 200},
                   num_epochs=2, minibatch_size=50)
    assert len(calls) == 2  # of 8 minibatches


def test_replay_draws_ds_policy_half_from_the_last_iterations_batches():
    learner, episodes = learner_and_episodes(tiny_config(disc_steps=2, disc_replay=2, disc_minibatch_size=32),
                                             n_steps=200)
    disc, sizes = learner.module[DISC_ID].unwrapped(), []
    logits = disc.logits
    disc.logits = lambda obs, actions: sizes.append(len(obs)) or logits(obs, actions)
    for update in (1, 2, 3):
        learner.update(episodes=copy.deepcopy(episodes), timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: 200 * update},
                       num_epochs=2, minibatch_size=50)
        assert len(learner.policy_replay) == min(update, 2)  # the oldest batch leaves
    steps = sum(len(e) for e in episodes)
    assert all(len(obs) == steps for obs, _ in learner.policy_replay)  # every valid pair of a batch
    assert adam_steps(learner, DISC_ID) == {6}
    # Per update: the rewards of the batch (one call on all its rows), then 2 D steps on 32 replayed policy pairs
    # (the expert pairs are scored through module.net; the minibatch's own 50 rows are scored by forward_train).
    assert sizes == [len(episodes) + steps, 50, 32, 50, 32] * 3


@pytest.mark.parametrize("decay", [False, True])
def test_disc_lr_follows_the_policys_decay_scaled_to_disc_lr(decay: bool):
    config = tiny_config(lr=[[0, 1e-3], [400, 0.0]], disc_lr=1e-2, disc_lr_decay=decay, disc_steps=2)
    learner, episodes = learner_and_episodes(config, n_steps=200)
    learner.update(episodes=copy.deepcopy(episodes), timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: 200},
                   num_epochs=2, minibatch_size=50)
    policy_lr = learner.get_optimizer(DEFAULT_MODULE_ID).param_groups[0]["lr"]
    disc_lr = learner.get_optimizer(DISC_ID).param_groups[0]["lr"]
    assert policy_lr == pytest.approx(5e-4)  # halfway down its schedule
    assert disc_lr == pytest.approx(5e-3 if decay else 1e-2)


def test_accuracy_gate_skips_ds_steps_while_it_tells_expert_from_policy():
    """With ``disc_max_acc`` D stops stepping once it separates the pairs better than that (the random policy is
    easy to tell from the balancing expert); without the gate it takes every step of its budget."""
    steps = {}
    for max_acc in (1.0, 0.7):
        learner, episodes = learner_and_episodes(
            tiny_config(disc_steps=4, disc_lr=1e-2, disc_max_acc=max_acc), n_steps=200)
        for update in range(1, 9):
            result = learner.update(episodes=copy.deepcopy(episodes),
                                    timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: 200 * update},
                                    num_epochs=2, minibatch_size=50)
        steps[max_acc] = max(adam_steps(learner, DISC_ID))
    assert steps[1.0] == 32
    assert 0 < steps[0.7] < 32
    assert result[DISC_ID]["gate_acc"] > 0.7  # the last check was skipped: D was still accurate enough


def test_accuracy_gate_must_lie_between_chance_and_one():
    with pytest.raises(ValidationError, match="disc_max_acc"):
        GAILHparams(disc_max_acc=0.5)


# ------------------------------------------------------------------------------------------- expert data


def test_learner_reads_the_demos_genlab_records(tmp_path):
    from genlab.rl.demos import record_demos

    learner, _ = learner_and_episodes(tiny_config(), n_steps=1)
    learner.module[DEFAULT_MODULE_ID].save_to_path(tmp_path / "module")
    demos = record_demos(tmp_path / "module", "CartPole-v1", 3, tmp_path / "demos", seed=0)
    config = tiny_config(num_trajectories=2).training(demos_path=str(demos)).learners(learner_class=GAILLearner)
    reader = config.build_learner(env=gym.make("CartPole-v1"))
    first_two = pd.read_parquet(demos / "demos.parquet").query("eps_id < 2")
    assert reader.expert_obs.shape == (len(first_two), 4)
    assert torch.equal(reader.expert_actions, torch.tensor(first_two["actions"].to_numpy(dtype=np.int64, copy=True)))


def test_box_expert_actions_are_compared_in_the_policys_normalized_space():
    class PendulumExpert(ArrayExpertLearner):
        expert = (np.zeros((3, 3), np.float32), np.array([[-2.0], [0.0], [2.0]], np.float32))

    config = (
        GAILConfig()
        .environment("Pendulum-v1")  # actions in [-2, 2]; RLlib's policy acts in [-1, 1]
        .training(demos_path="unused")
        .learners(learner_class=PendulumExpert)
    )
    learner = config.build_learner(env=gym.make("Pendulum-v1"))
    torch.testing.assert_close(learner.expert_actions, torch.tensor([[-1.0], [0.0], [1.0]]))
    disc = learner.module[DISC_ID]
    assert disc.act_low.tolist() == [-1.0] and disc.act_high.tolist() == [1.0]


# --------------------------------------------------------------------------------- config and hparams


def test_config_requires_demos_path_and_a_known_reward_form():
    with pytest.raises(ValueError, match="genlab expert"):
        GAILConfig().environment("CartPole-v1").validate()
    with pytest.raises(ValueError, match="reward"):
        GAILConfig().environment("CartPole-v1").training(demos_path="d", reward="log").validate()


def test_config_defaults_are_the_hparams_defaults_and_training_sets_them():
    config = GAILConfig()
    assert config.gail_hparams() == GAILHparams()
    config = make_ppo_config("CartPole-v1", PPOHparams(entropy_coeff=0.01, lr=1e-3), config_cls=GAILConfig)
    config.training(disc_steps=2, reward="log_d", freeze_discriminator=True)
    assert isinstance(config, GAILConfig)
    assert config.gail_hparams() == GAILHparams(disc_steps=2, reward="log_d", freeze_discriminator=True)
    assert (config.entropy_coeff, config.lr, config.gamma) == (0.01, 1e-3, PPOHparams().gamma)


def test_run_spec_checks_disc_steps_against_the_ppo_minibatches():
    raw = {"name": "g", "algorithm": "gail", "env": {"id": "CartPole-v1"}, "demos": {"path": "d"},
           "hparams": {"disc_steps": 50}, "ppo": {"train_batch_size": 1000, "minibatch_size": 500, "num_epochs": 2}}
    with pytest.raises(gconfig.SpecError, match="hparams.disc_steps: 50 is more than the 4 PPO minibatches"):
        gconfig.run_from_dict(raw)
    with pytest.raises(gconfig.SpecError, match="unknown key 'disc_stepz'"):
        gconfig.run_from_dict({**raw, "hparams": {"disc_stepz": 1}})


# ------------------------------------------------------------------------------- (5, 6) whole iterations


@pytest.mark.slow
@pytest.mark.parametrize("freeze", [False, True])
def test_one_gail_iteration_on_cartpole(ray_local, freeze: bool):
    algo = tiny_config(disc_steps=2, freeze_discriminator=freeze).build_algo()
    try:
        learner = ray_compat.local_learner(algo)
        before = disc_params(learner)
        result = algo.train()
        assert adam_steps(learner, DISC_ID) == (set() if freeze else {2})
        unchanged = all(torch.equal(b, a) for b, a in zip(before, disc_params(learner)))
        assert unchanged == freeze
    finally:
        algo.stop()
    assert set(result["learners"][DISC_ID]) >= ({"reward_mean"} if freeze else set(DISC_METRICS))
    assert math.isfinite(result["env_runners"]["episode_return_mean"])  # the env's return, not D's


@pytest.mark.slow
def test_one_gail_iteration_on_hopper(ray_local):
    class HopperExpert(ArrayExpertLearner):
        expert = rollout_pairs("Hopper-v5", random_policy, 300)

    config = tiny_config("Hopper-v5", HopperExpert, num_envs=1, train_batch_size_per_learner=256,
                         minibatch_size=128, num_epochs=1, disc_steps=1, grad_penalty=1.0)
    algo = config.build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    assert set(DISC_METRICS) | {"grad_penalty"} <= set(result["learners"][DISC_ID])
    assert math.isfinite(result["env_runners"]["episode_return_mean"])


def test_gail_is_registered_with_tune_by_name():
    from ray.tune.registry import get_trainable_cls

    from algorithms.gail.rllib import GAIL, register

    register()
    assert get_trainable_cls("GAIL") is GAIL


def test_rl_metrics_keep_the_modules_own_and_drop_rllibs_bookkeeping():
    from genlab.rl import metrics

    result = {"env_runners": {"episode_return_mean": -150.0, "episode_len_mean": 200.0},
              "learners": {"default_policy": {"policy_loss": 0.1, "vf_loss": 2.0, "entropy": 1.2, "num_module_steps": 9,
                                              "curr_entropy_coeff": 0.0},
                           "disc": {"loss": 1.3, "expert_acc": 0.7, "curr_entropy_coeff": 0.0, "total_loss": 1.3,
                                    "default_optimizer_learning_rate": 3e-4},
                           "__all_modules__": {"num_env_steps_trained": 4000, "total_loss": 3.3}},
              "num_env_steps_sampled_lifetime": 8000}
    assert metrics.from_result(result) == {
        "env/episode_return_mean": -150.0, "env/episode_len_mean": 200.0, "loss/policy_loss": 0.1,
        "loss/vf_loss": 2.0, "loss/entropy": 1.2, "disc/loss": 1.3, "disc/expert_acc": 0.7, "env_steps": 8000}


# ------------------------------------------------------------------------------- PPO's epochs in the learner


def test_minibatch_loop_takes_rllibs_gradient_step_with_none_of_its_bookkeeping():
    """One epoch of one minibatch holding the whole batch: genlab's loop (genlab.rl.minibatches) and RLlib's own
    iteration compute the same policy gradient from the same state (the bootstrap rows PPO appends carry no loss)."""
    learner, episodes = learner_and_episodes(tiny_config(freeze_discriminator=True), n_steps=200)
    start = copy.deepcopy(learner.get_state())
    policy = list(learner.module[DEFAULT_MODULE_ID].parameters())
    compute_gradients, grads = learner.compute_gradients, {}
    rows = sum(len(e) for e in episodes) + len(episodes)  # and a bootstrap row per episode (RLlib cycles past it)
    for loop in (True, False):
        learner.set_state(copy.deepcopy(start))
        learner.minibatch_loop = loop
        learner.compute_gradients = lambda losses, loop=loop: (
            compute_gradients(losses), grads.setdefault(loop, [p.grad.clone() for p in policy]))[0]
        learner.update(episodes=copy.deepcopy(episodes), timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: 200},
                       num_epochs=1, minibatch_size=rows)
        assert adam_steps(learner, DEFAULT_MODULE_ID) == {1}
    for ours, rllibs in zip(grads[True], grads[False]):
        torch.testing.assert_close(ours, rllibs, rtol=1e-4, atol=1e-7)


def test_minibatch_loop_takes_epochs_times_valid_rows_over_minibatch_size_steps():
    learner, episodes = learner_and_episodes(tiny_config(freeze_discriminator=True), n_steps=200)
    sizes = []
    compute_losses = learner.compute_losses
    learner.compute_losses = lambda *, fwd_out, batch: (
        sizes.append(len(batch[DEFAULT_MODULE_ID][Columns.OBS])) or compute_losses(fwd_out=fwd_out, batch=batch))
    learner.update(episodes=copy.deepcopy(episodes), timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: 200},
                   num_epochs=3, minibatch_size=40)
    valid = sum(len(e) for e in episodes)
    assert sizes == [40] * (3 * valid // 40)
    assert adam_steps(learner, DEFAULT_MODULE_ID) == {3 * valid // 40}
    assert learner.get_optimizer(DEFAULT_MODULE_ID).defaults["fused"]
