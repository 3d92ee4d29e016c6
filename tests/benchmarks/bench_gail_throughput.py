"""Benchmark: env steps per second of GAIL against plain PPO in the same config, side by side in one run.

Both are built by ``genlab.rl.ppo.make_ppo_config`` with the same env, envs, batch, minibatch, epochs and
network; GAIL adds its discriminator (trained on ``disc_steps`` minibatches per iteration, and not even run on
the others) and the reward piece. Iterations alternate between them so that machine noise hits all alike.
Goal: GAIL at >= 0.8x PPO's env steps/s. GAIL's learner runs PPO's epochs in its own minibatch loop
(``genlab.rl.minibatches.MinibatchLoop``; RLlib's plain PPO does not), so a third run, "PPO+loop", is PPO with the
same loop: GAIL/PPO+loop is what the discriminator costs, GAIL/PPO what GAIL costs against RLlib's PPO. Without
``--demos`` it records demonstrations of a briefly trained PPO policy first (their quality does not matter for
speed). ``--spec`` takes the env, the ppo section and GAIL's
hparams from a run spec instead (e.g. the shipped sweeps/gail/pendulum.yaml: D on 40 of the 640 minibatches).

    .venv/bin/python tests/benchmarks/bench_gail_throughput.py [--demos results/experts/cartpole] [--iterations 5]
    .venv/bin/python tests/benchmarks/bench_gail_throughput.py --spec sweeps/gail/pendulum.yaml
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import genlab
from genlab.rl.hparams import PPOHparams
from genlab.rl.ppo import make_ppo_config


def quick_demos(env: str, out: Path) -> Path:
    from genlab.rl.demos import record_demos
    from genlab.runners.rl import train_expert

    trained = train_expert(env, out / "expert", target_return=float("inf"), max_iterations=2, seed=0)
    return record_demos(trained.module_path, env, 5, out / "demos", seed=0)


def main() -> None:
    import ray
    from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner

    from algorithms.gail.hparams import GAILHparams
    from algorithms.gail.rllib import GAILConfig
    from genlab.rl.minibatches import MinibatchLoop

    class LoopPPOLearner(MinibatchLoop, PPOTorchLearner):
        """RLlib's PPO learner with genlab's minibatch loop (GAIL's learner has it)."""

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--demos", default=None, help="folder written by genlab expert for --env (default: record some)")
    p.add_argument("--iterations", type=int, default=5, help="timed iterations of each (after one warm-up)")
    p.add_argument("--disc-steps", type=int, default=None, help="default: the spec's, else GAILHparams'")
    p.add_argument("--spec", default=None, help="take env, ppo and hparams from this GAIL run spec")
    args = p.parse_args()

    if args.spec:
        from genlab import config

        spec = config.load_run(args.spec, ["demos.path=unused", "ppo.lr_decay=false"])
        args.env, ppo, hp = spec.env.id, spec.ppo, GAILHparams.model_validate(spec.hparams)
    else:
        ppo, hp = PPOHparams(train_batch_size=2000, minibatch_size=500, num_epochs=6, hiddens=[64, 64]), GAILHparams()
    if args.disc_steps is not None:
        hp = hp.model_copy(update={"disc_steps": args.disc_steps})
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": genlab.RAY_ENV_VARS})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            demos = args.demos or str(quick_demos(args.env, Path(tmp)))
            algos = {
                "PPO": make_ppo_config(args.env, ppo).build_algo(),
                "PPO+loop": make_ppo_config(args.env, ppo).learners(learner_class=LoopPPOLearner).build_algo(),
                "GAIL": make_ppo_config(args.env, ppo, config_cls=GAILConfig)
                .training(**hp.model_dump(), demos_path=demos).build_algo(),
            }
            steps = dict.fromkeys(algos, 0)
            seconds = dict.fromkeys(algos, 0.0)
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
    print(f"\n{args.env}, batch {ppo.train_batch_size}, minibatch {ppo.minibatch_size}, {ppo.num_epochs} epochs, "
          f"GAIL disc_steps {hp.disc_steps} (of {ppo.minibatches_per_iteration()} minibatches), disc_minibatch_size "
          f"{hp.disc_minibatch_size}, disc_replay {hp.disc_replay}, {args.iterations} timed iterations each "
          "(alternating):")
    for k in algos:
        print(f"  {k:8s} {rate[k]:8.0f} env steps/s")
    print(f"  ratio GAIL/PPO {rate['GAIL'] / rate['PPO']:.3f} (RLlib's PPO), GAIL/PPO+loop "
          f"{rate['GAIL'] / rate['PPO+loop']:.3f} (the same minibatch loop)")


if __name__ == "__main__":
    main()
