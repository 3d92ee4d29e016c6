"""MLflow: the store, its experiments and runs, genlab's tags, and every query genlab makes of it.

Who does what:
- the process that drives a run (``genlab train``, or a Tune trial) opens the MLflow run (:func:`open_run`), logs
  the resolved config, command, git commit and package versions, and closes it as FINISHED or FAILED (with the
  error, :func:`close_run`);
- rank 0 of the Ray Train workers logs metrics per epoch, sample grids and the final checkpoint into that run by
  id (``genlab.runlog.RunLogger``); a restarted worker keeps logging into the same run;
- the sweep driver owns the parent run and closes trials whose process died without closing them;
- the report, `genlab runs`, `genlab load` and the sweep's ranking read the store through the queries here.

The default store needs no server: ``sqlite:///<cwd>/mlflow.db`` with artifacts in ``<cwd>/mlartifacts``
(MLflow 3.17 refuses its old file store by default). ``$MLFLOW_TRACKING_URI`` or the spec's
``tracking.uri`` point runs at a tracking server instead.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from genlab import errors

PACKAGES = ("genlab", "ray", "torch", "torchvision", "mlflow", "optuna", "gymnasium", "mujoco", "numpy",
            "pydantic", "scikit-learn")
# Every tag genlab sets on a run, in one place (the runners set them, the report, `genlab runs` and the sweep's
# callbacks read them).
TAG_TRIAL = "genlab.trial_id"
TAG_SWEEP = "genlab.sweep"
TAG_SWEEP_DIR = "genlab.sweep_dir"  # a sweep's Tune folder: --resume reopens its parent run by it
TAG_STUDY = "genlab.study"
TAG_STUDY_DIR = "genlab.study_dir"
TAG_ARM = "genlab.arm"
TAG_SEED = "genlab.seed"  # a study's or sweep's run: its seed
TAG_SEEDS = "genlab.seeds"  # a sweep: the seeds its trials used (they tuned on them), "0,1"
TAG_CLAIMS = "genlab.claims"
TAG_STOPPED_EARLY = "genlab.stopped_early"  # a trial ASHA stopped, with the epoch
TAG_MODEL_EPOCH = "genlab.model_epoch"  # a stopped trial's kept model: its epoch (it may have logged one more)
TAG_TRAIN_RUN = "genlab.train_run_id"  # the Ray Train run of a generative run
TAG_TRAIN_CONTROLLER = "genlab.train_controller"  # its Train controller actor
TAG_KIND = "genlab.kind"
TAG_ERROR = "genlab.error"
TAG_PARENT = "mlflow.parentRunId"
TAG_RUN_KEY = "genlab.run_key"  # where a run's checkpoints live: a restarted run reopens its MLflow run by it
TAG_NODE_IP = "genlab.node_ip"  # the Ray node that trained the run (rank 0 of a Ray Train run)
TAG_NODE_ID = "genlab.node_id"
TAG_DEVICE = "genlab.device"
TAG_CODE = "genlab.code"  # the genlab package that ran: a Ray job's runtime env, or the installed one
TAG_SOURCE = "mlflow.source.name"  # what the UI's Source column shows: the genlab command
COMMAND_ENV = "GENLAB_COMMAND"  # the driver's command, for runs opened in other processes (sweep trials)


def resolve_uri(uri: str | None = None) -> str:
    """The tracking URI a run uses: the spec's, else $MLFLOW_TRACKING_URI, else the local SQLite store."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def default_artifact_root(uri: str, experiment: str) -> str | None:
    """For a local SQLite store, artifacts go beside it (not to ./mlruns of whichever process asks)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / experiment).resolve().as_uri()
    return None  # a tracking server decides (its --default-artifact-root)


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
"""The tag with which MLflow 3 says an experiment is for model training, not GenAI. Checked in a browser against
MLflow 3.17.2: its UI still opens every experiment in the workspace of its GenAI / Model training toggle (GenAI
unless the browser remembers otherwise), tag or not; ``?workflowType=machine_learning`` in the URL switches it, so
genlab prints URLs with it (:func:`ui_url`). The tag stays: it is how MLflow's API and later UIs tell the kinds
apart."""


def experiment_id(uri: str, name: str) -> str:
    """The experiment's id, created (and marked as a model-training experiment) if it does not exist yet."""
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is None:
        try:
            return c.create_experiment(name, artifact_location=default_artifact_root(uri, name),
                                       tags=dict([EXPERIMENT_KIND]))
        except Exception:  # created concurrently by another trial
            exp = c.get_experiment_by_name(name)
            if exp is None:
                raise
    if EXPERIMENT_KIND[0] not in exp.tags:  # an experiment made before genlab marked them
        c.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
    return exp.experiment_id


def ui_url(uri: str, experiment: str) -> str:
    """The URL that opens the experiment's runs in the MLflow UI's training view: a tracking server's own address,
    or for a local store the address `mlflow ui` serves (http://127.0.0.1:5000). A tracker that does not answer
    (a run that ended during an outage has said what it holds): the UI's list of experiments."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    try:
        return f"{base}/#/experiments/{experiment_id(uri, experiment)}/runs?workflowType=machine_learning"
    except Exception:
        return f"{base}/#/experiments"


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def git_commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("-dirty" if dirty else "")) if sha else "unknown"


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def code_path() -> str:
    return str(Path(__file__).resolve().parent)


def placement() -> dict[str, str]:
    """Tags naming the Ray node this process runs on and the genlab code it imported."""
    import ray

    tags = {TAG_CODE: code_path()}
    if ray.is_initialized():
        tags[TAG_NODE_IP] = ray.util.get_node_ip_address()
        tags[TAG_NODE_ID] = ray.get_runtime_context().get_node_id()
    return tags


def command() -> str:
    """The genlab command this process runs, as a user typed it (the MLflow UI's Source column shows it)."""
    if os.environ.get(COMMAND_ENV):
        return os.environ[COMMAND_ENV]
    argv = list(sys.argv)
    if argv and (argv[0].endswith(("genlab", "genlab/__main__.py")) or argv[0] == "-m"):
        argv[0] = "genlab"
    return shlex.join(argv)


# -------------------------------------------------------------------------------------------- queries
# Every read of the store goes through these (the report, `genlab runs`, `genlab load`, the sweep's ranking).


def tagged(tag: str, value: str) -> str:
    """The search filter of runs carrying this tag value."""
    return f"tags.`{tag}` = '{value}'"


def search(uri: str, filter_string: str = "", *, experiment_ids: list[str] | None = None, max_results: int = 5000,
           newest_first: bool = False) -> list:
    """Runs matching ``filter_string`` in these experiments (None: every experiment of the store)."""
    c = client(uri)
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in c.search_experiments()]
    return c.search_runs(experiment_ids, filter_string=filter_string, max_results=max_results,
                         order_by=["attributes.start_time DESC"] if newest_first else None)


def find_run(uri: str, exp_id: str, tag: str, value: str):
    """The most recent run carrying this tag value, or None."""
    runs = search(uri, tagged(tag, value), experiment_ids=[exp_id], max_results=1, newest_first=True)
    return runs[0] if runs else None


def find_experiment(uri: str, name: str):
    """The experiment of this name, or None (never created)."""
    return client(uri).get_experiment_by_name(name)


def experiment_names(uri: str) -> list[str]:
    return [e.name for e in client(uri).search_experiments()]


def children(uri: str, parent_run_id: str, experiment_id: str | None = None) -> list:
    """The child runs of a parent run (a sweep's trials, a study's runs), in its experiment if given."""
    return search(uri, tagged(TAG_PARENT, parent_run_id), experiment_ids=[experiment_id] if experiment_id else None)


def artifact_dirs_with(uri: str, run_id: str, filename: str) -> list[str]:
    """The run's top-level artifact folders that hold ``filename`` (``MLmodel``: its models; ``latest.png``: its
    pictures)."""
    c = client(uri)
    return [f.path for f in c.list_artifacts(run_id) if f.is_dir
            and any(a.path.endswith(f"/{filename}") for a in c.list_artifacts(run_id, f.path))]


def artifact_paths(uri: str, run_id: str, folder: str | None = None) -> list[str]:
    """The paths of the run's artifacts in ``folder`` (its top level when None), not recursive."""
    return [f.path for f in client(uri).list_artifacts(run_id, folder)]


def logged_models(uri: str, run_id: str) -> dict:
    """The MLflow 3 logged models a run made (its source run), by name: the latest READY one of each name."""
    c = client(uri)
    found = c.search_logged_models([c.get_run(run_id).info.experiment_id], filter_string=f"source_run_id = '{run_id}'",
                                   order_by=[{"field_name": "creation_timestamp", "ascending": True}])
    return {m.name: m for m in found if str(m.status) == "READY"}


SPEC_ARTIFACT = "spec/resolved.yaml"
"""Where a run's resolved spec is logged (``open_run``) and read back (``read_spec``)."""


def read_artifact(uri: str, run_id: str, path: str) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        return Path(client(uri).download_artifacts(run_id, path, d)).read_bytes()


def read_spec(uri: str, run_id: str) -> dict:
    """The resolved spec a run (or a sweep's or study's parent run) logged at its start (``spec/resolved.yaml``)."""
    return yaml.safe_load(read_artifact(uri, run_id, SPEC_ARTIFACT))


def metric_history(uri: str, run_id: str, metric: str) -> dict[int, float]:
    """Step -> value of one metric of a run."""
    return {m.step: m.value for m in client(uri).get_metric_history(run_id, metric)}


def kept_model_metrics(uri: str, run) -> dict[str, float]:
    """A run's metrics as of the model it keeps: its latest values, except for a trial ASHA stopped whose workers
    logged an epoch past its kept model (tag genlab.model_epoch): its latest evaluation at or before that epoch. What
    a sweep ranks trials by and `genlab runs` shows."""
    metrics = dict(run.data.metrics)
    epoch = run.data.tags.get(TAG_MODEL_EPOCH)
    if epoch is not None:
        for k in [k for k in metrics if k.startswith("eval/")]:
            history = metric_history(uri, run.info.run_id, k)
            measured = [step for step in history if step <= int(epoch)]
            if measured:
                metrics[k] = history[max(measured)]
    return metrics


def open_run(uri: str, experiment: str, *, run_name: str, config: dict, tags: dict[str, str],
             resume_tag: tuple[str, str] | None = None) -> str:
    """Create the run (or reopen the one carrying ``resume_tag``) and log config, command, commit, versions."""
    c = client(uri)
    exp_id = experiment_id(uri, experiment)
    if resume_tag is not None:
        existing = find_run(uri, exp_id, *resume_tag)
        if existing is not None:
            c.update_run(existing.info.run_id, status="RUNNING")
            if TAG_ERROR in existing.data.tags:
                c.delete_tag(existing.info.run_id, TAG_ERROR)
            return existing.info.run_id
    commit = git_commit()
    all_tags = {"mlflow.runName": run_name, "mlflow.source.git.commit": commit, "genlab.git_commit": commit,
                TAG_SOURCE: command(), "mlflow.source.type": "LOCAL", **tags}
    run = c.create_run(exp_id, run_name=run_name, tags=all_tags)
    rid = run.info.run_id
    from mlflow.entities import Param

    params = [Param(k, str(v)[:6000]) for k, v in flatten(config).items()]
    for i in range(0, len(params), 100):
        c.log_batch(rid, params=params[i : i + 100])
    c.log_text(rid, yaml.safe_dump(config, sort_keys=False), SPEC_ARTIFACT)
    c.log_text(rid, all_tags[TAG_SOURCE], "spec/command.txt")
    c.log_dict(rid, {"git_commit": commit, "genlab_code": code_path(), **package_versions()},
               "spec/environment.json")
    return rid


def close_run(uri: str, run_id: str, error: BaseException | str | None = None) -> None:
    """End the run: FINISHED, KILLED (interrupted) or FAILED with the error as tag and artifact."""
    end_run(uri, run_id, *run_end(error))


def run_end(error: BaseException | str | None) -> tuple[str, str | None, str | None]:
    """How a run that ``error`` ended ends in MLflow, as data (a run's logger holds it while the tracker is away):
    its status, its ``genlab.error`` tag and its ``error.txt`` (None: not set)."""
    if error is None:
        return "FINISHED", None, None
    if isinstance(error, KeyboardInterrupt):
        return "KILLED", "interrupted", None
    text = error if isinstance(error, str) else "".join(traceback.format_exception(error))
    return "FAILED", errors.summary(error)[:4000], text


def end_run(uri: str, run_id: str, status: str, error_tag: str | None = None, error_text: str | None = None) -> None:
    """End the run with ``status``, setting the ``genlab.error`` tag and ``error.txt`` when given (:func:`run_end`)."""
    c = client(uri)
    if error_tag is not None:
        c.set_tag(run_id, TAG_ERROR, error_tag)
    if error_text is not None:
        c.log_text(run_id, error_text, "error.txt")
    c.set_terminated(run_id, status=status)
