"""CIFAR-10 data in one in-memory form, from three sources (the loaders that feed training: ``utils.loaders``).

Every source becomes a `Dataset` of two `ImageData` splits: uint8 images N x 32 x 32 x 3 (RGB, HWC),
int64 labels and the class names. That keeps augmentation, plotting and the GPU fast path on one format.

Sources:
  * ``cifar10``  -- torchvision's CIFAR-10 (downloads when online; a copy already in ``data_dir`` works offline)
  * an image folder ``train/<class>/*`` + ``test/<class>/*`` (any format PIL reads), or a ``.tar``/``.tar.gz``
    of one; decoded once and cached as ``.npz`` so the next load is a plain array read
  * ``synthetic`` -- generated, learnable 10-class images for offline smoke runs and tests
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CourseError, UsageError

# The dataset's own per-channel statistics over the 50,000 training images (0-1 scale).
# (0.2023, 0.1994, 0.2010), seen in many repositories, is not CIFAR-10's std.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (32, 32, 3)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


class DataUnavailableError(CourseError, RuntimeError):
    """Raised when no data source can be read; the message says what to do."""


@dataclass
class ImageData:
    images: np.ndarray  # N x 32 x 32 x 3, uint8, RGB
    labels: np.ndarray  # N, int64
    classes: tuple

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[1:] != IMAGE_SHAPE:
            raise UsageError(f"images must be uint8 N x 32 x 32 x 3, got {self.images.dtype} {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise UsageError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.labels = np.asarray(self.labels, dtype=np.int64)

    def __len__(self):
        return len(self.labels)

    def subset(self, n: int | None = None, seed: int = 0, indices=None) -> "ImageData":
        """A class-balanced-in-expectation random subset of n images (or the given indices)."""
        if indices is None:
            if n is not None and n < 1:
                raise UsageError(f"a subset needs a positive number of images, got {n}")
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
            raise UsageError(f"a validation split needs 0 < n_val < {len(self.train)} (the training images), "
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
        raise UsageError(f"unknown data source {source!r}; choose 'cifar10' or 'synthetic'")
    data_dir = Path(data_dir or os.environ.get("CIFAR10_DIR") or "data").expanduser()
    from .image_folder import is_image_folder_source, load_image_folder  # it builds on this module's types

    if is_image_folder_source(data_dir):
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
