"""albumentations 2.x pipelines for each session (built from ``utils.augment``'s descriptions), and the inverse
of their normalisation.

Every pipeline is built with ``strict=True`` so a misspelt or removed argument raises instead of being
silently ignored (old 1.x names such as ``max_holes`` or ``fill_value`` are the usual trap).
Images enter as uint8 HWC RGB; hole fills are therefore given in pixel units (0-255), not 0-1.
"""
from __future__ import annotations

from functools import partial

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from .augment import AUGMENTATIONS, Augmentation, get_augmentation
from .dataset import CIFAR10_MEAN, CIFAR10_STD

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


_BORDER_MODES = {"reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE}


def train_transform(augmentation: str | Augmentation, seed: int | None = None) -> A.Compose:
    """The albumentations pipeline of a session's augmentation (a name of ``utils.augment.AUGMENTATIONS``)."""
    spec = get_augmentation(augmentation) if isinstance(augmentation, str) else augmentation
    steps = []
    if spec.pad:
        side = 32 + 2 * spec.pad
        steps += [A.PadIfNeeded(min_height=side, min_width=side, border_mode=_BORDER_MODES[spec.border]),
                  A.RandomCrop(height=32, width=32)]
    if spec.flip:
        steps.append(A.HorizontalFlip(p=0.5))
    if spec.affine:
        a = spec.affine
        # ShiftScaleRotate is deprecated in 2.x and maps to this Affine
        steps.append(A.Affine(translate_percent=(-a.shift, a.shift), scale=(1 - a.scale, 1 + a.scale),
                              rotate=(-a.rotate, a.rotate), border_mode=cv2.BORDER_CONSTANT, fill=MEAN_PIXEL,
                              p=a.p))
    if spec.cutout:
        steps.append(cutout(spec.cutout, p=spec.cutout_p))
    return _finish(steps, seed)


def s9_train_transform(seed: int | None = None) -> A.Compose:
    """S9: flip, shift-scale-rotate, one 16x16 hole (the assignment's CoarseDropout), normalise."""
    return train_transform("s9", seed)


def s10_train_transform(seed: int | None = None) -> A.Compose:
    """S10/S11 (David Page's ResNet-9 recipe): reflect-pad 4 -> random crop 32 -> flip -> 8x8 cutout."""
    return train_transform("s10", seed)


def shift_flip_transform(seed: int | None = None) -> A.Compose:
    """S11's ResNet-56 (its Keras template): shifts of up to 3 pixels with edges repeated -> flip."""
    return train_transform("shift_flip", seed)


def eval_transform() -> A.Compose:
    """Test-time pipeline: normalise only."""
    return _finish([])


TRAIN_TRANSFORMS = {name: partial(train_transform, name) for name in AUGMENTATIONS}


def denormalize(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Normalised CHW or NCHW tensor -> float RGB HWC or NHWC in [0, 1], ready for imshow or GradCAM."""
    x = torch.as_tensor(x).detach().cpu().float()
    mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(3, 1, 1)
    x = (x * std + mean).clamp(0, 1)
    return x.movedim(-3, -1).numpy()
