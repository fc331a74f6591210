"""CIFAR-10's in-memory form, whatever the source: a ``Dataset`` of two ``ImageData`` splits (uint8 images
N x 32 x 32 x 3, RGB, HWC; int64 labels; the class names), with subsets and validation splits. The sources that
fill it are in ``utils.data`` and ``utils.image_folder``.
"""
from __future__ import annotations

from dataclasses import dataclass

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
