"""Reach and hold per seed for one arm of a `genlab study` (the table bench_gail_pendulum.py prints, from the runs the
study tracked in MLflow): env steps to the first evaluation at or above the threshold, the lowest one after it and
whether it held, and the final score. `genlab report` gives the final scores; this reads every evaluation.

    .venv/bin/python tests/benchmarks/study_hold.py gail-pendulum --arm GAIL --tracking-uri sqlite:///mlflow.db

Wall seconds are from MLflow's timestamps, relative to the run's start (start-up included); CPU seconds are not
tracked (nan).
"""

from __future__ import annotations

import argparse

from reach_and_hold import print_table, summarize

from genlab import tracking


def curves(uri: str, study: str, arm: str, metric: str) -> dict[int, list[dict]]:
    """Seed -> one dict per evaluation of the arm's run on that seed (``score``, ``env_steps``, ``wall_s``)."""
    c = tracking.client(uri)
    out = {}
    for run in tracking.search(uri, tracking.tagged(tracking.TAG_STUDY, study)):
        if run.data.tags.get(tracking.TAG_ARM) != arm:
            continue
        steps = {m.step: m.value for m in c.get_metric_history(run.info.run_id, "env_steps")}
        scores = sorted(c.get_metric_history(run.info.run_id, metric), key=lambda m: m.step)
        out[int(run.data.tags[tracking.TAG_SEED])] = [
            {"score": m.value, "env_steps": int(steps[m.step]), "wall_s": (m.timestamp - run.info.start_time) / 1000,
             "cpu_s": float("nan")} for m in scores]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("study")
    p.add_argument("--arm", required=True, help="the arm's label in the study spec")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    p.add_argument("--metric", default="eval/normalized_score")
    p.add_argument("--threshold", type=float, default=0.9)
    a = p.parse_args()
    found = curves(a.tracking_uri, a.study, a.arm, a.metric)
    if not found:
        raise SystemExit(f"no runs of arm {a.arm!r} in study {a.study!r} at {a.tracking_uri}")
    rows = [{"kind": a.arm, "seed": seed, **summarize(curve, a.threshold)} for seed, curve in sorted(found.items())]
    print_table(f"study {a.study}, arm {a.arm}", rows, a.threshold)


if __name__ == "__main__":
    main()
