"""Datasets as in-memory uint8 tensors, the seeded labeled subset, and per-worker float batches.

``load(spec)`` returns the whole dataset as uint8 images (N x C x H x W, pixel values 0..``pixel_max``),
the labels, and the indices of the labeled training images (semi-supervised runs keep
``labels_per_class`` labels per class). Images stay uint8 in memory (CelebA's ~200k 64x64 images are
2.5 GB so, 10 GB as float32); ``batches(...)`` yields one epoch of one worker's batches converted to
float32 in [-1, 1] on the fly, on the target device, and :func:`test_set` gives the float test images.

- ``digits`` ships with scikit-learn (1797 8x8 images, values 0..16): no files, no network.
- ``mnist``, ``svhn``, ``cifar10`` and ``celeba`` are read by torchvision's dataset classes from
  ``spec.root`` (default :func:`default_root`). Missing files raise :class:`DatasetNotFound`, which says
  where they were looked for and how to get them, unless ``spec.download`` lets torchvision fetch them.
- ``celeba``: the aligned-and-cropped faces (178x218), center-cropped to 108x108 and resized to 64x64
  (the crop of DCGAN's CelebA code), train and test split of ``list_eval_partition.txt``; no class labels
  (they read -1). Decoding the JPEGs once takes minutes, so the result is cached beside them as
  ``celeba/genlab_<split>_crop108_64.pt`` (delete it to rebuild).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from genlab.algorithm import DataInfo
from genlab.errors import DataError
from genlab.specs import DATA_SHAPES, UNLABELED_DATASETS, DataSpec

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
    """A dataset in memory: uint8 images, int64 labels (-1: the dataset has none), and which training labels may
    be used. :meth:`to_float` maps images to float32 in [-1, 1] (0 -> -1, ``pixel_max`` -> 1)."""

    train_x: torch.Tensor  # uint8 (N, C, H, W), values 0..pixel_max
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    labeled_idx: torch.Tensor  # int64 indices into train_x whose labels training may use
    info: DataInfo
    pixel_max: int = 255  # the stored value of a white pixel (digits: 16)

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        """Stored images (any device) -> float32 in [-1, 1]."""
        return x.float().div_(self.pixel_max / 2).sub_(1.0)


def load(spec: DataSpec) -> ImageData:
    """Load ``spec.name`` (train and test split) and draw its labeled subset."""
    pixel_max = 255
    if spec.name == "digits":
        (train_x, train_y, test_x, test_y), pixel_max = _digits(spec.seed), 16
    elif spec.name == "celeba":
        train_x, train_y, test_x, test_y = _celeba(root(spec), spec.download)
    else:
        train_x, train_y, test_x, test_y = _torchvision(spec.name, root(spec), spec.download)
    assert tuple(train_x.shape[1:]) == DATA_SHAPES[spec.name], (spec.name, train_x.shape)
    assert train_x.dtype == test_x.dtype == torch.uint8, (spec.name, train_x.dtype)
    return ImageData(
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        labeled_idx=_labeled_subset(train_y, spec.labels_per_class, spec.seed),
        info=info(spec),
        pixel_max=pixel_max,
    )


def info(spec: DataSpec) -> DataInfo:
    """What an algorithm may know of ``spec``'s data, without reading it (num_classes 0: no class labels)."""
    classes = 0 if spec.name in UNLABELED_DATASETS else NUM_CLASSES
    return DataInfo(shape=DATA_SHAPES[spec.name], num_classes=classes, name=spec.name)


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
    """scikit-learn's 8x8 digits (uint8 values 0..16) with a stratified, seeded 297-image test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(d.target).long()
    train, test = train_test_split(np.arange(len(y)), test_size=297, stratify=d.target, random_state=seed)
    return x[train], y[train], x[test], y[test]


# -------------------------------------------------------------------------------------- torchvision
# torchvision is imported on first use: importing it costs ~2 s, which digits runs and the pre-flight of
# every command (`genlab validate`, `train`, `sweep`) would otherwise pay.

TORCHVISION_DATASETS = ("mnist", "cifar10", "svhn", "celeba")
CELEBA_CROP, CELEBA_SIZE = 108, 64
"""CelebA's aligned 178x218 faces: center crop CELEBA_CROP x CELEBA_CROP, resize to CELEBA_SIZE (DATA_SHAPES)."""
_CELEBA_LISTS = ("list_eval_partition.txt", "identity_CelebA.txt", "list_attr_celeba.txt", "list_bbox_celeba.txt",
                 "list_landmarks_align_celeba.txt")


@functools.cache
def _tv() -> SimpleNamespace:
    """torchvision's dataset classes, those of CIFAR-10, SVHN and CelebA accepting files already present without
    their md5 (a download still checks the archives)."""
    from torchvision import datasets

    class CIFAR10(datasets.CIFAR10):
        meta = {**datasets.CIFAR10.meta, "md5": None}  # _load_meta: presence only, as for the batches

        def _check_integrity(self) -> bool:
            folder = Path(self.root) / self.base_folder
            return all((folder / f).is_file() for f, _ in self.train_list + self.test_list)

    class SVHN(datasets.SVHN):
        def _check_integrity(self) -> bool:
            return (Path(self.root) / self.filename).is_file()

    class CelebA(datasets.CelebA):
        def _check_integrity(self) -> bool:
            return all((Path(self.root) / f).exists() for f in _sources()["celeba"].files)

    return SimpleNamespace(MNIST=datasets.MNIST, CIFAR10=CIFAR10, SVHN=SVHN, CelebA=CelebA)


@dataclass(frozen=True)
class _Source:
    files: tuple[str, ...]  # relative to the root
    how: str  # how to put them there by hand; {root} is filled in


@functools.cache
def _sources() -> dict[str, _Source]:
    """Each torchvision dataset's files and how to get them by hand."""
    tv = _tv()
    mnist_url = tv.MNIST.mirrors[0]
    return {
        "mnist": _Source(
            files=tuple(f"MNIST/raw/{f.removesuffix('.gz')}" for f, _ in tv.MNIST.resources),
            how=(
                f"download {', '.join(f for f, _ in tv.MNIST.resources)} from {mnist_url} "
                "and gunzip them into {root}/MNIST/raw/"
            ),
        ),
        "cifar10": _Source(
            files=tuple(
                f"{tv.CIFAR10.base_folder}/{f}"
                for f in [f for f, _ in tv.CIFAR10.train_list + tv.CIFAR10.test_list] + [tv.CIFAR10.meta["filename"]]
            ),
            how=f"download {tv.CIFAR10.url} and extract it in {{root}} (it unpacks to {tv.CIFAR10.base_folder}/)",
        ),
        "svhn": _Source(
            files=tuple(tv.SVHN.split_list[s][1] for s in ("train", "test")),
            how="download " + " and ".join(tv.SVHN.split_list[s][0] for s in ("train", "test")) + " into {root}/",
        ),
        "celeba": _Source(
            files=tuple(f"celeba/{f}" for f in ("img_align_celeba", *_CELEBA_LISTS)),
            how=(
                "download img_align_celeba.zip and " + ", ".join(_CELEBA_LISTS) + " from the CelebA page "
                "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive: Img/, Anno/, Eval/) into "
                "{root}/celeba/ and unzip img_align_celeba.zip there (it unpacks to img_align_celeba/); "
                "data.download: true does this through torchvision, which needs the gdown package"
            ),
        ),
    }


def missing_files(name: str, root: Path) -> list[Path]:
    """The files (and folders: CelebA's img_align_celeba/) of dataset ``name`` that are not under ``root`` (none
    for digits, which ships with scikit-learn)."""
    if name not in TORCHVISION_DATASETS:
        return []
    return [root / f for f in _sources()[name].files if not (root / f).exists()]


def how_to_get(name: str, root: Path) -> str:
    """How to put dataset ``name``'s files under ``root`` by hand."""
    return _sources()[name].how.format(root=root)


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


def _must_fetch(name: str, root: Path, download: bool) -> bool:
    """Whether ``name`` must be downloaded (some files are missing and ``download`` allows it); raises
    :class:`DatasetNotFound` naming the missing files and how to get them when they are missing and it does not."""
    missing = missing_files(name, root)
    if missing and not download:
        raise DatasetNotFound(
            f"{name} not found under {root}; missing: {', '.join(map(str, missing))}. "
            "Either set data.download: true (needs a network) to let torchvision fetch it, "
            f"or {how_to_get(name, root)}."
        )
    return bool(missing)  # only download what is not there


def _torchvision(name: str, root: Path, download: bool) -> tuple[torch.Tensor, ...]:
    """Train and test split of a torchvision dataset, checked for presence first."""
    fetch = _must_fetch(name, root, download)
    if name == "mnist":
        splits = [_tv().MNIST(root, train=t, download=fetch) for t in (True, False)]
        arrays = [(s.data.unsqueeze(1), s.targets) for s in splits]
    elif name == "cifar10":
        splits = [_tv().CIFAR10(root, train=t, download=fetch) for t in (True, False)]
        arrays = [(torch.from_numpy(s.data).permute(0, 3, 1, 2), torch.tensor(s.targets)) for s in splits]
    else:  # svhn: torchvision maps label 10 to digit 0
        splits = [_tv().SVHN(root, split=s, download=fetch) for s in ("train", "test")]
        arrays = [(torch.from_numpy(s.data), torch.from_numpy(s.labels)) for s in splits]
    (train_x, train_y), (test_x, test_y) = arrays
    return train_x.contiguous(), train_y.long(), test_x.contiguous(), test_y.long()


def _celeba(root: Path, download: bool) -> tuple[torch.Tensor, ...]:
    """CelebA's train and test split as uint8 64x64 crops (cached beside the images after the first load);
    labels -1 (no classes)."""
    fetch = _must_fetch("celeba", root, download)
    out = []
    for split in ("train", "test"):
        cache = root / "celeba" / f"genlab_{split}_crop{CELEBA_CROP}_{CELEBA_SIZE}.pt"
        if cache.is_file():
            x = torch.load(cache, weights_only=True)
        else:
            x = _celeba_images(_tv().CelebA(root, split=split, target_type=[], download=fetch))
            tmp = cache.with_suffix(f".tmp{os.getpid()}")
            try:
                torch.save(x, tmp)
                os.replace(tmp, cache)  # atomic: workers loading at once never read a half-written cache
            except OSError as e:  # a read-only root: decode again next time
                tmp.unlink(missing_ok=True)
                warnings.warn(f"could not cache the decoded CelebA images at {cache}: {e}", stacklevel=2)
        out += [x, torch.full((len(x),), -1, dtype=torch.long)]
    return tuple(out)


def _celeba_images(ds) -> torch.Tensor:
    """Decode, center-crop and resize every image of ``ds`` into one uint8 (N, 3, 64, 64) tensor (threads: PIL
    releases the GIL while decoding and resizing)."""
    from torchvision.transforms import v2

    transform = v2.Compose([v2.PILToTensor(), v2.CenterCrop(CELEBA_CROP), v2.Resize(CELEBA_SIZE, antialias=True)])
    folder = Path(ds.root) / ds.base_folder / "img_align_celeba"

    def one(name: str) -> torch.Tensor:
        from PIL import Image

        with Image.open(folder / name) as im:
            return transform(im.convert("RGB"))

    x = torch.empty((len(ds.filename), *DATA_SHAPES["celeba"]), dtype=torch.uint8)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for i, img in enumerate(pool.map(one, ds.filename)):
            x[i] = img
    return x
