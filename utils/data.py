"""CIFAR-10 data in one in-memory form, from three sources, and the loaders that feed training.

Every source becomes a `Dataset` of two `ImageData` splits: uint8 images N x 32 x 32 x 3 (RGB, HWC),
int64 labels and the class names. That keeps augmentation, plotting and the GPU fast path on one format.

Sources:
  * ``cifar10``  -- torchvision's CIFAR-10 (downloads when online; a copy already in ``data_dir`` works offline)
  * an image folder ``train/<class>/*`` + ``test/<class>/*`` (any format PIL reads), or a ``.tar``/``.tar.gz``
    of one; decoded once and cached as ``.npz`` so the next load is a plain array read
  * ``synthetic`` -- generated, learnable 10-class images for offline smoke runs and tests
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

# The dataset's own per-channel statistics over the 50,000 training images (0-1 scale).
# (0.2023, 0.1994, 0.2010), seen in many repositories, is not CIFAR-10's std.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (32, 32, 3)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


class DataUnavailableError(RuntimeError):
    """Raised when no data source can be read; the message says what to do."""


@dataclass
class ImageData:
    images: np.ndarray  # N x 32 x 32 x 3, uint8, RGB
    labels: np.ndarray  # N, int64
    classes: tuple

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"images must be uint8 N x 32 x 32 x 3, got {self.images.dtype} {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.labels = np.asarray(self.labels, dtype=np.int64)

    def __len__(self):
        return len(self.labels)

    def subset(self, n: int | None = None, seed: int = 0, indices=None) -> "ImageData":
        """A class-balanced-in-expectation random subset of n images (or the given indices)."""
        if indices is None:
            if n is not None and n < 1:
                raise ValueError(f"a subset needs a positive number of images, got {n}")
            if n is None or n >= len(self):
                return self
            indices = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return ImageData(self.images[indices], self.labels[indices], self.classes)


@dataclass
class Dataset:
    train: ImageData
    test: ImageData
    source: str = ""  # how it was made, for logs and READMEs

    @property
    def classes(self) -> tuple:
        return self.train.classes

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> "Dataset":
        if n_train is None and n_test is None:
            return self  # the whole dataset, and its source says so
        return Dataset(self.train.subset(n_train, seed), self.test.subset(n_test, seed + 1),
                       f"{self.source} (subset {n_train or len(self.train)}/{n_test or len(self.test)})")

    def split_validation(self, n_val: int = 5000, seed: int = 0) -> "Dataset":
        """Carve a validation set out of the training images; the test set is not touched.

        Used to choose recipes without looking at the test set.
        """
        if not 0 < n_val < len(self.train):
            raise ValueError(f"a validation split needs 0 < n_val < {len(self.train)} (the training images), "
                             f"got {n_val}")
        order = np.random.default_rng(seed).permutation(len(self.train))
        val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
        return Dataset(self.train.subset(indices=train), self.train.subset(indices=val),
                       f"{self.source} (train minus {n_val} validation images; 'test' is the validation split)")


# ---------------------------------------------------------------------------------------------- sources
def load_dataset(source: str = "cifar10", data_dir: str | os.PathLike | None = None, download: bool = True,
                 cache_dir: str | os.PathLike | None = None) -> Dataset:
    """The one entry point: ``source`` is ``cifar10`` or ``synthetic``.

    For ``cifar10``, ``data_dir`` may be torchvision's folder, an image folder, or a tarball of one;
    by default it comes from the ``CIFAR10_DIR`` environment variable, else ``./data``.
    """
    if source == "synthetic":
        return make_synthetic()
    if source != "cifar10":
        raise ValueError(f"unknown data source {source!r}; choose 'cifar10' or 'synthetic'")
    data_dir = Path(data_dir or os.environ.get("CIFAR10_DIR") or "data").expanduser()
    if _is_image_folder_source(data_dir):
        return load_image_folder(data_dir, cache_dir=cache_dir)
    return load_torchvision_cifar10(data_dir, download=download)


def load_torchvision_cifar10(root: str | os.PathLike, download: bool = True) -> Dataset:
    from torchvision.datasets import CIFAR10  # imported here: importing utils must stay cheap

    root = Path(root)
    existed = root.exists()
    try:
        splits = [CIFAR10(str(root), train=flag, download=False) for flag in (True, False)]
    except RuntimeError:  # not on disk yet
        if not download:
            raise DataUnavailableError(_no_data_message(root)) from None
        try:
            splits = [CIFAR10(str(root), train=flag, download=True) for flag in (True, False)]
        except Exception as err:  # URLError, socket errors, HTTP errors: all mean "offline"
            if not existed:  # leave no empty folder behind from a download that never came
                shutil.rmtree(root, ignore_errors=True)
            raise DataUnavailableError(_no_data_message(root, err)) from None
    train, test = (ImageData(s.data, np.asarray(s.targets), tuple(s.classes)) for s in splits)
    return Dataset(train, test, f"CIFAR-10 (torchvision, {root.name})")


def _no_data_message(root: Path, err: Exception | None = None) -> str:
    why = f" (download failed: {type(err).__name__})" if err else ""
    return (f"CIFAR-10 is not in {root} and cannot be downloaded{why}: pass --data-dir DIR with an "
            f"image folder or tarball (e.g. cifar10-jpeg.tar.gz, or set CIFAR10_DIR), use --data synthetic, "
            f"or go online")


def _is_image_folder_source(path: Path) -> bool:
    if path.is_file():
        return path.name.endswith((".tar", ".tar.gz", ".tgz"))
    return _find_split_root(path) is not None


def _find_split_root(path: Path) -> Path | None:
    """The folder holding train/ and test/: the path itself or its single subfolder."""
    if not path.is_dir():
        return None
    if (path / "train").is_dir() and (path / "test").is_dir():
        return path
    subdirs = [p for p in path.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / "train").is_dir() and (subdirs[0] / "test").is_dir():
        return subdirs[0]
    return None


def default_cache_dir() -> Path:
    return Path(os.environ.get("CIFAR10_CACHE_DIR") or Path.home() / ".cache" / "cifar10-course")


def load_image_folder(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Dataset:
    """Decode ``train/<class>/*`` and ``test/<class>/*`` (a folder or a tarball) once, then read the cache.

    The cache is an uncompressed ``.npz`` in ``cache_dir`` (default ``$CIFAR10_CACHE_DIR`` or
    ``~/.cache/cifar10-course``), keyed by what can change (``_source_key``), so the data folder itself
    is never written to and a changed source -- an image added, removed or rewritten -- is decoded again.
    """
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise DataUnavailableError(f"no data at {path}: pass --data-dir with an image folder or tarball, "
                                   f"use --data synthetic, or go online")
    cache = Path(cache_dir or default_cache_dir()) / f"{path.name.split('.')[0]}-{_source_key(path)}.npz"
    if cache.exists():
        try:
            with np.load(cache) as z:
                classes = tuple(str(c) for c in z["classes"])
                return Dataset(ImageData(z["train_x"], z["train_y"], classes),
                               ImageData(z["test_x"], z["test_y"], classes), f"image folder {path.name}")
        except Exception:  # a truncated cache (killed mid-write on an old version) is decoded again
            pass
    files = _read_tar(path) if path.is_file() else _read_folder(path)
    data = _decode_splits(files, path)
    tmp = cache.with_suffix(".tmp.npz")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, train_x=data.train.images, train_y=data.train.labels, test_x=data.test.images,
                 test_y=data.test.labels, classes=np.array(data.classes))
    except OSError as err:
        raise DataUnavailableError(f"cannot write the decoded-image cache in {cache.parent} ({err.strerror}): "
                                   f"set CIFAR10_CACHE_DIR to a writable folder") from None
    os.replace(tmp, cache)  # atomic: a second process never reads half a file
    return data


def _source_key(path: Path) -> str:
    """A hash of what can change: a tarball's size and modification time; for a folder, every image
    file's name, size and modification time (a folder's own mtime misses files added in a subfolder)."""
    if path.is_file():
        stat = path.stat()
        listing = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"  # the key older versions used: caches stay valid
    else:
        root = _find_split_root(path) or path
        listing = str(path) + "".join(f"|{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}"
                                      for f in sorted(root.glob("*/*/*")) for st in [f.stat()])
    return hashlib.sha1(listing.encode()).hexdigest()[:16]


def _read_folder(path: Path) -> dict:
    root = _find_split_root(path)
    if root is None:
        raise DataUnavailableError(f"{path} has no train/ and test/ folders of class subfolders")
    return {str(f.relative_to(root)): f.read_bytes()
            for f in root.glob("*/*/*") if f.suffix.lower() in IMAGE_SUFFIXES}


def _read_tar(path: Path) -> dict:
    files = {}
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isfile() and member.name.lower().endswith(IMAGE_SUFFIXES):
                    parts = Path(member.name).parts
                    if len(parts) >= 3 and parts[-3] in ("train", "test"):
                        files["/".join(parts[-3:])] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataUnavailableError(f"{path} is not a readable tar archive ({type(err).__name__}: {err}); "
                                   f"copy it again or pass --data-dir another copy") from None
    return files


def _decode_splits(files: dict, source: Path) -> Dataset:
    """files: {'train/cat/0001.jpg': bytes}. Classes are the sorted train folder names."""
    classes = tuple(sorted({name.split("/")[1] for name in files if name.startswith("train/")}))
    if not classes:
        raise DataUnavailableError(f"no images under train/<class>/ in {source}")
    splits = []
    for split in ("train", "test"):
        names = sorted(n for n in files if n.startswith(split + "/"))
        extra = {n.split("/")[1] for n in names} - set(classes)
        if extra:
            raise ValueError(f"{source}: {split}/ has classes not in train/: {sorted(extra)}")
        images = np.empty((len(names), *IMAGE_SHAPE), dtype=np.uint8)
        for i, name in enumerate(names):
            try:
                img = Image.open(io.BytesIO(files[name])).convert("RGB")
            except (UnidentifiedImageError, OSError) as err:
                raise DataUnavailableError(f"{source}/{name} is not a readable image ({type(err).__name__}); "
                                           f"remove or replace that file") from None
            if img.size != (32, 32):
                raise ValueError(f"{source}/{name} is {img.size[0]}x{img.size[1]}; CIFAR images must be 32x32")
            images[i] = np.asarray(img)
        labels = np.array([classes.index(n.split("/")[1]) for n in names], dtype=np.int64)
        splits.append(ImageData(images, labels, classes))
    return Dataset(*splits, f"image folder {source.name}")


def make_synthetic(n_train: int = 5000, n_test: int = 1000, seed: int = 0) -> Dataset:
    """Ten learnable classes of 32x32 colour images, for offline runs and tests.

    Each class is a colour and a shape (disc, square, ring, bar, ...) at a random place and size, on a
    noisy background. Colour and shape each carry the class, and both survive flips, crops and cutout,
    so a small convnet clears chance (10%) within an epoch or two -- yet noise keeps it from being trivial.
    """
    rng = np.random.default_rng(seed)
    palette = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                        [145, 30, 180], [70, 240, 240], [240, 50, 230], [170, 110, 40], [128, 128, 128]],
                       dtype=np.float32)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)

    def draw(n):
        labels = rng.integers(0, 10, n)
        images = np.empty((n, 32, 32, 3), dtype=np.uint8)
        for i, c in enumerate(labels):
            cy, cx = rng.uniform(10, 22, 2)
            r = rng.uniform(5, 9)
            d = np.hypot(yy - cy, xx - cx)
            shape = [d < r, np.maximum(abs(yy - cy), abs(xx - cx)) < r, abs(d - r) < 2,
                     abs(yy - cy) < 2.5, abs(xx - cx) < 2.5, (abs(yy - cy) < 2) | (abs(xx - cx) < 2),
                     abs(yy - cy) + abs(xx - cx) < r, (d < r) & (yy < cy), (d < r) & ((xx + yy) % 6 < 3),
                     abs(abs(yy - cy) - abs(xx - cx)) < 1.5][c]
            background = rng.uniform(40, 200, 3)
            colour = palette[c] + rng.normal(0, 25, 3)
            img = np.where(shape[..., None], colour, background) + rng.normal(0, 20, (32, 32, 3))
            images[i] = np.clip(img, 0, 255).astype(np.uint8)
        return ImageData(images, labels, CIFAR10_CLASSES)

    return Dataset(draw(n_train), draw(n_test), f"synthetic (seed {seed})")


# ---------------------------------------------------------------------------------------------- loaders
class AlbumentationsDataset(torch.utils.data.Dataset):
    """Applies an albumentations pipeline to one uint8 HWC image at a time."""

    def __init__(self, data: ImageData, transform):
        self.images, self.labels, self.transform = data.images, data.labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(image=self.images[i])["image"], int(self.labels[i])


def seed_worker(worker_id: int) -> None:
    """Give each loader worker its own augmentation stream.

    albumentations 2.x keeps its own RNG inside ``Compose``; forked workers would all inherit the same
    state, so every worker (and every epoch) would replay identical crops and flips. torch gives each
    worker a distinct, per-epoch seed derived from the loader's generator; reuse it for numpy, random and
    the pipeline.
    """
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    dataset = torch.utils.data.get_worker_info().dataset
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def default_num_workers() -> int:
    # Colab gives 2 vCPUs; more workers than cores only adds contention.
    return min(2, os.cpu_count() or 1)


class AugmentedLoader(torch.utils.data.DataLoader):
    """A DataLoader over an ``AlbumentationsDataset`` whose random state can be saved and restored, so a
    resumed run draws the same shuffles and augmentations as an uninterrupted one.

    The state is the shuffling generator (workers derive their per-epoch seeds from it, ``seed_worker``)
    and, when augmenting in this process (``num_workers=0``), albumentations' own generators.
    """

    def _pipelines(self) -> list:
        return _albumentations_nodes(self.dataset.transform) if self.num_workers == 0 else []

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(),
                "albumentations": json.dumps([[t.random_generator.bit_generator.state, list(t.py_random.getstate()[1])]
                                              for t in self._pipelines() if hasattr(t, "random_generator")])}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        streams = [t for t in self._pipelines() if hasattr(t, "random_generator")]
        for t, (bit_state, py_state) in zip(streams, json.loads(state.get("albumentations", "[]"))):
            t.random_generator.bit_generator.state = bit_state
            t.py_random.setstate((3, tuple(py_state), None))


def _albumentations_nodes(transform) -> list:
    """A Compose and every transform under it: albumentations 2.x gives each its own generators."""
    nodes = [transform]
    for child in getattr(transform, "transforms", []):
        nodes += _albumentations_nodes(child)
    return nodes


def make_loaders(data: Dataset, train_transform, test_transform, batch_size: int = 128, num_workers: int | None = None,
                 seed: int = 0, device: torch.device | str | None = None, test_batch_size: int | None = None):
    """(train_loader, test_loader): shuffled, seeded train loader; deterministic test loader."""
    num_workers = default_num_workers() if num_workers is None else num_workers
    pin = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    if num_workers == 0 and hasattr(train_transform, "set_random_seed"):
        train_transform.set_random_seed(seed)  # in-process: one reproducible stream
    common = dict(num_workers=num_workers, pin_memory=pin, persistent_workers=False,
                  worker_init_fn=seed_worker if num_workers else None)
    generator = torch.Generator().manual_seed(seed)
    train_loader = AugmentedLoader(AlbumentationsDataset(data.train, train_transform), batch_size=batch_size,
                                   shuffle=True, drop_last=False, generator=generator, **common)
    test_loader = torch.utils.data.DataLoader(AlbumentationsDataset(data.test, test_transform),
                                              batch_size=test_batch_size or max(batch_size, 256), shuffle=False,
                                              **common)
    return train_loader, test_loader
