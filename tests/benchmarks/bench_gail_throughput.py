"""Benchmark: env steps per second of GAIL against plain PPO in the same config, side by side in one run.

Both are built by ``genlab.rl.make_ppo_config`` with the same env, envs, batch, minibatch, epochs and
network; GAIL adds its discriminator (trained ``disc_steps`` minibatches per iteration) and the reward
connector. Iterations alternate between the two so that machine noise hits both alike.

    .venv/bin/python tests/benchmarks/bench_gail_throughput.py --demos results/experts/cartpole [--iterations 5]
"""

from __future__ import annotations

import argparse
import time

import genlab
from genlab import rl


def main() -> None:
    import ray

    from algorithms.gail.algorithm import GAILConfig
    from algorithms.gail.config import GAILHparams

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--demos", required=True, help="folder written by genlab expert for --env")
    p.add_argument("--iterations", type=int, default=5, help="timed iterations of each (after one warm-up)")
    args = p.parse_args()

    hp = GAILHparams(train_batch_size=2000, minibatch_size=500, num_epochs=6, policy_hiddens=[64, 64])
    ppo = hp.ppo_overrides()
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": genlab.RAY_ENV_VARS})
    try:
        algos = {
            "PPO": rl.make_ppo_config(args.env, **ppo).build_algo(),
            "GAIL": rl.make_ppo_config(args.env, config_cls=GAILConfig, **ppo).apply_hparams(hp)
            .training(demos_path=args.demos).build_algo(),
        }
        steps = {k: 0 for k in algos}
        seconds = {k: 0.0 for k in algos}
        for algo in algos.values():  # warm-up
            algo.train()
        for _ in range(args.iterations):
            for name, algo in algos.items():
                t0 = time.perf_counter()
                result = algo.train()
                seconds[name] += time.perf_counter() - t0
                steps[name] += result["env_runners"]["num_env_steps_sampled"]
        for algo in algos.values():
            algo.stop()
    finally:
        ray.shutdown()
    rate = {k: steps[k] / seconds[k] for k in algos}
    print(f"\n{args.env}, batch {hp.train_batch_size}, minibatch {hp.minibatch_size}, {hp.num_epochs} epochs, "
          f"{args.iterations} timed iterations each (alternating):")
    for k in algos:
        print(f"  {k:5s} {rate[k]:8.0f} env steps/s")
    print(f"  ratio GAIL/PPO {rate['GAIL'] / rate['PPO']:.3f}")


if __name__ == "__main__":
    main()
