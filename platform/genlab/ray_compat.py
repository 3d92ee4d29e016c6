"""Every use of a Ray internal, in one place, each behind a check against the pinned Ray.

genlab pins one Ray version (constraints.txt). Where it needs something Ray does not offer publicly, it reaches
into Ray's private modules here and nowhere else. Each function imports what it needs inside a guard: if a Ray
upgrade moves or renames it, the call fails with :class:`RayInternalsChanged`, naming what moved and what genlab
used it for, instead of an AttributeError deep in a run. ``check()`` exercises the imports and attributes that
can be checked without a running cluster; tests/test_ray_compat.py runs it and the live paths.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

PINNED_RAY = "2.60.0"


class RayInternalsChanged(RuntimeError):
    """A Ray internal genlab relies on is not where the pinned Ray had it."""


@contextmanager
def _guard(what: str, used_for: str):
    try:
        yield
    except (ImportError, AttributeError, TypeError) as e:
        import ray

        raise RayInternalsChanged(
            f"Ray {ray.__version__}: {what} is not as in Ray {PINNED_RAY} ({type(e).__name__}: {e}); genlab uses it "
            f"{used_for}. Install ray=={PINNED_RAY} (constraints.txt) or update genlab/ray_compat.py") from e


# ------------------------------------------------------------------------------------------------ a local Ray

DASHBOARD_STARTUP_TIMEOUT_S = 300
"""How long a local Ray's dashboard may take to start (Ray's own limit: 60 s)."""


def patient_dashboard_start(timeout_s: int = DASHBOARD_STARTUP_TIMEOUT_S) -> None:
    """Give the dashboard of a local Ray that ``ray.init`` starts ``timeout_s`` to come up. On a loaded 2-core
    machine it can take more than Ray's 60 s (its nine modules start as processes of their own), and ``ray.init``
    then fails with "Failed to start the dashboard"; genlab needs the dashboard (Ray Train's placement-group cleaner
    asks its state API). Ray reads the limit from ``ray_constants`` when it starts the dashboard, and its variable
    ``RAY_DASHBOARD_STARTUP_TIMEOUT_S`` only when Ray is imported: a user who sets the variable keeps theirs."""
    if "RAY_DASHBOARD_STARTUP_TIMEOUT_S" in os.environ:
        return
    with _guard("ray._private.ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S",
                "to let a local Ray's dashboard start on a loaded machine"):
        from ray._private import ray_constants

        ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S = max(ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S, timeout_s)


# ------------------------------------------------------------------------------------------------ Ray Train


def train_run_ids() -> tuple[str, str]:
    """(Ray Train run id, controller actor id) of the Train run this worker belongs to.

    Public Ray Train offers neither; genlab records them on the MLflow run so that the sweep can withdraw the
    autoscaling request of a trial that Tune stopped (:func:`release_autoscaling_request`).
    """
    with _guard("ray.train.v2._internal.execution.context.get_train_context",
                "to tag a run with its Ray Train run and controller"):
        from ray.train.v2._internal.execution.context import get_train_context

        ctx = get_train_context()
        return ctx.train_run_context.run_id, ctx.controller_actor._actor_id.hex()


def quiet_train_reports() -> None:
    """Silence the line Ray Train's worker logs at every report ("Reporting training result N: <every metric>"):
    genlab prints one progress line per epoch itself. That logger is named by its file's path, not under
    ``ray.train``, so it has to be found through the module."""
    import logging

    with _guard("ray.train.v2._internal.execution.context (its logger)", "to keep one progress line per epoch"):
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)


def quiet_rllib_new_stack_notice() -> None:
    """Drop the warning RLlib's AlgorithmConfig logs each time a custom algorithm is built ("You are running <name> on
    the new API stack! This is the new default behavior ..."): genlab's RL methods are on the new stack on purpose.
    Other warnings of that logger still show."""
    import logging

    from ray.rllib.algorithms import algorithm_config

    class DropNotice(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "on the new API stack!" not in record.getMessage()

    logger = logging.getLogger(algorithm_config.__name__)
    if not any(type(f).__name__ == DropNotice.__name__ for f in logger.filters):
        logger.addFilter(DropNotice())


def release_autoscaling_request(train_run_id: str, controller_actor_id: str | None, wait_s: float = 60.0) -> None:
    """Withdraw what a Ray Train run asked the autoscaler for, once its controller is gone.

    Ray 2.60's Train controller registers its workers' resources with the autoscaling coordinator (and re-sends
    them every 20 s), and withdraws them only when it shuts down cleanly. A trial that ASHA stops is killed, its
    controller with it, so the request outlives it by up to 180 s: the autoscaler keeps (and may even add) GPU
    nodes for a trial that no longer exists. This waits (up to ``wait_s``) until the controller is dead, so that
    no last re-send undoes it, then withdraws the request.
    """
    from ray.util.state import get_actor

    deadline = time.monotonic() + wait_s
    while controller_actor_id and time.monotonic() < deadline:
        try:
            state = get_actor(controller_actor_id, timeout=10)
        except Exception:  # the state API is unreachable: withdraw now rather than never
            break
        if state is None or state.state == "DEAD":
            break
        time.sleep(0.5)
    with _guard("ray.train.v2._internal...autoscaling_coordinator_client.TrainAutoscalingCoordinatorClient",
                "to withdraw the autoscaling request of a stopped sweep trial"):
        from ray.train.v2._internal.execution.scaling_policy.autoscaling_coordinator_client import (
            TrainAutoscalingCoordinatorClient,
        )

        TrainAutoscalingCoordinatorClient(f"train-{train_run_id}").cancel_resource_request()


def remove_job_placement_groups(wait_s: float = 60.0, grace_s: float = 10.0, poll_s: float = 1.0) -> list[str]:
    """Remove the placement groups this job created that are still reserved; returns their ids.

    Called when a sweep is over, when no trial of it runs any more. A Train controller stopped while its worker
    group was starting can leave that group's placement group behind (Ray 2.60's cleaner learns of it only once the
    group has started), and Ray did not always remove it when the job ended either: on an autoscaling cluster the
    reserved GPU node then never goes idle and is never removed.

    The order matters. A placement group removed under a Train controller that is still alive (a stopped trial's
    controller shuts down some seconds after Tune ends the trial) makes that controller retry: it prints a worker
    failure and asks for a new worker group, a node an autoscaler would start. So this waits (up to ``wait_s``) until
    no Train controller of this job is alive, then gives Ray Train's own cleaners ``grace_s`` more to remove their
    groups, and removes only what is still left after that.
    """
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group
    from ray.util.state import list_actors, list_placement_groups

    job = ray.get_runtime_context().get_job_id()

    def reserved():
        return [pg for pg in list_placement_groups(filters=[("creator_job_id", "=", job)], detail=True, limit=10_000)
                if pg.state in ("PENDING", "CREATED", "RESCHEDULING") and not pg.is_detached]

    with _guard("the actor class name TrainController (Ray Train V2's controller)",
                "to free a sweep's placement groups only once no Train controller is alive"):
        from ray.train.v2._internal.execution.controller import TrainController

        controller_class = TrainController.__name__
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and list_actors(
            filters=[("class_name", "=", controller_class), ("state", "=", "ALIVE"), ("job_id", "=", job)],
            limit=10_000):
        time.sleep(poll_s)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and reserved():
        time.sleep(poll_s)
    left = reserved()
    removed = []
    for pg in left:
        try:
            remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(pg.placement_group_id)))
            removed.append(pg.placement_group_id)
        except Exception:  # already removed meanwhile
            continue
    return removed


def torch_trainer_class(is_not_retryable: Callable[[BaseException], bool]):
    """A ``TorchTrainer`` subclass whose failure policy does not retry worker errors that retrying cannot fix.

    Ray Train's default policy retries every worker-group failure up to ``FailureConfig.max_failures`` times: a
    bad spec or missing data then fails again on every attempt, printing its traceback each time. This one raises
    at once when every worker error satisfies ``is_not_retryable`` (genlab's ``NotRetryable`` errors), and
    otherwise decides as Ray's default does (a crashed worker still restarts from the latest checkpoint).
    """
    with _guard("TorchTrainer._initialize_and_run_controller(failure_policy=...) / DefaultFailurePolicy",
                "so that deterministic errors fail a run at once instead of being retried"):
        from ray.train.torch import TorchTrainer
        from ray.train.v2._internal.execution.failure_handling import DefaultFailurePolicy, FailureDecision
        from ray.train.v2.api.exceptions import WorkerGroupError

        if not hasattr(TorchTrainer, "_initialize_and_run_controller"):
            raise AttributeError("TorchTrainer has no _initialize_and_run_controller")

    class NoRetryOnDeterministicErrors(DefaultFailurePolicy):
        def make_decision(self, training_failed_error):
            if isinstance(training_failed_error, WorkerGroupError) and training_failed_error.worker_failures and all(
                    is_not_retryable(e) for e in training_failed_error.worker_failures.values()):
                return FailureDecision.RAISE
            return super().make_decision(training_failed_error)

    class GenlabTorchTrainer(TorchTrainer):
        def _initialize_and_run_controller(self, **kwargs):
            kwargs["failure_policy"] = NoRetryOnDeterministicErrors(self.run_config.failure_config)
            return super()._initialize_and_run_controller(**kwargs)

    return GenlabTorchTrainer


def train_checkpoints(run_dir) -> list:
    """The checkpoint folders Ray Train wrote in a run's folder (``checkpoint_<date>``), oldest first; read before
    Ray starts, to tell whether a run name is taken. Ray Train offers no public listing of them."""
    from pathlib import Path

    with _guard("ray.train.v2._internal.execution.storage.StorageContext.make_default_checkpoint_dir_name",
                "to find a run's checkpoints before Ray starts"):
        from ray.train.v2._internal.execution.storage import StorageContext

        prefix = StorageContext.make_default_checkpoint_dir_name().split("_")[0] + "_"
    return sorted(p for p in Path(run_dir).glob(f"{prefix}*") if p.is_dir())


# ----------------------------------------------------------------------------------------------------- Tune


def trial_error(trial) -> BaseException | str:
    """The error Tune recorded for a failed trial, as a Tune callback sees it: Tune has written it to the trial's
    local folder (the pickled exception, else its text) but not yet to the experiment's storage, which is all its
    public ``Trial.get_pickled_error`` / ``get_error`` read."""
    from pathlib import Path

    import cloudpickle

    with _guard("Trial.pickled_error_file / Trial.error_file", "to record why a sweep trial failed"):
        files = ((trial.pickled_error_file, lambda f: cloudpickle.load(f)),
                 (trial.error_file, lambda f: f.read().decode()))
    for path, read in files:
        if path and Path(path).is_file():
            try:
                with open(path, "rb") as f:
                    return read(f)
            except Exception:  # an error that does not unpickle here: try its text
                continue
    return "trial failed (Tune recorded no error)"


# ------------------------------------------------------------------------------------------------ Ray Jobs

JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
"""Set by Ray's job supervisor in a job's entrypoint: the job's config, runtime env included (not a public API)."""


def in_job() -> bool:
    """Whether this process is a Ray job's entrypoint (a job's driver)."""
    import os

    return JOB_CONFIG_ENV in os.environ


def job_env_vars() -> dict[str, str]:
    """The env_vars of the Ray job this process is the entrypoint of ({} outside a job). Read before ``ray.init``,
    where ``ray.get_runtime_context()`` cannot tell yet."""
    import json
    import os

    if not in_job():
        return {}
    with _guard(f"${JOB_CONFIG_ENV} (a JSON job config with runtime_env.env_vars)",
                "to leave the job's own env vars to its runtime env"):
        cfg = json.loads(os.environ[JOB_CONFIG_ENV])
        return dict((cfg.get("runtime_env") or {}).get("env_vars") or {})


# ---------------------------------------------------------------------------------------------------- RLlib


def learner_connector(learner) -> Any:
    """The learner's connector pipeline (RLlib keeps it private; its own curiosity example edits it the same way)."""
    with _guard("Learner._learner_connector", "to insert the reward piece before PPO's advantage estimation"):
        return learner._learner_connector


def local_learner(algo):
    """The algorithm's local Learner object (one learner in the driver: ``num_learners=0``)."""
    with _guard("LearnerGroup.foreach_learner on a local learner", "to reach the learner (tests, evaluation)"):
        (result,) = algo.learner_group.foreach_learner(lambda learner: learner)
        return result.get()


def local_learner_module(algo, module_id: str):
    """An RLModule of the algorithm's local learner: the policy of an offline algorithm (BC) has no env runner."""
    with _guard("LearnerGroup.foreach_learner on a local learner", "to evaluate an offline algorithm's policy"):
        (result,) = algo.learner_group.foreach_learner(lambda learner: learner.module[module_id])
        return result.get()


def config_error(config, message: str) -> None:
    """Report an invalid setting of an RLlib config from its ``validate()`` as RLlib reports its own: a ValueError
    whose text ends with RLlib's hint, or only a warning once the user turned validation off
    (``config.experimental(_validate_config=False)``). RLlib keeps this private (``AlgorithmConfig._value_error``)."""
    with _guard("AlgorithmConfig._value_error", "to report an invalid GAIL or VIME setting as RLlib reports its own"):
        config._value_error(message)


# ------------------------------------------------------------------------------------------ cluster files

FAKE_PROVIDERS = ("fake_multinode", "fake_multinode_docker")


def launcher_config(raw: dict) -> dict:
    """A cluster-launcher config (the YAML's dict) as the autoscaler will run it, validated as Ray validates it:
    ``prepare_config`` (merges the provider's defaults.yaml, fills min/max workers, merges setup_commands), then
    ``validate_config`` (the autoscaler's ray-schema.json and its semantic checks: head_node_type among
    available_node_types, the sum of min_workers within max_workers, ...), what ``ray up`` runs before its first cloud
    call. A ``fake_multinode`` config (cluster/local-autoscaling.yaml) reaches Ray through ``ray start
    --autoscaling-config`` as written and the wheel ships no defaults for it (``prepare_config`` would fail on the
    missing example.yaml), so it gets ``validate_config`` only, as the v1 autoscaler applies it. ``raw`` is not
    changed. Raises Ray's own validation error."""
    import copy
    from pathlib import Path

    with _guard("ray.autoscaler._private.util.prepare_config / validate_config (and providers._DEFAULT_CONFIGS)",
                "to read a cluster-launcher YAML as `ray up` does, offline"):
        from ray.autoscaler._private.providers import _DEFAULT_CONFIGS
        from ray.autoscaler._private.util import prepare_config, validate_config

        raw = copy.deepcopy(raw)
        ptype = raw.get("provider", {}).get("type")
        if ptype in FAKE_PROVIDERS and not Path(_DEFAULT_CONFIGS[ptype]()).is_file():
            validate_config(raw)
            return raw
        cfg = prepare_config(raw)
        validate_config(cfg)
        return cfg


def cluster_config(path) -> dict:
    """A cluster file as Ray's autoscaler will read it, offline (no cloud SDK, credentials or network), with its
    ``available_node_types``, ``head_node_type`` and ``max_workers``.

    - A cluster-launcher YAML goes through ``prepare_config`` (merges the provider's defaults, fills min/max workers)
      and ``validate_config`` (schema and semantic checks): what ``ray up`` runs before its first cloud call. A
      ``fake_multinode`` config reaches Ray through ``ray start --autoscaling-config`` as written (the wheel ships no
      defaults for it), so it is validated as written.
    - A KubeRay manifest's RayCluster (or a RayJob's ``rayClusterSpec``) goes through the translation the KubeRay
      autoscaler applies to it (``_derive_autoscaling_config_from_ray_cr``): pod limits become resources.
    Raises ValueError (a file that is neither) or Ray's own validation error.
    """
    import copy

    import yaml

    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]
    launcher = [d for d in docs if "provider" in d]
    crs = [d for d in docs if d.get("kind") in ("RayCluster", "RayJob")]
    if launcher:
        return launcher_config(launcher[0])
    if crs:
        doc = crs[0]
        spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"].get("rayClusterSpec")
        if spec is None:
            raise ValueError(f"{path}: RayJob {doc['metadata']['name']} names an existing cluster (clusterSelector); "
                             "validate against that RayCluster's manifest")
        cr = {"apiVersion": "ray.io/v1", "kind": "RayCluster",
              "metadata": {"name": doc["metadata"]["name"], "namespace": "default"}, "spec": copy.deepcopy(spec)}
        with _guard("ray.autoscaler._private.kuberay.autoscaling_config._derive_autoscaling_config_from_ray_cr",
                    "to read a KubeRay RayCluster's node types as its autoscaler does"):
            from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
            from ray.autoscaler._private.util import validate_config

            cfg = _derive_autoscaling_config_from_ray_cr(cr)
            validate_config(cfg)
            return cfg
    raise ValueError(f"{path}: neither a Ray cluster-launcher config (no provider:) nor a KubeRay RayCluster/RayJob")


def check() -> list[str]:
    """The internals that can be checked without a running cluster; returns what was checked."""
    checked = []
    with _guard("ray._private.ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S", "to let a dashboard start"):
        from ray._private import ray_constants

        ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S  # noqa: B018
    checked.append("dashboard startup limit")
    with _guard("ray.train.v2._internal.execution.context.get_train_context", "to tag runs"):
        from ray.train.v2._internal.execution.context import get_train_context  # noqa: F401
    checked.append("get_train_context")
    with _guard("TrainAutoscalingCoordinatorClient.cancel_resource_request", "to release stopped trials' requests"):
        from ray.train.v2._internal.execution.scaling_policy.autoscaling_coordinator_client import (
            TrainAutoscalingCoordinatorClient,
        )

        TrainAutoscalingCoordinatorClient.cancel_resource_request  # noqa: B018
    checked.append("TrainAutoscalingCoordinatorClient.cancel_resource_request")
    torch_trainer_class(lambda e: False)
    checked.append("TorchTrainer failure policy")
    quiet_train_reports()
    checked.append("Train report logger")
    quiet_rllib_new_stack_notice()
    checked.append("RLlib's new-API-stack notice")
    train_checkpoints("/nonexistent")
    checked.append("Ray Train checkpoint folder names")
    with _guard("Trial.pickled_error_file / Trial.error_file", "to record why a sweep trial failed"):
        from ray.tune.experiment import Trial

        Trial.pickled_error_file, Trial.error_file  # noqa: B018
    checked.append("Trial error files")
    with _guard("ray.train.v2._internal.execution.controller.TrainController", "to free placement groups in order"):
        from ray.train.v2._internal.execution.controller import TrainController  # noqa: F401
    checked.append("TrainController class")
    with _guard("Learner._learner_connector", "to insert reward pieces"):
        from ray.rllib.core.learner.learner import Learner

        if "_learner_connector" not in Learner.__init__.__code__.co_names:
            raise AttributeError("Learner.__init__ no longer sets _learner_connector")
    checked.append("Learner._learner_connector")
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    try:
        config_error(AlgorithmConfig(), "genlab probe")
    except ValueError as e:
        if not str(e).startswith("genlab probe"):
            raise RayInternalsChanged(f"AlgorithmConfig._value_error raised {e!r}, not the message given") from e
    else:
        raise RayInternalsChanged("AlgorithmConfig._value_error no longer raises on a default config")
    checked.append("AlgorithmConfig._value_error")
    with _guard("the autoscaler's prepare_config / validate_config / _DEFAULT_CONFIGS / KubeRay translation",
                "to check a spec against a cluster's node types (genlab validate --cluster)"):
        from ray.autoscaler._private.kuberay.autoscaling_config import (  # noqa: F401
            _derive_autoscaling_config_from_ray_cr,
        )
        from ray.autoscaler._private.providers import _DEFAULT_CONFIGS
        from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: F401

        for ptype in FAKE_PROVIDERS:
            _DEFAULT_CONFIGS[ptype]  # noqa: B018
    checked.append("cluster config readers")
    return checked
