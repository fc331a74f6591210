"""Every figure of the course: training curves, sample and augmented images, confusion matrix, the LR
schedule and the S11 zigzag -- plus the two helpers the other figures share (``save_figure``,
``image_grid``; the LR finder's and Grad-CAM's figures use them too).

Every function returns its matplotlib Figure (a pyplot figure, so notebooks show it inline) and writes a
PNG when given ``save_path``; nothing is shown or closed here.
"""
from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from .dataset import ImageData
from .files import replacing
from .schedules import record_schedule, triangular_schedule
from .transforms import denormalize


def save_figure(fig, save_path=None):
    """Tight layout, and a 120-dpi PNG at ``save_path`` when given; returns ``fig``."""
    fig.tight_layout()
    if save_path is not None:
        with replacing(save_path) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight")
    return fig


def image_grid(n: int, ncols: int, cell: float = 1.6, rows_per_item: int = 1):
    """Axes for ``n`` pictures, ``ncols`` to a row, each item ``rows_per_item`` cells high (an image above
    its Grad-CAM), axes off, unused places removed -> (fig, [tuple of an item's axes, ...])."""
    ncols = min(ncols, n)
    item_rows = -(-n // ncols)
    fig, axes = plt.subplots(item_rows * rows_per_item, ncols, figsize=(cell * ncols, (cell + 0.3) * item_rows * rows_per_item),
                             squeeze=False)
    items = []
    for i in range(item_rows * ncols):
        cells = tuple(axes[rows_per_item * (i // ncols) + k, i % ncols] for k in range(rows_per_item))
        for ax in cells:
            ax.axis("off") if i < n else fig.delaxes(ax)
        if i < n:
            items.append(cells)
    return fig, items


def plot_curves(history, save_path=None):
    """Loss and accuracy per epoch, and the LR per batch, from ``fit``'s history (one dict per epoch).

    The LR is drawn batch by batch (a row's ``lrs``), so a short run's One Cycle warm-up shows; a history
    without them (older runs) gets one point per epoch.
    """
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax, lr_ax) = plt.subplots(1, 3, figsize=(15, 4))
    for key, style in (("train", "-o"), ("test", "-s")):
        loss_ax.plot(epochs, [row[f"{key}_loss"] for row in history], style, ms=3, label=key)
        acc_ax.plot(epochs, [row[f"{key}_acc"] for row in history], style, ms=3, label=key)
    if all(row.get("lrs") for row in history):
        # batch i of epoch e (counted from 1) is drawn at e - 1 + (i + 1) / n: the last batch at e
        x = [row["epoch"] - 1 + (i + 1) / len(row["lrs"]) for row in history for i in range(len(row["lrs"]))]
        lr_ax.plot(x, [lr for row in history for lr in row["lrs"]], color="tab:green")
        lr_ax.set_title("Learning rate (every batch)")
    else:
        lr_ax.plot(epochs, [row["lr"] for row in history], "-o", ms=3, color="tab:green")
        lr_ax.set_title("Learning rate (last batch of each epoch)")
    best = max(history, key=lambda row: row["test_acc"])
    acc_ax.plot(best["epoch"], best["test_acc"], "*", ms=12, color="tab:red", label="best test")
    loss_ax.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    acc_ax.set(title=f"Accuracy (best test {best['test_acc']:.2f}% at epoch {best['epoch']})", xlabel="epoch",
               ylabel="accuracy (%)")
    lr_ax.set(xlabel="epoch", ylabel="learning rate")
    for ax in (loss_ax, acc_ax):
        ax.legend()
    for ax in (loss_ax, acc_ax, lr_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
    return save_figure(fig, save_path)


def show_samples(data: ImageData, n: int = 20, ncols: int = 10, seed: int = 0, save_path=None):
    """``n`` random images of ``data`` (seeded), each titled with its class name."""
    indices = np.random.default_rng(seed).choice(len(data.labels), size=min(n, len(data.labels)), replace=False)
    fig, items = image_grid(len(indices), ncols)
    for (ax,), i in zip(items, indices):
        ax.imshow(data.images[i])  # uint8 RGB as stored
        ax.set_title(data.classes[data.labels[i]], fontsize=9)
    return save_figure(fig, save_path)


def show_augmented(data: ImageData, transform, n: int = 4, repeats: int = 5, seed: int = 0, save_path=None):
    """``n`` images (one per row): the original, then ``repeats`` draws of ``transform``.

    ``transform`` is one of ``utils.transforms``' pipelines (albumentations ending in Normalize and
    ToTensorV2); its output is de-normalised for display.
    """
    indices = np.random.default_rng(seed).choice(len(data.labels), size=min(n, len(data.labels)), replace=False)
    fig, items = image_grid(len(indices) * (repeats + 1), repeats + 1)
    for k, i in enumerate(indices):
        row = [ax for (ax,) in items[k * (repeats + 1):(k + 1) * (repeats + 1)]]
        row[0].imshow(data.images[i])
        row[0].set_title(f"{data.classes[data.labels[i]]} (original)", fontsize=8)
        for ax in row[1:]:
            ax.imshow(denormalize(transform(image=data.images[i])["image"]))
            ax.set_title("augmented", fontsize=8)
    return save_figure(fig, save_path)


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
    return save_figure(fig, save_path), per_class


def plot_zigzag(lr_min: float, lr_max: float, step_size: int, cycles: int = 3, save_path=None):
    """The S11 "zigzag": the triangular cyclic LR over ``cycles`` cycles -> (fig, lrs)."""
    lrs = triangular_schedule(2 * step_size * cycles + 1, lr_min, lr_max, step_size)  # +1 closes the last cycle
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(np.arange(len(lrs)), lrs, color="tab:blue", lw=2)
    span = lr_max - lr_min
    for level, name in ((lr_min, "lr_min"), (lr_max, "lr_max")):
        ax.axhline(level, color="grey", ls="--", lw=0.8)
        ax.text(len(lrs) - 1, level, f" {name} = {level:g}", va="center", ha="left", fontsize=9)
    # The step size as a bracket over the first rise, and the cycle length over the first cycle: above
    # the curve, where the axis still means a learning rate (below lr_min it would dip under 0).
    y_step, y_cycle = lr_max + 0.08 * span, lr_max + 0.2 * span
    ax.plot([0, step_size], [y_step, y_step], color="tab:red", marker="|", markersize=10)
    ax.text(step_size / 2, y_step, f"step size = {step_size}", ha="center", va="bottom", fontsize=9)
    ax.plot([0, 2 * step_size], [y_cycle, y_cycle], color="tab:green", marker="|", markersize=10)
    ax.text(step_size, y_cycle, f"cycle = 2 x step size = {2 * step_size}", ha="center", va="bottom", fontsize=9)
    for k in range(1, 2 * cycles):
        ax.axvline(k * step_size, color="grey", ls=":", lw=0.6)
    ax.set_ylim(max(0.0, lr_min - 0.1 * span), lr_max + 0.32 * span)
    ax.set_xlim(0, len(lrs) - 1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("learning rate")
    ax.set_title(f"Triangular cyclic learning rate ({cycles} cycles)")
    return save_figure(fig, save_path), lrs


def plot_schedule(optimizer: torch.optim.Optimizer, make_scheduler: Callable, n_steps: int,
                  steps_per_epoch: int | None = None, save_path=None):
    """Per-batch LR, and momentum where the schedule changes it, of ``make_scheduler`` -> (fig, trace).

    ``trace`` is ``record_schedule``'s dict. With ``steps_per_epoch`` the x axis is in epochs.
    """
    trace = record_schedule(optimizer, make_scheduler, n_steps)
    lrs, moms = trace["lr"], trace["momentum"]
    show_momentum = moms is not None and np.ptp(moms) > 0
    fig, axes = plt.subplots(2 if show_momentum else 1, 1, figsize=(9, 5.5 if show_momentum else 3.5),
                             sharex=True, squeeze=False)
    axes = axes[:, 0]
    x = np.arange(n_steps) if steps_per_epoch is None else (np.arange(n_steps) + 1) / steps_per_epoch
    xlabel = "batch" if steps_per_epoch is None else "epoch"
    peak = int(np.argmax(lrs))
    axes[0].plot(x, lrs, color="tab:blue")
    axes[0].plot(x[peak], lrs[peak], "o", color="tab:red")
    where = f"batch {peak}" if steps_per_epoch is None else f"epoch {x[peak]:g}"
    axes[0].annotate(f"max {lrs[peak]:.4g} at {where}", (x[peak], lrs[peak]), textcoords="offset points",
                     xytext=(8, 4), va="bottom", fontsize=9)
    axes[0].margins(y=0.15)  # room for the label above the peak
    axes[0].set_ylabel("learning rate")
    axes[0].set_title(f"LR per batch: start {lrs[0]:.4g}, peak {lrs[peak]:.4g}, end {lrs[-1]:.4g}")
    if show_momentum:
        axes[1].plot(x, moms, color="tab:orange")
        axes[1].set_ylabel(trace["momentum_name"])
        axes[1].set_title(f"{trace['momentum_name']} per batch: start {moms[0]:.3g}, "
                          f"at LR peak {moms[peak]:.3g}, end {moms[-1]:.3g}")
    axes[-1].set_xlabel(xlabel)
    for ax in axes:
        ax.grid(alpha=0.3)
    return save_figure(fig, save_path), trace
