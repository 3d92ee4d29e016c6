"""Where the Inception v3 weights for Inception Score / FID come from: a local file, never a download at run time.

torch-fidelity's ``FeatureExtractorInceptionV3`` downloads its weights from GitHub when it is given no path; genlab
always gives it one: ``hparams.inception_weights`` in the spec, else the environment variable
``GENLAB_INCEPTION_WEIGHTS``. Standard library only, so that spec validation can name the problem without torch.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "GENLAB_INCEPTION_WEIGHTS"
FILENAME = "weights-inception-2015-12-05-6726825d.pth"
URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{FILENAME}"
"""torch-fidelity 0.4.0's Inception v3 weights (converted from TensorFlow's 2015-12-05 graph, the one the
Inception Score and FID were defined with)."""
HOW_TO_GET = (f"download {URL} on a machine with a network (e.g. curl -L -o {FILENAME} <url>) and set "
              f"hparams.inception_weights or ${ENV} to its path")


def expand(path: str) -> str:
    """``~`` expanded, relative paths made absolute (Ray workers run in another directory)."""
    return str(Path(path).expanduser().resolve())


def from_env() -> str | None:
    value = os.environ.get(ENV)
    return expand(value) if value else None


def problem(path: str | None) -> str | None:
    """Why ``path`` cannot be the weights file (None when it is a file)."""
    if path is None:
        return f"sample_scores has inception but no weights file is named; {HOW_TO_GET}"
    p = Path(path)
    if p.is_file():
        return None
    what = "is a directory, not a file" if p.is_dir() else "does not exist"
    return f"{p} {what}; {HOW_TO_GET}"
