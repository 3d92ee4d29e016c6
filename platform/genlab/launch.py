"""The one path every command takes: load -> pre-flight -> tracking URI -> storage -> name check -> Ray -> run.

``genlab.cli`` parses arguments, calls one of these and prints what they return; a Python caller uses them the
same way, with a spec file (and ``--set``-style overrides) or a spec object::

    from genlab import launch
    launched = launch.train("sweeps/improved_gan/digits.yaml", overrides=["hparams.lr=1e-3"], num_cpus=2)
    launched.result.metrics["eval/test_error"], launched.result.mlflow_run_id

Everything that can be checked is checked before Ray starts (the spec, the pre-flight, whether the name is free),
so bad input costs nothing and writes nothing. Ray is local (a free dashboard port of its own) unless
``RAY_ADDRESS`` names a cluster; inside a Ray job it always does.
"""

from __future__ import annotations

import os
import random
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab import config, jobs, ray_compat, tracking
from genlab.errors import SpecError
from genlab.specs import ExpertSpec, RunSpec
from genlab.sweep_specs import SweepSpec

STORAGE_ENV = "GENLAB_STORAGE"
DEFAULT_STORAGE = "results"


@dataclass(frozen=True)
class Launched:
    """What a launch returns: the validated spec, where its results and runs went, and the runner's result."""

    spec: Any
    storage: Path
    """The results folder (a run's is ``storage / spec.name``)."""
    tracking_uri: str
    result: Any
    """train: the run's ``RunResult`` (metrics, history, MLflow run id); sweep: ``SweepSummary``; study:
    ``StudySummary``; expert: the demonstrations' folder."""


def default_storage() -> str:
    return os.environ.get(STORAGE_ENV, DEFAULT_STORAGE)


def command_for(spec) -> str:
    """The genlab command that runs a spec of this kind."""
    from genlab.studies import StudySpec

    return {RunSpec: "train", SweepSpec: "sweep", ExpertSpec: "expert", StudySpec: "study"}[type(spec)]


def load(spec: str | Path | Any, overrides: list[str] = ()) -> Any:
    """A run, sweep, expert or study spec: a file read with its overrides, or a spec object as it is."""
    from genlab import studies

    if not isinstance(spec, (str, Path)):
        if overrides:
            raise SpecError("overrides apply to a spec file; change the spec object instead")
        return spec
    if studies.is_study(config.read_yaml(spec)):
        return studies.load(spec, overrides)
    return config.load_any(spec, overrides)


def _load_as(kind: type, spec, overrides, source: str):
    loaded = load(spec, overrides)
    if not isinstance(loaded, kind):
        what = {RunSpec: "is not a run spec", SweepSpec: "has no search_space", ExpertSpec: "is not an expert spec"}
        raise SpecError(f"{source} {what.get(kind, 'is not a study spec (it has no arms)')}; run it with "
                        f"`genlab {command_for(loaded)} {source}`")
    return loaded


def preflight(spec, *, source: str, cluster: bool | None = None, num_cpus: float | None = None) -> None:
    """Everything knowable before Ray starts (genlab.preflight), for a spec of any kind (a study: every arm); raises
    SpecError listing every problem, prints the notes (checks left to a cluster's workers)."""
    from genlab import preflight as checks
    from genlab.studies import StudySpec

    specs = [arm.run for arm in spec.arms] if isinstance(spec, StudySpec) else [spec]
    for one in specs:
        for note in checks.check(one, source=source, cluster=cluster, num_cpus=num_cpus,
                                 in_tune=isinstance(spec, StudySpec)):
            print(f"[genlab] note: {note}", flush=True)


def storage_dir(storage: str | Path, uri: str) -> Path:
    """The results folder, resolved. Inside a Ray job the working directory is a temporary copy: results or an
    SQLite store there would be lost, so they are refused; and once the specs are loaded the driver works from
    the results folder, because Ray unpacks the working dir again whenever another node on the same file system
    first uses it (all nodes of a fake_multinode cluster do), replacing the directory under a driver still in it.
    """
    if not ray_compat.in_job():
        return Path(storage).resolve()
    if not Path(storage).is_absolute():
        raise SpecError(f"this Ray job would write its results to {str(storage)!r} in the job's temporary working "
                        f"directory: pass --storage /shared/path (genlab submit --storage ...) or set "
                        f"{STORAGE_ENV} on the cluster (the YAMLs in cluster/ do)")
    if uri.startswith("sqlite:///") and Path(uri.removeprefix("sqlite:///")).is_relative_to(Path.cwd()):
        raise SpecError("this Ray job would track to an SQLite file in its temporary working directory: point it "
                        "at the cluster's MLflow server (MLFLOW_TRACKING_URI on the head, which the YAMLs in "
                        "cluster/ set, or genlab submit --tracking-uri http://<head>:5000)")
    path = Path(storage).resolve()
    path.mkdir(parents=True, exist_ok=True)
    os.chdir(path)
    return path


LOCAL_RAY_ENV_VARS = {
    # Ray Train starts a preemption watcher actor per run, which polls the nodes for spot-instance preemption. One
    # machine has no such nodes; the actor cost each run a process (1.6 CPU-seconds) and printed a core_worker
    # error line ("Actor with class name: 'PreemptionWatcher' ... has constructor arguments in the object store")
    # at every `genlab train`. On a cluster it stays on.
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}
"""Set in every process of a local Ray that genlab starts (a user's own value of any of them wins)."""


def unused_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, for a server started next (a local Ray's dashboard, a test's MLflow server),
    drawn below the kernel's ephemeral range and above Ray's worker ports (10002-19999).

    A port the kernel hands out for ``bind(0)`` is from the ephemeral range, which every outgoing connection on the
    machine draws from too: between closing the probe and the server binding it, another process's connection (a
    second Ray's workers reaching their GCS) could take it, and the dashboard then fails to start ("Failed to find a
    valid port for dashboard after 0 retries: address already in use"; seen with two genlab commands at once).
    Outside that range only a server that chose the same port could take it. A port is handed out once per process,
    so that several drawn before any is bound differ."""
    low, high = 20000, 32767
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        high = max(low + 1000, ephemeral_low - 1)
    except (OSError, ValueError, IndexError):
        pass  # not Linux: 20000-32767 is below macOS's and Windows' ephemeral ranges (49152-65535)
    draw = random.Random(os.urandom(8))  # not the seeded global generator: two runs with one seed draw apart
    for _ in range(100):
        port = draw.randint(low, high)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as probe:  # every draw taken: the kernel's choice
        probe.bind((host, 0))
        return probe.getsockname()[1]


_HANDED_OUT: set[int] = set()


def local_ray_options(num_cpus: float | None, runtime_env: dict) -> dict:
    """``ray.init`` arguments for a local Ray of this process's own, whatever else runs on the machine.

    The dashboard is not optional: Ray Train's placement-group cleaner asks its state API, and without it the
    resources of trials that ASHA stops are never released. The cleaner finds that API from its environment;
    with another Ray instance on the same machine it cannot tell which one is ours and fails ("Found multiple
    active Ray instances"), so every Ray process is told our dashboard's address. The dashboard gets a free port
    of its own (Ray's default 8265 may belong to another Ray; with a port given, Ray does not look further); genlab
    prints its URL. It binds 127.0.0.1.
    """
    port = unused_port()
    env_vars = {**{k: v for k, v in LOCAL_RAY_ENV_VARS.items() if k not in os.environ},
                **runtime_env.get("env_vars", {}), "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"}
    return {"address": "local", "num_cpus": num_cpus, "include_dashboard": True, "dashboard_port": port,
            "runtime_env": {**runtime_env, "env_vars": env_vars}}


def start_ray(num_cpus: float | None = None, *, quiet: bool = False) -> None:
    """Start (or, with ``RAY_ADDRESS``, join) Ray with genlab's settings in every Ray process of the run.

    ``quiet`` (sweeps and studies): the output of the trials' processes (Train controllers, workers, Ray's own
    warnings) stays in Ray's logs, not the terminal; genlab prints one line per trial event instead
    (``runners.trials.progress_lines``). Ray's, MLflow's and Optuna's informational lines are left out too.
    """
    import logging

    import ray

    import genlab
    from genlab import RAY_ENV_VARS

    if ray.is_initialized():
        return
    if quiet:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's legacy reporter honours verbose=0 (no tables)
        # genlab logs pickled torch models on purpose (runlog.RunLogger.model says why); MLflow warns at each.
        logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        ray_compat.quiet_rllib_new_stack_notice()
    os.environ.update({k: v for k, v in RAY_ENV_VARS.items() if k not in os.environ})
    # Every Ray process of the run gets genlab's Ray settings and the user's GENLAB_* variables. Inside a
    # Ray job, the job's runtime env already reaches them, and Ray refuses to set a variable twice.
    env_vars = {**RAY_ENV_VARS, **{k: v for k, v in os.environ.items() if k.startswith("GENLAB_")}}
    runtime_env = {"env_vars": {k: v for k, v in env_vars.items() if k not in ray_compat.job_env_vars()}}
    options = {"log_to_driver": False, "logging_level": logging.ERROR} if quiet else {}
    if os.environ.get("RAY_ADDRESS"):
        ctx = ray.init(runtime_env=runtime_env, **options)
    else:
        local = local_ray_options(num_cpus, runtime_env)
        ray_compat.patient_dashboard_start()
        ctx = ray.init(**local, **options)
        # This driver asks the state API too (a sweep's end frees what its trials left): our dashboard, whatever else
        # runs on the machine.
        os.environ["RAY_API_SERVER_ADDRESS"] = local["runtime_env"]["env_vars"]["RAY_API_SERVER_ADDRESS"]
    print(f"[genlab] genlab {genlab.__version__} from {tracking.code_path()}", flush=True)
    if ctx.dashboard_url:
        print(f"[genlab] Ray dashboard: http://{ctx.dashboard_url}", flush=True)


# ------------------------------------------------------------------------------------------- commands


def train(spec: str | Path | RunSpec, *, overrides: list[str] = (), storage: str | Path | None = None,
          resume: bool = False, num_cpus: float | None = None) -> Launched:
    """Train one run (Ray Train for generative methods, RLlib for RL); ``resume`` continues an interrupted one."""
    from genlab import runners
    from genlab.runners import storage as run_storage

    source = str(spec) if isinstance(spec, (str, Path)) else "run spec"
    spec = _load_as(RunSpec, spec, overrides, source)
    preflight(spec, source=source, num_cpus=num_cpus)
    uri = tracking.resolve_uri(spec.tracking.uri)
    folder = storage_dir(storage or default_storage(), uri)
    run_storage.check_can_start("run", folder, spec.name, resume)
    start_ray(num_cpus)
    return Launched(spec, folder, uri, runners.fit(spec, storage_path=folder, resume=resume))


def sweep(spec: str | Path | SweepSpec, *, overrides: list[str] = (), storage: str | Path | None = None,
          resume: bool = False, num_cpus: float | None = None) -> Launched:
    """A Tune + Optuna + ASHA sweep; ``resume`` finishes an interrupted one without redoing finished trials."""
    from genlab.runners import storage as run_storage
    from genlab.runners import sweep as sweep_runner

    source = str(spec) if isinstance(spec, (str, Path)) else "sweep spec"
    spec = _load_as(SweepSpec, spec, overrides, source)
    preflight(spec, source=source, num_cpus=num_cpus)
    uri = tracking.resolve_uri(spec.run.tracking.uri)
    folder = storage_dir(storage or default_storage(), uri)
    run_storage.check_can_start("sweep", folder, spec.name, resume)
    start_ray(num_cpus, quiet=True)
    return Launched(spec, folder, uri, sweep_runner.run(spec, storage_path=folder, resume=resume))


def study(spec, *, overrides: list[str] = (), storage: str | Path | None = None, resume: bool = False,
          num_cpus: float | None = None) -> Launched:
    """Every arm of a study x every seed, as one Tune experiment; ``resume`` finishes an interrupted one."""
    from genlab.runners import storage as run_storage
    from genlab.runners import study as study_runner
    from genlab.studies import StudySpec

    source = str(spec) if isinstance(spec, (str, Path)) else "study spec"
    spec = _load_as(StudySpec, spec, overrides, source)
    preflight(spec, source=source, num_cpus=num_cpus)
    uri = tracking.resolve_uri(spec.tracking.uri)
    folder = storage_dir(storage or default_storage(), uri)
    study_dir = run_storage.check_can_start("study", folder, spec.name, resume)
    if resume:
        study_runner.check_resume(spec, study_dir)
    start_ray(num_cpus, quiet=True)
    return Launched(spec, folder, uri, study_runner.run(spec, storage_path=folder, resume=resume))


def expert(spec: str | Path | ExpertSpec, *, overrides: list[str] = (), storage: str | Path = DEFAULT_STORAGE,
           force: bool = False, num_cpus: float | None = None) -> Launched:
    """Train a PPO expert to its target return and record its demonstrations in ``<storage>/experts/<name>``."""
    from genlab.runners import rl

    source = str(spec) if isinstance(spec, (str, Path)) else "expert spec"
    spec = _load_as(ExpertSpec, spec, overrides, source)
    preflight(spec, source=source, num_cpus=num_cpus)
    out = Path(storage).resolve() / "experts" / spec.name
    if (out / "demos.parquet").exists() and not force:
        raise SpecError(f"{out} already holds demonstrations; pass --force to replace them, or choose a new name")
    start_ray(num_cpus)
    return Launched(spec, out, tracking.resolve_uri(spec.tracking.uri), rl.expert(spec, out))


def validate(spec: str | Path, overrides: list[str] = (), *, num_cpus: float | None = None) -> Any:
    """A spec of any kind, validated and pre-flighted (nothing starts); returns it with every default filled in."""
    loaded = load(spec, overrides)
    preflight(loaded, source=str(spec), num_cpus=num_cpus)
    return loaded


def validate_on_cluster(spec: str | Path, cluster: str | Path, overrides: list[str] = ()) -> list[str]:
    """A spec validated for a cluster (``genlab validate SPEC --cluster FILE``): the pre-flight as ``genlab submit``
    runs it (the cluster's files are checked on its workers), then every trial's bundles against the node types of
    the cluster-launcher YAML or KubeRay manifest ``cluster`` (``genlab.preflight.cluster_report``). Returns the
    report's lines (which node type holds what); raises SpecError naming the field and the largest node type when a
    trial does not fit, or the file when it is no cluster."""
    import jsonschema
    import yaml

    from genlab import preflight as checks

    loaded = load(spec, overrides)
    preflight(loaded, source=str(spec), cluster=True)
    try:
        nodes = checks.read_cluster(cluster)
    except (OSError, ValueError, yaml.YAMLError, jsonschema.ValidationError) as e:  # Ray's validation raises these
        raise SpecError(f"--cluster {cluster}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    return checks.cluster_report(loaded, nodes, source=str(spec))


def submit(spec: str | Path, *, overrides: list[str] = (), address: str | None = None, working_dir: str = ".",
           storage: str | None = None, tracking_uri: str | None = None,
           env: dict[str, str] | None = None) -> jobs.Submission:
    """Validate a run or sweep spec here (the cluster's files are checked on its workers), then submit
    ``genlab sweep|train <spec>`` to a Ray cluster as a job."""
    loaded = config.load_any(spec, overrides)  # bad input fails here, before anything is uploaded
    if isinstance(loaded, ExpertSpec):
        raise SpecError(f"{spec} is an expert spec; genlab submit runs run and sweep specs")
    preflight(loaded, source=str(spec), cluster=True)
    return jobs.submit(command_for(loaded), str(spec), list(overrides), address=address, working_dir=working_dir,
                       storage=storage, tracking_uri=tracking_uri, env=env)
