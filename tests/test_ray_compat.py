"""Every Ray internal genlab uses is where the pinned Ray has it; a moved one fails with a message that says so."""

from __future__ import annotations

import pytest
import ray

from genlab import ray_compat


def test_the_pinned_ray_is_installed_and_its_internals_are_in_place():
    assert ray.__version__ == ray_compat.PINNED_RAY, "constraints.txt pins Ray; ray_compat.py is checked against it"
    checked = ray_compat.check()
    assert {"get_train_context", "TorchTrainer failure policy", "Learner._learner_connector",
            "AlgorithmConfig._value_error"} <= set(checked)


def test_a_moved_internal_names_itself_and_the_fix(monkeypatch):
    from ray.rllib.core.learner.learner import Learner

    class Bare:  # a learner of some other Ray version, without the private attribute
        config = None

    with pytest.raises(ray_compat.RayInternalsChanged) as err:
        ray_compat.learner_connector(Bare())
    msg = str(err.value)
    assert "Learner._learner_connector" in msg and "reward piece" in msg and "ray==2.60.0" in msg
    assert Learner  # the real class is importable

    with pytest.raises(ray_compat.RayInternalsChanged, match=r"AlgorithmConfig._value_error .* GAIL or VIME setting"):
        ray_compat.config_error(Bare(), "GAIL: demos_path is not set")


def test_config_errors_read_as_rllibs_own_and_follow_its_validation_switch(caplog):
    from ray.rllib.algorithms.ppo import PPOConfig

    with pytest.raises(ValueError, match=r"^GAIL: bad\nTo suppress all validation errors"):
        ray_compat.config_error(PPOConfig(), "GAIL: bad")
    ray_compat.config_error(PPOConfig().experimental(_validate_config=False), "GAIL: only a warning")
    assert "GAIL: only a warning" in caplog.text


def test_the_failure_policy_raises_deterministic_errors_and_retries_the_rest():
    from ray.train import FailureConfig
    from ray.train.v2._internal.execution.failure_handling import FailureDecision
    from ray.train.v2.api.exceptions import WorkerGroupError

    from genlab.errors import DataError, not_retryable

    trainer_cls = ray_compat.torch_trainer_class(not_retryable)
    assert trainer_cls.__mro__[1].__name__ == "TorchTrainer"
    policy_cls = _policy_class(trainer_cls)
    policy = policy_cls(FailureConfig(max_failures=3))
    wrapped = RuntimeError("worker died")
    wrapped.__cause__ = DataError("data.labels_per_class: 1000 is more than class 0 has")
    assert policy.make_decision(WorkerGroupError("bad data", {0: wrapped})) == FailureDecision.RAISE
    assert policy.make_decision(WorkerGroupError("crash", {0: RuntimeError("segfault")})) == FailureDecision.RETRY


def _policy_class(trainer_cls):
    """The failure policy the trainer installs (built the way its controller gets it)."""
    captured = {}

    class Probe(trainer_cls):
        def __init__(self):  # no Ray needed: only the override is exercised
            self.run_config = type("RC", (), {"failure_config": None})()

    def fake_super(self, **kwargs):
        captured.update(kwargs)

    import ray.train.torch

    original = ray.train.torch.TorchTrainer._initialize_and_run_controller
    ray.train.torch.TorchTrainer._initialize_and_run_controller = fake_super
    try:
        Probe()._initialize_and_run_controller(failure_policy=None)
    finally:
        ray.train.torch.TorchTrainer._initialize_and_run_controller = original
    return type(captured["failure_policy"])


def test_a_local_rays_dashboard_gets_five_minutes_to_start_unless_the_user_set_the_limit(monkeypatch):
    """On a loaded 2-core machine the dashboard took over 77 s to start and ray.init failed at Ray's 60 s ("Failed to
    start the dashboard"); genlab starts local Rays with 300 s, and a user's RAY_DASHBOARD_STARTUP_TIMEOUT_S wins."""
    from ray._private import ray_constants

    monkeypatch.setattr(ray_constants, "RAY_DASHBOARD_STARTUP_TIMEOUT_S", 60)
    monkeypatch.delenv("RAY_DASHBOARD_STARTUP_TIMEOUT_S", raising=False)
    ray_compat.patient_dashboard_start()
    assert ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S == 300

    monkeypatch.setattr(ray_constants, "RAY_DASHBOARD_STARTUP_TIMEOUT_S", 45)  # as Ray read it from the variable
    monkeypatch.setenv("RAY_DASHBOARD_STARTUP_TIMEOUT_S", "45")
    ray_compat.patient_dashboard_start()
    assert ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S == 45


def test_a_local_ray_runs_without_ray_trains_preemption_watcher_unless_the_user_asks_for_it(monkeypatch):
    """One machine has no spot nodes to watch: the watcher cost each run a process and printed a core_worker error
    line at every `genlab train`. The variable is the one Ray Train reads; a user's own value wins."""
    from ray.train.v2._internal import constants

    from genlab.launch import LOCAL_RAY_ENV_VARS, local_ray_options

    assert constants.ENABLE_PREEMPTION_WATCHER_ENV_VAR in LOCAL_RAY_ENV_VARS
    monkeypatch.delenv(constants.ENABLE_PREEMPTION_WATCHER_ENV_VAR, raising=False)
    env = local_ray_options(2, {"env_vars": {"A": "1"}})["runtime_env"]["env_vars"]
    assert env[constants.ENABLE_PREEMPTION_WATCHER_ENV_VAR] == "0" and env["A"] == "1"

    monkeypatch.setenv(constants.ENABLE_PREEMPTION_WATCHER_ENV_VAR, "1")
    env = local_ray_options(2, {"env_vars": {}})["runtime_env"]["env_vars"]
    assert constants.ENABLE_PREEMPTION_WATCHER_ENV_VAR not in env  # the driver's own variable reaches Ray as set


def test_a_local_rays_dashboard_port_is_free_and_outside_the_range_connections_draw_from(monkeypatch):
    """Two genlab commands at once: a dashboard port probed with bind(0) comes from the ephemeral range, and the
    other Ray's connections took one before our dashboard bound it ("Failed to find a valid port for dashboard after
    0 retries"). The port is drawn below that range, is not one a server holds, and differs from every other drawn."""
    import random
    import socket
    from pathlib import Path

    from genlab import launch

    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [launch.unused_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(20000 <= p < ephemeral_low for p in ports), sorted(ports)[:3] + sorted(ports)[-3:]

    options = launch.local_ray_options(2, {"env_vars": {}})
    port = options["dashboard_port"]
    assert 20000 <= port < ephemeral_low
    assert options["runtime_env"]["env_vars"]["RAY_API_SERVER_ADDRESS"] == f"http://127.0.0.1:{port}"

    with socket.socket() as held:  # a server listens on the first port drawn: the next one is handed out
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        free = next(p for p in range(20000, ephemeral_low) if p not in ports and p != port)

        class Draws(random.Random):
            def randint(self, a, b):
                return next(order)

        order = iter([taken, free])
        monkeypatch.setattr(launch.random, "Random", Draws)
        assert launch.unused_port() == free
