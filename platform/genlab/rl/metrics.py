"""RLlib's nested results as genlab's namespaced metrics, and the metrics every RL run reports."""

from __future__ import annotations

RUNNER_METRICS = ("eval/true_return", "eval/normalized_score", "env/episode_return_mean", "env/episode_len_mean")
"""Reported for every RL run by the runner: greedy evaluation (true env return; random = 0, expert = 1 when the
run has demonstrations) and the env runners' own episode statistics (the true return, never a surrogate)."""
RUNNER_PROGRESS = RUNNER_METRICS[:3]
"""What every RL run's progress line starts with (a method's ``Hparams.progress`` follows)."""

_POLICY_LOSSES = ("policy_loss", "vf_loss", "entropy", "mean_kl_loss", "bc_loss")  # bc_loss: GAIL's bc_weight
_SKIP = ("num_", "gradients_", "module_train_batch", "weights_seq_no", "diff_num_grad_updates", "curr_",
         "default_optimizer", "total_loss")
"""RLlib's bookkeeping that it logs for every module (the PPO entropy coefficient and learning rate it would use,
its own copy of the loss): not a learner-only module's metrics."""


def from_result(result: dict, policy_id: str = "default_policy") -> dict[str, float]:
    """``algo.train()``'s result -> ``env/*``, the policy's ``loss/*`` and each learner-only module's own metrics
    under its module id (e.g. ``disc/loss``), plus ``env_steps`` (sampled so far)."""
    out = {}
    runners = result.get("env_runners", {})
    for k in ("episode_return_mean", "episode_len_mean"):
        if k in runners:
            out[f"env/{k}"] = runners[k]
    for module_id, stats in result.get("learners", {}).items():
        if not isinstance(stats, dict) or module_id.startswith("__"):  # __all_modules__: RLlib's totals
            continue
        for k, v in stats.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if module_id == policy_id:
                if k in _POLICY_LOSSES:
                    out[f"loss/{k}"] = v
            elif not k.startswith(_SKIP):
                out[f"{module_id}/{k}"] = v
    out["env_steps"] = result.get("num_env_steps_sampled_lifetime", 0)
    return out
