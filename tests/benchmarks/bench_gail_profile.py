"""Benchmark: where a GAIL iteration's time goes, part by part, on a run spec (default: the shipped Pendulum spec).

Builds GAIL from the spec, as bench_gail_pendulum.py does (its cached expert for ``--seed``), and times each part of
each iteration by wrapping the call that does it:

- sampling: the env runner's ``sample()`` (env steps, the policy's forward passes, RLlib's episode bookkeeping);
- learner connectors: the learner's connector pipeline on the episodes (the train batch; of it, D's reward piece
  and GAE are timed on their own);
- policy SGD: the PPO minibatch updates without a D step (forward, loss, backward, Adam);
- D steps: the extra time of the minibatch updates that also take a D step (D's forward, loss, R1, backward, Adam),
  i.e. their time minus as many plain updates;
- minibatch loop: the rest of ``Learner.update`` (slicing the batch into minibatches, RLlib's per-minibatch metrics;
  ``--rllib-loop`` runs RLlib's own iteration instead of genlab's, ``genlab.rl.minibatches``);
- weight sync and the rest of ``Algorithm.train`` (results, metrics);
- evaluation: the runner's every-iteration greedy evaluation (``genlab.rl.evaluation.rollout``, 10 episodes).

It prints seconds per iteration (mean over ``--iterations`` after ``--warmup``) and the share of each.

    OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/bench_gail_profile.py [--spec sweeps/gail/pendulum.yaml]
        [--seed 0] [--iterations 10] [--set ppo.num_epochs=10 ...] [--rllib-loop]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from bench_gail_pendulum import ENV, ROOT, expert_demos  # tests/benchmarks/, beside this file

import genlab


class Timers:
    """Seconds per named part, accumulated by wrapping callables."""

    def __init__(self) -> None:
        self.s: dict[str, float] = defaultdict(float)

    def wrap(self, obj, attr: str, name: str) -> None:
        """Time ``obj.attr(...)`` under ``name`` (a dunder such as ``__call__`` is wrapped on a subclass of obj's)."""
        fn = getattr(obj, attr)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args[1:] if attr.startswith("__") else args, **kwargs)
            finally:
                self.s[name] += time.perf_counter() - t0

        if attr.startswith("__"):
            obj.__class__ = type(type(obj).__name__, (type(obj),), {attr: timed})
        else:
            setattr(obj, attr, timed)


class MinibatchSpans:
    """Each minibatch update's wall time, from the policy's forward pass to the optimizer step, split by whether it
    also took a D step (its loss dict holds the auxiliary module's loss). The value forward pass of GAE does not go
    through the policy's ``_forward_train``."""

    def __init__(self, learner, aux_id: str) -> None:
        from ray.rllib.core import DEFAULT_MODULE_ID

        self.plain: list[float] = []
        self.with_aux: list[float] = []
        self.t0 = None
        self.aux = False
        policy = learner.module[DEFAULT_MODULE_ID]
        forward, losses = policy._forward_train, learner.compute_losses

        def forward_train(*args, **kwargs):
            self.t0 = time.perf_counter()
            return forward(*args, **kwargs)

        def compute_losses(*args, **kwargs):
            out = losses(*args, **kwargs)
            self.aux = aux_id in out
            return out

        def ends(fn):
            def timed(*args, **kwargs):
                out = fn(*args, **kwargs)
                if self.t0 is not None:  # one span per forward pass (genlab's step may call apply_gradients)
                    (self.with_aux if self.aux else self.plain).append(time.perf_counter() - self.t0)
                    self.t0 = None
                return out
            return timed

        policy._forward_train, learner.compute_losses = forward_train, compute_losses
        learner.apply_gradients = ends(learner.apply_gradients)
        if hasattr(learner, "step"):  # genlab's loop (genlab.rl.minibatches) steps the optimizers itself
            learner.step = ends(learner.step)

    def clear(self) -> None:
        self.plain.clear()
        self.with_aux.clear()


def main() -> None:
    import ray

    from algorithms.gail.hparams import DISC_ID
    from genlab import config, ray_compat, registry
    from genlab.rl.evaluation import EVAL_EPISODES, rollout

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(ROOT / "sweeps/gail/pendulum.yaml"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=10, help="timed iterations (after --warmup)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--experts", default=str(Path(tempfile.gettempdir()) / "genlab-pendulum-experts"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--rllib-loop", action="store_true",
                   help="RLlib's own minibatch iteration instead of genlab's (genlab.rl.minibatches), to compare")
    args = p.parse_args()
    torch.set_num_threads(1)

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR",
             runtime_env={"env_vars": genlab.RAY_ENV_VARS})
    try:
        demos = expert_demos(args.seed, Path(args.experts))
        spec = config.load_run(args.spec, [f"seed={args.seed}", f"demos.path={demos}", *args.overrides])
        with tempfile.TemporaryDirectory() as workdir:
            algo = registry.rllib_config(spec.algorithm, spec.hparams_obj(), spec.context(Path(workdir))).build_algo()
            learner = ray_compat.local_learner(algo)
            if args.rllib_loop:
                learner.minibatch_loop = False
            loop = getattr(learner, "minibatch_loop", False)
            t = Timers()
            t.wrap(algo, "train", "train")
            t.wrap(algo.env_runner, "sample", "sampling")
            t.wrap(learner, "update", "learner update")
            pipeline = ray_compat.learner_connector(learner)
            t.wrap(pipeline, "__call__", "learner connectors")
            for piece in pipeline.connectors:
                if type(piece).__name__ in ("ModuleReward", "GeneralAdvantageEstimation"):
                    t.wrap(piece, "__call__", type(piece).__name__)
            spans = MinibatchSpans(learner, DISC_ID)
            eval_s = 0.0
            for it in range(args.warmup + args.iterations):
                if it == args.warmup:
                    t.s.clear()
                    spans.clear()
                    eval_s = 0.0
                algo.train()
                t0 = time.perf_counter()
                rollout(algo.get_module(), ENV, EVAL_EPISODES, seed=spec.seed + 10_000)
                eval_s += time.perf_counter() - t0
                print(f"[profile] iteration {it + 1}: {t.s['train']:.1f} s in train() so far", flush=True)
            algo.stop()
    finally:
        ray.shutdown()

    n = args.iterations
    plain = sum(spans.plain) / max(len(spans.plain), 1)
    aux_extra = sum(spans.with_aux) - plain * len(spans.with_aux)
    updates = sum(spans.plain) + sum(spans.with_aux)
    parts = {
        "sampling (env runner)": t.s["sampling"],
        "learner connectors (batch, D's reward, GAE)": t.s["learner connectors"],
        "  of which D's reward piece": t.s["ModuleReward"],
        "  of which GAE (value forward pass)": t.s["GeneralAdvantageEstimation"],
        "policy SGD (forward, loss, backward, Adam)": updates - aux_extra,
        "D steps (extra time of their updates)": aux_extra,
        "minibatch loop (slicing, per-step metrics)": t.s["learner update"] - t.s["learner connectors"] - updates,
        "rest of train() (weight sync, results)": t.s["train"] - t.s["sampling"] - t.s["learner update"],
        "evaluation (10 greedy episodes)": eval_s,
    }
    total = t.s["train"] + eval_s
    count = len(spans.plain) + len(spans.with_aux)
    print(f"\n{args.spec}, overrides {args.overrides or 'none'}, seed {args.seed}, "
          f"{'genlab' if loop else 'RLlib'}'s minibatch loop: {n} iterations after {args.warmup} warm-up; "
          f"{count / n:.0f} minibatch updates per iteration, {len(spans.with_aux) / n:.0f} with a D step")
    print(f"  {'part':44s} {'s/iter':>7s} {'share':>6s}")
    for name, s in parts.items():
        print(f"  {name:44s} {s / n:7.3f} {s / total:6.1%}")
    print(f"  {'total':44s} {total / n:7.3f}")
    with_aux = sum(spans.with_aux) / max(len(spans.with_aux), 1)
    print(f"  one minibatch update: {plain * 1e3:.2f} ms, {with_aux * 1e3:.2f} ms with a D step")


if __name__ == "__main__":
    main()
