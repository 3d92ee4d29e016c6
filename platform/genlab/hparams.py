"""The base of every method's typed hyperparameters. Imports pydantic only, so specs validate without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from genlab.context import RunContext


class Hparams(BaseModel):
    """Unknown keys are errors; what the platform must know of a method before building it is a class variable."""

    model_config = ConfigDict(extra="forbid")

    metrics: ClassVar[tuple[str, ...]] = ()
    """Every metric name the method reports. A sweep's metric is checked against these before Ray starts."""
    progress: ClassVar[tuple[str, ...]] = ()
    """The metrics of the one-line progress report after each epoch or iteration, in order (those present are
    shown). Empty: the runner's default (the first ``eval/*`` and ``loss/*`` metrics)."""
    uses_labels: ClassVar[bool] = False
    """Generative methods: whether training uses labels (batches then carry ``x_lab``/``y_lab`` and the spec
    may set ``data.labels_per_class``). Unsupervised methods get no labeled split."""

    local_cpus: ClassVar[int] = 1
    """CPUs a local Ray needs to run the method at all (checked before Ray starts against ``--num-cpus``)."""

    def unreported(self) -> dict[str, str]:
        """The metrics of ``metrics`` these settings do not report, each with the setting that would (e.g.
        ``{"eval/fid": "hparams.sample_scores: [inception]"}``): a sweep on one of them is refused before Ray
        starts. None by default."""
        return {}

    def check(self, ctx: RunContext) -> list[str]:
        """Problems between these settings and the rest of the run (its data, env, PPO settings, budget), one line
        each, starting with the field's path (``hparams.<field>``); none by default."""
        return []

    def check_files(self, ctx: RunContext) -> list[str]:
        """Problems with files this machine must hold (e.g. pretrained weights the run reads), one line each starting
        with the field's path; none by default. Checked by the pre-flight (``genlab validate``, before Ray starts),
        like dataset files, not when a spec loads: a shipped spec stays valid on a machine without the file."""
        return []
