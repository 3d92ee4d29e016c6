"""Trained runs back as working objects: `genlab load <run id>` and ``genlab.models.load``.

Every finished run logs its trained networks as MLflow 3 logged models from the run (the run page's "Logged models",
the experiment's Models tab): ``mlflow.pytorch.load_model("models:/<model id>")``, or by name
``("runs:/<run id>/<name>")``, gives a plain torch module: Improved-GAN's ``classifier`` and ``generator``, an RL
run's ``policy``. For a generative run, :func:`load` goes one step further and rebuilds the algorithm object from
the run's resolved spec and final checkpoint, so that ``sample(n)``, ``evaluate(x, y)`` and ``images()`` work as
they did in training (each method knows its own noise and codes). :func:`register` puts a run's models in the
Model Registry.
"""

from __future__ import annotations

import io

from genlab import config, registry, tracking
from genlab.runners.storage import CHECKPOINT_ARTIFACT, GENERATIVE_STATE
from genlab.specs import RunSpec


def model_names(uri: str, run_id: str) -> list[str]:
    """The MLflow models a run logged: its logged models, or for a run logged before genlab made them (models as
    run artifacts), its artifact folders holding an ``MLmodel`` file."""
    return sorted(model_uris(uri, run_id))


def model_uris(uri: str, run_id: str) -> dict[str, str]:
    """Name -> the URI that loads each of the run's models: ``models:/<model id>`` (``runs:/<run id>/<name>`` for a
    run whose models are artifact folders)."""
    logged = tracking.logged_models(uri, run_id)
    if logged:
        return {name: f"models:/{m.model_id}" for name, m in logged.items()}
    return {name: f"runs:/{run_id}/{name}" for name in tracking.artifact_dirs_with(uri, run_id, "MLmodel")}


def load_module(uri: str, run_id: str, name: str):
    """The run's model ``name`` as the torch module it logged."""
    import tempfile

    import mlflow.artifacts
    import mlflow.pytorch

    model_uri = model_uris(uri, run_id).get(name)
    if model_uri is None:
        raise LookupError(f"run {run_id} logged no model named {name!r}")
    with tempfile.TemporaryDirectory() as d:
        local = mlflow.artifacts.download_artifacts(model_uri, dst_path=d, tracking_uri=uri)
        return mlflow.pytorch.load_model(local)


def register(uri: str, run_id: str, name_prefix: str, tags: dict[str, str]) -> list[tuple[str, str]]:
    """Register each of the run's models in the Model Registry as ``<name_prefix>-<model>`` (a new version when the
    name exists), tagged ``tags``; (registered name, version) each. ``models:/<name_prefix>-<model>/<version>``
    loads it."""
    from mlflow.exceptions import MlflowException

    c = tracking.client(uri)
    out = []
    for model, model_uri in sorted(model_uris(uri, run_id).items()):
        name = f"{name_prefix}-{model}"
        try:
            c.create_registered_model(name)
        except MlflowException as e:
            if e.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        if model_uri.startswith("models:/"):
            version = c.create_model_version(name, model_uri, run_id=run_id, tags=tags,
                                             model_id=model_uri.removeprefix("models:/"))
        else:  # models as run artifacts: the artifact folder itself
            version = c.create_model_version(name, f"{c.get_run(run_id).info.artifact_uri}/{model}", run_id=run_id,
                                             tags=tags)
        out.append((version.name, version.version))
    return out


def run_spec(uri: str, run_id: str) -> RunSpec:
    """The resolved spec a run trained with (``spec/resolved.yaml``)."""
    return config.run_from_dict(tracking.read_spec(uri, run_id), source=f"run {run_id}'s {tracking.SPEC_ARTIFACT}")


def load(run_id: str, uri: str | None = None):
    """A generative run's algorithm object with its final weights, or an RL run's greedy policy (obs -> actions)."""
    import torch

    uri = tracking.resolve_uri(uri)
    spec = run_spec(uri, run_id)
    if registry.entry(spec.algorithm).kind == "rl":
        return load_module(uri, run_id, "policy")
    from genlab import data

    raw = tracking.read_artifact(uri, run_id, f"{CHECKPOINT_ARTIFACT}/{GENERATIVE_STATE}")
    state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=False)
    algo = registry.algorithm_class(spec.algorithm)(spec.hparams_obj(), data.info(spec.data), "cpu")
    algo.load_state_dict(state["algo"])
    for net in algo.nets.values():
        net.eval()
    return algo


def play(run_id: str, uri: str | None = None, episodes: int = 10, seed: int = 0) -> list[float]:
    """An RL run's trained policy, played greedily for ``episodes`` episodes of its env; their returns."""
    import torch

    from genlab.rl.evaluation import rollout

    uri = tracking.resolve_uri(uri)
    spec, policy = run_spec(uri, run_id), load(run_id, uri)
    with torch.no_grad():
        return rollout(lambda obs: policy(torch.as_tensor(obs, dtype=torch.float32)).numpy(), spec.env.id,
                       episodes, seed=seed)

