"""The fast data path: CIFAR-10 held on the device as uint8 and augmented a whole batch at a time.

The albumentations pipelines of ``utils.transforms`` run image by image in CPU worker processes, which
starves a GPU (and, on a 2-core Colab, the CPU too). Here a split is stored once on the device as uint8
(150 MB for the 50,000 training images; a float32 copy would be 600 MB) and each batch is augmented with
index arithmetic on whatever device it lives on -- the approach of David Page's cifar10-fast and Keller
Jordan's airbench. ``augment`` applies a ``utils.augment`` description, the one the albumentations pipeline
of ``utils.transforms`` is built from, with the same random draws:

* a crop (``pad``): pad -> random 32x32 crop ((2 pad + 1)^2 offsets) -> flip p=0.5 -> the hole, as one gather
  (``crop_flip_cutout``); the S10 and ResNet-56 augmentations.
* an affine warp (S9): flip p=0.5 -> with probability p the warp (rotate, x and y scale each, a shift of
  int(U(-shift, shift) x 32) whole pixels, bilinear, mean-coloured border) -> the hole with its probability
  (``affine_flip_cutout``).

Then ``normalize`` turns uint8 NHWC into CIFAR-normalised NCHW (float32, or bf16/fp16 on request).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from .augment import AUGMENTATIONS, Affine, Augmentation, get_augmentation
from .dataset import CIFAR10_MEAN, CIFAR10_STD, Dataset, ImageData
from .errors import UsageError
from .loaders import eval_batch_size
from .transforms import MEAN_PIXEL


def _nhwc(images: torch.Tensor) -> torch.Tensor:
    """Accept N x C x H x W or N x H x W x C (3 channels); work in NHWC, the dataset's own layout."""
    return images.permute(0, 2, 3, 1) if images.shape[1] == 3 and images.shape[-1] != 3 else images


@lru_cache
def _constant(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small tensor made once per device: torch.tensor(..., device="cuda") in the loop would copy from
    the host and wait for the GPU on every batch."""
    return torch.tensor(values, dtype=dtype, device=device)


def _randint(high: int, n: int, generator, device) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=generator, device=device)


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect-101 (cv2.BORDER_REFLECT_101, torch's "reflect"): -1 -> 1, size -> size - 2."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def _pixels(n: int, rows: torch.Tensor, cols: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Flat pixel numbers of image i's rows x cols: N x R x C, for index_select on an (N*H*W) x C view.

    One index per pixel (not per byte) keeps gathers and hole fills cheap on the CPU too.
    """
    first = (torch.arange(n, device=rows.device)[:, None] * h + rows) * w   # N x R
    return first[:, :, None] + cols[:, None, :]


def _cutout_(images: torch.Tensor, size: int, fill, generator, apply: torch.Tensor | None = None) -> torch.Tensor:
    """In place: one size x size hole per image (where ``apply``), top-left uniform over the positions fully inside."""
    n, h, w, c = images.shape
    dev = images.device
    offsets = torch.arange(size, device=dev)
    rows = _randint(h - size + 1, n, generator, dev)[:, None] + offsets
    cols = _randint(w - size + 1, n, generator, dev)[:, None] + offsets
    holes = _pixels(n, rows, cols, h, w).flatten()                           # N * size * size
    fill = _constant(tuple(fill), images.dtype, dev)
    pixels = images.view(-1, c)
    if apply is not None:  # keep unchosen images' pixels; a boolean mask would make a GPU wait
        fill = torch.where(apply.repeat_interleave(size * size)[:, None], fill, pixels[holes])
    pixels[holes] = fill
    return images


def _replicate(index: torch.Tensor, size: int) -> torch.Tensor:
    """Edge pixels repeated (cv2.BORDER_REPLICATE, Keras' fill_mode="nearest"): -2 -> 0, size + 1 -> size - 1."""
    return index.clamp(0, size - 1)


def crop_flip_cutout(images: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4,
                     cutout: int = 8, fill=MEAN_PIXEL, border: str = "reflect", cutout_p: float = 1.0) -> torch.Tensor:
    """The S10 augmentation of a uint8 batch -> uint8 N x H x W x C, on the batch's device.

    Padding, cropping and flipping are one gather: each output pixel's source row and column are
    computed, so the padded image is never materialised. ``cutout=0``: no hole.
    """
    border = {"reflect": _reflect, "replicate": _replicate}[border]
    images = _nhwc(images).contiguous()
    n, h, w, c = images.shape
    dev = images.device
    rows = border(_randint(2 * pad + 1, n, generator, dev)[:, None] + torch.arange(h, device=dev) - pad, h)
    cols = border(_randint(2 * pad + 1, n, generator, dev)[:, None] + torch.arange(w, device=dev) - pad, w)
    flip = _randint(2, n, generator, dev).bool()
    cols = torch.where(flip[:, None], cols.flip(1), cols)                      # N x W
    images = images.view(-1, c).index_select(0, _pixels(n, rows, cols, h, w).flatten()).view(n, h, w, c)
    if not cutout:
        return images
    apply = None if cutout_p >= 1 else torch.rand(n, generator=generator, device=dev) < cutout_p
    return _cutout_(images, cutout, fill, generator, apply)


def affine_matrices(angle, scale_x, scale_y, shift_x, shift_y, size: int = 32) -> torch.Tensor:
    """N x 2 x 3 ``theta`` for ``F.affine_grid`` equal to albumentations' Affine about the image centre.

    albumentations maps a source pixel p to c + T + R(angle) S (p - c) (angle counter-clockwise, shift in
    pixels); grid_sample needs the inverse, output -> source, in coordinates where the image spans [-1, 1].
    """
    a = torch.deg2rad(angle)
    cos, sin = torch.cos(a), torch.sin(a)
    inverse = torch.stack([torch.stack([cos / scale_x, -sin / scale_x], -1),
                           torch.stack([sin / scale_y, cos / scale_y], -1)], -2)        # N x 2 x 2: S^-1 R^-1
    shift = torch.stack([shift_x, shift_y], -1)[..., None] * (2 / size)                 # N x 2 x 1, in [-1, 1] units
    return torch.cat([inverse, -inverse @ shift], -1)


def affine_flip_cutout(images: torch.Tensor, generator: torch.Generator | None = None,
                       affine: Affine = AUGMENTATIONS["s9"].affine, cutout: int = 16, cutout_p: float = 0.5,
                       fill=MEAN_PIXEL) -> torch.Tensor:
    """The S9 augmentation of a uint8 batch -> uint8 N x H x W x C, on the batch's device."""
    images = _nhwc(images)
    n, h, w, c = images.shape
    dev = images.device

    def uniform(low, high):
        return low + (high - low) * torch.rand(n, generator=generator, device=dev)

    def coin(p=0.5):
        return torch.rand(n, generator=generator, device=dev) < p

    flip, warped = coin(), coin(affine.p)
    angle = torch.where(warped, uniform(-affine.rotate, affine.rotate), 0)
    scale_x, scale_y = (torch.where(warped, uniform(1 - affine.scale, 1 + affine.scale), 1) for _ in "xy")
    # albumentations takes int(U(-shift, shift) * 32): for S9's 0.0625, whole pixels -1, 0, 1 (0 half the time)
    shift = affine.shift * w
    shift_x, shift_y = (torch.where(warped, uniform(-shift, shift).trunc(), 0) for _ in "xy")
    theta = affine_matrices(angle, scale_x, scale_y, shift_x, shift_y, w)
    # The flip comes first, so it negates the source x: one grid_sample does both; the identity is exact.
    theta[:, 0] *= torch.where(flip, -1.0, 1.0)[:, None]
    warped_images = warp(images, theta, fill)
    return _cutout_(warped_images, cutout, fill, generator, apply=coin(cutout_p)) if cutout else warped_images


def warp(images: torch.Tensor, theta: torch.Tensor, fill=MEAN_PIXEL) -> torch.Tensor:
    """uint8 N x H x W x C warped by ``theta`` (``affine_matrices``), bilinear, ``fill`` outside the image."""
    n, h, w, c = images.shape
    # Sample (image - fill) so that the zero padding outside the image becomes the fill colour.
    mean = _constant(tuple(fill), torch.float32, images.device)
    x = (images.float() - mean).permute(0, 3, 1, 2)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (x.permute(0, 2, 3, 1) + mean).round_().clamp_(0, 255).to(torch.uint8).contiguous()


def augment(images: torch.Tensor, augmentation: str | Augmentation, generator: torch.Generator | None = None):
    """A uint8 batch augmented as ``augmentation`` (a ``utils.augment`` name or description) describes."""
    spec = get_augmentation(augmentation) if isinstance(augmentation, str) else augmentation
    if not spec.flip:
        raise UsageError("the batched route always flips with p = 0.5; an augmentation without a flip has no kernel here")
    if spec.affine is not None:
        return affine_flip_cutout(images, generator, spec.affine, spec.cutout, spec.cutout_p)
    return crop_flip_cutout(images, generator, spec.pad, spec.cutout, border=spec.border, cutout_p=spec.cutout_p)


def normalize(images: torch.Tensor, dtype: torch.dtype = torch.float32, channels_last: bool = False) -> torch.Tensor:
    """uint8 N x H x W x C -> (x / 255 - CIFAR10_MEAN) / CIFAR10_STD as N x C x H x W of ``dtype``.

    Permuting NHWC gives a channels_last NCHW tensor for free; contiguous NCHW costs one uint8 copy.
    """
    x = _nhwc(images).permute(0, 3, 1, 2)
    if not channels_last:
        x = x.contiguous()  # in uint8, a quarter of the bytes of a float copy
    std = _constant(tuple(255 * s for s in CIFAR10_STD), torch.float32, x.device).view(1, 3, 1, 1)
    mean = _constant(tuple(255 * m for m in CIFAR10_MEAN), torch.float32, x.device).view(1, 3, 1, 1)
    # In place: one float buffer, and the memory format of x is kept.
    return x.float().sub_(mean).div_(std).to(dtype)


class DeviceLoader:
    """Batches of one split, stored on ``device`` as uint8 and augmented there; yields (x, y).

    ``train=True``: a fresh permutation every epoch and the ``augment`` pipeline ("s10", "s9" or None);
    ``train=False``: fixed order, normalisation only. Every random draw comes from ``self.generator``
    (seeded by ``seed``), so equal seeds give equal batches, and ``utils.train`` checkpoints save and
    restore it like a DataLoader's generator.
    """

    def __init__(self, data: ImageData, batch_size: int, device: torch.device | str = "cpu", train: bool = True,
                 augment: str | None = "s10", seed: int = 0, drop_last: bool = False, channels_last: bool = True,
                 dtype: torch.dtype | None = None):
        if augment is not None:
            get_augmentation(augment)  # an unknown name fails here, not at the first batch
        self.device = torch.device(device)
        # from_numpy shares the array's memory: on the CPU the loader adds no copy at all.
        self.images = torch.from_numpy(data.images).to(self.device)   # N x 32 x 32 x 3 uint8
        self.labels = torch.from_numpy(data.labels).to(self.device)
        self.batch_size, self.train, self.drop_last = batch_size, train, drop_last
        self.augment = augment if train else None
        self.channels_last, self.dtype = channels_last, dtype or torch.float32
        self.generator = torch.Generator(self.device).manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = (torch.randperm(n, generator=self.generator, device=self.device) if self.train
                 else torch.arange(n, device=self.device))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            images = self.images[index]
            if self.augment is not None:
                images = augment(images, self.augment, self.generator)
            yield normalize(images, self.dtype, self.channels_last), self.labels[index]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())


def make_device_loaders(data: Dataset, batch_size: int, device: torch.device | str, seed: int = 0,
                        augment: str | None = "s10", channels_last: bool = True, dtype: torch.dtype | None = None,
                        drop_last: bool = False):
    """(train_loader, test_loader) on ``device``: shuffled and augmented train, fixed-order test."""
    common = dict(device=device, channels_last=channels_last, dtype=dtype)
    train_loader = DeviceLoader(data.train, batch_size, train=True, augment=augment, seed=seed,
                                drop_last=drop_last, **common)
    test_loader = DeviceLoader(data.test, eval_batch_size(batch_size), train=False, **common)
    return train_loader, test_loader
