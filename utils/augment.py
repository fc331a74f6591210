"""Each session's training augmentation, described once; both data routes build from these descriptions.

``utils.transforms`` turns one into an albumentations pipeline (image by image, in DataLoader workers: the
default route), ``utils.gpu_data`` applies the same operations with the same parameters to whole uint8
batches (the ``fast`` route). Operations run in a fixed order: a crop of the padded image or an affine
warp, a horizontal flip (p = 0.5; before the warp, after the crop), then at most one square hole.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError

BORDERS = ("reflect", "replicate")  # cv2.BORDER_REFLECT_101 (torch's "reflect"), cv2.BORDER_REPLICATE


@dataclass(frozen=True)
class Affine:
    """ShiftScaleRotate as albumentations 2.x's Affine: each drawn uniformly, applied with probability ``p``;
    the border is filled with the dataset mean."""
    rotate: float   # degrees, in +-rotate
    scale: float    # x and y scale, each in 1 +- scale
    shift: float    # fraction of the image, in +-shift; albumentations truncates it to whole pixels
    p: float


@dataclass(frozen=True)
class Augmentation:
    pad: int = 0                 # a random 32x32 crop of the image padded by this much on each side (0: none)
    border: str = "reflect"      # how the padding is filled: one of BORDERS
    affine: Affine | None = None
    flip: bool = True            # a horizontal flip with p = 0.5
    cutout: int = 0              # side of one square hole filled with the dataset mean (0: none)
    cutout_p: float = 1.0        # the probability of that hole

    def __post_init__(self):
        if self.border not in BORDERS:
            raise UsageError(f"border {self.border!r} is not one of {', '.join(BORDERS)}")
        if self.pad and self.affine:
            raise UsageError("a crop and an affine warp in one augmentation: the batched route has no such kernel")


AUGMENTATIONS = {
    # S9's assignment: flip, ShiftScaleRotate(0.0625, 0.1, 15), CoarseDropout of one 16x16 hole, half the time each
    "s9": Augmentation(affine=Affine(rotate=15, scale=0.1, shift=0.0625, p=0.5), cutout=16, cutout_p=0.5),
    # S10/S11 (Page's ResNet-9): reflect-pad 4, random crop 32, flip, one 8x8 hole on every image (as the
    # Cutout paper)
    "s10": Augmentation(pad=4, cutout=8),
    # S11's ResNet-56, as its Keras template's ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1,
    # horizontal_flip=True, fill_mode="nearest"): shifts of up to 3 whole pixels (a tenth of 32) each way with
    # the edge pixels repeated, a flip, no hole
    "shift_flip": Augmentation(pad=3, border="replicate"),
}


def get_augmentation(name: str) -> Augmentation:
    try:
        return AUGMENTATIONS[name]
    except KeyError:
        raise UsageError(f"unknown augmentation {name!r}; choose one of {', '.join(AUGMENTATIONS)}") from None
