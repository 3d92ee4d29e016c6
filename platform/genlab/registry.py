"""Algorithm name -> where its pieces live, as lazy ``"module:attr"`` strings.

The platform never imports an algorithm by hand: adding a method is one folder under
``algorithms/`` plus one line here. Nothing heavy is imported until a run asks for it.

Each entry names
- ``kind``: ``"generative"`` (trained as Ray Train workers by ``genlab.runners.generative``) or ``"rl"``
  (an RLlib algorithm run by ``genlab.runners.rl``);
- ``hparams``: the typed class of its hyperparameters (a ``genlab.hparams.Hparams``: imports no torch / Ray),
  which also carries the metric names the method reports and whether it trains on labels;
- ``impl``: generative: the algorithm class (a ``genlab.algorithm.GenerativeAlgorithm``); rl: a
  ``build_config(spec, workdir) -> ray.rllib AlgorithmConfig`` function;
- ``needs_demos``: an imitation method, whose run spec must name expert demonstrations;
- ``uses_ppo``: an RL method built on PPO, whose run spec may carry a ``ppo:`` section.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Entry:
    kind: Literal["generative", "rl"]
    hparams: str
    impl: str
    needs_demos: bool = False
    uses_ppo: bool = False


ALGORITHMS: dict[str, Entry] = {
    "improved_gan": Entry("generative", "algorithms.improved_gan.config:ImprovedGANConfig",
                          "algorithms.improved_gan.algorithm:ImprovedGAN"),
    "infogan": Entry("generative", "algorithms.infogan.config:InfoGANConfig", "algorithms.infogan.algorithm:InfoGAN"),
    "iaf_vae": Entry("generative", "algorithms.iaf_vae.config:IAFVAEConfig", "algorithms.iaf_vae.algorithm:IAFVAE"),
    "gail": Entry("rl", "algorithms.gail.config:GAILHparams", "algorithms.gail.rllib:build_config",
                  needs_demos=True, uses_ppo=True),
    "vime": Entry("rl", "algorithms.vime.config:VIMEHparams", "algorithms.vime.rllib:build_config", uses_ppo=True),
    "bc": Entry("rl", "algorithms.bc.config:BCHparams", "algorithms.bc.algorithm:build_config", needs_demos=True),
}

RUNNERS = {"generative": "genlab.runners.generative:fit", "rl": "genlab.runners.rl:fit"}
"""How each kind of algorithm is trained: fit(spec, *, storage_path, run_key=None, mlflow_tags=None, in_tune=False)
returning an object with ``.metrics`` (the last report) and ``.mlflow_run_id``."""


def names() -> list[str]:
    return sorted(ALGORITHMS)


def entry(name: str) -> Entry:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}; registered: {', '.join(names())}") from None


def load(ref: str):
    """Import ``"package.module:Attr"`` and return the attribute."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def runner(name: str):
    """The fit function that trains algorithm ``name`` (Ray Train for generative methods, RLlib for RL)."""
    return load(RUNNERS[entry(name).kind])


def hparams_class(name: str):
    return load(entry(name).hparams)


def impl_class(name: str):
    return load(entry(name).impl)


def metrics(name: str) -> tuple[str, ...]:
    """Every metric the method reports: its own, and for RL methods the runner's env and evaluation metrics."""
    own = tuple(hparams_class(name).metrics)
    if entry(name).kind == "rl":
        from genlab.rl.metrics import RUNNER_METRICS

        return RUNNER_METRICS + tuple(m for m in own if m not in RUNNER_METRICS)
    return own


def uses_labels(name: str) -> bool:
    return bool(hparams_class(name).uses_labels)
