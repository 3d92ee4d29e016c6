"""Benchmark: env steps per second of VIME against plain PPO in the same config, side by side in one run.

Both are built from one VIME run spec (default: sweeps/vime/mountaincar_weak_vime.yaml, the study's VIME arm):
``genlab.rl.ppo.make_ppo_config`` with its env, envs, batch, minibatch, epochs and network, once as plain RLlib PPO
and once as VIME with the spec's hyperparameters. VIME adds its Bayesian dynamics model (``bnn_updates`` ELBO steps
per iteration on replay-pool batches, not even run on the other minibatches), the replay pool, and the information
gain of every transition of the train batch (batched: one forward and one backward pass per chunk of rows,
``BayesianDynamics.per_row_gradients``). Iterations alternate between the two so that machine noise hits both alike.
Goal: VIME at >= 0.8x PPO's env steps/s.

    .venv/bin/python tests/benchmarks/bench_vime_throughput.py [--spec sweeps/vime/mountaincar_weak_vime.yaml]
        [--iterations 5] [--set hparams.bnn_updates=40 ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import genlab
from genlab.rl.ppo import make_ppo_config

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    import ray

    from algorithms.vime.rllib import VIMEConfig
    from genlab import config as gconfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(ROOT / "sweeps" / "vime" / "mountaincar_weak_vime.yaml"))
    p.add_argument("--iterations", type=int, default=5, help="timed iterations of each (after one warm-up)")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="override of the spec, as --set")
    args = p.parse_args()

    spec = gconfig.load_run(args.spec, args.overrides)
    env, num_envs, ppo, hp = spec.env.id, spec.env.num_envs, spec.ppo, spec.hparams_obj()
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": genlab.RAY_ENV_VARS})
    try:
        algos = {
            "PPO": make_ppo_config(env, ppo, num_envs=num_envs, seed=spec.seed).build_algo(),
            "VIME": make_ppo_config(env, ppo, num_envs=num_envs, seed=spec.seed, config_cls=VIMEConfig)
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
    print(f"\n{env} ({args.spec}), {num_envs} envs, batch {ppo.train_batch_size}, minibatch {ppo.minibatch_size}, "
          f"{ppo.num_epochs} epochs, VIME bnn_updates {hp.bnn_updates} x {hp.bnn_batch_size}, "
          f"{hp.bnn_samples} draws of θ, IG {hp.ig_method}; {args.iterations} timed iterations each (alternating):")
    for k in algos:
        print(f"  {k:5s} {rate[k]:8.0f} env steps/s")
    print(f"  ratio VIME/PPO {rate['VIME'] / rate['PPO']:.3f}")


if __name__ == "__main__":
    main()
