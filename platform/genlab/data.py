"""Datasets as in-memory tensors, the seeded labeled subset, and per-worker batches.

``load(spec)`` returns the whole dataset as float32 tensors in [-1, 1] (N x C x H x W), the labels,
and the indices of the labeled training images (semi-supervised runs keep ``labels_per_class``
labels per class). ``batches(...)`` yields one epoch of one worker's batches.

- ``digits`` ships with scikit-learn (1797 8x8 images): no files, no network.
- ``mnist``, ``svhn`` and ``cifar10`` are read by torchvision's dataset classes from ``spec.root``
  (default :func:`default_root`). Missing files raise :class:`DatasetNotFound`, which says where
  they were looked for and how to get them, unless ``spec.download`` lets torchvision fetch them.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from genlab.algorithm import DataInfo
from genlab.config import DATA_SHAPES, DataSpec
from genlab.errors import DataError

NUM_CLASSES = 10


class DatasetNotFound(DataError, FileNotFoundError):
    """A dataset's files are not under its root and downloading is off."""


def default_root() -> Path:
    """Where datasets live unless ``data.root`` says otherwise: ``$GENLAB_DATA``, else ``~/.genlab/data``."""
    env = os.environ.get("GENLAB_DATA")
    return Path(env).expanduser() if env else Path.home() / ".genlab" / "data"


def root(spec: DataSpec) -> Path:
    return Path(spec.root).expanduser() if spec.root else default_root()


@dataclass
class ImageData:
    """A dataset in memory: images in [-1, 1], int64 labels, and which training labels may be used."""

    train_x: torch.Tensor  # float32 (N, C, H, W) in [-1, 1]
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    labeled_idx: torch.Tensor  # int64 indices into train_x whose labels training may use
    info: DataInfo


def load(spec: DataSpec) -> ImageData:
    """Load ``spec.name`` (train and test split) and draw its labeled subset."""
    if spec.name == "digits":
        train_x, train_y, test_x, test_y = _digits(spec.seed)
    else:
        train_x, train_y, test_x, test_y = _torchvision(spec.name, root(spec), spec.download)
    assert tuple(train_x.shape[1:]) == DATA_SHAPES[spec.name], (spec.name, train_x.shape)
    return ImageData(
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        labeled_idx=_labeled_subset(train_y, spec.labels_per_class, spec.seed),
        info=info(spec),
    )


def info(spec: DataSpec) -> DataInfo:
    """What an algorithm may know of ``spec``'s data, without reading it."""
    return DataInfo(shape=DATA_SHAPES[spec.name], num_classes=NUM_CLASSES, name=spec.name)


def digest(data: ImageData) -> str:
    """A short content hash of the dataset (images, labels, the labeled subset): equal data, equal digest."""
    h = hashlib.sha256()
    for t in (data.train_x, data.train_y, data.test_x, data.test_y, data.labeled_idx):
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def source(spec: DataSpec) -> str:
    """Where the data came from: the local root of a torchvision dataset, or the package that ships it."""
    return "sklearn.datasets:load_digits" if spec.name == "digits" else str(root(spec).resolve())


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
    ``batch_size`` long.

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
        batch = {"x": data.train_x[idx].to(device)}
        if labels:
            idx_lab = lab[i * batch_size : (i + 1) * batch_size]
            batch.update(x_lab=data.train_x[idx_lab].to(device), y_lab=data.train_y[idx_lab].to(device))
        yield batch


# ------------------------------------------------------------------------------------------ helpers


def _generator(*parts: int) -> torch.Generator:
    """A torch generator seeded from several integers (different tuples give unrelated streams)."""
    seed = int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(seed)


def _scale(x: torch.Tensor, top: float) -> torch.Tensor:
    """Pixel values in [0, top] -> float32 in [-1, 1]."""
    return x.contiguous().float().div_(top / 2).sub_(1.0)


def _labeled_subset(train_y: torch.Tensor, per_class: int | None, seed: int) -> torch.Tensor:
    """Indices of ``per_class`` training images of every class, drawn with ``seed``; all if None."""
    if per_class is None:
        return torch.arange(len(train_y))
    y = train_y.numpy()
    counts = np.bincount(y, minlength=NUM_CLASSES)
    if counts.min() < per_class:
        raise DataError(
            f"data.labels_per_class: {per_class} is more than class {counts.argmin()} has "
            f"({counts.min()} training images); at most {counts.min()} is possible"
        )
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(NUM_CLASSES)]
    return torch.from_numpy(np.sort(np.concatenate(chosen))).long()


def _digits(seed: int) -> tuple[torch.Tensor, ...]:
    """scikit-learn's 8x8 digits (values 0..16) with a stratified, seeded 297-image test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = _scale(torch.from_numpy(d.images).unsqueeze(1), 16.0)
    y = torch.from_numpy(d.target).long()
    train, test = train_test_split(np.arange(len(y)), test_size=297, stratify=d.target, random_state=seed)
    return x[train], y[train], x[test], y[test]


# -------------------------------------------------------------------------------------- torchvision


class _CIFAR10(datasets.CIFAR10):
    """CIFAR-10 that accepts files already present without their md5 (download still checks the archive)."""

    meta = {**datasets.CIFAR10.meta, "md5": None}  # _load_meta: presence only, as for the batches

    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        return all((folder / f).is_file() for f, _ in self.train_list + self.test_list)


class _SVHN(datasets.SVHN):
    """SVHN that accepts a file already present without its md5 (download still checks it)."""

    def _check_integrity(self) -> bool:
        return (Path(self.root) / self.filename).is_file()


@dataclass(frozen=True)
class _Source:
    files: tuple[str, ...]  # relative to the root
    how: str  # how to put them there by hand; {root} is filled in


_MNIST_URL = datasets.MNIST.mirrors[0]
_SOURCES = {
    "mnist": _Source(
        files=tuple(f"MNIST/raw/{f.removesuffix('.gz')}" for f, _ in datasets.MNIST.resources),
        how=(
            f"download {', '.join(f for f, _ in datasets.MNIST.resources)} from {_MNIST_URL} "
            "and gunzip them into {root}/MNIST/raw/"
        ),
    ),
    "cifar10": _Source(
        files=tuple(
            f"{_CIFAR10.base_folder}/{f}"
            for f in [f for f, _ in _CIFAR10.train_list + _CIFAR10.test_list] + [_CIFAR10.meta["filename"]]
        ),
        how=f"download {_CIFAR10.url} and extract it in {{root}} (it unpacks to {_CIFAR10.base_folder}/)",
    ),
    "svhn": _Source(
        files=tuple(_SVHN.split_list[s][1] for s in ("train", "test")),
        how="download " + " and ".join(_SVHN.split_list[s][0] for s in ("train", "test")) + " into {root}/",
    ),
}


def missing_files(name: str, root: Path) -> list[Path]:
    """The files of dataset ``name`` that are not under ``root`` (none for digits, which ships with scikit-learn)."""
    return [root / f for f in _SOURCES[name].files if not (root / f).is_file()] if name in _SOURCES else []


def how_to_get(name: str, root: Path) -> str:
    """How to put dataset ``name``'s files under ``root`` by hand."""
    return _SOURCES[name].how.format(root=root)


def digits_train_labels(seed: int) -> np.ndarray:
    """The labels of genlab's digits training split (what ``load`` trains on), without building the images."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    y = load_digits().target
    train, _ = train_test_split(np.arange(len(y)), test_size=297, stratify=y, random_state=seed)
    return y[train]


def mnist_train_labels(root: Path) -> np.ndarray:
    """MNIST's training labels, read from the IDX label file alone (8-byte header, then one byte per label)."""
    path = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    return np.frombuffer(path.read_bytes()[8:], dtype=np.uint8)


def _torchvision(name: str, root: Path, download: bool) -> tuple[torch.Tensor, ...]:
    """Train and test split of a torchvision dataset, checked for presence first."""
    missing = missing_files(name, root)
    if missing and not download:
        raise DatasetNotFound(
            f"{name} not found under {root}; missing: {', '.join(map(str, missing))}. "
            "Either set data.download: true (needs a network) to let torchvision fetch it, "
            f"or {how_to_get(name, root)}."
        )
    fetch = bool(missing)  # only download what is not there
    if name == "mnist":
        splits = [datasets.MNIST(root, train=t, download=fetch) for t in (True, False)]
        arrays = [(s.data.unsqueeze(1), s.targets) for s in splits]
    elif name == "cifar10":
        splits = [_CIFAR10(root, train=t, download=fetch) for t in (True, False)]
        arrays = [(torch.from_numpy(s.data).permute(0, 3, 1, 2), torch.tensor(s.targets)) for s in splits]
    else:  # svhn: torchvision maps label 10 to digit 0
        splits = [_SVHN(root, split=s, download=fetch) for s in ("train", "test")]
        arrays = [(torch.from_numpy(s.data), torch.from_numpy(s.labels)) for s in splits]
    (train_x, train_y), (test_x, test_y) = arrays
    return _scale(train_x, 255.0), train_y.long(), _scale(test_x, 255.0), test_y.long()
