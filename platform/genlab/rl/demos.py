"""Expert demonstrations on disk: ``demos.parquet`` (one row per transition) and ``meta.json``.

``record_demos`` writes them from a trained RLModule; ``read_meta`` checks a folder without reading the
transitions (the pre-flight uses it: files present, recorded on spaces that match the run's env);
``load_demos`` reads them for a learner; ``module_space_demos`` rewrites them for RLlib's offline input (BC).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from ray.rllib.core.rl_module.rl_module import RLModule

from genlab.rl.evaluation import env_spaces, module_policy, random_return, run_episodes

DEMOS_FILE = "demos.parquet"
META_FILE = "meta.json"
RANDOM_EPISODES = 20
"""Episodes of uniform random actions behind ``meta.json``'s ``random_return``."""


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
        episodes = run_episodes(module_policy(module, act_space), env_id, n_trajectories, seed)
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


def _record_hint(env_id: str) -> str:
    return f"record them with `genlab expert <spec>` for {env_id} (the expert specs: sweeps/gail/*_expert.yaml)"


def read_meta(path: str | Path, env_id: str, *, num_trajectories: int | None = None) -> dict[str, Any]:
    """The ``meta.json`` of the demonstrations at ``path``, checked for use on ``env_id`` (transitions unread).

    Raises ``FileNotFoundError`` naming the missing file; ``ValueError`` when ``env_id``'s spaces differ from the
    recorded ones, or when more trajectories are asked for than were recorded.
    """
    root = demos_dir(path)
    for name in (DEMOS_FILE, META_FILE):
        if not (root / name).is_file():
            raise FileNotFoundError(f"no demonstrations at {root}: {root / name} is missing; {_record_hint(env_id)}")
    meta = json.loads((root / META_FILE).read_text())
    obs_space, act_space = env_spaces(env_id)
    recorded = (space_from_dict(meta["observation_space_spec"]), space_from_dict(meta["action_space_spec"]))
    if (obs_space, act_space) != recorded:
        raise ValueError(
            f"demonstrations at {root} were recorded on {meta['env_id']} with observation space "
            f"{meta['observation_space']} and action space {meta['action_space']}, but {env_id} has "
            f"observation space {obs_space!r} and action space {act_space!r}; {_record_hint(env_id)}"
        )
    if num_trajectories is not None and num_trajectories > meta["n_trajectories"]:
        raise ValueError(f"asked for {num_trajectories} trajectories but {root} holds {meta['n_trajectories']}; "
                         f"ask for 1..{meta['n_trajectories']} or record more")
    return meta


def demos_dir(path: str | Path) -> Path:
    """The folder of a recording, given the folder or the ``demos.parquet`` in it."""
    root = Path(path)
    return root.parent if root.suffix == ".parquet" else root


def load_demos(path: str | Path, env_id: str, *, num_trajectories: int | None = None) -> Demos:
    """Read ``record_demos`` output (its folder, or the ``demos.parquet`` in it) for use on ``env_id``.

    Checks as :func:`read_meta` does; ``num_trajectories`` keeps the first k episodes.
    """
    meta = read_meta(path, env_id, num_trajectories=num_trajectories)
    df = pd.read_parquet(demos_dir(path) / DEMOS_FILE)
    if num_trajectories is not None:
        df = df[df["eps_id"].isin(df["eps_id"].unique()[:num_trajectories])]
    if isinstance(env_spaces(env_id)[1], gym.spaces.Discrete):
        actions = df["actions"].to_numpy(dtype=np.int64)
    else:
        actions = np.stack(df["actions"].to_numpy()).astype(np.float32)
    return Demos(
        obs=np.stack(df["obs"].to_numpy()).astype(np.float32),
        actions=actions,
        eps_id=df["eps_id"].to_numpy(dtype=np.int64),
        meta=meta,
    )


def module_space_demos(path: str | Path, env_id: str, num_trajectories: int | None, workdir: Path) -> Path:
    """The first ``num_trajectories`` demonstrations as a parquet file for RLlib's offline input (BC).

    The demos store env actions; an RLModule under ``normalize_actions=True`` acts in [-1, 1] for a
    bounded Box, so the actions are mapped back into that space (the inverse of ``to_env_actions``).
    """
    demos = load_demos(path, env_id, num_trajectories=num_trajectories)  # checks spaces and counts
    df = pd.read_parquet(demos_dir(path) / DEMOS_FILE)
    df = df[df["eps_id"].isin(set(demos.eps_id.tolist()))].copy()
    _, space = env_spaces(env_id)
    if isinstance(space, gym.spaces.Box) and space.is_bounded():
        low, high = space.low.astype(np.float32), space.high.astype(np.float32)
        df["actions"] = [list(2.0 * (np.asarray(a, np.float32) - low) / (high - low) - 1.0) for a in df["actions"]]
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / f"demos_{num_trajectories or 'all'}.parquet"
    df.to_parquet(out)
    return out
