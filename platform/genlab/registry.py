"""Algorithm name -> where its pieces live, as lazy ``"module:attr"`` strings.

The platform never imports an algorithm by hand: adding a method is one folder under
``algorithms/`` plus one line here. Nothing heavy is imported until a run asks for it.

Each entry names
- ``kind``: ``"generative"`` (trained as Ray Train workers by ``genlab.runners.generative``) or ``"rl"``
  (an RLlib algorithm run by ``genlab.runners.rl``);
- ``hparams``: the typed class of its hyperparameters (a ``genlab.hparams.Hparams``: imports no torch / Ray),
  which also carries the metric names the method reports, its progress line and whether it trains on labels;
- ``impl``: a class. Generative: the algorithm (a ``genlab.algorithm.GenerativeAlgorithm``, built from its
  hyperparameters and a ``genlab.context.DataContext``); rl: its RLlib ``AlgorithmConfig`` subclass, whose
  ``from_context(hparams, ctx)`` builds the config that trains a run from a ``genlab.context.RunContext``;
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
    "improved_gan": Entry("generative", "algorithms.improved_gan.hparams:ImprovedGANHparams",
                          "algorithms.improved_gan.algorithm:ImprovedGAN"),
    "infogan": Entry("generative", "algorithms.infogan.hparams:InfoGANHparams", "algorithms.infogan.algorithm:InfoGAN"),
    "iaf_vae": Entry("generative", "algorithms.iaf_vae.hparams:IAFVAEHparams", "algorithms.iaf_vae.algorithm:IAFVAE"),
    "gail": Entry("rl", "algorithms.gail.hparams:GAILHparams", "algorithms.gail.rllib:GAILConfig",
                  needs_demos=True, uses_ppo=True),
    "vime": Entry("rl", "algorithms.vime.hparams:VIMEHparams", "algorithms.vime.rllib:VIMEConfig", uses_ppo=True),
    "bc": Entry("rl", "algorithms.bc.hparams:BCHparams", "algorithms.bc.rllib:BCRunConfig", needs_demos=True),
}

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


def hparams_class(name: str):
    return load(entry(name).hparams)


def algorithm_class(name: str):
    """A generative method's ``GenerativeAlgorithm`` subclass."""
    e = entry(name)
    if e.kind != "generative":
        raise KeyError(f"{name} is an RL method: it has an RLlib config (rllib_config), not an algorithm class")
    return load(e.impl)


def rllib_config(name: str, hparams, ctx):
    """An RL method's RLlib ``AlgorithmConfig`` for a run: ``<its config class>.from_context(hparams, ctx)``."""
    e = entry(name)
    if e.kind != "rl":
        raise KeyError(f"{name} is a generative method: it has an algorithm class (algorithm_class), not an RLlib "
                       "config")
    return load(e.impl).from_context(hparams, ctx)


def impl_class(name: str) -> type:
    """The class the registry names for ``name`` (generative: the algorithm; rl: the RLlib config class)."""
    return load(entry(name).impl)


def metrics(name: str) -> tuple[str, ...]:
    """Every metric the method reports: its own, and for RL methods the runner's env and evaluation metrics."""
    own = tuple(hparams_class(name).metrics)
    if entry(name).kind == "rl":
        from genlab.rl.metrics import RUNNER_METRICS

        return RUNNER_METRICS + tuple(m for m in own if m not in RUNNER_METRICS)
    return own


def progress(name: str) -> tuple[str, ...]:
    """The metrics of the method's one-line progress report (those present are shown, at most six): its
    ``Hparams.progress``; for RL methods after the runner's evaluation and env return."""
    own = tuple(hparams_class(name).progress)
    if entry(name).kind == "rl":
        from genlab.rl.metrics import RUNNER_PROGRESS

        return RUNNER_PROGRESS + own
    return own


def uses_labels(name: str) -> bool:
    return bool(hparams_class(name).uses_labels)
