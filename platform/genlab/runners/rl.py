"""RL runs: an RLlib algorithm iteration by iteration with true-return evaluation, and PPO experts.

``fit(spec)`` builds the method's RLlib config through the registry (from the run's context), trains
``budget.epochs`` iterations, rolls the greedy policy out on the real env every ``budget.eval_every``
(``eval/true_return``; with demonstrations also ``eval/normalized_score``: random = 0, expert = 1), checkpoints
and logs to MLflow. ``expert(spec)`` trains PPO to a target return and records demonstrations (``genlab expert``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule
from ray.rllib.core.rl_module.rl_module import RLModule

from genlab import outbox, ray_compat, registry, runlog, tracking
from genlab.errors import check_finite
from genlab.rl import metrics as rl_metrics
from genlab.rl.demos import DEMOS_FILE, META_FILE, demos_dir, read_meta, record_demos
from genlab.rl.evaluation import EVAL_EPISODES, GreedyPolicy, env_spaces, normalized_score, rollout
from genlab.rl.hparams import PPOHparams
from genlab.rl.ppo import make_ppo_config
from genlab.runners.result import RunResult, latest_evaluation
from genlab.runners.storage import CHECKPOINT_ARTIFACT, RL_STATE

MODULE_SUBDIR = Path(COMPONENT_LEARNER_GROUP, COMPONENT_LEARNER, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID)
"""Where ``algo.save_to_path(dir)`` puts the policy RLModule inside an algorithm checkpoint."""


def _policy_module(algo) -> RLModule:
    """The policy to evaluate: the env runner's, or for offline algorithms (BC, no env runner) the learner's."""
    if algo.env_runner_group is not None and algo.env_runner is not None:
        return algo.get_module()
    return ray_compat.local_learner_module(algo, DEFAULT_MODULE_ID)


def fit(spec, *, storage_path: str | Path, run_key: str | None = None, mlflow_tags: dict | None = None,
        in_tune: bool = False, resume: bool = False) -> RunResult:
    """Train an RL spec (GAIL, BC, ...) iteration by iteration, evaluating the true return; MLflow-tracked."""
    storage = Path(storage_path).resolve()
    workdir = storage / (run_key or spec.name)
    uri = tracking.resolve_uri(spec.tracking.uri)
    meta = read_meta(spec.demos.path, spec.env.id) if spec.demos else {}
    with runlog.run_scope(uri, spec.tracking.experiment, run_name=spec.name, config=spec.model_dump(mode="json"),
                            tags={tracking.TAG_RUN_KEY: str(workdir), tracking.TAG_KIND: "rl", **(mlflow_tags or {})},
                            resume_tag=(tracking.TAG_RUN_KEY, str(workdir)) if resume or in_tune else None,
                            close=not in_tune, outbox=workdir / outbox.OUTBOX,
                            budget_s=spec.tracking.outage_budget_s) as run:
        # The RLlib algorithm runs in this process (with rl: defaults, its learner and env runner too).
        run.tags(tracking.placement())
        algo = registry.rllib_config(spec.algorithm, spec.hparams_obj(), spec.context(workdir)).build_algo()
        ckpt = workdir / "checkpoint"
        history: list[dict] = []
        start = 1
        if (ckpt / RL_STATE).exists():
            algo.restore_from_path(str(ckpt))
            state = json.loads((ckpt / RL_STATE).read_text())
            start, history = state["iteration"] + 1, state["history"]
        else:
            _log_datasets(run, spec, meta)
        try:
            with run.system_metrics(spec.tracking.system_metrics):
                _iterations(spec, algo, run, meta, history, start, ckpt, in_tune)
        finally:
            algo.stop()
    from ray.train import Checkpoint

    return RunResult(metrics=history[-1] if history else {}, history=history, mlflow_run_id=run.run_id,
                     checkpoint=Checkpoint.from_directory(ckpt) if (ckpt / RL_STATE).exists() else None)


def _iterations(spec, algo, run: runlog.RunLogger, meta: dict, history: list[dict], start: int, ckpt: Path,
                in_tune: bool) -> None:
    """Train from iteration ``start`` to the budget: evaluate, log, checkpoint, report to Tune when in a sweep."""
    b = spec.budget
    shown = registry.progress(spec.algorithm)
    last_eval: dict[str, float] = {}
    for it in range(start, b.epochs + 1):
        t0 = time.perf_counter()
        m = rl_metrics.from_result(algo.train())
        check_finite(m, f"iteration {it}", "lower the learning rate (ppo.lr) or check the env's rewards")
        m.update({"epoch": it, "perf/iteration_s": time.perf_counter() - t0})
        evaluation = {}
        if b.eval_due(it):
            returns = evaluate(algo, spec.env.id, EVAL_EPISODES, seed=spec.seed + 10_000)
            evaluation = last_eval = {"eval/true_return": float(np.mean(returns))}
            if "expert_return" in meta:
                last_eval["eval/normalized_score"] = normalized_score(
                    last_eval["eval/true_return"], meta["random_return"], meta["expert_return"])
        # MLflow and the history have an evaluation at the iterations that made it; Tune's reports carry the latest.
        history.append({**m, **evaluation})
        run.metrics(history[-1], step=it)
        m.update(last_eval)
        print(f"[genlab] iteration {it}/{b.epochs}  " + "  ".join(f"{k}={m[k]:.4g}" for k in shown if k in m),
              flush=True)
        if b.checkpoint_due(it):
            algo.save_to_path(str(ckpt))
            (ckpt / RL_STATE).write_text(json.dumps({"iteration": it, "history": history}))
        if it == b.epochs:  # before the last report: in a sweep, Tune may end the trial right after it
            log_final(run, spec, _policy_module(algo), ckpt, history)
        if in_tune:
            from ray import tune

            tune.report(m)


def evaluate(algo, env_id: str, episodes: int, *, seed: int) -> list[float]:
    """The greedy policy's true returns over ``episodes`` episodes from ``seed``: played in this process, or with
    evaluation runners (``rl.evaluation_runners``) split between them, runner ``k`` playing its share from the seed
    this process would have given those episodes (``genlab.rl.evaluation.run_episodes`` seeds sub-env ``i`` with
    ``seed + i``), after the learners' weights reach them."""
    group = algo.eval_env_runner_group
    if group is None or group.num_remote_env_runners() == 0:
        return rollout(_policy_module(algo), env_id, episodes, seed=seed)
    group.sync_weights(from_worker_or_learner_group=algo.learner_group, inference_only=True, timeout_seconds=None)
    n = group.num_remote_env_runners()
    counts = [episodes // n + (k < episodes % n) for k in range(n)]
    starts = [sum(counts[:k]) for k in range(n)]

    def play(env_runner) -> list[float]:
        k = env_runner.worker_index - 1
        if not counts[k]:
            return []
        module = env_runner.module
        if isinstance(module, MultiRLModule):
            module = module[DEFAULT_MODULE_ID]
        return rollout(module, env_id, counts[k], seed=seed + starts[k])

    return [r for part in group.foreach_env_runner(play, local_env_runner=False) for r in part]


def log_final(run: runlog.RunLogger, spec, policy: RLModule, ckpt: Path, history: list[dict]) -> None:
    """A run's end in MLflow: learning curves, the policy's checkpoint (``checkpoint/policy``) and, with
    ``tracking.log_models``, the greedy policy as an MLflow model carrying the last evaluation's metrics."""
    run.learning_curves(history)
    run.dir(ckpt / MODULE_SUBDIR, f"{CHECKPOINT_ARTIFACT}/policy")
    if spec.tracking.log_models:
        obs_space, act_space = env_spaces(spec.env.id)
        example = torch.as_tensor(np.stack([obs_space.sample() for _ in range(4)]), dtype=torch.float32)
        epoch, evaluation = latest_evaluation(history)
        run.model("policy", GreedyPolicy(policy, act_space), example, metrics=evaluation, step=epoch)
    run.flush()  # MLflow has it all (or the run's outbox holds it) before the last report


def finalize_from_checkpoint(spec, run_dir: Path, run: runlog.RunLogger, upto: int) -> int | None:
    """Log the end of a run that was stopped (ASHA) from its checkpoint in ``run_dir``, as :func:`log_final` does at
    a run's last iteration; returns the checkpoint's iteration (None: no checkpoint). An RL run keeps one checkpoint,
    which may be an iteration past ``upto``, where Tune stopped it: the trial goes on until its next report."""
    ckpt = run_dir / "checkpoint"
    if not (ckpt / RL_STATE).is_file():
        return None
    state = json.loads((ckpt / RL_STATE).read_text())
    log_final(run, spec, RLModule.from_checkpoint(ckpt / MODULE_SUBDIR), ckpt, state["history"])
    return state["iteration"]


def _log_datasets(run: runlog.RunLogger, spec, meta: dict) -> None:
    """The env the run acts in (context "environment") and, for imitation, the demonstrations it learns from."""
    run.dataset(runlog.DatasetInfo(spec.env.id, f"gymnasium:{spec.env.id}", spec.env.id,
                                     {"num_envs": spec.env.num_envs}), "environment")
    if spec.demos is not None:
        path = demos_dir(spec.demos.path).resolve()
        digest = hashlib.sha256((path / DEMOS_FILE).read_bytes()).hexdigest()[:12]
        used = spec.demos.num_trajectories or meta["n_trajectories"]
        run.dataset(runlog.DatasetInfo(f"demos-{meta['env_id']}", str(path), digest, {
            "trajectories_used": used, "trajectories_recorded": meta["n_trajectories"],
            "transitions_recorded": meta["n_transitions"], "expert_return": round(meta["expert_return"], 3)}), "train")


# -------------------------------------------------------------------------------------------------- experts


@dataclass(frozen=True)
class ExpertResult:
    """What ``train_expert`` produced."""

    checkpoint_dir: Path
    """Algorithm checkpoint (``Algorithm.from_checkpoint`` restores it)."""
    module_path: Path
    """The policy RLModule inside it (``RLModule.from_checkpoint``; input of ``record_demos``)."""
    greedy_return: float
    """Mean greedy return of the last evaluation."""
    iterations: int
    env_steps: int
    wall_s: float


def train_expert(env_id: str, checkpoint_dir: str | Path, *, target_return: float, max_iterations: int,
                 ppo: PPOHparams | None = None, num_envs: int = 16, seed: int = 0, eval_every: int = 2,
                 eval_episodes: int = 10,
                 on_iteration: Callable[[int, dict[str, float]], None] | None = None) -> ExpertResult:
    """Train PPO on ``env_id`` until the greedy return reaches ``target_return`` or ``max_iterations``.

    Every ``eval_every`` iterations (and at the last) the current policy plays ``eval_episodes`` greedy episodes
    (``rollout``, new seeds each time). ``on_iteration(it, metrics)`` gets ``train/return_mean`` (RLlib's mean
    return of the stochastic policy), ``perf/env_steps``, ``perf/time_s`` and, when it was evaluated,
    ``eval/return_mean``. Ray must be initialised by the caller. The algorithm is saved to ``checkpoint_dir`` at
    the end, whether or not the target was reached.
    """
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, EPISODE_RETURN_MEAN, NUM_ENV_STEPS_SAMPLED_LIFETIME

    algo = make_ppo_config(env_id, ppo, num_envs=num_envs, seed=seed, iterations=max_iterations).build_algo()
    start, greedy, it, steps = time.perf_counter(), float("-inf"), 0, 0
    try:
        for it in range(1, max_iterations + 1):
            result = algo.train()
            steps = int(result[NUM_ENV_STEPS_SAMPLED_LIFETIME])
            metrics = {
                "train/return_mean": float(result[ENV_RUNNER_RESULTS].get(EPISODE_RETURN_MEAN, float("nan"))),
                "perf/env_steps": float(steps),
                "perf/time_s": time.perf_counter() - start,
            }
            if it % eval_every == 0 or it == max_iterations:
                eval_seed = seed + 1_000_000 + it * eval_episodes
                greedy = float(np.mean(rollout(algo.get_module(), env_id, eval_episodes, seed=eval_seed)))
                metrics["eval/return_mean"] = greedy
            if on_iteration is not None:
                on_iteration(it, metrics)
            if greedy >= target_return:
                break
        path = Path(algo.save_to_path(Path(checkpoint_dir).resolve()))
    finally:
        algo.stop()
    return ExpertResult(path, path / MODULE_SUBDIR, greedy, it, steps, time.perf_counter() - start)


def expert(spec, out_dir: Path) -> Path:
    """`genlab expert`: train PPO to the target return, record demonstrations, track it all in MLflow."""
    uri = tracking.resolve_uri(spec.tracking.uri)
    with runlog.run_scope(uri, spec.tracking.experiment, run_name=f"expert-{spec.name}",
                            config=spec.model_dump(mode="json"), tags={tracking.TAG_KIND: "expert"}) as run:
        history: list[dict] = []

        def on_iteration(it: int, metrics: dict) -> None:
            m = {"epoch": it, **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
            history.append(m)
            run.metrics(m, step=it)
            print(f"[genlab] expert iteration {it}/{spec.max_iterations}  "
                  + "  ".join(f"{k}={v:.4g}" for k, v in m.items() if k != "epoch"), flush=True)

        out_dir.mkdir(parents=True, exist_ok=True)
        trained = train_expert(spec.env.id, out_dir / "expert_checkpoint", target_return=spec.target_return,
                               max_iterations=spec.max_iterations, ppo=spec.ppo, num_envs=spec.env.num_envs,
                               seed=spec.seed, on_iteration=on_iteration)
        if trained.greedy_return < spec.target_return:
            print(f"[genlab] expert reached {trained.greedy_return:.1f} < target {spec.target_return} within "
                  f"{spec.max_iterations} iterations; recording it anyway (its return is in meta.json)")
        path = record_demos(trained.module_path, spec.env.id, spec.num_trajectories, out_dir, seed=spec.seed)
        meta = json.loads((path / META_FILE).read_text())
        run.metrics({"eval/expert_return": meta["expert_return"], "eval/random_return": meta["random_return"]},
                    step=len(history))
        run.file(path / META_FILE, "demos")
        run.learning_curves(history)
    return path
