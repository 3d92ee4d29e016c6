"""Exploration on sparse MountainCar: the highest car position VIME, and plain PPO with the same settings and
seeds, reach within a budget of iterations, and the first iteration at the goal (the tables in docs/vime.md). Each
run is one RLlib algorithm trained iteration by iteration for the whole budget.

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
    from test_vime import LEARN_PPO, exploration

    import genlab.envs
    from algorithms.vime.rllib import VIMEConfig
    from genlab.rl.ppo import make_ppo_config
    from genlab.studies import held_out_seeds

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default=None,
                   help="comma-separated; default: 10 held-out seeds (drawn from 1000+ by this benchmark's name)")
    p.add_argument("--budget", type=int, default=30, help="iterations of 4000 env steps")
    p.add_argument("--method", choices=["vime", "ppo", "both"], default="both")
    args = p.parse_args()

    seeds = list(map(int, args.seeds.split(","))) if args.seeds else held_out_seeds("vime-exploration", 10)
    print(f"seeds: {seeds}" + ("" if args.seeds else " (held out: the settings were chosen on seeds 0-9)"), flush=True)
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": genlab.RAY_ENV_VARS})
    try:
        for seed in seeds:
            for method in ("vime", "ppo") if args.method == "both" else (args.method,):
                cls = VIMEConfig if method == "vime" else PPOConfig
                config = make_ppo_config(genlab.envs.SPARSE_MOUNTAIN_CAR, LEARN_PPO, num_envs=16, seed=seed,
                                         config_cls=cls)
                if method == "vime":
                    config = config.training(eta=0.1, bnn_lr=3e-3)
                t0 = time.perf_counter()
                highest, first = exploration(config, args.budget)
                print(f"{method:4s} seed {seed}: highest position {highest:.2f}, first goal at iteration {first} "
                      f"(budget {args.budget}), "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
