"""Datasets in memory as uint8 tensors, the seeded labeled subset, and per-worker float batches.

``load(spec)`` returns the whole dataset (its loader is in the catalogue, :mod:`genlab.datasets`) as uint8 images
(N x C x H x W, pixel values 0..``pixel_max``), the labels, and the indices of the labeled training images
(semi-supervised runs keep ``labels_per_class`` labels per class). Images stay uint8 in memory (CelebA's ~200k
64x64 images are 2.5 GB so, 10 GB as float32); ``batches(...)`` yields one epoch of one worker's batches converted
to float32 in [-1, 1] on the fly, on the target device, and :func:`test_set` gives the float test images.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from genlab import datasets
from genlab.context import DataContext
from genlab.errors import DataError
from genlab.specs import DataSpec


@dataclass
class ImageData:
    """A dataset in memory: uint8 images, int64 labels (-1: the dataset has none), and which training labels may
    be used. :meth:`to_float` maps images to float32 in [-1, 1] (0 -> -1, ``pixel_max`` -> 1)."""

    train_x: torch.Tensor  # uint8 (N, C, H, W), values 0..pixel_max
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    labeled_idx: torch.Tensor  # int64 indices into train_x whose labels training may use
    info: DataContext
    pixel_max: int = 255  # the stored value of a white pixel (digits: 16)

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        """Stored images (any device) -> float32 in [-1, 1]."""
        return x.float().div_(self.pixel_max / 2).sub_(1.0)


def load(spec: DataSpec) -> ImageData:
    """Load ``spec.name`` (train and test split) and draw its labeled subset."""
    entry = datasets.get(spec.name)
    train_x, train_y, test_x, test_y = entry.source.load(datasets.root_of(spec.root), spec.download, spec.seed)
    assert tuple(train_x.shape[1:]) == entry.shape, (spec.name, train_x.shape)
    assert train_x.dtype == test_x.dtype == torch.uint8, (spec.name, train_x.dtype)
    return ImageData(
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        labeled_idx=_labeled_subset(train_y, spec.labels_per_class, spec.seed, max(entry.num_classes, 1)),
        info=info(spec),
        pixel_max=entry.pixel_max,
    )


def info(spec: DataSpec) -> DataContext:
    """What an algorithm may know of ``spec``'s data, without reading it (num_classes 0: no class labels)."""
    return datasets.context(spec.name)


def test_set(data: ImageData, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out images as float32 in [-1, 1] and their labels, on ``device`` (moved as uint8, then converted)."""
    return data.to_float(data.test_x.to(device)), data.test_y.to(device)


def digest(data: ImageData) -> str:
    """A short content hash of the dataset (images, labels, the labeled subset): equal data, equal digest."""
    h = hashlib.sha256()
    for t in (data.train_x, data.train_y, data.test_x, data.test_y, data.labeled_idx):
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def source(spec: DataSpec) -> str:
    """Where the data came from: the local root of a torchvision dataset, or the package that ships it."""
    return datasets.source_label(spec.name, spec.root)


def steps_per_epoch(data: ImageData, batch_size: int, world_size: int, steps: int | None = None) -> int:
    """How many batches :func:`batches` yields per epoch on each worker."""
    shard = len(data.train_x) // world_size
    if shard < batch_size:
        raise DataError(
            f"data.batch_size: {batch_size} is more than the {shard} training images of each worker's "
            f"shard ({len(data.train_x)} images / {world_size} workers); lower data.batch_size"
        )
    n = shard // batch_size
    return n if steps is None else min(n, steps)


def batches(
    data: ImageData,
    *,
    batch_size: int,
    epoch: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    steps: int | None = None,
    device: torch.device | str = "cpu",
    labels: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """One epoch of this worker's batches: ``{"x", "x_lab", "y_lab"}`` (``{"x"}`` with ``labels=False``), each
    ``batch_size`` long, images as float32 in [-1, 1] on ``device`` (sent as uint8, converted there).

    ``x`` runs through this worker's shard of a permutation of the whole training set. The
    permutation depends on ``(seed, epoch)`` only, so all workers agree on it; shard ``rank`` is
    every ``world_size``-th image of it, every shard the same length. The last incomplete batch is
    dropped, and at most ``steps`` batches are yielded.

    ``x_lab``/``y_lab`` cycle through the labeled images, reshuffled on every pass (repeated as
    needed when there are fewer than the epoch uses), seeded by ``(seed, epoch, rank)``.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1} (world_size={world_size})")
    n_steps = steps_per_epoch(data, batch_size, world_size, steps)
    n = len(data.train_x)
    perm = torch.randperm(n, generator=_generator(seed, epoch))
    shard = perm[: n - n % world_size][rank::world_size]

    if labels:
        gen_lab = _generator(seed, epoch, rank)
        n_lab = len(data.labeled_idx)
        passes = math.ceil(n_steps * batch_size / n_lab)
        lab = torch.cat([data.labeled_idx[torch.randperm(n_lab, generator=gen_lab)] for _ in range(passes)])

    for i in range(n_steps):
        idx = shard[i * batch_size : (i + 1) * batch_size]
        batch = {"x": data.to_float(data.train_x[idx].to(device))}
        if labels:
            idx_lab = lab[i * batch_size : (i + 1) * batch_size]
            batch.update(x_lab=data.to_float(data.train_x[idx_lab].to(device)), y_lab=data.train_y[idx_lab].to(device))
        yield batch


# ------------------------------------------------------------------------------------------ helpers


def _generator(*parts: int) -> torch.Generator:
    """A torch generator seeded from several integers (different tuples give unrelated streams)."""
    seed = int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(seed)


def _labeled_subset(train_y: torch.Tensor, per_class: int | None, seed: int, num_classes: int) -> torch.Tensor:
    """Indices of ``per_class`` training images of every class, drawn with ``seed``; all if None."""
    if per_class is None:
        return torch.arange(len(train_y))
    y = train_y.numpy()
    counts = np.bincount(y, minlength=num_classes)
    if counts.min() < per_class:
        raise DataError(
            f"data.labels_per_class: {per_class} is more than class {counts.argmin()} has "
            f"({counts.min()} training images); at most {counts.min()} is possible"
        )
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(num_classes)]
    return torch.from_numpy(np.sort(np.concatenate(chosen))).long()
