"""Test error of an ensemble of trained Improved-GAN models (the paper's ensemble row): the average of the softmax of
their averaged (EMA) classifiers on the test set of a run spec.

    python scripts/improved_gan_ensemble.py SPEC CHECKPOINT [CHECKPOINT ...]

SPEC: the run spec (or sweep spec: its run) the models were trained with; it names the dataset and the networks.
CHECKPOINT: a ``state.pt`` (the MLflow artifact checkpoint/state.pt of a run, or one in a run folder), or a run
folder (``<storage>/<run>/``, a sweep's ``<storage>/<sweep>/train/<trial>/``), whose latest checkpoint is used, or a
sweep's ``<storage>/<sweep>/train/`` folder: every trial in it. Prints one line per member and the ensemble's line.

On digits the test split follows data.seed: ensemble models that differ in ``seed``, not in ``data.seed``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from algorithms.improved_gan.ensemble import ensemble_test_error, load_classifier
from genlab import config, data
from genlab.sweep_specs import SweepSpec


def checkpoints(path: Path) -> list[Path]:
    """The state.pt files that ``path`` stands for (see the module docstring)."""
    if path.is_file():
        return [path]
    found = sorted(path.glob("checkpoint_*/state.pt"))
    if found:  # one run folder: its latest checkpoint (the highest epoch)
        return [max(found, key=lambda p: torch.load(p, map_location="cpu", weights_only=False)["epoch"])]
    trials = [c for d in sorted(path.iterdir()) if d.is_dir() for c in checkpoints(d)]
    if not trials:
        raise FileNotFoundError(f"{path}: no state.pt, no checkpoint_*/state.pt and no run folders with one")
    return trials


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("checkpoints", nargs="+", type=Path)
    args = parser.parse_args(argv)
    spec = config.load_any(args.spec)
    run = spec.run if isinstance(spec, SweepSpec) else spec
    ds = data.load(run.data)
    files = [f for p in args.checkpoints for f in checkpoints(p)]
    nets = [load_classifier(f, run.hparams_obj(), ds.info) for f in files]
    test_x, test_y = data.test_set(ds)
    result = ensemble_test_error(nets, test_x, test_y)
    for f, err in zip(files, result["member_errors"]):
        print(f"member  {err:.4f}  ({round(err * len(test_y))} errors)  {f}")
    members = result["member_errors"]
    spread = f" +- {statistics.stdev(members):.4f}" if len(members) > 1 else ""
    print(f"members {statistics.mean(members):.4f}{spread} (mean +- std of {len(members)})")
    print(f"ensemble {result['ensemble_error']:.4f}  ({result['ensemble_errors']} errors of {len(test_y)}, "
          f"softmax averaged over {len(nets)} models)")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
