"""CIFAR-10 from three sources, each made into the one in-memory form of ``utils.dataset`` (a `Dataset` of two
`ImageData` splits, uint8 N x 32 x 32 x 3): augmentation, plotting and the batched route all read that form.
The loaders that feed training are in ``utils.loaders``.

Sources:
  * ``cifar10``  -- torchvision's CIFAR-10 (downloads when online; a copy already in ``data_dir`` works offline)
  * an image folder ``train/<class>/*`` + ``test/<class>/*`` (any format PIL reads), or a ``.tar``/``.tar.gz``
    of one; decoded once and cached as ``.npz`` so the next load is a plain array read
  * ``synthetic`` -- generated, learnable 10-class images for offline smoke runs and tests
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from .dataset import (CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, IMAGE_SHAPE, IMAGE_SUFFIXES, Dataset,
                      DataUnavailableError, ImageData)
from .errors import UsageError
from .image_folder import is_image_folder_source, load_image_folder

# the in-memory form is re-exported: a caller loads data and names its types through this one module
__all__ = ["CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "IMAGE_SHAPE", "IMAGE_SUFFIXES", "Dataset",
           "DataUnavailableError", "ImageData", "load_dataset", "load_torchvision_cifar10", "make_synthetic"]


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
    # one mask per class: disc, square, ring, bar, bar, cross, diamond, half disc, striped disc, X
    shapes = (lambda d, dy, dx, r: d < r,
              lambda d, dy, dx, r: np.maximum(abs(dy), abs(dx)) < r,
              lambda d, dy, dx, r: abs(d - r) < 2,
              lambda d, dy, dx, r: abs(dy) < 2.5,
              lambda d, dy, dx, r: abs(dx) < 2.5,
              lambda d, dy, dx, r: (abs(dy) < 2) | (abs(dx) < 2),
              lambda d, dy, dx, r: abs(dy) + abs(dx) < r,
              lambda d, dy, dx, r: (d < r) & (dy < 0),
              lambda d, dy, dx, r: (d < r) & ((xx + yy) % 6 < 3),
              lambda d, dy, dx, r: abs(abs(dy) - abs(dx)) < 1.5)

    def draw(n):
        labels = rng.integers(0, 10, n)
        images = np.empty((n, 32, 32, 3), dtype=np.uint8)
        for i, c in enumerate(labels):
            cy, cx = rng.uniform(10, 22, 2)
            r = rng.uniform(5, 9)
            dy, dx = yy - cy, xx - cx
            shape = shapes[c](np.hypot(dy, dx), dy, dx, r)  # this class's mask only, not all ten
            background = rng.uniform(40, 200, 3)
            colour = palette[c] + rng.normal(0, 25, 3)
            img = np.where(shape[..., None], colour, background) + rng.normal(0, 20, (32, 32, 3))
            images[i] = np.clip(img, 0, 255).astype(np.uint8)
        return ImageData(images, labels, CIFAR10_CLASSES)

    return Dataset(draw(n_train), draw(n_test), f"synthetic (seed {seed})")
