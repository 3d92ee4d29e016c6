"""Benchmark: env steps per second of VIME against plain PPO in the same config, side by side in one run.

Both are built by ``genlab.rl.ppo.make_ppo_config`` with the same env, envs, batch, minibatch, epochs and
network; VIME adds its Bayesian dynamics model (``bnn_updates`` ELBO steps per iteration on replay-pool batches,
not even run on the other minibatches), the replay pool, and the information gain of every transition of the
train batch (batched: one forward and one backward pass per chunk of rows, ``BayesianDynamics.per_row_gradients``).
Iterations alternate between the two so that machine noise hits both alike. Goal: VIME at >= 0.7x PPO's env
steps/s.

    .venv/bin/python tests/benchmarks/bench_vime_throughput.py [--env genlab/SparseMountainCar-v0] [--iterations 5]
"""

from __future__ import annotations

import argparse
import time

import genlab
from genlab.rl.hparams import PPOHparams
from genlab.rl.ppo import make_ppo_config


def main() -> None:
    import ray

    from algorithms.vime.hparams import VIMEHparams
    from algorithms.vime.rllib import VIMEConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="genlab/SparseMountainCar-v0")
    p.add_argument("--iterations", type=int, default=5, help="timed iterations of each (after one warm-up)")
    p.add_argument("--batch", type=int, default=4000)
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--bnn-updates", type=int, default=VIMEHparams().bnn_updates)
    p.add_argument("--ig-method", default="second_order", choices=["second_order", "explicit"])
    args = p.parse_args()

    ppo = PPOHparams(train_batch_size=args.batch, minibatch_size=500, num_epochs=6, hiddens=[64, 64])
    hp = VIMEHparams(eta=0.01, bnn_updates=args.bnn_updates, ig_method=args.ig_method)
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": genlab.RAY_ENV_VARS})
    try:
        algos = {
            "PPO": make_ppo_config(args.env, ppo, num_envs=args.num_envs).build_algo(),
            "VIME": make_ppo_config(args.env, ppo, num_envs=args.num_envs, config_cls=VIMEConfig)
            .training(**hp.model_dump()).build_algo(),
        }
        steps = dict.fromkeys(algos, 0)
        seconds = dict.fromkeys(algos, 0.0)
        for algo in algos.values():  # warm-up (VIME's first iteration has no bonus yet: the pool is empty)
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
    print(f"\n{args.env}, {args.num_envs} envs, batch {ppo.train_batch_size}, minibatch {ppo.minibatch_size}, "
          f"{ppo.num_epochs} epochs, VIME bnn_updates {hp.bnn_updates} x {hp.bnn_batch_size}, "
          f"{hp.bnn_samples} draws of θ, IG {hp.ig_method}; {args.iterations} timed iterations each (alternating):")
    for k in algos:
        print(f"  {k:5s} {rate[k]:8.0f} env steps/s")
    print(f"  ratio VIME/PPO {rate['VIME'] / rate['PPO']:.3f}")


if __name__ == "__main__":
    main()
