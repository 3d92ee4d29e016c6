"""True environment returns, measured outside RLlib with a plain gymnasium vector env (no Ray needed).

``rollout`` plays full episodes with an RLModule (greedy or sampled) or any ``Policy``; ``random_return`` and
``normalized_score`` put a return on the scale random = 0, expert = 1. Actions: an RLModule under RLlib's
``normalize_actions=True`` acts in [-1, 1] for a bounded Box; ``to_env_actions`` maps that to the env's bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule

from genlab import envs  # genlab's env ids, made here by gym.make

Policy = Callable[[np.ndarray], np.ndarray]
"""A batch of observations (num_envs, *obs_shape) -> a batch of env actions."""

MAX_VECTOR_ENVS = 16
"""Upper bound on parallel sub-environments used by ``rollout``."""
EVAL_EPISODES = 10
"""Greedy episodes per evaluation of an RL run (eval/true_return, eval/normalized_score)."""

envs.quiet_mujoco()  # MuJoCo envs are made here: their warnings go to Python, not a file


def env_spaces(env_id: str) -> tuple[gym.Space, gym.Space]:
    """(observation_space, action_space) of ``gym.make(env_id)``."""
    env = gym.make(env_id)
    env.close()
    return env.observation_space, env.action_space


def to_env_actions(actions: torch.Tensor, action_space: gym.Space) -> torch.Tensor:
    """Map RLModule actions to env actions as RLlib does with ``normalize_actions=True``.

    A bounded float Box: [-1, 1] -> [low, high], then clipped to the bounds; anything else unchanged.
    """
    box = isinstance(action_space, gym.spaces.Box)
    if not (box and action_space.is_bounded() and np.issubdtype(action_space.dtype, np.floating)):
        return actions
    low = torch.as_tensor(action_space.low, dtype=actions.dtype, device=actions.device)
    high = torch.as_tensor(action_space.high, dtype=actions.dtype, device=actions.device)
    return torch.clamp(low + (actions + 1.0) * (high - low) / 2.0, low, high)


def module_policy(module: RLModule, action_space: gym.Space, *, greedy: bool = True) -> Policy:
    """A ``Policy`` that acts with an RLModule, in env units.

    The action distribution comes from the module's own distribution class applied to
    ``ACTION_DIST_INPUTS`` (for ``TorchDiagGaussian`` the first half are means, the second half log-stds).
    Greedy takes its deterministic form: argmax for Categorical, the mean for a diagonal Gaussian.
    """
    dist_cls = module.get_inference_action_dist_cls() if greedy else module.get_exploration_action_dist_cls()
    forward = module.forward_inference if greedy else module.forward_exploration

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = forward({Columns.OBS: torch.as_tensor(obs, dtype=torch.float32)})
            dist = dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS])
            if greedy:
                dist = dist.to_deterministic()
            return to_env_actions(dist.sample(), action_space).numpy()

    return act


class GreedyPolicy(torch.nn.Module):
    """An RLModule's deterministic policy as a plain torch module: a batch of observations -> env actions.

    What a trained RL run logs as its MLflow model ``policy``: ``mlflow.pytorch.load_model(...)(obs)`` acts.
    """

    def __init__(self, module: RLModule, action_space: gym.Space):
        super().__init__()
        self.module, self.action_space = module, action_space

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.module.forward_inference({Columns.OBS: obs.float()})
        dist = self.module.get_inference_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
        return to_env_actions(dist.to_deterministic().sample(), self.action_space)


@dataclass
class Episode:
    """One episode's transitions, as lists of per-step values."""

    obs: list[np.ndarray]
    actions: list[np.ndarray]
    rewards: list[float]
    new_obs: list[np.ndarray]
    terminated: bool = False
    truncated: bool = False


def run_episodes(policy: Policy, env_id: str, n_episodes: int, seed: int) -> list[Episode]:
    """Play ``n_episodes`` full episodes, spread evenly over up to ``MAX_VECTOR_ENVS`` sub-envs.

    Sub-env ``i`` is seeded ``seed + i`` and plays a fixed quota of episodes, so the result depends only on
    (policy, env_id, n_episodes, seed), and short episodes are not over-represented. SAME_STEP autoreset:
    the step that ends an episode returns the next episode's first observation, with the true last one in
    ``info["final_obs"]``, so no junk transition is recorded.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    num_envs = min(n_episodes, MAX_VECTOR_ENVS)
    quota = [n_episodes // num_envs + (i < n_episodes % num_envs) for i in range(num_envs)]
    envs = gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )
    try:
        obs, _ = envs.reset(seed=seed)
        current = [Episode([], [], [], []) for _ in range(num_envs)]
        done: list[Episode] = []
        while len(done) < n_episodes:
            actions = policy(obs)
            new_obs, rewards, terminated, truncated, infos = envs.step(actions)
            for i in range(num_envs):
                if quota[i] == 0:
                    continue
                ep = current[i]
                ended = bool(terminated[i] or truncated[i])
                ep.obs.append(obs[i])
                ep.actions.append(np.asarray(actions[i]))
                ep.rewards.append(float(rewards[i]))
                ep.new_obs.append(infos["final_obs"][i] if ended else new_obs[i])
                if ended:
                    ep.terminated, ep.truncated = bool(terminated[i]), bool(truncated[i])
                    done.append(ep)
                    quota[i] -= 1
                    current[i] = Episode([], [], [], [])
            obs = new_obs
        return done
    finally:
        envs.close()


def rollout(
    module_or_policy: RLModule | Policy, env_id: str, n_episodes: int, *, seed: int, greedy: bool = True
) -> list[float]:
    """True env returns of ``n_episodes`` episodes, acting with an RLModule (greedy or sampled) or a ``Policy``.

    Sampling (``greedy=False``) uses torch's RNG seeded with ``seed`` inside ``torch.random.fork_rng``, so
    the global RNG is untouched and the returns are reproducible.
    """
    if isinstance(module_or_policy, RLModule):
        policy = module_policy(module_or_policy, env_spaces(env_id)[1], greedy=greedy)
    else:
        policy = module_or_policy
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        episodes = run_episodes(policy, env_id, n_episodes, seed)
    return [float(np.sum(ep.rewards)) for ep in episodes]


def random_return(env_id: str, n_episodes: int, seed: int) -> float:
    """Mean return of uniformly random actions (the 0 of ``normalized_score``)."""
    space = env_spaces(env_id)[1]
    space.seed(seed)
    return float(np.mean(rollout(lambda obs: np.stack([space.sample() for _ in obs]), env_id, n_episodes, seed=seed)))


def normalized_score(ret: float, random_ret: float, expert_ret: float) -> float:
    """(ret - random) / (expert - random): 0 acts like uniform random actions, 1 like the expert."""
    if expert_ret == random_ret:
        raise ValueError(f"expert return equals random return ({expert_ret}); the score is undefined")
    return (ret - random_ret) / (expert_ret - random_ret)
