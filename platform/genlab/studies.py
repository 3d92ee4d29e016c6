"""Study specs: a set of run specs ("arms") × seeds, run as one Tune experiment, each tagged with the paper claims
it measures (``genlab study``; ``genlab report`` reads what it logged).

```yaml
name: improved-gan-digits-ssl
arms:
  - label: Improved-GAN
    run: ../improved_gan/digits.yaml           # a run spec file (relative to this file) or an inline mapping
    claims: [improved_gan:mnist-100-labels]    # <method>:<claim id> of algorithms/<method>/paper.yaml
  - label: supervised only
    run: ../improved_gan/digits.yaml
    set: {hparams.unlabeled_weight: 0}          # dotted overrides of the run, as --set
comparisons:
  - {paper: improved_gan:ssl-beats-supervised, treatment: Improved-GAN, control: supervised only}
seeds: [0, 1, 2, 3, 4]
max_concurrent: 2
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from genlab import config, papers
from genlab.errors import SpecError
from genlab.specs import HELD_OUT_FROM, NAME_PATTERN, RunSpec, Strict, TrackingSpec, set_path


class ArmSpec(Strict):
    label: str = Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.+-]*$")
    """How the arm appears in MLflow (tag genlab.arm) and in the report."""
    run: RunSpec
    """The run each seed of this arm trains (its `seed` is replaced by the study's seeds)."""
    claims: list[str] = []
    """The paper claims this arm measures, as <method>:<claim id> (see algorithms/<method>/paper.yaml)."""


class StudyComparison(Strict):
    paper: str
    """The paper's comparison, as <method>:<comparison id>."""
    treatment: str
    """The arm that plays what the paper proposes."""
    control: str
    """The arm it is compared against."""


class StudySpec(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    """Study name: results go to <storage>/<name>; MLflow parent run of this name (genlab report <name>)."""
    arms: list[ArmSpec] = Field(min_length=1)
    tuning_seeds: list[NonNegativeInt] = Field(min_length=1)
    """The seeds the arms' settings were chosen on (by hand, a sweep, the docs' measurements): the study must not
    report on them (the held-out-seed protocol)."""
    seeds: list[NonNegativeInt] | None = None
    """The seeds every arm runs once with (the run's `seed`, and a dataset's `data.seed`: its labeled subset and
    split). None: ``num_seeds`` fresh ones drawn from the held-out range (1000 and above) by the study's name."""
    num_seeds: PositiveInt = 10
    """How many seeds to draw when ``seeds`` is not given."""
    report_on_tuning_seeds: bool = False
    """Allow ``seeds`` to overlap ``tuning_seeds``; the report then marks every number from those seeds as measured
    on tuning seeds."""
    comparisons: list[StudyComparison] = []
    max_concurrent: int = Field(default=2, ge=1)
    """Runs at once (each also needs its run's resources)."""
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    """Where the study logs (every arm's runs go to this experiment)."""

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        problems = []
        labels = [a.label for a in self.arms]
        if len(set(labels)) != len(labels):
            problems.append(f"arms: labels must be unique, got {labels}")
        if self.seeds is None:
            object.__setattr__(self, "seeds", held_out_seeds(self.name, self.num_seeds, exclude=self.tuning_seeds))
        if len(set(self.seeds)) != len(self.seeds):
            problems.append(f"seeds: must be distinct, got {self.seeds}")
        overlap = sorted(set(self.seeds) & set(self.tuning_seeds))
        if overlap and not self.report_on_tuning_seeds:
            problems.append(f"seeds: {overlap} are tuning seeds (tuning_seeds: {self.tuning_seeds}): a claim measured "
                            "on the seeds its settings were chosen on overstates it. Report on held-out seeds (leave "
                            f"seeds out to draw them from {HELD_OUT_FROM} and above), or set "
                            "report_on_tuning_seeds: true to have those numbers marked as measured on tuning seeds")
        for i, arm in enumerate(self.arms):
            for ref in arm.claims:
                try:
                    method, claim = papers.resolve(ref)
                except SpecError as e:
                    problems.append(f"arms[{i}].claims: {e}")
                    continue
                if method != arm.run.algorithm and claim.metric not in _metrics(arm.run.algorithm):
                    problems.append(f"arms[{i}].claims: {ref} is measured by {claim.metric}, which "
                                    f"{arm.run.algorithm} does not report")
        for i, c in enumerate(self.comparisons):
            for role in ("treatment", "control"):
                if getattr(c, role) not in labels:
                    problems.append(f"comparisons[{i}].{role}: {getattr(c, role)!r} is not an arm; arms: {labels}")
            try:
                _, comparison = papers.resolve(c.paper)
                if not isinstance(comparison, papers.Comparison):
                    problems.append(f"comparisons[{i}].paper: {c.paper} is a claim, not a comparison")
            except SpecError as e:
                problems.append(f"comparisons[{i}].paper: {e}")
        if problems:
            raise SpecError("\n".join(problems))
        return self

    def arm(self, label: str) -> ArmSpec:
        return next(a for a in self.arms if a.label == label)

    def tuned_on(self) -> list[int]:
        """The study's seeds that are also tuning seeds (none unless ``report_on_tuning_seeds``)."""
        return sorted(set(self.seeds) & set(self.tuning_seeds))


def held_out_seeds(name: str, n: int, exclude: list[int] = ()) -> list[int]:
    """``n`` distinct seeds of the held-out range, drawn by ``name`` (the same study name draws the same seeds, so that
    --resume and the report agree; another name draws others)."""
    import hashlib
    import random

    rng = random.Random(int(hashlib.sha256(name.encode()).hexdigest()[:16], 16))
    pool = [s for s in rng.sample(range(HELD_OUT_FROM, 100_000), n + len(exclude)) if s not in exclude]
    return sorted(pool[:n])


def _metrics(algorithm: str) -> tuple[str, ...]:
    from genlab import registry

    return registry.metrics(algorithm)


def is_study(raw: dict) -> bool:
    return "arms" in raw


def load(path: str | Path, overrides: list[str] = ()) -> StudySpec:
    """Read and validate a study spec; each arm's ``run`` file is read relative to the study file, its ``set``
    overrides and the study's tracking section applied, then validated as a run spec."""
    path = Path(path)
    raw = config.apply_overrides(config.read_yaml(path), overrides, str(path))
    problems = []
    arms = raw.get("arms")
    if isinstance(arms, list):
        for i, arm in enumerate(arms):
            if not isinstance(arm, dict):
                continue
            try:
                arm["run"] = _arm_run(arm, path.parent, raw.get("tracking") or {})
            except SpecError as e:
                problems += [f"arms[{i}].run: {line.strip()}" for line in str(e).splitlines()]
    if problems:
        raise SpecError(f"{path}: invalid study spec:\n" + "\n".join(f"  {p}" for p in problems))
    return config.validate(StudySpec, raw, source=str(path), kind="study spec")


def _arm_run(arm: dict, base_dir: Path, tracking: dict) -> dict[str, Any]:
    if not isinstance(arm.get("run"), (str, dict)):
        raise SpecError("a run spec file or mapping")
    run = config.run_raw(arm["run"], base_dir)
    for key, value in (arm.pop("set", None) or {}).items():
        set_path(run, key, value)
    run["tracking"] = {**(run.get("tracking") or {}), **tracking}
    return config.run_from_dict(run, source=f"arm {arm.get('label', '?')}").model_dump(mode="json")
