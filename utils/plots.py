"""Figures for the session READMEs: training curves, sample and augmented images, confusion matrix.

Every function returns its matplotlib Figure (a pyplot figure, so notebooks show it inline) and writes a
PNG when given ``save_path``; nothing is shown or closed here.
"""
from __future__ import annotations


import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np
import torch
from torch import nn

from .data import ImageData
from .transforms import denormalize
from .train import eval_mode


def _save(fig, save_path):
    fig.tight_layout()
    if save_path is not None:
        fig.savefig(save_path, dpi=120, bbox_inches="tight")
    return fig


def plot_curves(history, save_path=None):
    """Loss, accuracy and LR per epoch from ``fit``'s history (a list of dicts, one per epoch)."""
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax, lr_ax) = plt.subplots(1, 3, figsize=(15, 4))
    for key, style in (("train", "-o"), ("test", "-s")):
        loss_ax.plot(epochs, [row[f"{key}_loss"] for row in history], style, ms=3, label=key)
        acc_ax.plot(epochs, [row[f"{key}_acc"] for row in history], style, ms=3, label=key)
    lr_ax.plot(epochs, [row["lr"] for row in history], "-o", ms=3, color="tab:green")
    best = max(history, key=lambda row: row["test_acc"])
    acc_ax.plot(best["epoch"], best["test_acc"], "*", ms=12, color="tab:red", label="best test")
    loss_ax.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    acc_ax.set(title=f"Accuracy (best test {best['test_acc']:.2f}% at epoch {best['epoch']})", xlabel="epoch",
               ylabel="accuracy (%)")
    lr_ax.set(title="Learning rate (last batch of each epoch)", xlabel="epoch", ylabel="learning rate")
    for ax in (loss_ax, acc_ax):
        ax.legend()
    for ax in (loss_ax, acc_ax, lr_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
    return _save(fig, save_path)


def _grid(n, ncols, cell=1.6):
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, (cell + 0.3) * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        fig.delaxes(ax)
    for ax in axes.flat[:n]:
        ax.axis("off")
    return fig, axes.flat[:n]


def show_samples(data: ImageData, n: int = 20, ncols: int = 10, seed: int = 0, save_path=None):
    """``n`` random images of ``data`` (seeded), each titled with its class name."""
    indices = np.random.default_rng(seed).choice(len(data.labels), size=min(n, len(data.labels)), replace=False)
    fig, axes = _grid(len(indices), ncols)
    for ax, i in zip(axes, indices):
        ax.imshow(data.images[i])  # uint8 RGB as stored
        ax.set_title(data.classes[data.labels[i]], fontsize=9)
    return _save(fig, save_path)


def show_augmented(data: ImageData, transform, n: int = 4, repeats: int = 5, seed: int = 0, save_path=None):
    """``n`` images (one per row): the original, then ``repeats`` draws of ``transform``.

    ``transform`` is one of ``utils.transforms``' pipelines (albumentations ending in Normalize and
    ToTensorV2); its output is de-normalised for display.
    """
    indices = np.random.default_rng(seed).choice(len(data.labels), size=min(n, len(data.labels)), replace=False)
    fig, axes = plt.subplots(len(indices), repeats + 1, figsize=(1.6 * (repeats + 1), 1.8 * len(indices)),
                             squeeze=False)
    for row, i in zip(axes, indices):
        row[0].imshow(data.images[i])
        row[0].set_title(f"{data.classes[data.labels[i]]} (original)", fontsize=8)
        for ax in row[1:]:
            ax.imshow(denormalize(transform(image=data.images[i])["image"]))
            ax.set_title("augmented", fontsize=8)
        for ax in row:
            ax.axis("off")
    return _save(fig, save_path)


@torch.no_grad()
def confusion_matrix(model: nn.Module, test_loader, num_classes: int, device=None) -> np.ndarray:
    """Counts over the whole test loader: ``matrix[true, predicted]`` (eval mode, then restored)."""
    device = next(model.parameters()).device if device is None else torch.device(device)
    matrix = torch.zeros(num_classes * num_classes, dtype=torch.int64)
    with eval_mode(model):
        for x, y in test_loader:
            pred = model(x.to(device)).argmax(1).cpu()
            matrix += torch.bincount(y * num_classes + pred, minlength=num_classes * num_classes)
    return matrix.view(num_classes, num_classes).numpy()


def plot_confusion(matrix: np.ndarray, classes, save_path=None):
    """The confusion matrix (colour: share of each true class) and per-class accuracy -> (fig, per_class).

    ``per_class[i]`` is the accuracy on true class ``i`` in percent (NaN for a class with no images).
    """
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = matrix / totals[:, None]
        per_class = 100.0 * np.diag(matrix) / totals
    fig, (cm_ax, bar_ax) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [1.2, 1]})
    cm_ax.imshow(np.nan_to_num(shares), cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        cm_ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                   color="white" if np.nan_to_num(shares[i, j]) > 0.5 else "black")
    ticks = np.arange(len(classes))
    cm_ax.set_xticks(ticks, classes, rotation=45, ha="right")
    cm_ax.set_yticks(ticks, classes)
    cm_ax.set(xlabel="predicted", ylabel="true",
              title=f"Confusion matrix ({matrix.sum()} test images, "
                    f"{100.0 * np.trace(matrix) / max(matrix.sum(), 1):.2f}% correct)")
    bars = bar_ax.barh(ticks, per_class, color="tab:blue")
    bar_ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    bar_ax.set_yticks(ticks, classes)
    bar_ax.invert_yaxis()  # same order as the matrix rows
    bar_ax.set(xlim=(0, 110), xlabel="accuracy (%)", title="Per-class accuracy")
    return _save(fig, save_path), per_class
