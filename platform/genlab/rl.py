"""Generic RL pieces shared by the RL algorithms (GAIL, VIME): PPO setup, evaluation, experts, demonstrations.

- ``make_ppo_config`` builds a ``PPOConfig`` (or a subclass such as ``GAILConfig``) with settings that are
  fast on a 2-CPU machine (one local EnvRunner holding a SYNC vector env; RAY_NOTES.md §8) and per-env
  defaults from ``PPO_DEFAULTS``.
- ``rollout`` / ``random_return`` / ``normalized_score`` measure true environment returns outside RLlib,
  with a plain gymnasium vector env (no Ray needed).
- ``train_expert`` trains PPO until its greedy return reaches a target and saves the checkpoint.
- ``record_demos`` / ``load_demos`` write and read expert trajectories (``demos.parquet`` + ``meta.json``).

Actions: RLlib's default ``normalize_actions=True`` (pinned in ``make_ppo_config``) makes the RLModule act
in [-1, 1] for bounded Box spaces; RLlib unsquashes them to the env's bounds before ``env.step``, and the
episodes / train batches keep the *module* actions. ``to_env_actions`` is that mapping; demonstrations
store env actions (what the environment received).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.core.rl_module.rl_module import RLModule

Policy = Callable[[np.ndarray], np.ndarray]
"""A batch of observations (num_envs, *obs_shape) -> a batch of env actions."""

DEMOS_FILE = "demos.parquet"
META_FILE = "meta.json"
MODULE_SUBDIR = Path(COMPONENT_LEARNER_GROUP, COMPONENT_LEARNER, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID)
"""Where ``algo.save_to_path(dir)`` puts the policy RLModule inside an algorithm checkpoint."""
RANDOM_EPISODES = 20
"""Episodes of uniform random actions behind ``meta.json``'s ``random_return``."""
MAX_VECTOR_ENVS = 16
"""Upper bound on parallel sub-environments used by ``rollout``."""


def env_spaces(env_id: str) -> tuple[gym.Space, gym.Space]:
    """(observation_space, action_space) of ``gym.make(env_id)``."""
    env = gym.make(env_id)
    env.close()
    return env.observation_space, env.action_space


@dataclass(frozen=True)
class PPOSettings:
    """PPO hyperparameters genlab sets; the rest keep RLlib's defaults."""

    num_envs: int = 16
    """Sub-environments of the single local EnvRunner (SYNC vectorization; RAY_NOTES §8)."""
    hiddens: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy and value MLPs."""
    activation: str = "tanh"
    """Hidden activation of both MLPs."""
    vf_share_layers: bool = False
    """Share the hidden layers between policy and value function."""
    lr: float = 3e-4
    gamma: float = 0.99
    lambda_: float = 0.95
    """GAE lambda."""
    train_batch_size: int = 4000
    """Env steps per training iteration."""
    minibatch_size: int = 500
    num_epochs: int = 6
    """Passes over each train batch."""
    entropy_coeff: float = 0.0
    clip_param: float = 0.2
    """PPO policy-ratio clip."""
    vf_clip_param: float = float("inf")
    """Clip of the squared value error. RLlib's default 10 zeroes the value gradient wherever the error
    exceeds ~3.2, which stalls the critic on returns of hundreds (Pendulum, MuJoCo); so off by default."""
    vf_loss_coeff: float = 1.0
    use_kl_loss: bool = False
    """Add RLlib's adaptive KL penalty on top of the clipped objective."""


PPO_DEFAULTS: dict[str, dict[str, Any]] = {
    # Batch 2000 with 16 envs: RAY_NOTES §8 (fastest CartPole solve on 2 CPUs). Its shared-layer variant
    # (vf_loss_coeff 0.01) relied on RLlib's vf clip; with the clip off, separate nets measured here reach a
    # greedy return >= 475 in 6-12 iterations (2-4 s) over 3 seeds, the shared variant in 18-94.
    "CartPole-v1": {"train_batch_size": 2000},
    # gamma, lambda, lr, epochs: rl-baselines3-zoo hyperparams/ppo.yml (its batch is 4 envs x 1024 steps).
    # Minibatch 128 and batch 4096: measured here (greedy return >= -200 in 10-18 iterations over 4 seeds);
    # batch 2048 or minibatch 256 learned 2-4x slower or collapsed.
    "Pendulum-v1": {"gamma": 0.9, "lambda_": 0.95, "lr": 1e-3, "num_epochs": 10, "minibatch_size": 128,
                    "train_batch_size": 4096},
}
"""Per-environment overrides of ``PPOSettings``; each entry says where its values come from."""


def ppo_settings(env_id: str, **overrides: Any) -> PPOSettings:
    """``PPOSettings`` for ``env_id``: class defaults, then ``PPO_DEFAULTS[env_id]``, then ``overrides``."""
    return PPOSettings(**{**PPO_DEFAULTS.get(env_id, {}), **overrides})


def make_ppo_config(
    env_id: str, *, seed: int = 0, config_cls: type[PPOConfig] = PPOConfig, **overrides: Any
) -> PPOConfig:
    """A ``config_cls`` (``PPOConfig`` or a subclass) for ``env_id`` with 2-CPU-friendly settings.

    ``overrides`` are ``PPOSettings`` fields (``lr=1e-3, num_envs=8, ...``); an unknown name raises
    ``TypeError``. Sampling runs in the driver (``num_env_runners=0``) on a SYNC vector env, which
    RAY_NOTES §8 measured as the fastest layout on 2 CPUs.
    """
    s = ppo_settings(env_id, **overrides)
    return (
        config_cls()
        .environment(env_id, normalize_actions=True, clip_actions=False)  # to_env_actions mirrors these
        .env_runners(
            num_env_runners=0, num_envs_per_env_runner=s.num_envs, gym_env_vectorize_mode=gym.VectorizeMode.SYNC
        )
        .training(
            lr=s.lr,
            gamma=s.gamma,
            lambda_=s.lambda_,
            train_batch_size_per_learner=s.train_batch_size,
            minibatch_size=s.minibatch_size,
            num_epochs=s.num_epochs,
            entropy_coeff=s.entropy_coeff,
            clip_param=s.clip_param,
            vf_clip_param=s.vf_clip_param,
            vf_loss_coeff=s.vf_loss_coeff,
            use_kl_loss=s.use_kl_loss,
        )
        .rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=list(s.hiddens), fcnet_activation=s.activation, vf_share_layers=s.vf_share_layers
            )
        )
        .debugging(seed=seed)
    )


# ----------------------------------------------------------------------------------------------- evaluation


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


@dataclass
class _Episode:
    """One episode's transitions, as lists of per-step values."""

    obs: list[np.ndarray]
    actions: list[np.ndarray]
    rewards: list[float]
    new_obs: list[np.ndarray]
    terminated: bool = False
    truncated: bool = False


def _run_episodes(policy: Policy, env_id: str, n_episodes: int, seed: int) -> list[_Episode]:
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
        current = [_Episode([], [], [], []) for _ in range(num_envs)]
        done: list[_Episode] = []
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
                    current[i] = _Episode([], [], [], [])
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
        episodes = _run_episodes(policy, env_id, n_episodes, seed)
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


# -------------------------------------------------------------------------------------------------- experts


@dataclass(frozen=True)
class ExpertResult:
    """What ``train_expert`` produced."""

    checkpoint_dir: Path
    """Algorithm checkpoint (``Algorithm.from_checkpoint`` restores it)."""
    module_path: Path
    """The policy RLModule inside it (``RLModule.from_checkpoint``; input of ``record_demos``)."""
    greedy_return: float
    """Mean greedy return of the last evaluation."""
    iterations: int
    env_steps: int
    wall_s: float


def train_expert(
    env_id: str,
    checkpoint_dir: str | Path,
    *,
    target_return: float,
    max_iterations: int,
    ppo_overrides: dict[str, Any] | None = None,
    seed: int = 0,
    eval_every: int = 2,
    eval_episodes: int = 10,
    on_iteration: Callable[[int, dict[str, float]], None] | None = None,
) -> ExpertResult:
    """Train PPO on ``env_id`` until the greedy return reaches ``target_return`` or ``max_iterations``.

    Every ``eval_every`` iterations (and at the last) the current policy plays ``eval_episodes`` greedy
    episodes (``rollout``, new seeds each time). ``on_iteration(it, metrics)`` gets ``train/return_mean``
    (RLlib's mean return of the stochastic policy), ``perf/env_steps``, ``perf/time_s`` and, when it was
    evaluated, ``eval/return_mean``. Ray must be initialised by the caller (``ray.init``). The algorithm
    is saved to ``checkpoint_dir`` at the end, whether or not the target was reached.
    """
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, EPISODE_RETURN_MEAN, NUM_ENV_STEPS_SAMPLED_LIFETIME

    algo = make_ppo_config(env_id, seed=seed, **(ppo_overrides or {})).build_algo()
    start, greedy, it, steps = time.perf_counter(), float("-inf"), 0, 0
    try:
        for it in range(1, max_iterations + 1):
            result = algo.train()
            steps = int(result[NUM_ENV_STEPS_SAMPLED_LIFETIME])
            metrics = {
                "train/return_mean": float(result[ENV_RUNNER_RESULTS].get(EPISODE_RETURN_MEAN, float("nan"))),
                "perf/env_steps": float(steps),
                "perf/time_s": time.perf_counter() - start,
            }
            if it % eval_every == 0 or it == max_iterations:
                eval_seed = seed + 1_000_000 + it * eval_episodes
                greedy = float(np.mean(rollout(algo.get_module(), env_id, eval_episodes, seed=eval_seed)))
                metrics["eval/return_mean"] = greedy
            if on_iteration is not None:
                on_iteration(it, metrics)
            if greedy >= target_return:
                break
        path = Path(algo.save_to_path(Path(checkpoint_dir).resolve()))
    finally:
        algo.stop()
    return ExpertResult(path, path / MODULE_SUBDIR, greedy, it, steps, time.perf_counter() - start)


# ------------------------------------------------------------------------------------------- demonstrations


@dataclass
class Demos:
    """Expert transitions, rows grouped by episode in recording order."""

    obs: np.ndarray
    """(N, obs_dim) float32."""
    actions: np.ndarray
    """Env actions: (N, act_dim) float32 for Box, (N,) int64 for Discrete."""
    eps_id: np.ndarray
    """(N,) int64 episode ids."""
    meta: dict[str, Any]
    """The recording's ``meta.json``."""


def space_to_dict(space: gym.Space) -> dict[str, Any]:
    """A JSON-able description of a Box or Discrete space (inverse: ``space_from_dict``)."""
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": space.low.tolist(), "high": space.high.tolist()}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    raise ValueError(f"only Box and Discrete spaces are supported, got {space!r}")


def space_from_dict(d: dict[str, Any]) -> gym.Space:
    """The space ``space_to_dict`` described."""
    if d["type"] == "Box":
        dtype = np.dtype(d["dtype"])
        return gym.spaces.Box(np.array(d["low"], dtype), np.array(d["high"], dtype), tuple(d["shape"]), dtype)
    return gym.spaces.Discrete(d["n"], start=d["start"])


def record_demos(module_path: str | Path, env_id: str, n_trajectories: int, out_dir: str | Path, *,
                 seed: int) -> Path:
    """Record ``n_trajectories`` greedy episodes of the RLModule at ``module_path``; returns ``out_dir``.

    Writes ``out_dir/demos.parquet`` (one row per transition: eps_id, t, obs, actions, rewards, new_obs,
    terminateds, truncateds) and ``out_dir/meta.json`` (env id, both spaces as ``repr`` text and as
    ``space_to_dict``, n_trajectories, expert_return(_std) over the recording, random_return over
    ``RANDOM_EPISODES`` random episodes, seed).
    """
    module = RLModule.from_checkpoint(Path(module_path).resolve())
    obs_space, act_space = env_spaces(env_id)
    space_specs = {"observation_space_spec": space_to_dict(obs_space), "action_space_spec": space_to_dict(act_space)}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        episodes = _run_episodes(module_policy(module, act_space), env_id, n_trajectories, seed)
    discrete = isinstance(act_space, gym.spaces.Discrete)

    def rows(values: list[np.ndarray]) -> list[list[float]]:
        return [np.asarray(v, dtype=np.float32).ravel().tolist() for v in values]

    frames = []
    for eps_id, ep in enumerate(episodes):
        n = len(ep.rewards)
        frames.append(pd.DataFrame({
            "eps_id": np.full(n, eps_id, dtype=np.int64),
            "t": np.arange(n, dtype=np.int64),
            "obs": rows(ep.obs),
            "actions": [int(a) for a in ep.actions] if discrete else rows(ep.actions),
            "rewards": np.asarray(ep.rewards, dtype=np.float64),
            "new_obs": rows(ep.new_obs),
            "terminateds": np.arange(n) == n - 1 if ep.terminated else np.zeros(n, dtype=bool),
            "truncateds": np.arange(n) == n - 1 if ep.truncated else np.zeros(n, dtype=bool),
        }))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_parquet(out / DEMOS_FILE, index=False)
    returns = [float(np.sum(ep.rewards)) for ep in episodes]
    meta = {
        "env_id": env_id,
        "observation_space": repr(obs_space),
        "action_space": repr(act_space),
        **space_specs,
        "n_trajectories": n_trajectories,
        "n_transitions": int(sum(len(ep.rewards) for ep in episodes)),
        "expert_return": float(np.mean(returns)),
        "expert_return_std": float(np.std(returns)),
        "random_return": random_return(env_id, RANDOM_EPISODES, seed),
        "seed": seed,
        "module_path": str(Path(module_path).resolve()),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    return out


def load_demos(path: str | Path, env_id: str, *, num_trajectories: int | None = None) -> Demos:
    """Read ``record_demos`` output (its folder, or the ``demos.parquet`` in it) for use on ``env_id``.

    Raises ``FileNotFoundError`` naming the missing file, ``ValueError`` when ``env_id``'s spaces differ
    from the recorded ones, or when more trajectories are asked for than were recorded.
    ``num_trajectories`` keeps the first k episodes.
    """
    root = Path(path)
    root = root.parent if root.suffix == ".parquet" else root
    for name in (DEMOS_FILE, META_FILE):
        if not (root / name).is_file():
            raise FileNotFoundError(f"no demonstrations at {root}: {root / name} is missing; record them with "
                                    f"`genlab expert {env_id}`")
    meta = json.loads((root / META_FILE).read_text())
    obs_space, act_space = env_spaces(env_id)
    recorded = (space_from_dict(meta["observation_space_spec"]), space_from_dict(meta["action_space_spec"]))
    if (obs_space, act_space) != recorded:
        raise ValueError(
            f"demonstrations at {root} were recorded on {meta['env_id']} with observation space "
            f"{meta['observation_space']} and action space {meta['action_space']}, but {env_id} has "
            f"observation space {obs_space!r} and action space {act_space!r}; "
            f"record demonstrations for {env_id} with `genlab expert {env_id}`"
        )
    df = pd.read_parquet(root / DEMOS_FILE)
    if num_trajectories is not None:
        recorded_ids = df["eps_id"].unique()
        if not 1 <= num_trajectories <= len(recorded_ids):
            raise ValueError(f"asked for {num_trajectories} trajectories but {root} holds {len(recorded_ids)}; "
                             f"ask for 1..{len(recorded_ids)} or record more with `genlab expert {env_id}`")
        df = df[df["eps_id"].isin(recorded_ids[:num_trajectories])]
    if isinstance(act_space, gym.spaces.Discrete):
        actions = df["actions"].to_numpy(dtype=np.int64)
    else:
        actions = np.stack(df["actions"].to_numpy()).astype(np.float32)
    return Demos(
        obs=np.stack(df["obs"].to_numpy()).astype(np.float32),
        actions=actions,
        eps_id=df["eps_id"].to_numpy(dtype=np.int64),
        meta=meta,
    )


# ------------------------------------------------------------------------------ reward connectors

RewardFn = Callable[[RLModule, torch.Tensor, torch.Tensor], torch.Tensor]
"""(learner-only module, obs, actions) -> one reward per row."""


class ModuleRewardConnector(ConnectorV2):
    """Learner connector piece: the policy's rewards come from a learner-only module.

    Place it right before ``GeneralAdvantageEstimation`` (the batch then holds tensors and no advantages
    yet). It replaces ``batch[DEFAULT_MODULE_ID][Columns.REWARDS]`` on the valid rows (``LOSS_MASK``; the
    bootstrap rows PPO appends keep their reward) by ``reward_fn(module, obs, actions)`` computed without
    gradients, leaves every other column alone, and gives the module its own batch (the policy's OBS,
    ACTIONS and LOSS_MASK) so that its self-supervised loss trains on the policy's samples. It logs the
    mean new reward as ``(module_id, "reward_mean")``. The env runners never see it: the episode returns
    they report stay the environment's.
    """

    def __init__(
        self,
        input_observation_space: gym.Space | None = None,
        input_action_space: gym.Space | None = None,
        *,
        module_id: str,
        reward_fn: RewardFn,
        **kwargs,
    ):
        super().__init__(input_observation_space, input_action_space, **kwargs)
        self.module_id = module_id
        self.reward_fn = reward_fn

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None, metrics=None, **kwargs):
        policy = batch[DEFAULT_MODULE_ID]
        obs, actions, env_rewards = policy[Columns.OBS], policy[Columns.ACTIONS], policy[Columns.REWARDS]
        mask = policy.get(Columns.LOSS_MASK, torch.ones_like(env_rewards, dtype=torch.bool))
        with torch.no_grad():
            rewards = self.reward_fn(rl_module[self.module_id].unwrapped(), obs, actions)
        assert rewards.shape == env_rewards.shape, f"reward_fn gave shape {rewards.shape}, not {env_rewards.shape}"
        policy[Columns.REWARDS] = torch.where(mask, rewards.to(env_rewards.dtype), env_rewards)
        batch[self.module_id] = {Columns.OBS: obs, Columns.ACTIONS: actions, Columns.LOSS_MASK: mask}
        if metrics is not None:
            metrics.log_value((self.module_id, "reward_mean"), rewards[mask].mean().item(), window=1)
        return batch


# --------------------------------------------------------------------------------- runs of a spec

EVAL_EPISODES = 10
"""Greedy episodes per evaluation of an RL run (eval/true_return, eval/normalized_score)."""


def module_space_demos(path: str | Path, env_id: str, num_trajectories: int | None, workdir: Path) -> Path:
    """The first ``num_trajectories`` demonstrations as a parquet file for RLlib's offline input (BC).

    The demos store env actions; an RLModule under ``normalize_actions=True`` acts in [-1, 1] for a
    bounded Box, so the actions are mapped back into that space (the inverse of ``to_env_actions``).
    """
    demos = load_demos(path, env_id, num_trajectories=num_trajectories)  # checks spaces and counts
    df = pd.read_parquet(Path(path) / DEMOS_FILE)
    df = df[df["eps_id"].isin(set(demos.eps_id.tolist()))].copy()
    _, space = env_spaces(env_id)
    if isinstance(space, gym.spaces.Box) and space.is_bounded():
        low, high = space.low.astype(np.float32), space.high.astype(np.float32)
        df["actions"] = [list(2.0 * (np.asarray(a, np.float32) - low) / (high - low) - 1.0) for a in df["actions"]]
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / f"demos_{num_trajectories or 'all'}.parquet"
    df.to_parquet(out)
    return out


def _flatten_result(result: dict) -> dict[str, float]:
    """RLlib's nested result -> genlab's namespaced metrics (env return, learner losses, throughput)."""
    out = {}
    runners = result.get("env_runners", {})
    if "episode_return_mean" in runners:
        out["env/episode_return_mean"] = runners["episode_return_mean"]  # the TRUE env return
    if "episode_len_mean" in runners:
        out["env/episode_len_mean"] = runners["episode_len_mean"]
    for module_id, stats in result.get("learners", {}).items():
        if not isinstance(stats, dict):
            continue
        for k, v in stats.items():
            if not isinstance(v, (int, float)):
                continue
            if module_id == DEFAULT_MODULE_ID:
                if k in ("policy_loss", "vf_loss", "entropy", "mean_kl_loss"):
                    out[f"loss/{k}"] = v
            elif not k.startswith(("num_", "gradients_", "module_train_batch", "weights_seq_no")):
                out[f"{module_id}/{k}"] = v  # a learner-only module's own metrics, e.g. disc/loss
    out["env_steps"] = result.get("num_env_steps_sampled_lifetime", 0)
    return out


@dataclass(frozen=True)
class RunResult:
    """What ``fit`` returns (the same attributes as Ray Train's ``Result`` that ``genlab.train.fit`` returns)."""

    metrics: dict[str, float]
    """The last iteration's metrics."""
    history: list[dict[str, float]]
    mlflow_run_id: str


def _policy_module(algo) -> RLModule:
    """The policy to evaluate: the env runner's, or for offline algorithms (BC, no env runner) the learner's."""
    if algo.env_runner_group is not None and algo.env_runner is not None:
        return algo.get_module()
    return algo.learner_group._learner.module[DEFAULT_MODULE_ID]


def fit(spec, *, storage_path: str | Path, run_key: str | None = None, mlflow_tags: dict | None = None,
        in_tune: bool = False) -> RunResult:
    """Train an RL spec (GAIL, BC, ...) iteration by iteration, evaluating the true return; MLflow-tracked.

    Every ``budget.eval_every`` iterations the greedy policy is rolled out on the real env:
    ``eval/true_return`` and, when the demonstrations carry the expert's and a random policy's
    returns, ``eval/normalized_score`` (random = 0, expert = 1).
    """
    from genlab import registry, tracking

    storage = Path(storage_path).resolve()
    run_key = run_key or spec.name
    workdir = storage / run_key
    uri = tracking.resolve_uri(spec.tracking.uri)
    run_id = tracking.open_run(uri, spec.tracking.experiment, run_name=spec.name,
                               config=spec.model_dump(mode="json"),
                               tags={tracking.TAG_RUN_KEY: str(workdir), tracking.TAG_KIND: "rl",
                                     **(mlflow_tags or {})},
                               resume_tag=(tracking.TAG_RUN_KEY, str(workdir)))
    logger = tracking.RunLogger(uri, run_id)
    logger.tags(tracking.placement())  # the RLlib algorithm (learner + local env runner) runs in this process
    meta = load_demos(spec.demos.path, spec.env.id).meta if spec.demos else {}
    algo = registry.impl_class(spec.algorithm)(spec, workdir).build_algo()
    ckpt = workdir / "checkpoint"
    history: list[dict] = []
    start = 1
    if (ckpt / "genlab_state.json").exists():
        algo.restore_from_path(str(ckpt))
        state = json.loads((ckpt / "genlab_state.json").read_text())
        start, history = state["iteration"] + 1, state["history"]
    b = spec.budget
    try:
        last_eval: dict[str, float] = {}
        for it in range(start, b.epochs + 1):
            t0 = time.perf_counter()
            m = _flatten_result(algo.train())
            m.update({"epoch": it, "perf/iteration_s": time.perf_counter() - t0})
            if it % b.eval_every == 0 or it == b.epochs:
                returns = rollout(_policy_module(algo), spec.env.id, EVAL_EPISODES, seed=spec.seed + 10_000)
                last_eval = {"eval/true_return": float(np.mean(returns))}
                if "expert_return" in meta:
                    last_eval["eval/normalized_score"] = normalized_score(
                        last_eval["eval/true_return"], meta["random_return"], meta["expert_return"])
            m.update(last_eval)
            history.append(m)
            logger.metrics(m, step=it)
            print(f"[genlab] iteration {it}/{b.epochs}  " + "  ".join(
                f"{k}={m[k]:.4g}" for k in ("env/episode_return_mean", "eval/true_return", "eval/normalized_score",
                                            "disc/loss", "loss/policy_loss") if k in m), flush=True)
            if it % b.checkpoint_every == 0 or it == b.epochs:
                algo.save_to_path(str(ckpt))
                (ckpt / "genlab_state.json").write_text(json.dumps({"iteration": it, "history": history}))
            if in_tune:
                from ray import tune

                tune.report(m)
    except BaseException as e:
        if not in_tune:
            tracking.close_run(uri, run_id, e)
        raise
    finally:
        algo.stop()
    logger.learning_curves(history)
    if not in_tune:
        tracking.close_run(uri, run_id)
    return RunResult(metrics=history[-1] if history else {}, history=history, mlflow_run_id=run_id)


def expert(spec, out_dir: Path) -> Path:
    """`genlab expert`: train PPO to the target return, record demonstrations, track it all in MLflow."""
    from genlab import tracking

    uri = tracking.resolve_uri(spec.tracking.uri)
    run_id = tracking.open_run(uri, spec.tracking.experiment, run_name=f"expert-{spec.name}",
                               config=spec.model_dump(mode="json"), tags={tracking.TAG_KIND: "expert"})
    logger = tracking.RunLogger(uri, run_id)
    history: list[dict] = []

    def on_iteration(it: int, metrics: dict) -> None:
        m = {"epoch": it, **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        history.append(m)
        logger.metrics(m, step=it)
        print(f"[genlab] expert iteration {it}/{spec.max_iterations}  "
              + "  ".join(f"{k}={v:.4g}" for k, v in m.items() if k != "epoch"), flush=True)

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        trained = train_expert(spec.env.id, out_dir / "expert_checkpoint", target_return=spec.target_return,
                               max_iterations=spec.max_iterations, ppo_overrides={"num_envs": spec.env.num_envs,
                                                                                  **spec.ppo},
                               seed=spec.seed, on_iteration=on_iteration)
        if trained.greedy_return < spec.target_return:
            print(f"[genlab] expert reached {trained.greedy_return:.1f} < target {spec.target_return} within "
                  f"{spec.max_iterations} iterations; recording it anyway (its return is in meta.json)")
        path = record_demos(trained.module_path, spec.env.id, spec.num_trajectories, out_dir, seed=spec.seed)
        meta = json.loads((path / META_FILE).read_text())
        logger.metrics({"eval/expert_return": meta["expert_return"], "eval/random_return": meta["random_return"]},
                       step=len(history))
        logger.file(path / META_FILE, "demos")
        logger.learning_curves(history)
    except BaseException as e:
        tracking.close_run(uri, run_id, e)
        raise
    tracking.close_run(uri, run_id)
    return path
