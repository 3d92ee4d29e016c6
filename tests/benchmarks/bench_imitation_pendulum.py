"""The peer, beside genlab: HumanCompatibleAI `imitation`'s GAIL on Pendulum-v1 from the same demonstrations.

Prints the same table as bench_gail_pendulum.py (env steps, wall and CPU seconds to the first greedy normalized
score >= 0.9, whether every later evaluation stayed there), so the two can be run side by side on one machine.
Same task, same experts and demonstrations (each seed's ``seed<N>/demos`` as bench_gail_pendulum.py caches them;
the first 10 trajectories), same evaluation: after every round, 10 greedy episodes on sub-envs seeded
``seed + 10000 + i``, normalized by the recording's random and expert returns.

imitation's setup is its documented one with rl-baselines3-zoo's tuned PPO for Pendulum-v1: SB3 PPO (4 envs x 1024
steps per round, minibatch 64, 10 epochs, gamma 0.9, GAE 0.95, lr 1e-3, gSDE resampled every 4 steps), a
BasicRewardNet with RunningNorm on its inputs wrapped in a NormalizedRewardNet (imitation's scripts' default),
1024 expert pairs per D batch and 8 D updates per round.

imitation 1.0.1 needs gymnasium 0.29 (genlab pins 1.x), so it runs in a virtual environment of its own and does
not import genlab:

    python3 -m venv /tmp/imit
    /tmp/imit/bin/pip install imitation==1.0.1 stable-baselines3==2.2.1 torch==2.14.1
    /tmp/imit/bin/python tests/benchmarks/bench_imitation_pendulum.py --experts /tmp/genlab-pendulum-experts \
        [--seeds 0 1 2] [--budget-steps 150000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from reach_and_hold import print_table, summarize  # tests/benchmarks/, beside this file

ENV = "Pendulum-v1"
EVAL_EPISODES = 10
N_ENVS, N_STEPS = 4, 1024


def load_trajectories(demos: Path, n: int):
    """The first ``n`` recorded episodes as imitation Trajectories (obs has one more row than actions)."""
    from imitation.data.types import Trajectory

    df = pd.read_parquet(demos / "demos.parquet")
    out = []
    for eps_id in df["eps_id"].unique()[:n]:
        ep = df[df["eps_id"] == eps_id].sort_values("t")
        obs = np.stack(ep["obs"].to_numpy()).astype(np.float32)
        last = np.asarray(ep["new_obs"].iloc[-1], dtype=np.float32)[None]
        acts = np.stack(ep["actions"].to_numpy()).astype(np.float32)
        out.append(Trajectory(obs=np.concatenate([obs, last]), acts=acts, infos=None, terminal=True))
    return out


def greedy_score(policy, seed: int, meta: dict) -> float:
    """Mean return of 10 greedy episodes, one per env seeded seed + i, normalized: random 0, expert 1."""
    returns = []
    for i in range(EVAL_EPISODES):
        env = gym.make(ENV)
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            action, _ = policy.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        env.close()
        returns.append(total)
    mean = sum(returns) / len(returns)
    return (mean - meta["random_return"]) / (meta["expert_return"] - meta["random_return"])


def run_seed(seed: int, demos: Path, budget_steps: int, num_trajectories: int) -> list[dict]:
    from imitation.algorithms.adversarial.gail import GAIL
    from imitation.data.wrappers import RolloutInfoWrapper
    from imitation.rewards.reward_nets import BasicRewardNet, NormalizedRewardNet
    from imitation.util import logger as imit_logger
    from imitation.util.networks import RunningNorm
    from imitation.util.util import make_vec_env
    from stable_baselines3 import PPO

    meta = json.loads((demos / "meta.json").read_text())
    wall0, cpu0 = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(seed)
    venv = make_vec_env(ENV, rng=rng, n_envs=N_ENVS, post_wrappers=[lambda env, _: RolloutInfoWrapper(env)])
    learner = PPO("MlpPolicy", venv, n_steps=N_STEPS, batch_size=64, gamma=0.9, gae_lambda=0.95, n_epochs=10,
                  learning_rate=1e-3, clip_range=0.2, ent_coef=0.0, use_sde=True, sde_sample_freq=4, seed=seed,
                  device="cpu")
    reward_net = NormalizedRewardNet(
        BasicRewardNet(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm), RunningNorm)
    trainer = GAIL(demonstrations=load_trajectories(demos, num_trajectories), demo_batch_size=1024,
                   gen_replay_buffer_capacity=N_ENVS * N_STEPS, n_disc_updates_per_round=8, venv=venv,
                   gen_algo=learner, reward_net=reward_net, allow_variable_horizon=False,
                   custom_logger=imit_logger.configure(format_strs=[]))  # its per-round tables: only ours print
    curve = []

    def evaluate(round_num: int) -> None:
        score = greedy_score(learner, seed + 10_000, meta)
        curve.append({"iteration": round_num + 1, "env_steps": (round_num + 1) * N_ENVS * N_STEPS,
                      "wall_s": time.perf_counter() - wall0, "cpu_s": time.process_time() - cpu0, "score": score})
        print(f"[imitation] seed {seed} round {round_num + 1:3d} steps {curve[-1]['env_steps']:6d} "
              f"wall {curve[-1]['wall_s']:6.1f} s score {score:.3f}", flush=True)

    trainer.train(budget_steps, callback=evaluate)
    venv.close()
    return curve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experts", required=True, help="bench_gail_pendulum.py's --experts folder (seed<N>/demos)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="default: every seed bench_gail_pendulum.py cached an expert for in --experts")
    p.add_argument("--budget-steps", type=int, default=150_000)
    p.add_argument("--num-trajectories", type=int, default=10)
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)

    seeds = args.seeds or sorted(int(d.name.removeprefix("seed")) for d in Path(args.experts).glob("seed*")
                                 if (d / "demos").is_dir())
    print(f"[imitation] seeds: {seeds}", flush=True)
    rows, curves = [], {}
    for seed in seeds:
        # Round up to whole rounds, as genlab's budget is whole iterations (74 x 2048 = 37 x 4096 = 151552).
        budget = math.ceil(args.budget_steps / (N_ENVS * N_STEPS)) * N_ENVS * N_STEPS
        curve = run_seed(seed, Path(args.experts) / f"seed{seed}" / "demos", budget, args.num_trajectories)
        curves[f"imitation/seed{seed}"] = curve
        rows.append({"kind": "imitation", "seed": seed, **summarize(curve, args.threshold)})

    print_table(f"{ENV}, imitation 1.0.1 GAIL", rows, args.threshold)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "summary": rows, "curves": curves}, indent=1))


if __name__ == "__main__":
    main()
