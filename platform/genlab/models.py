"""Trained runs back as working objects: `genlab load <run id>` and ``genlab.models.load``.

Every finished run logs its trained networks as MLflow models (``mlflow.pytorch.load_model("runs:/<id>/<name>")``
gives a plain torch module: Improved-GAN's ``classifier`` and ``generator``, an RL run's ``policy``). For a
generative run, :func:`load` goes one step further and rebuilds the algorithm object from the run's resolved spec
and final checkpoint, so that ``sample(n)``, ``evaluate(x, y)`` and ``images()`` work as they did in training
(each method knows its own noise and codes).
"""

from __future__ import annotations

import io

from genlab import config, registry, tracking
from genlab.runners.storage import CHECKPOINT_ARTIFACT, GENERATIVE_STATE
from genlab.specs import RunSpec


def model_names(uri: str, run_id: str) -> list[str]:
    """The MLflow models a run logged (artifact folders holding an ``MLmodel`` file)."""
    return tracking.artifact_dirs_with(uri, run_id, "MLmodel")


def run_spec(uri: str, run_id: str) -> RunSpec:
    """The resolved spec a run trained with (``spec/resolved.yaml``)."""
    import yaml

    raw = yaml.safe_load(tracking.read_artifact(uri, run_id, "spec/resolved.yaml"))
    return config.run_from_dict(raw, source=f"run {run_id}'s spec/resolved.yaml")


def load(run_id: str, uri: str | None = None):
    """A generative run's algorithm object with its final weights, or an RL run's greedy policy (obs -> actions)."""
    import mlflow.pytorch
    import torch

    uri = tracking.resolve_uri(uri)
    spec = run_spec(uri, run_id)
    if registry.entry(spec.algorithm).kind == "rl":
        mlflow.set_tracking_uri(uri)
        return mlflow.pytorch.load_model(f"runs:/{run_id}/policy")
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

