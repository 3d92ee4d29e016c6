"""RL scale-out from the run spec: the ``rl:`` section (env runners, learners, their GPUs, evaluation runners), what a
method is told of it (genlab.context.ScaleContext), the RLlib config it makes, what a Tune trial reserves (RLlib's own
resource request, one placement group) and the local pre-flight. The defaults are today's single process.

The slow tests train on the 2-core machine, bounded by iterations: GAIL on CartPole with 2 env runners and 2 CPU
learners reaches the expert as the single-process run does in the same iterations; VIME reports its intrinsic metrics
from 2 learners; a sweep's trial with remote runners and learners is placed on 2 CPUs (fractional CPUs).
"""

from __future__ import annotations

import copy

import pytest
from conftest import ROOT, side_by_side, sqlite_store

from genlab import config, preflight
from genlab.context import ScaleContext
from genlab.errors import SpecError
from genlab.runners import trials

GAIL = {"name": "g", "algorithm": "gail", "env": {"id": "CartPole-v1", "num_envs": 4},
        "demos": {"path": "/nonexistent/demos"}, "ppo": {"train_batch_size": 400, "minibatch_size": 100},
        "budget": {"epochs": 2}}
SCALED = {"env_runners": 2, "cpus_per_env_runner": 0.25, "learners": 2, "cpus_per_learner": 0.25}


def gail(**rl) -> dict:
    raw = copy.deepcopy(GAIL)
    if rl:
        raw["rl"] = rl
    return raw


# ---------------------------------------------------------------------------------------------- the spec


def test_rl_defaults_are_one_process_and_the_method_is_told_them():
    spec = config.run_from_dict(gail())
    assert spec.rl.model_dump() == {"env_runners": 0, "cpus_per_env_runner": 1, "evaluation_runners": 0, "learners": 0,
                                    "cpus_per_learner": 1, "gpus_per_learner": 0}
    assert spec.context().scale == ScaleContext(main_cpus=1.0)
    assert not spec.context().scale.remote
    scaled = config.run_from_dict({**gail(**SCALED, evaluation_runners=1), "resources": {"cpus_per_worker": 0.5}})
    assert scaled.context().scale == ScaleContext(env_runners=2, cpus_per_env_runner=0.25, evaluation_runners=1,
                                                  learners=2, cpus_per_learner=0.25, main_cpus=0.5)
    assert config.run_from_dict({"algorithm": "improved_gan"}).rl is None


BAD = [
    ("generative", {"algorithm": "improved_gan", "rl": {"env_runners": 2}},
     "rl: improved_gan trains as Ray Train workers (resources:), not with RLlib's env runners and learners"),
    ("negative", gail(env_runners=-1), "rl.env_runners: Input should be greater than or equal to 0 (got -1)"),
    ("zero cpus", gail(env_runners=2, cpus_per_env_runner=0), "rl.cpus_per_env_runner: Input should be greater than 0"),
    ("unknown key", gail(runners=2), "rl: unknown key 'runners'; allowed: env_runners, cpus_per_env_runner"),
    ("uneven batch", {**gail(learners=3)},
     "rl.learners: 3 learners each take an equal share of ppo.train_batch_size (400), which does not divide evenly"),
    ("bc runners", {"algorithm": "bc", "env": {"id": "CartPole-v1"}, "demos": {"path": "/x"},
                    "rl": {"env_runners": 2}},
     "rl.env_runners: bc learns offline from the demonstrations in one local learner"),
    ("bc learners", {"algorithm": "bc", "env": {"id": "CartPole-v1"}, "demos": {"path": "/x"},
                     "rl": {"learners": 2}}, "rl.learners: bc learns offline"),
]


@pytest.mark.parametrize(("case", "raw", "expected"), BAD, ids=[c for c, _, _ in BAD])
def test_bad_rl_sections_are_refused_naming_the_field(case, raw, expected):
    with pytest.raises(SpecError) as e:
        config.run_from_dict(raw)
    assert expected in str(e.value), str(e.value)


def test_bc_may_put_its_one_learner_on_a_gpu():
    spec = config.run_from_dict({"algorithm": "bc", "env": {"id": "CartPole-v1"}, "demos": {"path": "/x"},
                                 "rl": {"gpus_per_learner": 1}})
    assert trials.run_resources(spec) == {"cpu": 0, "memory": trials.TRIAL_DRIVER_MEMORY, "gpu": 1}


def test_shipped_cluster_specs_validate_and_spread_out():
    for path in ("gail/humanoid_cluster.yaml", "vime/halfcheetah_cluster.yaml"):
        spec = config.load_run(ROOT / "sweeps" / path)
        assert spec.rl.env_runners >= 8 and spec.context().scale.remote, path


# --------------------------------------------------------------------------------------- the RLlib config


def test_make_ppo_config_applies_the_layout_and_shares_the_batch_between_learners():
    from genlab.rl.hparams import PPOHparams
    from genlab.rl.ppo import make_ppo_config

    ppo = PPOHparams(train_batch_size=2048, minibatch_size=64)
    default = make_ppo_config("CartPole-v1", ppo, num_envs=8)
    scaled = make_ppo_config("CartPole-v1", ppo, num_envs=8, scale=ScaleContext(
        env_runners=2, cpus_per_env_runner=0.25, evaluation_runners=1, learners=2, cpus_per_learner=0.5,
        main_cpus=0.75))
    assert (default.num_env_runners, default.num_learners, default.train_batch_size_per_learner,
            default.minibatch_size) == (0, 0, 2048, 64)
    assert (scaled.num_env_runners, scaled.num_envs_per_env_runner, scaled.num_cpus_per_env_runner) == (2, 8, 0.25)
    assert (scaled.num_learners, scaled.num_cpus_per_learner, scaled.num_cpus_for_main_process) == (2, 0.5, 0.75)
    # Each learner takes half of every batch and minibatch: an iteration is as many env steps and gradient steps.
    assert (scaled.train_batch_size_per_learner, scaled.minibatch_size, scaled.total_train_batch_size) == (1024, 32,
                                                                                                           2048)
    assert scaled.evaluation_num_env_runners == 1 and not scaled.evaluation_interval
    assert scaled.get_evaluation_config_object().num_envs_per_env_runner == 1
    with pytest.raises(ValueError, match="3 learners cannot share"):
        make_ppo_config("CartPole-v1", ppo, scale=ScaleContext(learners=3))


def test_a_trial_reserves_rllibs_own_request_as_one_placement_group():
    """Defaults: exactly what a trial always held (its CPUs, in one bundle). Spread out: RLlib's request for the
    config, bundle by bundle, each named with the spec fields that size it."""
    default = trials.run_resources(config.run_from_dict(gail()))
    assert default.bundles == [{"CPU": 1.0}] and default.strategy == "PACK"
    spec = config.run_from_dict({**gail(**SCALED, evaluation_runners=1), "resources": {"cpus_per_worker": 0.5}})
    pgf = trials.run_resources(spec)
    assert pgf.bundles == [{"CPU": 0.5}] + [{"CPU": 0.25}] * 5 and pgf.strategy == "PACK"
    assert sum(b["CPU"] for b in pgf.bundles) <= 2  # schedulable on the 2-core machine
    needs = trials.trial_needs(spec)
    assert [(b.count, b.what, b.resources) for b in needs.bundles] == [
        (1, "the trial's process", {"CPU": 0.5}), (2, "env runner", {"CPU": 0.25}),
        (1, "evaluation runner", {"CPU": 0.25}), (2, "learner", {"CPU": 0.25})]
    assert needs.bundles[3].fields == {"#": "rl.learners", "CPU": "rl.cpus_per_learner", "GPU": "rl.gpus_per_learner"}
    gpu = trials.trial_needs(config.run_from_dict(gail(gpus_per_learner=1)))
    assert [(b.what, b.resources, b.fields["GPU"]) for b in gpu.bundles] == [
        ("the trial's process and its learner", {"CPU": 1.0, "GPU": 1.0}, "rl.gpus_per_learner")]


def test_each_trial_of_a_sweep_holds_what_its_own_run_needs():
    """Tune asks for a trial's resources with its config: the run the plan makes of it, whatever the caller passed
    (a swept rl.env_runners gives each trial its own placement group)."""

    def plan(trial_config, trial_id):
        raw = gail(**{**SCALED, "env_runners": trial_config["rl.env_runners"]})
        return config.run_from_dict(raw), {}

    resources = trials._resources_by_run(plan)
    assert len(resources({"rl.env_runners": 1}).bundles) == 1 + 1 + 2
    assert len(resources({"rl.env_runners": 4}).bundles) == 1 + 4 + 2


# ---------------------------------------------------------------------------------------------- pre-flight


def test_local_preflight_refuses_a_layout_that_would_wait_forever_naming_the_field():
    spec = config.run_from_dict(gail(env_runners=2, learners=2))
    (problem,) = preflight.local_resource_problems(spec, cpus_available=2, gpus_available=0)
    assert problem.startswith("rl: 2 env runners x 1 + 2 learners x 1 CPUs is 4, more than the 2 CPUs here")
    assert "rl.cpus_per_env_runner / rl.cpus_per_learner" in problem
    fractional = config.run_from_dict(gail(**SCALED))
    assert preflight.local_resource_problems(fractional, cpus_available=2, gpus_available=0) == []
    # In a sweep the trial's own CPU counts too (RAY_NOTES section 8: [1, 1, 1] on 2 CPUs stays PENDING).
    runners = config.run_from_dict(gail(env_runners=2))
    assert preflight.local_resource_problems(runners, cpus_available=2, gpus_available=0) == []
    (problem,) = preflight.local_resource_problems(runners, cpus_available=2, gpus_available=0, in_tune=True)
    assert "2 env runners x 1 + the trial's 1 CPUs is 3" in problem
    (problem,) = preflight.local_resource_problems(config.run_from_dict(gail(gpus_per_learner=1)), cpus_available=2,
                                                   gpus_available=0)
    assert problem.startswith("rl.gpus_per_learner: 1 GPUs asked for, but this machine has none")


def test_a_sweep_is_preflighted_as_trials(tmp_path):
    import yaml

    sweep = {"name": "s", "run": gail(env_runners=2), "search_space": {"hparams.disc_lr": {"choice": [1e-3, 1e-4]}},
             "metric": "eval/true_return", "mode": "max", "scheduler": {"type": "fifo"}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    with pytest.raises(SpecError, match=r"\n  rl: 2 env runners x 1 \+ the trial's 1 CPUs is 3"):
        preflight.check(config.load_sweep(tmp_path / "s.yaml"), source="s.yaml", cluster=False, num_cpus=2)


# ------------------------------------------------------------------------------------------ training (slow)

ITERATIONS, EVAL_EVERY = 8, 2
"""GAIL CartPole iterations of 2000 env steps (sweeps/gail/cartpole.yaml's settings), evaluated every 2. Measured over
16 iterations on seed 0 (shared 2-core machine), every 2: one process [0.10, 0.24, 1.08, 1.10, 0.87, 0.73, 0.90,
1.11], 2 runners + 2 learners + 1 evaluation runner [0.04, 0.09, 1.09, 0.24, 1.01, 0.96, 0.29, 0.29]: both first at
the expert at iteration 6 (GAIL's CartPole score swings once there, in both layouts)."""


def _gail_scores(address: str, demos: str, tmp: str, name: str, *overrides: str) -> tuple[list[float], list[str]]:
    """The shipped CartPole spec's normalized scores every EVAL_EVERY iterations and the metrics of its last
    iteration, in a driver of its own."""
    import ray

    from genlab.runners import rl

    ray.init(address=address, logging_level="ERROR")
    try:
        spec = config.load_run(ROOT / "sweeps/gail/cartpole.yaml", [
            f"name={name}", f"demos.path={demos}", f"budget.epochs={ITERATIONS}", f"budget.eval_every={EVAL_EVERY}",
            f"budget.checkpoint_every={ITERATIONS}", "tracking.system_metrics=false", "tracking.log_models=false",
            f"tracking.uri=sqlite:///{tmp}/{name}.db", *overrides])
        history = rl.fit(spec, storage_path=f"{tmp}/results").history
        scores = [round(h["eval/normalized_score"], 3) for h in history if h["epoch"] % EVAL_EVERY == 0]
        return scores, sorted(k for k in history[-1] if not k.startswith("perf/"))
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def cartpole_demos(tmp_path_factory, ray_local):
    from genlab.rl.demos import record_demos
    from genlab.runners import rl

    tmp = tmp_path_factory.mktemp("cartpole")
    ppo = config.load_expert(ROOT / "sweeps/gail/cartpole_expert.yaml").ppo
    expert = rl.train_expert("CartPole-v1", tmp / "expert", target_return=475, max_iterations=40, ppo=ppo, seed=0)
    assert expert.greedy_return >= 475, expert
    return record_demos(expert.module_path, "CartPole-v1", 10, tmp / "demos", seed=0)


@pytest.mark.slow
def test_gail_with_2_env_runners_and_2_learners_imitates_as_the_single_process_run(cartpole_demos, tmp_path):
    """Both runs share the test's 2-CPU Ray, each in its own driver: the single-process one holds nothing, the
    spread-out one's 2 runners, 1 evaluation runner and 2 learners hold 0.25 CPU each. Both reach the expert
    (normalized score >= 0.9) within the same iterations, and report the same metrics."""
    import ray

    for name in ("one-process", "spread"):
        sqlite_store(tmp_path / f"{name}.db")
    common = (ray.get_runtime_context().gcs_address, str(cartpole_demos), str(tmp_path))
    (one, one_metrics), (spread, spread_metrics) = side_by_side(
        _gail_scores, (*common, "one-process"),
        (*common, "spread", "rl.env_runners=2", "rl.cpus_per_env_runner=0.25", "rl.learners=2",
         "rl.cpus_per_learner=0.25", "rl.evaluation_runners=1"))
    print(f"normalized score every {EVAL_EVERY} iterations: one process {one}, 2 runners + 2 learners {spread}")
    assert one_metrics == spread_metrics
    assert len(one) == len(spread) == ITERATIONS // EVAL_EVERY
    assert max(one) >= 0.9, one
    assert max(spread) >= 0.9, spread


@pytest.mark.slow
def test_vime_on_2_learners_with_remote_runners_reports_its_intrinsic_metrics(ray_local):
    """Each learner computes the information gain of its half of the batch and trains the BNN on its own replay
    pool (gradients averaged); the results hold VIME's metrics as with one learner."""
    import genlab.envs
    from algorithms.vime.hparams import VIMEHparams
    from algorithms.vime.rllib import VIMEConfig
    from genlab.rl.hparams import PPOHparams
    from genlab.rl.metrics import from_result
    from genlab.rl.ppo import make_ppo_config

    ppo = PPOHparams(train_batch_size=512, minibatch_size=128, num_epochs=1, hiddens=[32, 32])
    scale = ScaleContext(env_runners=2, cpus_per_env_runner=0.25, learners=2, cpus_per_learner=0.25)
    config_ = make_ppo_config(genlab.envs.SPARSE_MOUNTAIN_CAR, ppo, num_envs=2, seed=0, config_cls=VIMEConfig,
                              scale=scale)
    algo = config_.training(eta=0.1, bnn_updates=2).build_algo()
    try:
        results = [from_result(algo.train()) for _ in range(2)]
        steps = algo.learner_group.foreach_learner(lambda learner: len(learner.pool))
    finally:
        algo.stop()
    missing = {m for m in VIMEHparams.metrics if m != "intrinsic/ratio"} - set(results[-1])
    assert not missing, missing
    assert results[-1]["env_steps"] == 1024
    assert sorted(r.get() for r in steps) == [512, 512]  # each learner's pool: its half of two iterations


@pytest.mark.slow
def test_a_sweep_trial_with_remote_runners_and_learners_is_placed_on_2_cpus(cartpole_demos, tmp_path):
    """The trial's placement group (its own CPU + 2 runners + 2 learners at 0.25) fits the 2-CPU Ray: it trains."""
    import yaml

    from genlab import launch

    run = {**config.load_run(ROOT / "sweeps/gail/cartpole.yaml").model_dump(mode="json"),
           "demos": {"path": str(cartpole_demos), "num_trajectories": 10},
           "rl": SCALED, "budget": {"epochs": 2, "eval_every": 1, "checkpoint_every": 1},
           "tracking": {"uri": sqlite_store(tmp_path / "m.db"), "system_metrics": False, "log_models": False}}
    sweep = {"name": "spread", "run": run, "search_space": {"hparams.disc_lr": {"choice": [1e-3]}},
             "metric": "eval/true_return", "mode": "max", "num_samples": 1, "scheduler": {"type": "fifo"}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    summary = launch.sweep(tmp_path / "s.yaml", storage=tmp_path / "results", num_cpus=2).result
    assert not summary.failed and len(summary.trials) == 1
    assert summary.best is not None
