"""The expert -> demonstrations -> imitation pipeline through the CLI, as a user runs it (CartPole: quick)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import ROOT, genlab_run, genlab_start, sqlite_store

from genlab import tracking

pytestmark = pytest.mark.slow


def genlab(tmp_path: Path, *args: str) -> str:
    return genlab_run(tmp_path, *args, "--num-cpus", "2").stdout


def test_expert_then_gail_and_bc_on_cartpole(tmp_path):
    uri = sqlite_store(tmp_path / "mlflow.db")  # the CLI's default store in its working directory
    results = tmp_path / "results"
    out = genlab(tmp_path, "expert", str(ROOT / "sweeps/gail/cartpole_expert.yaml"), "--storage", str(results))
    demos = results / "experts" / "cartpole"
    meta = json.loads((demos / "meta.json").read_text())
    assert meta["env_id"] == "CartPole-v1" and meta["n_trajectories"] == 10
    assert meta["expert_return"] >= 400 > 100 > meta["random_return"]  # target 475 on its own eval episodes
    assert "Demonstrations:" in out

    common = ["--storage", str(results), "--set", f"demos.path={demos}", "--set", "budget.epochs=2",
              "--set", "budget.eval_every=1"]
    # GAIL and BC from the same demonstrations, two commands at once (as a user would start both), one store.
    procs = [genlab_start(tmp_path, "train", str(ROOT / f"sweeps/gail/{spec}.yaml"), *common, "--num-cpus", "2")
             for spec in ("cartpole", "cartpole_bc")]
    with ThreadPoolExecutor(2) as pool:  # read both outputs at once: a full pipe would stall the other command
        outs = list(pool.map(lambda p: p.communicate(timeout=600)[0], procs))
    for proc, out in zip(procs, outs):
        assert proc.returncode == 0, out[-3000:]

    c = tracking.client(uri)
    exp = c.get_experiment_by_name("genlab")
    runs = {r.info.run_name: r for r in c.search_runs([exp.experiment_id])}
    assert {"expert-cartpole", "gail-cartpole", "bc-cartpole"} <= set(runs)
    for name in ("expert-cartpole", "gail-cartpole", "bc-cartpole"):
        assert runs[name].info.status == "FINISHED", name
    gail = runs["gail-cartpole"].data.metrics
    for m in ("eval/true_return", "eval/normalized_score", "env/episode_return_mean", "disc/loss", "disc/expert_acc"):
        assert m in gail, f"{m} missing from GAIL's metrics: {sorted(gail)}"
    assert "eval/normalized_score" in runs["bc-cartpole"].data.metrics
    history = c.get_metric_history(runs["gail-cartpole"].info.run_id, "eval/true_return")
    assert sorted(m.step for m in history) == [1, 2]
