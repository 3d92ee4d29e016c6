"""Run and sweep specs: what loads, what is rejected, and the message a user sees for each mistake."""

from __future__ import annotations

import copy
import platform
import sysconfig
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from genlab import config
from genlab.cli import main
from genlab.errors import SpecError
from genlab.specs import set_path
from genlab.sweep_specs import LogUniform

RUN = {
    "name": "t",
    "algorithm": "improved_gan",
    "hparams": {"lr": 0.001},
    "data": {"name": "digits", "labels_per_class": 10, "batch_size": 50},
    "budget": {"epochs": 4},
}
SWEEP = {
    "name": "s",
    "run": RUN,
    "search_space": {"hparams.lr": {"loguniform": [1e-4, 1e-2]}, "hparams.unlabeled_weight": {"uniform": [0.5, 1]}},
    "metric": "eval/test_error",
    "mode": "min",
    "num_samples": 2,
    "scheduler": {"type": "asha", "grace_period": 1},
}


def write(tmp_path: Path, raw: dict, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(raw))
    return p


def with_(base: dict, dotted: str, value) -> dict:
    raw = copy.deepcopy(base)
    set_path(raw, dotted, value)
    return raw


def dim(path: str, value) -> dict:
    """SWEEP with search_space[path] = value (search-space keys are themselves dotted)."""
    raw = copy.deepcopy(SWEEP)
    raw["search_space"][path] = value
    return raw


def test_platform_module_is_the_standard_library():
    # platform/ is a source root; an __init__.py there would shadow this module for Ray, torch, MuJoCo.
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert Path(platform.__file__).parent == Path(sysconfig.get_paths()["stdlib"])
    assert callable(platform.system)


def test_valid_run_fills_defaults_and_resolves_hparams(tmp_path):
    spec = config.load_run(write(tmp_path, RUN))
    assert spec.hparams["lr"] == 0.001
    assert spec.hparams["unlabeled_weight"] == 1.0  # default filled in from the algorithm's class
    assert spec.resources.num_workers == 1
    assert spec.hparams_obj().lr == 0.001


def test_overrides_go_through_validation(tmp_path):
    p = write(tmp_path, RUN)
    spec = config.load_run(p, ["hparams.lr=1e-3", "resources.num_workers=2", "data.name=mnist"])
    assert spec.hparams["lr"] == pytest.approx(1e-3) and spec.resources.num_workers == 2
    assert spec.data.name == "mnist"
    with pytest.raises(SpecError, match=r"hparams\.lr: Input should be greater than 0 \(got -1\)"):
        config.load_run(p, ["hparams.lr=-1"])


def test_sweep_loads_with_run_file(tmp_path):
    write(tmp_path, RUN, "base.yaml")
    sweep = config.load_sweep(write(tmp_path, {**SWEEP, "run": "base.yaml"}, "sweep.yaml"))
    assert sweep.run.hparams["lr"] == 0.001
    assert isinstance(sweep.search_space["hparams.lr"], LogUniform)


def test_shipped_specs_are_valid():
    from genlab import studies

    specs = sorted(p for p in (ROOT / "sweeps").rglob("*.yaml") if p.parent.name != "ppo")
    assert specs, "sweeps/ holds no specs"
    for p in specs:
        load = studies.load if studies.is_study(config.read_yaml(p)) else config.load_any
        assert load(p).name


def test_shipped_ppo_settings_are_valid_and_named_by_specs():
    from genlab.rl.hparams import PPOHparams

    files = sorted((ROOT / "sweeps" / "ppo").glob("*.yaml"))
    for p in files:
        PPOHparams.model_validate(config.read_yaml(p))
    pendulum = config.load_run(ROOT / "sweeps/gail/pendulum.yaml")
    # gamma from the base file, minibatch and lr_decay from the spec's own section
    assert (pendulum.ppo.gamma, pendulum.ppo.minibatch_size, pendulum.ppo.lr_decay) == (0.9, 64, True)
    assert config.load_expert(ROOT / "sweeps/gail/pendulum_expert.yaml").ppo == PPOHparams.model_validate(
        config.read_yaml(ROOT / "sweeps/ppo/pendulum.yaml"))
    # --set wins over the section, which wins over its base.
    assert config.load_run(ROOT / "sweeps/gail/pendulum.yaml", ["ppo.gamma=0.95"]).ppo.gamma == 0.95


def test_a_misspelt_ppo_key_is_refused_naming_it(tmp_path):
    with pytest.raises(SpecError, match=r"ppo: unknown key 'lrr'; allowed: hiddens"):
        config.load_run(ROOT / "sweeps/gail/pendulum.yaml", ["ppo.lrr=0.1"])
    (tmp_path / "base.yaml").write_text("gama: 0.9\n")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({
        "name": "x", "algorithm": "gail", "env": {"id": "Pendulum-v1"}, "demos": {"path": "d"},
        "ppo": {"base": "base.yaml"}}))
    with pytest.raises(SpecError, match=r"ppo.base: .*base.yaml: unknown key 'gama'"):
        config.load_run(tmp_path / "run.yaml")
    with pytest.raises(SpecError, match=r"ppo: bc is not trained with PPO"):
        config.load_run(ROOT / "sweeps/gail/pendulum_bc.yaml", ["ppo.lr=0.1"])
    with pytest.raises(SpecError, match=r"ppo: unknown key 'lrr'"):
        config.load_expert(ROOT / "sweeps/gail/pendulum_expert.yaml", ["ppo.lrr=0.1"])


# Each bad input, and the words its message must contain (the field and what is allowed).
BAD_RUNS = [
    ("unknown top-level key", with_(RUN, "epochs", 3), ["(top level): unknown key 'epochs'", "allowed:", "budget"]),
    ("unknown nested key", with_(RUN, "data.labels", 3), ["data: unknown key 'labels'", "labels_per_class"]),
    ("unknown hparam", with_(RUN, "hparams.learning_rate", 0.1), ["hparams: unknown key 'learning_rate'"]),
    ("unknown algorithm", with_(RUN, "algorithm", "dcgan"), ["algorithm: unknown algorithm 'dcgan'", "improved_gan"]),
    ("wrong type", with_(RUN, "budget.epochs", "ten"), ["budget.epochs: Input should be a valid integer", "'ten'"]),
    ("negative lr", with_(RUN, "hparams.lr", -0.1), ["hparams.lr: Input should be greater than 0", "-0.1"]),
    ("zero workers", with_(RUN, "resources.num_workers", 0), ["resources.num_workers: Input should be greater than 0"]),
    ("negative gpus", with_(RUN, "resources.gpus_per_worker", -1),
     ["resources.gpus_per_worker", "greater than or equal to 0"]),
    ("bad dataset", with_(RUN, "data.name", "imagenet"),
     ["data.name: Input should be 'digits', 'mnist', 'mnist5k', 'svhn', 'cifar10' or 'celeba'"]),
    ("ema out of range", with_(RUN, "hparams.ema_decay", 1.5), ["hparams.ema_decay: Input should be less than 1"]),
    ("bad arch", with_(RUN, "hparams.arch", "resnet"), ["hparams.arch: Input should be 'mlp' or 'conv'"]),
    ("eval after the end", with_(RUN, "budget.eval_every", 9), ["budget.eval_every: 9 is more than budget.epochs=4"]),
    ("bad run name", with_(RUN, "name", "my run!"), ["name: String should match pattern"]),
    ("missing algorithm", {k: v for k, v in RUN.items() if k != "algorithm"}, ["algorithm: Field required"]),
]


@pytest.mark.parametrize("case, raw, expected", BAD_RUNS, ids=[c[0] for c in BAD_RUNS])
def test_bad_run_specs_are_rejected_with_a_message_naming_the_field(tmp_path, case, raw, expected):
    with pytest.raises(SpecError) as e:
        config.load_run(write(tmp_path, raw))
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'spec.yaml'}: invalid run spec:")
    for words in expected:
        assert words in msg, f"{case}: {words!r} not in\n{msg}"


BAD_SWEEPS = [
    ("metric not reported", with_(SWEEP, "metric", "eval/kid"), ["metric: 'eval/kid' is not reported by improved_gan",
                                                                 "eval/test_error"]),
    ("bad mode", with_(SWEEP, "mode", "minimize"), ["mode: Input should be 'min' or 'max'"]),
    ("low above high", dim("hparams.lr", {"loguniform": [1e-2, 1e-4]}),
     ["search_space.hparams.lr: low must be below high"]),
    ("loguniform not positive", dim("hparams.lr", {"loguniform": [0, 1e-2]}),
     ["search_space.hparams.lr.loguniform.0: Input should be greater than 0"]),
    ("range reaches invalid values", dim("hparams.ema_decay", {"uniform": [0.9, 1.2]}),
     ["search_space.hparams.ema_decay: value 1.2 is not a valid run", "less than 1"]),
    ("path not in the spec", dim("hparams.momentum", {"uniform": [0.1, 0.9]}),
     ["search_space.hparams.momentum", "unknown key 'momentum'"]),
    ("unknown distribution", dim("hparams.lr", {"normal": [0, 1]}),
     ["search_space.hparams.lr: expected one of {uniform: [low, high]}", "{'normal': [0, 1]}"]),
    ("zero samples", with_(SWEEP, "num_samples", 0), ["num_samples: Input should be greater than 0"]),
    ("grace beyond budget", with_(SWEEP, "scheduler.grace_period", 10), ["scheduler.grace_period: 10 is more than"]),
    ("reduction factor", with_(SWEEP, "scheduler.reduction_factor", 1),
     ["scheduler.reduction_factor: Input should be greater than 1"]),
    ("empty search space", with_(SWEEP, "search_space", {}), ["search_space: Dictionary should have at least 1 item"]),
    ("bad base run", with_(SWEEP, "run.hparams.lr", 0), ["run.hparams.lr: Input should be greater than 0"]),
    ("eval too rare for the scheduler", with_(SWEEP, "run.budget.eval_every", 2),
     ["run.budget.eval_every: 2, but the sweep compares trials by eval/test_error after every epoch"]),
    ("a metric these settings do not report", with_(SWEEP, "metric", "eval/fid"),
     ["metric: improved_gan reports eval/fid only with hparams.sample_scores: [inception]"]),
    ("ASHA stops a trial between checkpoints", with_(with_(SWEEP, "run.budget.checkpoint_every", 2),
                                                     "run.budget.epochs", 5),
     ["run.budget.checkpoint_every: 2, but ASHA may stop a trial at epoch 1, which would not be a checkpoint",
      "set run.budget.checkpoint_every to a divisor of 1"]),
]


def test_asha_rungs_are_the_epochs_tune_compares_trials_at():
    from genlab.sweep_specs import SchedulerSpec

    assert SchedulerSpec(grace_period=10, reduction_factor=2).rungs(30) == [10, 20]
    assert SchedulerSpec(grace_period=2, reduction_factor=3).rungs(20) == [2, 6, 18]
    assert SchedulerSpec(grace_period=3, reduction_factor=1.5).rungs(9) == [3, 5, 7]  # 4.5 and 6.75: next epoch


@pytest.mark.parametrize("case, raw, expected", BAD_SWEEPS, ids=[c[0] for c in BAD_SWEEPS])
def test_bad_sweep_specs_are_rejected_with_a_message_naming_the_field(tmp_path, case, raw, expected):
    with pytest.raises(SpecError) as e:
        config.load_sweep(write(tmp_path, raw))
    msg = str(e.value)
    for words in expected:
        assert words in msg, f"{case}: {words!r} not in\n{msg}"


def test_all_problems_of_a_file_are_reported_together(tmp_path):
    raw = with_(with_(RUN, "budget.epochs", -1), "data.batch_size", "big")
    with pytest.raises(SpecError) as e:
        config.load_run(write(tmp_path, raw))
    assert "budget.epochs" in str(e.value) and "data.batch_size" in str(e.value)


@pytest.mark.parametrize("item, expected", [
    ("hparams.lr", "expected KEY=VALUE"),
    ("=3", "the key must be a dotted path"),
    ("hparams..lr=3", "the key must be a dotted path"),
    ("hparams.lr.x=3", "hparams.lr is a value, not a section"),
])
def test_bad_overrides(tmp_path, item, expected):
    with pytest.raises(SpecError, match=expected):
        config.load_run(write(tmp_path, RUN), [item])


def test_file_problems(tmp_path):
    with pytest.raises(SpecError, match="no such spec file"):
        config.load_run(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="a spec must be a mapping"):
        config.load_run(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        config.load_run(tmp_path / "broken.yaml")


def test_resources_this_machine_cannot_place_are_rejected():
    from genlab.preflight import local_resource_problems

    spec = config.run_from_dict(with_(RUN, "resources.gpus_per_worker", 1))
    (problem,) = local_resource_problems(spec, cpus_available=2, gpus_available=0)
    assert problem.startswith("resources.gpus_per_worker: 1 GPUs asked for, but this machine has none")
    spec = config.run_from_dict(with_(RUN, "resources.num_workers", 4))
    (problem,) = local_resource_problems(spec, cpus_available=2, gpus_available=0)
    assert "4 workers x 1 CPUs is more than the 2 CPUs here" in problem
    assert local_resource_problems(config.run_from_dict(RUN), cpus_available=2, gpus_available=0) == []


def test_cli_reports_bad_input_before_ray_starts(tmp_path, capsys):
    import ray

    p = write(tmp_path, RUN)
    rc = main(["train", str(p), "--set", "hparams.lr=-3", "--storage", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "hparams.lr: Input should be greater than 0 (got -3)" in err
    assert not ray.is_initialized()
    assert not (tmp_path / "results").exists()  # nothing was started or written
    rc = main(["sweep", str(p)])
    assert rc == 2 and "has no search_space; run it with `genlab train" in capsys.readouterr().err


def test_validate_prints_the_resolved_spec(tmp_path, capsys):
    assert main(["validate", str(write(tmp_path, RUN)), "--set", "hparams.lr=0.01"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["hparams"]["lr"] == 0.01 and out["hparams"]["ema_decay"] == 0.999


def test_trials_get_absolute_local_paths(tmp_path, monkeypatch):
    """A Tune trial runs in a folder of its own: sweeps and studies hand it demos.path and data.root made absolute
    against the directory the user ran genlab in (where the pre-flight found them)."""
    monkeypatch.chdir(tmp_path)
    gail = config.run_from_dict({"algorithm": "gail", "env": {"id": "Pendulum-v1"},
                                 "demos": {"path": "results/experts/pendulum"}})
    assert gail.with_absolute_paths().demos.path == str(tmp_path / "results/experts/pendulum")
    assert gail.demos.path == "results/experts/pendulum"  # a copy: the spec itself is unchanged
    gan = config.run_from_dict({"algorithm": "improved_gan", "data": {"name": "mnist", "root": "data"}})
    assert gan.with_absolute_paths().data.root == str(tmp_path / "data")
    assert config.run_from_dict({"algorithm": "improved_gan"}).with_absolute_paths().data.root is None


def test_help_is_plain_text_for_a_terminal(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "genlab: train | sweep | study" in out and "``" not in out and ":class:" not in out, out
