"""Algorithm name -> where its pieces live, as lazy ``"module:attr"`` strings.

The platform never imports an algorithm by hand: adding a method is one folder under
``algorithms/`` plus one line here. Nothing heavy is imported until a run asks for it.

Each entry names
- ``kind``: ``"generative"`` (trained as Ray Train workers by ``genlab.train``) or ``"rl"``
  (an RLlib algorithm run by ``genlab.rl``);
- ``hparams``: the pydantic class of its hyperparameters (imports no torch / Ray);
- ``impl``: the algorithm class (generative: a ``genlab.algorithm.GenerativeAlgorithm``);
- ``metrics``: the metric names it reports, so a sweep's metric is checked before anything runs.
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
    metrics: tuple[str, ...]


ALGORITHMS: dict[str, Entry] = {
    "improved_gan": Entry(
        kind="generative",
        hparams="algorithms.improved_gan.config:ImprovedGANConfig",
        impl="algorithms.improved_gan.algorithm:ImprovedGAN",
        metrics=(
            "eval/test_error",
            "eval/test_accuracy",
            "eval/test_error_raw",
            "loss/disc",
            "loss/sup",
            "loss/unsup",
            "loss/gen",
            "disc/real_prob",
            "disc/fake_prob",
            "disc/train_accuracy",
        ),
    ),
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


def impl_class(name: str):
    return load(entry(name).impl)


def metrics(name: str) -> tuple[str, ...]:
    return entry(name).metrics
