"""Trained runs back as working objects: `genlab load <run id>` and ``genlab.models.load``.

Every finished run logs its trained networks as MLflow models (``mlflow.pytorch.load_model("runs:/<id>/<name>")``
gives a plain torch module: Improved-GAN's ``classifier`` and ``generator``, an RL run's ``policy``). For a
generative run, :func:`load` goes one step further and rebuilds the algorithm object from the run's resolved spec
and final checkpoint, so that ``sample(n)``, ``evaluate(x, y)`` and ``images()`` work as they did in training
(each method knows its own noise and codes).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from genlab import config, registry, tracking
from genlab.specs import RunSpec


def model_names(uri: str, run_id: str) -> list[str]:
    """The MLflow models a run logged (artifact folders holding an ``MLmodel`` file)."""
    c = tracking.client(uri)
    return [f.path for f in c.list_artifacts(run_id) if f.is_dir
            and any(a.path.endswith("/MLmodel") for a in c.list_artifacts(run_id, f.path))]


def run_spec(uri: str, run_id: str) -> RunSpec:
    """The resolved spec a run trained with (``spec/resolved.yaml``)."""
    with tempfile.TemporaryDirectory() as d:
        path = tracking.client(uri).download_artifacts(run_id, "spec/resolved.yaml", d)
        return config.load_run(path)


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

    with tempfile.TemporaryDirectory() as d:
        path = tracking.client(uri).download_artifacts(run_id, "checkpoint/state.pt", d)
        state = torch.load(Path(path), map_location="cpu", weights_only=False)
    algo = registry.algorithm_class(spec.algorithm)(spec.hparams_obj(), data.info(spec.data), "cpu")
    algo.load_state_dict(state["algo"])
    for net in algo.nets.values():
        net.eval()
    return algo
