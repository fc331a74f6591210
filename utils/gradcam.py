"""Misclassified test images with Grad-CAM overlays (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations
from Deep Networks via Gradient-based Localization"), using the ``pytorch_grad_cam`` package (grad-cam).

Images stay normalised for the model and are de-normalised once, to RGB in [0, 1], for display and for
``show_cam_on_image``; the heatmap is asked for in RGB (``use_rgb=True``) to match.
"""
from __future__ import annotations

from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from .models import CustomResNet, PreActResNet, ResNet, S9Net
from .transforms import denormalize
from .train import eval_mode, model_device


class Misclassified(NamedTuple):
    images: torch.Tensor    # N x 3 x H x W, normalised as the loader gave them, on the CPU
    targets: torch.Tensor   # true labels
    preds: torch.Tensor     # predicted labels
    indices: torch.Tensor   # positions in the test loader's order (dataset indices when it does not shuffle)


@torch.no_grad()
def collect_misclassified(model: nn.Module, test_loader, device=None) -> Misclassified:
    """Every misclassified image of the whole test loader, in loader order (eval mode, then restored)."""
    device = model_device(model) if device is None else torch.device(device)
    images, targets, preds, indices = [], [], [], []
    seen = 0
    with eval_mode(model):
        for x, y in test_loader:
            pred = model(x.to(device)).argmax(1).cpu()
            wrong = pred != y
            images.append(x[wrong])
            targets.append(y[wrong])
            preds.append(pred[wrong])
            indices.append(torch.arange(seen, seen + len(y))[wrong])
            seen += len(y)
    return Misclassified(*(torch.cat(t) for t in (images, targets, preds, indices)))


def spread_over_classes(targets: torch.Tensor, n: int) -> torch.Tensor:
    """Positions of ``n`` items taken round-robin over the true classes (first of each class, then second...).

    A test set stored class by class (image folders are) would otherwise show ten airplanes.
    """
    order = torch.argsort(targets, stable=True)
    sorted_targets = targets[order]
    rank = torch.arange(len(targets)) - torch.searchsorted(sorted_targets, sorted_targets)  # place within class
    picks = order[torch.argsort(rank * (int(targets.max()) + 1) + sorted_targets, stable=True)]
    return picks[:n]


def default_target_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM reads: the last block before global pooling, at the coarsest resolution.

    ResNet18/34: ``layer4[-1]`` (4x4). CustomResNet: ``res2``, the residual branch of layer 3 (4x4; its
    gradient equals that of ``layer3 + res2``). PreActResNet56: ``stage3[-1]`` (8x8). S9Net: ``c4`` (4x4).
    Any other model: its last ``nn.Conv2d`` in registration order. Pass ``target_layer`` to override.
    """
    if isinstance(model, ResNet):
        return model.layer4[-1]
    if isinstance(model, CustomResNet):
        return model.res2
    if isinstance(model, PreActResNet):
        return model.stage3[-1]
    if isinstance(model, S9Net):
        return model.c4
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the model has no Conv2d layer; pass target_layer")
    return convs[-1]


def gradcam(model: nn.Module, images: torch.Tensor, classes, target_layer: nn.Module | None = None,
            device=None) -> np.ndarray:
    """Grad-CAM maps (N x H x W, in [0, 1]) of ``images`` (normalised) for the given class indices.

    The model's train/eval modes are restored and its gradients cleared afterwards; the hooks are
    removed when the GradCAM context closes.
    """
    device = model_device(model) if device is None else torch.device(device)
    target_layer = default_target_layer(model) if target_layer is None else target_layer
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    try:
        # GradCAM switches the model to eval mode for good; _eval_mode puts the caller's modes back
        with eval_mode(model), GradCAM(model=model, target_layers=[target_layer]) as cam:
            maps = cam(input_tensor=images.to(device), targets=targets)
    finally:
        model.zero_grad(set_to_none=True)
    return maps


def show_misclassified(model: nn.Module, test_loader, classes, n: int = 10, target_layer: nn.Module | None = None,
                       device=None, ncols: int = 5, save_path=None):
    """``n`` misclassified test images spread over the true classes, each above its Grad-CAM for the
    predicted class.

    Returns ``(fig, records)``: one dict per image with ``index``, ``true``, ``pred`` (class indices),
    ``true_name``, ``pred_name``, ``image`` (H x W x 3 RGB in [0, 1]), ``cam`` (H x W in [0, 1]) and
    ``overlay`` (H x W x 3 RGB in [0, 1]).
    """
    wrong = collect_misclassified(model, test_loader, device)
    if len(wrong.targets) == 0:
        raise ValueError("the model misclassifies no test image; nothing to show")
    n = min(n, len(wrong.targets))
    pick = spread_over_classes(wrong.targets, n)
    images, targets, preds, indices = (t[pick] for t in (wrong.images, wrong.targets, wrong.preds, wrong.indices))
    maps = gradcam(model, images, preds, target_layer, device)
    rgb = denormalize(images)  # N x H x W x 3 in [0, 1]: the only de-normalisation
    records = []
    for i in range(n):
        image = rgb[i].astype(np.float32)
        overlay = show_cam_on_image(image, maps[i], use_rgb=True).astype(np.float32) / 255
        true, pred = int(targets[i]), int(preds[i])
        records.append({"index": int(indices[i]), "true": true, "pred": pred, "true_name": classes[true],
                        "pred_name": classes[pred], "image": image, "cam": maps[i], "overlay": overlay})

    ncols = min(ncols, n)
    nrows = 2 * -(-n // ncols)  # an image row, then its Grad-CAM row
    fig, axes = plt.subplots(nrows, ncols, figsize=(2 * ncols, 2.3 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n, nrows // 2 * ncols):  # empty places in the last pair of rows
        row, col = 2 * (i // ncols), i % ncols
        fig.delaxes(axes[row, col])
        fig.delaxes(axes[row + 1, col])
    for i, record in enumerate(records):
        row, col = 2 * (i // ncols), i % ncols
        axes[row, col].imshow(record["image"])
        axes[row, col].set_title(f"true: {record['true_name']}\npred: {record['pred_name']}", fontsize=9)
        axes[row + 1, col].imshow(record["overlay"])
        axes[row + 1, col].set_title(f"Grad-CAM: {record['pred_name']}", fontsize=8)
    fig.suptitle(f"{n} of {len(wrong.targets)} misclassified test images, with Grad-CAM for the predicted class")
    fig.tight_layout()
    if save_path is not None:
        fig.savefig(save_path, dpi=120, bbox_inches="tight")
    return fig, records
