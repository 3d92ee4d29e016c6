"""Exploration on sparse MountainCar: the first iteration at which VIME, and plain PPO with the same settings and
seeds, reach the goal (the table in docs/vime.md). Each run is one RLlib algorithm trained iteration by
iteration; a run stops at its first goal (PPO's too) or at the budget.

    .venv/bin/python tests/benchmarks/vime_exploration.py --seeds 0,1,2,3,4 --budget 30 [--method vime|ppo|both]

Settings: those of tests/test_vime.py's learning test (``LEARN_PPO``; VIME η 0.1, BNN lr 3e-3). About 4-15 s per
iteration on 2 shared cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the learning test's settings and helper


def main() -> None:
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from test_vime import LEARN_PPO, first_goal_iteration

    import genlab.envs
    from algorithms.vime.rllib import VIMEConfig
    from genlab.rl.ppo import make_ppo_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--budget", type=int, default=30, help="iterations of 4000 env steps")
    p.add_argument("--method", choices=["vime", "ppo", "both"], default="both")
    args = p.parse_args()

    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": genlab.RAY_ENV_VARS})
    try:
        for seed in map(int, args.seeds.split(",")):
            for method in ("vime", "ppo") if args.method == "both" else (args.method,):
                cls = VIMEConfig if method == "vime" else PPOConfig
                config = make_ppo_config(genlab.envs.SPARSE_MOUNTAIN_CAR, LEARN_PPO, num_envs=16, seed=seed,
                                         config_cls=cls)
                if method == "vime":
                    config = config.training(eta=0.1, bnn_lr=3e-3)
                t0 = time.perf_counter()
                first = first_goal_iteration(config, args.budget)
                print(f"{method:4s} seed {seed}: first goal at iteration {first} (budget {args.budget}), "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
