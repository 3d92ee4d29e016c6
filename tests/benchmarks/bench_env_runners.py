"""Benchmark: env steps per second of PPO with 0, 1 and 2 remote env runners, side by side in one run.

A sampling-heavy MuJoCo config (HalfCheetah-v5, 8000-step batches in minibatches of 2000, 2 epochs, [64, 64] nets),
built by ``genlab.rl.make_ppo_config`` with the layout a run spec's ``rl:`` section gives (``genlab.context.
ScaleContext``): 0 runners (sampling in this process), or 1, 2, ... remote ones. Every layout steps the same number of
env copies in all (``--envs``, split evenly between the remote runners), so each iteration samples and learns the
same. All layouts are built at once (remote runners at ``--cpus-per-runner`` CPUs each, so they fit the local Ray
together) and their iterations alternate, so that machine noise hits all alike. Reported: env steps/s over whole
iterations (sampling and learning, wall time) and each layout's ratio to the first (0 runners).

    .venv/bin/python tests/benchmarks/bench_env_runners.py [--runners 0 1 2] [--iterations 4] [--num-cpus 2]

On a GPU machine with more cores: ``--runners 0 1 2 4 8 --num-cpus 16 --cpus-per-runner 1 --gpu-learner``.
"""

from __future__ import annotations

import argparse
import time

import genlab
from genlab.context import ScaleContext
from genlab.rl.hparams import PPOHparams
from genlab.rl.ppo import make_ppo_config


def main() -> None:
    import ray
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--runners", type=int, nargs="+", default=[0, 1, 2], help="remote env runner counts to compare")
    p.add_argument("--envs", type=int, default=16, help="env copies in all, split between a layout's runners")
    p.add_argument("--iterations", type=int, default=4, help="timed iterations of each layout (after one warm-up)")
    p.add_argument("--num-cpus", type=float, default=2)
    p.add_argument("--cpus-per-runner", type=float, default=None,
                   help="default: what lets every layout's runners fit --num-cpus at once")
    p.add_argument("--gpu-learner", action="store_true", help="the (local) learner on a GPU")
    args = p.parse_args()

    ppo = PPOHparams(train_batch_size=8000, minibatch_size=2000, num_epochs=2, hiddens=[64, 64])
    remote = sum(args.runners)
    cpus_per_runner = args.cpus_per_runner or min(1.0, args.num_cpus / max(1, remote))
    ray.init(address="local", num_cpus=args.num_cpus, num_gpus=1 if args.gpu_learner else 0,
             include_dashboard=False, runtime_env={"env_vars": genlab.RAY_ENV_VARS})
    try:
        algos = {}
        for n in args.runners:
            scale = ScaleContext(env_runners=n, cpus_per_env_runner=cpus_per_runner,
                                 gpus_per_learner=1 if args.gpu_learner else 0)
            algos[n] = make_ppo_config(args.env, ppo, num_envs=args.envs // max(1, n), seed=0,
                                       scale=scale).build_algo()
        steps, seconds = dict.fromkeys(algos, 0), dict.fromkeys(algos, 0.0)
        for n, algo in algos.items():  # warm-up
            algo.train()
            print(f"[bench] warm-up done: {n} runners", flush=True)
        for i in range(args.iterations):
            for n, algo in algos.items():
                t0 = time.perf_counter()
                result = algo.train()
                seconds[n] += time.perf_counter() - t0
                steps[n] += result[ENV_RUNNER_RESULTS]["num_env_steps_sampled"]
            print(f"[bench] iteration {i + 1}/{args.iterations} of each", flush=True)
        for algo in algos.values():
            algo.stop()
    finally:
        ray.shutdown()
    rate = {n: steps[n] / seconds[n] for n in algos}
    base = args.runners[0]
    print(f"\n{args.env} PPO, {args.envs} env copies per layout, batch {ppo.train_batch_size}, minibatch "
          f"{ppo.minibatch_size}, {ppo.num_epochs} epochs, {args.iterations} timed iterations each (alternating), "
          f"{args.num_cpus:g} CPUs, {cpus_per_runner:g} CPU per remote runner"
          + (", learner on a GPU" if args.gpu_learner else "") + ":")
    print(f"  {'runners':>7s} {'envs each':>9s} {'env steps/s':>11s} {'ratio':>6s}")
    for n in algos:
        print(f"  {n:7d} {args.envs // max(1, n):9d} {rate[n]:11.0f} {rate[n] / rate[base]:6.2f}")


if __name__ == "__main__":
    main()
