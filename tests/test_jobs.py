"""`genlab submit` and genlab inside a Ray job: bad input is refused before anything is uploaded or run,
with a message that says what to do. (The submissions that run are in tests/test_cluster_jobs.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT

from genlab import config, jobs, ray_compat
from genlab.cli import main
from genlab.runners import generative as train

SWEEP = "sweeps/improved_gan/digits_sweep.yaml"


def run_cli(capsys, *args: str) -> tuple[int, str]:
    rc = main(list(args))
    return rc, capsys.readouterr().err


def test_submit_refuses_a_spec_outside_the_working_dir(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, err = run_cli(capsys, "submit", str(ROOT / SWEEP), "--storage", "/mnt/genlab/results")
    assert rc == 2 and "outside the job's working directory" in err and "--working-dir" in err


def test_submit_refuses_a_relative_storage(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    rc, err = run_cli(capsys, "submit", SWEEP, "--storage", "results")
    assert rc == 2 and "--storage 'results' is relative" in err and "/mnt/genlab/results" in err


def test_submit_validates_the_spec_before_contacting_a_cluster(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    rc, err = run_cli(capsys, "submit", SWEEP, "--set", "run.hparams.lr=-1", "--address", "http://127.0.0.1:9")
    assert rc == 2 and "hparams.lr: Input should be greater than 0" in err


def test_submit_refuses_expert_specs_and_bad_env(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    rc, err = run_cli(capsys, "submit", "sweeps/gail/cartpole_expert.yaml")
    assert rc == 2 and "expert spec" in err
    rc, err = run_cli(capsys, "submit", SWEEP, "--env", "NOVALUE")
    assert rc == 2 and "--env 'NOVALUE': expected KEY=VALUE" in err


def test_submit_to_an_address_with_no_cluster_says_how_to_reach_one(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    rc, err = run_cli(capsys, "submit", SWEEP, "--address", "http://127.0.0.1:9")
    assert rc == 2 and "no Ray job API at http://127.0.0.1:9" in err and "ray dashboard cluster/" in err


def test_dashboard_address_precedence(monkeypatch):
    for k in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        monkeypatch.delenv(k, raising=False)
    assert jobs.dashboard_address() == jobs.DEFAULT_ADDRESS
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # a GCS address is not a job API
    assert jobs.dashboard_address() == jobs.DEFAULT_ADDRESS
    monkeypatch.setenv("RAY_ADDRESS", "http://10.0.0.1:8265")
    assert jobs.dashboard_address() == "http://10.0.0.1:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:8266/")
    assert jobs.dashboard_address() == "http://127.0.0.1:8266"
    assert jobs.dashboard_address("http://h:1") == "http://h:1"


def test_runtime_env_ships_genlab_and_algorithms_and_the_entrypoint_quotes_overrides():
    env = jobs.runtime_env(ROOT, {"A": "1"})
    assert [Path(p).name for p in env["py_modules"]] == ["genlab", "algorithms"]
    assert ".venv" in env["excludes"] and env["env_vars"] == {"A": "1"}
    ep = jobs.entrypoint("sweep", SWEEP, ["run.hparams.d_hidden=[64, 32]"], "/mnt/genlab/results")
    assert ep == ("python -m genlab sweep sweeps/improved_gan/digits_sweep.yaml "
                  "--set 'run.hparams.d_hidden=[64, 32]' --storage /mnt/genlab/results")


@pytest.fixture
def inside_a_job(monkeypatch, tmp_path):
    """The environment Ray's job supervisor gives an entrypoint: the job config, a temporary working dir."""
    monkeypatch.setenv(ray_compat.JOB_CONFIG_ENV, json.dumps({"runtime_env": {"env_vars": {"GENLAB_X": "1"}}}))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("GENLAB_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "digits.yaml"
    spec.write_text((ROOT / "sweeps/improved_gan/digits.yaml").read_text())
    return spec


def test_in_a_job_results_in_the_temporary_working_dir_are_refused(inside_a_job, capsys):
    rc, err = run_cli(capsys, "train", str(inside_a_job))
    assert rc == 2 and "temporary working directory" in err and "--storage /shared/path" in err
    rc, err = run_cli(capsys, "train", str(inside_a_job), "--storage", "/mnt/genlab/results")
    assert rc == 2 and "SQLite file in its temporary working directory" in err and "MLFLOW_TRACKING_URI" in err
    assert ray_compat.job_env_vars() == {"GENLAB_X": "1"}


def test_gpu_spec_on_a_node_without_cuda_fails_with_the_fix(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    raw = yaml.safe_load((ROOT / "sweeps/improved_gan/digits.yaml").read_text())
    raw["resources"]["gpus_per_worker"] = 1
    spec = config.run_from_dict(raw)
    monkeypatch.delenv(train.LOGICAL_GPUS_ENV, raising=False)
    with pytest.raises(RuntimeError, match="sees no CUDA device.*GENLAB_LOGICAL_GPUS=1"):
        train._device(spec)
    monkeypatch.setenv(train.LOGICAL_GPUS_ENV, "1")
    assert train._device(spec) == torch.device("cpu")
