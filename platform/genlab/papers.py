"""The papers' numbers as data: ``algorithms/<method>/paper.yaml``, one per method, validated like every spec.

Each file names the paper and lists its claims: what was measured (the genlab metric that measures it and whether
lower or higher is better), the paper's value and ± where given, the table or figure, the dataset or task, the spec
that reproduces it at paper scale and the CI-scale stand-in. ``comparisons`` are the paper's A-versus-B claims
(GAIL vs BC, semi-supervised vs supervised-only, IAF vs diagonal, VIME vs PPO). ``genlab report`` puts every claim
of every method that has a paper.yaml on its page, with a number or an explicit "not run": a method that lands
with its paper.yaml appears without touching the report code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from genlab import registry
from genlab.errors import SpecError
from genlab.specs import Strict

PAPER_FILE = "paper.yaml"
ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"


class StandIn(Strict):
    spec: str
    """The CI-scale spec (relative to the repository root) that stands in for the paper-scale one."""
    note: str
    """What it measures instead and why its value is not the paper's (e.g. 8x8 digits instead of MNIST)."""


class Claim(Strict):
    id: str = Field(pattern=ID_PATTERN)
    claim: str = Field(min_length=1)
    """The claim in one sentence."""
    metric: str
    """The genlab metric that measures it (one the method reports), read from a run's final epoch."""
    mode: Literal["min", "max"]
    """Whether lower (min) or higher (max) is better."""
    value: float | None = None
    """The paper's number in the metric's units (e.g. test error 0.0093 for 93 errors of 10,000); None when the
    paper states it qualitatively."""
    plus_minus: float | None = None
    """The paper's ± (a standard deviation over its runs, where it says)."""
    source: str
    """Table or figure, e.g. "Table 1"."""
    task: str
    """Dataset or environment, and setting (e.g. "MNIST, 100 labels")."""
    spec: str
    """The spec that reproduces it at paper scale (relative to the repository root)."""
    ci: StandIn | None = None


class Comparison(Strict):
    id: str = Field(pattern=ID_PATTERN)
    claim: str
    metric: str
    mode: Literal["min", "max"]
    treatment: str
    """What the paper proposes (e.g. "GAIL")."""
    control: str
    """What it beats (e.g. "behavior cloning")."""
    source: str


class Paper(Strict):
    method: str
    """The registered algorithm this file belongs to."""
    title: str
    arxiv: str
    claims: list[Claim] = Field(min_length=1)
    comparisons: list[Comparison] = []

    @model_validator(mode="after")
    def _consistent(self) -> Paper:
        if self.method not in registry.names():
            raise ValueError(f"method: {self.method!r} is not registered; registered: {', '.join(registry.names())}")
        problems = []
        metrics = registry.metrics(self.method)
        ids = [c.id for c in self.claims] + [c.id for c in self.comparisons]
        if len(set(ids)) != len(ids):
            problems.append(f"claims: ids must be unique, got {ids}")
        for i, c in enumerate([*self.claims, *self.comparisons]):
            where = f"claims[{i}]" if i < len(self.claims) else f"comparisons[{i - len(self.claims)}]"
            if c.metric not in metrics:
                problems.append(f"{where}.metric: {c.metric!r} is not reported by {self.method}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def claim(self, claim_id: str) -> Claim | Comparison:
        for c in [*self.claims, *self.comparisons]:
            if c.id == claim_id:
                return c
        raise KeyError(claim_id)


def paper_path(method: str) -> Path:
    """Where ``method``'s paper.yaml lives: beside its code (the package named in the registry)."""
    package = registry.entry(method).hparams.split(":")[0].rsplit(".", 1)[0]
    return Path(importlib.util.find_spec(package).origin).parent / PAPER_FILE


def load(method: str) -> Paper | None:
    """The method's paper.yaml, validated; None when the method has none."""
    from genlab.config import read_yaml, validate

    path = paper_path(method)
    if not path.is_file():
        return None
    return validate(Paper, read_yaml(path), source=str(path), kind="paper file")


def _stand_in_spec(method: str, claim: Claim) -> dict:
    """The claim's stand-in spec as written ({}: no stand-in, or its file is not here)."""
    from genlab.config import read_yaml

    if claim.ci is None:
        return {}
    path = paper_path(method).parents[2] / claim.ci.spec  # specs are relative to the repository root
    return read_yaml(path) if path.is_file() else {}


def stand_in_dataset(method: str, claim: Claim) -> str | None:
    """The ``data.name`` of the claim's stand-in spec (None: no stand-in, an RL spec, or its file is not here)."""
    return (_stand_in_spec(method, claim).get("data") or {}).get("name")


def stand_in_env(method: str, claim: Claim) -> str | None:
    """The ``env.id`` of the claim's stand-in spec (None: no stand-in, a generative spec, or its file is not here)."""
    return (_stand_in_spec(method, claim).get("env") or {}).get("id")


def all_papers() -> dict[str, Paper]:
    """Every registered method's paper, by method name (methods without a paper.yaml are left out)."""
    return {m: p for m in registry.names() if (p := load(m)) is not None}


def resolve(ref: str) -> tuple[str, Claim | Comparison]:
    """``"<method>:<claim id>"`` -> (method, the claim or comparison); SpecError naming what exists."""
    method, _, claim_id = ref.partition(":")
    paper = load(method) if method in registry.names() else None
    if paper is None:
        have = ", ".join(all_papers()) or "none"
        raise SpecError(f"{ref!r}: no paper.yaml for method {method!r}; methods with one: {have}")
    try:
        return method, paper.claim(claim_id)
    except KeyError:
        ids = ", ".join(c.id for c in [*paper.claims, *paper.comparisons])
        raise SpecError(f"{ref!r}: {method}'s paper.yaml has no claim {claim_id!r}; it has: {ids}") from None
