"""Algorithm name -> where its pieces live, as lazy ``"module:attr"`` strings.

The platform never imports an algorithm by hand: adding a method is one folder under
``algorithms/`` plus one line here. Nothing heavy is imported until a run asks for it.

Each entry names
- ``kind``: ``"generative"`` (trained as Ray Train workers by ``genlab.train``) or ``"rl"``
  (an RLlib algorithm run by ``genlab.rl``);
- ``hparams``: the pydantic class of its hyperparameters (imports no torch / Ray);
- ``impl``: generative: the algorithm class (a ``genlab.algorithm.GenerativeAlgorithm``); rl: a
  ``build_config(spec, workdir) -> ray.rllib AlgorithmConfig`` function;
- ``metrics``: the metric names it reports, so a sweep's metric is checked before anything runs;
- ``needs_demos``: an imitation method, whose run spec must name expert demonstrations.
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
    needs_demos: bool = False


RL_METRICS = ("eval/true_return", "eval/normalized_score", "env/episode_return_mean", "env/episode_len_mean",
              "loss/policy_loss", "loss/vf_loss", "loss/entropy")

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
    "gail": Entry(
        kind="rl",
        hparams="algorithms.gail.config:GAILHparams",
        impl="algorithms.gail.algorithm:build_config",
        metrics=RL_METRICS + ("disc/loss", "disc/expert_acc", "disc/policy_acc", "disc/expert_prob",
                              "disc/policy_prob"),
        needs_demos=True,
    ),
    "bc": Entry(
        kind="rl",
        hparams="algorithms.bc.config:BCHparams",
        impl="algorithms.bc.algorithm:build_config",
        metrics=("eval/true_return", "eval/normalized_score"),
        needs_demos=True,
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


RUNNERS = {"generative": "genlab.train:fit", "rl": "genlab.rl:fit"}
"""How each kind of algorithm is trained: fit(spec, *, storage_path, run_key=None, mlflow_tags=None, in_tune=False)
returning an object with ``.metrics`` (the last report) and ``.mlflow_run_id``."""


def runner(name: str):
    """The fit function that trains algorithm ``name`` (Ray Train for generative methods, RLlib for RL)."""
    return load(RUNNERS[entry(name).kind])


def hparams_class(name: str):
    return load(entry(name).hparams)


def impl_class(name: str):
    return load(entry(name).impl)


def metrics(name: str) -> tuple[str, ...]:
    return entry(name).metrics
