"""Misclassified test images with Grad-CAM overlays (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations
from Deep Networks via Gradient-based Localization"), using the ``pytorch_grad_cam`` package (grad-cam).

Images stay normalised for the model and are de-normalised once, to RGB in [0, 1], for display and for
``show_cam_on_image``; the heatmap is asked for in RGB (``use_rgb=True``) to match.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from .errors import UsageError
from .transforms import denormalize
from .inference import eval_mode, model_device, predict
from .plots import image_grid, save_figure


class Misclassified(NamedTuple):
    images: torch.Tensor    # N x 3 x H x W, normalised as the loader gave them, on the CPU
    targets: torch.Tensor   # true labels
    preds: torch.Tensor     # predicted labels
    indices: torch.Tensor   # positions in the test loader's order (dataset indices when it does not shuffle)


def collect_misclassified(model: nn.Module, test_loader, device=None) -> Misclassified:
    """Every misclassified image of the whole test loader, in loader order (eval mode, then restored)."""
    images, targets, preds, indices = [], [], [], []
    seen = 0
    for x, y, pred in predict(model, test_loader, device):
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
    """The layer Grad-CAM reads: the model's own choice (``model.gradcam_layer()``: its last block before
    global pooling, at the coarsest resolution), else its last ``nn.Conv2d``. Pass ``target_layer`` to override."""
    if hasattr(model, "gradcam_layer"):
        return model.gradcam_layer()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise UsageError("the model has no Conv2d layer; pass target_layer")
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
        # GradCAM switches the model to eval mode for good; eval_mode puts the caller's modes back
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
        raise UsageError("the model misclassifies no test image; nothing to show")
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

    fig, items = image_grid(n, ncols, cell=2, rows_per_item=2)  # each image above its Grad-CAM
    for (image_ax, cam_ax), record in zip(items, records):
        image_ax.imshow(record["image"])
        image_ax.set_title(f"true: {record['true_name']}\npred: {record['pred_name']}", fontsize=9)
        cam_ax.imshow(record["overlay"])
        cam_ax.set_title(f"Grad-CAM: {record['pred_name']}", fontsize=8)
    fig.suptitle(f"{n} of {len(wrong.targets)} misclassified test images, with Grad-CAM for the predicted class")
    save_figure(fig, save_path)
    return fig, records
