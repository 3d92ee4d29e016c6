"""Pre-flight: what a spec refers to on this machine is checked before Ray starts, for every spec command.

Each bad input is run through the CLI in this process, in an empty working directory: it must exit 2 with one
line naming the field and the fix, start no Ray session and create no MLflow run (no mlflow.db appears).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT

from genlab import cli, config
from genlab.errors import SpecError
from genlab.rl.demos import DEMOS_FILE, META_FILE, space_to_dict
from genlab.rl.evaluation import env_spaces
from genlab.runners import storage
from genlab.specs import set_path

DIGITS_RUN = {
    "name": "pre", "algorithm": "improved_gan", "hparams": {"d_hidden": [32], "g_hidden": [32]},
    "data": {"name": "digits", "labels_per_class": 10, "batch_size": 100}, "budget": {"epochs": 2},
}


def fake_demos(folder: Path, env_id: str, n_trajectories: int = 3) -> Path:
    """A recording's files in the real format (meta.json as genlab expert writes it; a few transitions)."""
    folder.mkdir(parents=True, exist_ok=True)
    obs_space, act_space = env_spaces(env_id)
    meta = {"env_id": env_id, "observation_space": repr(obs_space), "action_space": repr(act_space),
            "observation_space_spec": space_to_dict(obs_space), "action_space_spec": space_to_dict(act_space),
            "n_trajectories": n_trajectories, "n_transitions": n_trajectories, "expert_return": 1.0,
            "expert_return_std": 0.0, "random_return": 0.0, "seed": 0, "module_path": "none"}
    (folder / META_FILE).write_text(json.dumps(meta))
    obs = [np.zeros(obs_space.shape, np.float32).tolist()] * n_trajectories
    pd.DataFrame({"eps_id": np.arange(n_trajectories), "t": 0, "obs": obs, "actions": [0] * n_trajectories,
                  "rewards": 1.0, "new_obs": obs, "terminateds": True, "truncateds": False}).to_parquet(
        folder / DEMOS_FILE)
    return folder


def gail_run(demos: Path, **changes) -> dict:
    raw = {"name": "g", "algorithm": "gail", "env": {"id": "CartPole-v1"}, "demos": {"path": str(demos)},
           "ppo": {"train_batch_size": 1000, "minibatch_size": 500}, "budget": {"epochs": 2}}
    for k, v in changes.items():
        set_path(raw, k, v)
    return raw


def celeba_files(root: Path) -> Path:
    """CelebA's layout under ``root`` as torchvision has it (img_align_celeba/ is a folder), the files empty."""
    from genlab.datasets import _CELEBA_LISTS

    (root / "celeba" / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    for f in _CELEBA_LISTS:
        (root / "celeba" / f).touch()
    return root


INFOGAN_CELEBA = {"name": "pre-celeba", "algorithm": "infogan", "hparams": {"arch": "color"},
                  "data": {"name": "celeba", "batch_size": 64}, "budget": {"epochs": 1}}


def with_(raw: dict, **changes) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(raw))
    for k, v in changes.items():
        set_path(raw, k, v)
    return raw


def sweep_over(run: dict, path: str, dim: dict) -> dict:
    return {"name": "pre-sweep", "run": run, "search_space": {path: dim}, "metric": "eval/test_error",
            "mode": "min", "scheduler": {"type": "fifo"}}


def cases(tmp: Path) -> list[tuple[str, str, dict, list[str]]]:
    """(id, command, spec, words the message must contain)."""
    cartpole = fake_demos(tmp / "cartpole-demos", "CartPole-v1")
    return [
        ("labels beyond the smallest class", "train", with_(DIGITS_RUN, **{"data.labels_per_class": 1000}),
         ["data.labels_per_class: 1000 is more than digits's class", "training images); at most"]),
        ("dataset files absent", "train", with_(DIGITS_RUN, **{"data.name": "mnist", "data.root": str(tmp / "nowhere"),
                                                               "data.labels_per_class": None}),
         ["data.name: mnist not found under", "MNIST/raw/train-images-idx3-ubyte", "data.download: true"]),
        ("batch bigger than a shard", "train", with_(DIGITS_RUN, **{"data.batch_size": 1000,
                                                                    "resources.num_workers": 2}),
         ["data.batch_size: 1000 is more than the 750 training images of each worker's shard"]),
        ("no GPU here", "train", with_(DIGITS_RUN, **{"resources.gpus_per_worker": 1}),
         ["resources.gpus_per_worker: 1 GPUs asked for, but this machine has none"]),
        ("more CPUs than here", "train", with_(DIGITS_RUN, **{"resources.num_workers": 2,
                                                              "resources.cpus_per_worker": 4}),
         ["resources: 2 workers x 4 CPUs is more than the"]),
        ("demos absent", "train", gail_run(tmp / "no-demos"),
         ["demos.path: no demonstrations at", "demos.parquet is missing", "genlab expert"]),
        ("demos of another env", "train", gail_run(cartpole, **{"env.id": "Acrobot-v1"}),
         ["demos.path: demonstrations at", "were recorded on CartPole-v1", "but Acrobot-v1 has"]),
        ("more trajectories than recorded", "train", gail_run(cartpole, **{"demos.num_trajectories": 7}),
         ["demos.num_trajectories: asked for 7 trajectories but", "holds 3"]),
        ("BC on one CPU", "train --num-cpus 1", gail_run(cartpole, algorithm="bc", ppo=None),
         ["--num-cpus: 1, but bc needs 2 CPUs in a local Ray", "pass --num-cpus 2 or more"]),
        ("a range's upper end beyond the data", "sweep",
         sweep_over(DIGITS_RUN, "data.labels_per_class", {"int": [5, 1000]}),
         ["search_space.data.labels_per_class: at 1000: data.labels_per_class: 1000 is more than"]),
        ("a choice beyond a shard", "sweep", sweep_over(DIGITS_RUN, "data.batch_size", {"choice": [50, 5000]}),
         ["search_space.data.batch_size: at 5000: data.batch_size: 5000 is more than"]),
        ("the base run of a sweep", "sweep", sweep_over(with_(DIGITS_RUN, **{"data.labels_per_class": 500}),
                                                        "hparams.lr", {"loguniform": [1e-4, 1e-3]}),
         ["run.data.labels_per_class: 500 is more than"]),
        ("validate runs the same checks", "validate", with_(DIGITS_RUN, **{"data.labels_per_class": 1000}),
         ["pre-flight", "data.labels_per_class: 1000"]),
    ]


def _case_ids() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:  # cases() writes demo files; ids are collected without a test's tmp
        return [c[0] for c in cases(Path(tmp))]


CASE_IDS = _case_ids()


@pytest.mark.parametrize("case", CASE_IDS)
def test_bad_input_fails_before_ray_and_mlflow(case, tmp_path, monkeypatch, capsys):
    _, command, raw, expected = next(c for c in cases(tmp_path) if c[0] == case)
    _refused_before_ray_and_mlflow(case, command, raw, expected, tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize("case", ["absent", "batch beyond the train partition"])
def test_celeba_files_and_train_size_are_checked(case, tmp_path, monkeypatch, capsys):
    """img_align_celeba/ is a folder: present, it counts; the shard check knows CelebA's 162770 training faces."""
    if case == "absent":
        raw = with_(INFOGAN_CELEBA, **{"data.root": str(tmp_path / "nowhere")})
        expected = ["data.name: celeba not found under", "celeba/img_align_celeba", "list_eval_partition.txt",
                    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"]
    else:
        raw = with_(INFOGAN_CELEBA, **{"data.root": str(celeba_files(tmp_path / "root")), "data.batch_size": 200000})
        expected = ["data.batch_size: 200000 is more than the 162770 training images of each worker's shard"]
    _refused_before_ray_and_mlflow(case, "train", raw, expected, tmp_path, monkeypatch, capsys)


def _refused_before_ray_and_mlflow(case, command, raw, expected, tmp_path, monkeypatch, capsys):
    import ray

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    command, *extra = command.split()  # e.g. "train --num-cpus 1": options of the case's own, given last
    args = [command, str(spec)] + (["--num-cpus", "2", "--storage", str(work / "results")]
                                   if command in ("train", "sweep") else []) + extra
    rc = cli.main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith(f"genlab: error: {spec}: pre-flight:"), err
    for words in expected:
        assert words in err, f"{case}: {words!r} not in\n{err}"
    assert not ray.is_initialized(), "a Ray session was started"
    assert not (work / "mlflow.db").exists() and not (work / "results").exists(), "something was written"


def test_on_a_cluster_files_are_left_to_the_workers_and_said_so(tmp_path, monkeypatch, capsys):
    raw = with_(DIGITS_RUN, **{"data.name": "mnist", "data.root": str(tmp_path / "nowhere"),
                               "data.labels_per_class": None})
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # validate only: nothing connects
    assert cli.main(["validate", str(spec)]) == 0
    assert "checked on the workers" in capsys.readouterr().out


def test_shipped_mnist_spec_passes_when_its_files_are_there(tmp_path):
    """The MNIST label file alone tells the pre-flight how many labels each class has."""
    from genlab import preflight

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    labels = np.repeat(np.arange(10, dtype=np.uint8), 12)
    (raw / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + len(labels).to_bytes(4, "big")
                                                  + labels.tobytes())
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"")
    here = [f"data.root={tmp_path}", "resources.gpus_per_worker=0", "resources.cpus_per_worker=1"]
    spec = config.load_run(ROOT / "sweeps/improved_gan/mnist.yaml", here)
    assert preflight.check(spec, source="mnist.yaml", cluster=False) == []
    with pytest.raises(SpecError, match="labels_per_class: 13 is more than mnist's class 0 has \\(12"):
        preflight.check(config.load_run(ROOT / "sweeps/improved_gan/mnist.yaml", [*here, "data.labels_per_class=13"]),
                        source="mnist.yaml", cluster=False)


def test_a_name_is_taken_only_by_a_run_with_checkpoints(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()  # a run that failed before its first checkpoint leaves its folder behind
    assert storage.check_can_start("run", tmp_path, "r", resume=False) == run_dir
    with pytest.raises(SpecError, match="holds no interrupted run to resume \\(no checkpoint was written\\)"):
        storage.check_can_start("run", tmp_path, "r", resume=True)
    (run_dir / "checkpoint_2026-12-03_10-00-00.000000").mkdir()
    with pytest.raises(SpecError, match="already holds a run with checkpoints named 'r': pass --resume"):
        storage.check_can_start("run", tmp_path, "r", resume=False)
    assert storage.check_can_start("run", tmp_path, "r", resume=True) == run_dir
    with pytest.raises(SpecError, match="\\(no such folder\\)"):
        storage.check_can_start("run", tmp_path, "other", resume=True)


def test_error_summaries_are_one_line_naming_the_cause():
    from genlab import errors

    class WorkerGroupError(Exception):  # the shape of Ray Train's: the workers' own exceptions by rank
        def __init__(self, failures):
            super().__init__("Training failed due to worker errors:\n...")
            self.worker_failures = failures

    nan = errors.NonFiniteLoss("non-finite loss at step 5:\n loss/disc=nan")
    expected = "NonFiniteLoss: non-finite loss at step 5: loss/disc=nan"
    assert errors.summary(WorkerGroupError({0: nan, 1: nan})) == expected
    assert errors.not_retryable(WorkerGroupError({0: nan}))
    assert not errors.not_retryable(WorkerGroupError({0: nan, 1: RuntimeError("node lost")}))
    assert errors.summary("Traceback...\ngenlab.errors.DataError: data.name: x") == "DataError: data.name: x"
    assert errors.summary(RuntimeError("boom")) == "RuntimeError: boom"
