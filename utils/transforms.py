"""albumentations 2.x pipelines for each session, and the inverse of their normalisation.

Every pipeline is built with ``strict=True`` so a misspelt or removed argument raises instead of being
silently ignored (old 1.x names such as ``max_holes`` or ``fill_value`` are the usual trap).
Images enter as uint8 HWC RGB; hole fills are therefore given in pixel units (0-255), not 0-1.
"""
from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from .data import CIFAR10_MEAN, CIFAR10_STD

# The dataset mean in pixel units: what cutout holes are filled with, so a hole carries no signal
# after normalisation (it becomes ~0) instead of a black square the network could learn to detect.
MEAN_PIXEL = tuple(round(255 * m) for m in CIFAR10_MEAN)  # (125, 123, 114)


def _finish(augmentations: list, seed: int | None = None) -> A.Compose:
    return A.Compose([*augmentations, A.Normalize(mean=CIFAR10_MEAN, std=CIFAR10_STD), ToTensorV2()],
                     strict=True, seed=seed)


def cutout(size: int, p: float = 0.5) -> A.CoarseDropout:
    """Exactly one size x size hole filled with the dataset mean."""
    return A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(size, size),
                           hole_width_range=(size, size), fill=MEAN_PIXEL, p=p)


def s9_train_transform(seed: int | None = None) -> A.Compose:
    """S9: flip, shift-scale-rotate, one 16x16 hole (the assignment's CoarseDropout), normalise."""
    return _finish([
        A.HorizontalFlip(p=0.5),
        # ShiftScaleRotate(0.0625, 0.1, 15) is deprecated in 2.x and maps to this Affine.
        A.Affine(translate_percent=(-0.0625, 0.0625), scale=(0.9, 1.1), rotate=(-15, 15),
                 border_mode=cv2.BORDER_CONSTANT, fill=MEAN_PIXEL, p=0.5),
        cutout(16, p=0.5),
    ], seed)


def s10_train_transform(seed: int | None = None, cutout_p: float = 1.0) -> A.Compose:
    """S10/S11 (David Page's ResNet-9 recipe): pad 4 -> random crop 32 -> flip -> 8x8 cutout.

    Reflect padding as in Page's code; cutout on every image (p=1) as in the Cutout paper.
    """
    return _finish([
        A.PadIfNeeded(min_height=40, min_width=40, border_mode=cv2.BORDER_REFLECT_101),
        A.RandomCrop(height=32, width=32),
        A.HorizontalFlip(p=0.5),
        cutout(8, p=cutout_p),
    ], seed)


def shift_flip_transform(seed: int | None = None) -> A.Compose:
    """S11's ResNet-56 (its Keras template's ``ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1,
    horizontal_flip=True, fill_mode="nearest")``): shifts of up to 3 whole pixels (a tenth of 32) each way with
    the edge pixels repeated, then a flip. No cutout."""
    return _finish([
        A.Affine(translate_px=(-3, 3), border_mode=cv2.BORDER_REPLICATE, p=1.0),
        A.HorizontalFlip(p=0.5),
    ], seed)


def eval_transform() -> A.Compose:
    """Test-time pipeline: normalise only."""
    return _finish([])


TRAIN_TRANSFORMS = {"s9": s9_train_transform, "s10": s10_train_transform, "shift_flip": shift_flip_transform}


def denormalize(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Normalised CHW or NCHW tensor -> float RGB HWC or NHWC in [0, 1], ready for imshow or GradCAM."""
    x = torch.as_tensor(x).detach().cpu().float()
    mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(3, 1, 1)
    x = (x * std + mean).clamp(0, 1)
    return x.movedim(-3, -1).numpy()
