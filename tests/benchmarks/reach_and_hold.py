"""The summary both Pendulum imitation benchmarks print (bench_gail_pendulum.py for genlab, bench_imitation_pendulum.py
for the peer): per run, the env steps, wall and CPU seconds to the first evaluation at or above a threshold and
whether every later one stayed there; then the medians per kind of run. Plain Python: the peer's virtual
environment has no genlab."""

from __future__ import annotations

import math
import statistics


def summarize(curve: list[dict], threshold: float) -> dict:
    """First evaluation at or above the threshold, and whether every later one stayed there.

    ``curve``: one dict per evaluation with ``score``, ``env_steps``, ``wall_s`` and ``cpu_s``.
    """
    first = next((i for i, c in enumerate(curve) if c["score"] >= threshold), None)
    out = {"final_score": curve[-1]["score"], "budget_steps": curve[-1]["env_steps"], "reached": first is not None}
    if first is not None:
        after = [c["score"] for c in curve[first:]]
        out.update({k: curve[first][k] for k in ("env_steps", "wall_s", "cpu_s")})
        out.update(held=min(after) >= threshold, min_after=min(after))
    return out


def print_table(title: str, rows: list[dict], threshold: float) -> None:
    """``rows``: ``{"kind", "seed", **summarize(...)}`` each."""
    width = max(5, *(len(r["kind"]) for r in rows))
    print(f"\n{title}; first greedy normalized score >= {threshold}, held = every later evaluation >= {threshold} "
          "to the end of the budget:")
    print(f"  {'run':{width}s} {'seed':>4s} {'budget':>7s} {'steps':>7s} {'wall s':>7s} {'cpu s':>7s} {'held':>5s} "
          f"{'min after':>9s} {'final':>6s}")
    for r in rows:
        if r["reached"]:
            print(f"  {r['kind']:{width}s} {r['seed']:4d} {r['budget_steps']:7d} {r['env_steps']:7d} "
                  f"{r['wall_s']:7.1f} {r['cpu_s']:7.1f} {str(r['held']):>5s} {r['min_after']:9.3f} "
                  f"{r['final_score']:6.3f}")
        else:
            print(f"  {r['kind']:{width}s} {r['seed']:4d} {r['budget_steps']:7d} {'never':>7s} {'-':>7s} {'-':>7s} "
                  f"{'-':>5s} {'-':>9s} {r['final_score']:6.3f}")
    for kind in sorted({r["kind"] for r in rows}):
        mine = [r for r in rows if r["kind"] == kind]
        steps = [r.get("env_steps", math.inf) for r in mine]
        wall = [r.get("wall_s", math.inf) for r in mine]
        cpu = [r.get("cpu_s", math.inf) for r in mine]
        print(f"  {kind} median to first {threshold}: {statistics.median(steps):.0f} env steps, "
              f"{statistics.median(wall):.1f} s wall, {statistics.median(cpu):.1f} s CPU; held on "
              f"{sum(bool(r.get('held')) for r in mine)}/{len(mine)} seeds")
