"""Benchmark: compute to reach a target, Optuna TPE + ASHA against random search without early stopping.

Both search the digits demo sweep's space (sweeps/improved_gan/digits_sweep.yaml: learning rate and unlabeled
weight) with the same trials, epochs and concurrency, on the same local Ray, repeat after repeat, the two variants
alternating so that machine noise hits both alike. For each sweep, every trial's per-epoch reports are merged in
the order they happened and their epoch times summed until the first report at or below the target test error:
the compute (trial-seconds) the sweep spent to first reach the target. ASHA saves compute by stopping trials that
fall behind; TPE by proposing better trials once some have finished. Ratio = random's compute / TPE+ASHA's (> 1:
TPE+ASHA got there with less), with a 95% bootstrap interval over repeats. A sweep that never reaches the target is
counted at its total compute (a lower bound, marked "never").

    .venv/bin/python tests/benchmarks/bench_search_efficiency.py [--repeats 3] [--target 0.12] [--samples 8]

The target, 0.12 test error (88% accuracy with 100 labels): about what a good trial of the demo sweep reaches in
half of its 30 epochs, and what poor learning rates never reach; so the compute to reach it separates good search
from bad, where the best final error would reward running everything to the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

import genlab
from genlab import config, stats
from genlab.runners import sweep
from genlab.studies import held_out_seeds

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "sweeps/improved_gan/digits_sweep.yaml"


def compute_to_target(experiment_dir: Path, target: float) -> tuple[float, bool]:
    """(trial-seconds until the first report with eval/test_error <= target, whether it was reached)."""
    from ray.tune import ExperimentAnalysis

    frames = [df for df in ExperimentAnalysis(str(experiment_dir)).trial_dataframes.values() if len(df)]
    reports = sorted((row["timestamp"], row["time_this_iter_s"], row["eval/test_error"])
                     for df in frames for _, row in df.iterrows())
    spent = 0.0
    for _, seconds, error in reports:
        spent += seconds
        if error <= target:
            return spent, True
    return spent, False


def main() -> None:
    import ray

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--samples", type=int, default=8, help="trials per sweep")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--target", type=float, default=0.12, help="test error to reach")
    args = p.parse_args()

    os.environ.update({k: v for k, v in genlab.RAY_ENV_VARS.items() if k not in os.environ})
    ray.init(address="local", num_cpus=2, include_dashboard=True, logging_level="ERROR",
             runtime_env={"env_vars": genlab.RAY_ENV_VARS})
    variants = {"tpe+asha": ["search=tpe", "scheduler.type=asha", "scheduler.grace_period=5"],
                "random": ["search=random", "scheduler.type=fifo"]}
    spent: dict[str, list[float]] = {v: [] for v in variants}
    seeds = held_out_seeds("search-efficiency", args.repeats)  # the runs' own seed and data seed, one per repeat
    print(f"repeats on held-out seeds {seeds} (the demo's space was chosen on seed 0)", flush=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.repeats):
                for variant, sets in variants.items():
                    spec = config.load_sweep(SPEC, [*sets, f"name=bench-{variant.replace('+', '-')}-{r}",
                                                    f"seed={r}", f"num_samples={args.samples}",
                                                    f"run.seed={seeds[r]}", f"run.data.seed={seeds[r]}",
                                                    f"run.budget.epochs={args.epochs}",
                                                    f"run.tracking.uri=sqlite:///{tmp}/mlflow.db"])
                    summary = sweep.run(spec, storage_path=Path(tmp) / "results")
                    seconds, reached = compute_to_target(summary.sweep_dir, args.target)
                    spent[variant].append(seconds)
                    print(f"repeat {r} {variant:9s} {seconds:8.1f} trial-s to error <= {args.target}"
                          + ("" if reached else " (never: total compute)"), flush=True)
    finally:
        ray.shutdown()
    ratios = np.array(spent["random"]) / np.array(spent["tpe+asha"])
    ci = stats.bootstrap_ci(ratios, np.mean)
    print(f"\n{args.repeats} repeats x {args.samples} trials x {args.epochs} epochs, target test error {args.target}:")
    for v, s in spent.items():
        print(f"  {v:9s} mean {np.mean(s):8.1f} trial-s  ({', '.join(f'{x:.0f}' for x in s)})")
    print(f"  ratio random / (TPE+ASHA): {ci.estimate:.2f}  [95% CI {ci.low:.2f}, {ci.high:.2f}]")


if __name__ == "__main__":
    sys.exit(main())
