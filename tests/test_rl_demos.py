"""genlab.rl: demonstrations round trip, space checks, evaluation helpers, and a short expert run (slow)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule

from genlab.rl import demos as rl_demos
from genlab.rl import evaluation
from genlab.rl.hparams import PPOHparams
from genlab.rl.ppo import make_ppo_config
from genlab.runners import rl as rl_runner


def save_random_module(env_id: str, path: Path) -> Path:
    """A randomly initialised PPO RLModule for ``env_id``, saved where ``RLModule.from_checkpoint`` reads it."""
    spec = make_ppo_config(env_id).get_rl_module_spec(env=gym.make(env_id))
    torch.manual_seed(0)
    spec.build().save_to_path(path)
    return path


@pytest.fixture(scope="module")
def cartpole_module(tmp_path_factory) -> Path:
    return save_random_module("CartPole-v1", tmp_path_factory.mktemp("module") / "cartpole")


@pytest.fixture(scope="module")
def cartpole_demos(cartpole_module, tmp_path_factory) -> Path:
    return rl_demos.record_demos(cartpole_module, "CartPole-v1", 6, tmp_path_factory.mktemp("demos"), seed=3)


def test_record_load_round_trip(cartpole_module, cartpole_demos):
    df = pd.read_parquet(cartpole_demos / rl_demos.DEMOS_FILE)
    meta = json.loads((cartpole_demos / rl_demos.META_FILE).read_text())
    episodes = [g for _, g in df.groupby("eps_id", sort=True)]

    assert sorted(df["eps_id"].unique()) == list(range(6)) and meta["n_trajectories"] == 6
    assert len(df) == sum(len(g) for g in episodes) == meta["n_transitions"]
    for g in episodes:
        n = len(g)
        assert g["t"].tolist() == list(range(n))
        done = (g["terminateds"] | g["truncateds"]).to_numpy()
        assert done[-1] and not done[:-1].any()  # exactly one done flag, on the last row
        obs, new_obs = np.stack(g["obs"].to_numpy()), np.stack(g["new_obs"].to_numpy())
        np.testing.assert_array_equal(new_obs[:-1], obs[1:])  # continuity within the episode
        # The last new_obs is the real final state (outside CartPole's bounds), not the next episode's reset.
        assert abs(new_obs[-1, 0]) > 2.4 or abs(new_obs[-1, 2]) > 0.2095
    # The row after each done starts the next episode: no junk transition in between.
    starts = np.flatnonzero((df["terminateds"] | df["truncateds"]).to_numpy())[:-1] + 1
    assert (df["t"].to_numpy()[starts] == 0).all()
    eps = df["eps_id"].to_numpy()
    np.testing.assert_array_equal(eps[starts], eps[starts - 1] + 1)
    assert np.isclose(meta["expert_return"], df.groupby("eps_id")["rewards"].sum().mean())
    assert meta["env_id"] == "CartPole-v1" and meta["action_space_spec"] == {"type": "Discrete", "n": 2, "start": 0}

    demos = rl_demos.load_demos(cartpole_demos, "CartPole-v1")
    assert demos.obs.dtype == np.float32 and demos.obs.shape == (len(df), 4)
    assert demos.actions.dtype == np.int64 and demos.actions.shape == (len(df),)
    np.testing.assert_array_equal(demos.eps_id, df["eps_id"].to_numpy())
    # Greedy actions: argmax of the module's logits on the recorded observations.
    module = RLModule.from_checkpoint(cartpole_module)
    with torch.no_grad():
        logits = module.forward_inference({Columns.OBS: torch.from_numpy(demos.obs)})[Columns.ACTION_DIST_INPUTS]
    np.testing.assert_array_equal(demos.actions, logits.argmax(-1).numpy())

    first2 = rl_demos.load_demos(cartpole_demos / rl_demos.DEMOS_FILE, "CartPole-v1", num_trajectories=2)
    assert set(first2.eps_id) == {0, 1} and len(first2.obs) == sum(len(g) for g in episodes[:2])


def test_continuous_demos_store_env_actions(tmp_path):
    module = save_random_module("Pendulum-v1", tmp_path / "module")
    out = rl_demos.record_demos(module, "Pendulum-v1", 2, tmp_path / "demos", seed=0)
    demos = rl_demos.load_demos(out, "Pendulum-v1")
    assert demos.obs.shape == (400, 3) and demos.actions.shape == (400, 1) and demos.actions.dtype == np.float32
    # The module's Gaussian means live in [-1, 1]; the env gets (and the demos keep) them scaled to [-2, 2].
    loaded = RLModule.from_checkpoint(module)
    with torch.no_grad():
        inputs = loaded.forward_inference({Columns.OBS: torch.from_numpy(demos.obs)})[Columns.ACTION_DIST_INPUTS]
    means = inputs[:, :1].numpy()
    np.testing.assert_allclose(demos.actions, np.clip(2.0 * means, -2.0, 2.0), rtol=1e-5, atol=1e-6)
    meta = json.loads((out / rl_demos.META_FILE).read_text())
    assert meta["action_space_spec"]["low"] == [-2.0] and meta["random_return"] < -500


def test_load_demos_for_another_env_names_both_spaces(cartpole_demos):
    with pytest.raises(ValueError) as err:
        rl_demos.load_demos(cartpole_demos, "Acrobot-v1")
    msg = str(err.value)
    obs_cp, act_cp = evaluation.env_spaces("CartPole-v1")
    obs_ac, act_ac = evaluation.env_spaces("Acrobot-v1")
    for text in (repr(obs_cp), repr(act_cp), repr(obs_ac), repr(act_ac), "`genlab expert <spec>` for Acrobot-v1"):
        assert text in msg


def test_load_demos_missing_or_too_many(cartpole_demos, tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        rl_demos.load_demos(tmp_path, "CartPole-v1")
    with pytest.raises(ValueError, match="asked for 7 trajectories but .* holds 6"):
        rl_demos.load_demos(cartpole_demos, "CartPole-v1", num_trajectories=7)


def test_normalized_score():
    assert evaluation.normalized_score(-200.0, -1200.0, -150.0) == pytest.approx(1000 / 1050)
    assert evaluation.normalized_score(22.0, 22.0, 500.0) == 0.0
    assert evaluation.normalized_score(500.0, 22.0, 500.0) == 1.0
    with pytest.raises(ValueError):
        evaluation.normalized_score(1.0, 5.0, 5.0)


def test_rollout_is_reproducible(cartpole_module):
    module = RLModule.from_checkpoint(cartpole_module)
    for greedy in (True, False):
        first = evaluation.rollout(module, "CartPole-v1", 5, seed=7, greedy=greedy)
        assert len(first) == 5 and first == evaluation.rollout(module, "CartPole-v1", 5, seed=7, greedy=greedy)
    assert evaluation.random_return("CartPole-v1", 10, seed=1) == evaluation.random_return("CartPole-v1", 10, seed=1)


def test_to_env_actions_mirrors_rllib():
    from ray.rllib.utils.spaces.space_utils import unsquash_action

    space = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
    actions = torch.tensor([[-1.5, 0.0], [0.3, 0.9], [2.0, -0.2]])
    expected = np.stack([unsquash_action(a, space) for a in actions.numpy()])
    np.testing.assert_allclose(evaluation.to_env_actions(actions, space).numpy(), expected, rtol=1e-6)
    discrete = torch.tensor([0, 1])
    assert evaluation.to_env_actions(discrete, gym.spaces.Discrete(2)) is discrete


@pytest.mark.slow
def test_train_expert_saves_a_checkpoint_demos_can_be_recorded_from(tmp_path):
    import ray

    seen = []
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        result = rl_runner.train_expert("CartPole-v1", tmp_path / "expert", target_return=float("inf"),
                                        max_iterations=2, ppo=PPOHparams(train_batch_size=500), num_envs=4, seed=0,
                                        on_iteration=lambda it, m: seen.append((it, m)))
    finally:
        ray.shutdown()
    assert result.iterations == 2 and result.env_steps >= 1000
    assert [it for it, _ in seen] == [1, 2] and "eval/return_mean" in seen[1][1]
    assert result.module_path == result.checkpoint_dir / rl_runner.MODULE_SUBDIR and result.module_path.is_dir()
    out = rl_demos.record_demos(result.module_path, "CartPole-v1", 3, tmp_path / "demos", seed=0)
    assert rl_demos.load_demos(out, "CartPole-v1").meta["n_trajectories"] == 3
