"""The LR range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks", section 3.3)
as a thin wrapper over ``torch_lr_finder.LRFinder`` (davidtvs/pytorch-lr-finder).

``find_lr`` runs it on the *training* loader only, suggests the steepest descent of the smoothed loss
*before its minimum*, and restores the model and the optimizer before returning.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch_lr_finder import LRFinder


def suggest_index(losses, skip_start: int = 10, skip_end: int = 5) -> int:
    """Index of the steepest descent of ``losses``, searched from ``skip_start`` up to the loss minimum.

    torch-lr-finder searches the whole range up to ``skip_end``; once the loss has blown up it often falls
    again (a diverged net settles near log(10)), and that fall can be the steepest -- it suggested LR 1.05
    for Adam on the custom ResNet. A descent after the minimum is never a usable LR, so it is cut off here.
    The skipped first points come back into the search only when the minimum lies within two points of
    them (short, noisy tests); a minimum at the very first points is an error.
    """
    losses = np.asarray(losses, dtype=float)
    lowest = skip_start + int(np.argmin(losses[skip_start:len(losses) - skip_end]))
    start = skip_start
    if lowest - skip_start < 2:
        start = 0
        lowest = int(np.argmin(losses[:lowest + 1]))
    if lowest - start < 2:
        raise ValueError("the smoothed loss is lowest at the start of the range test: the range starts too "
                         "high to see a descent; lower start_lr")
    # one point past the minimum, so the minimum's own slope is a central difference (about zero), not
    # the one-sided fall into it
    slopes = np.gradient(losses[start:lowest + 2])[:lowest - start + 1]
    return start + int(np.argmin(slopes))


@dataclass
class LRFinderResult:
    lr_max: float   # steepest descent of the smoothed loss: One Cycle's peak
    lr_min: float   # lr_max / lr_min_ratio: One Cycle's start (and end, without annihilation)
    history: dict   # {"lr": [...], "loss": [...]}, one entry per iteration (the loss is smoothed)
    fig: Figure


def find_lr(model: torch.nn.Module, optimizer: torch.optim.Optimizer, criterion, train_loader,
            start_lr: float = 1e-7, end_lr: float = 10, num_iter: int = 100, step_mode: str = "exp",
            device=None, lr_min_ratio: float = 10, skip_start: int = 10, skip_end: int = 5,
            save_path=None) -> LRFinderResult:
    """Raise the LR from ``start_lr`` to ``end_lr`` over ``num_iter`` training batches and suggest lr_max.

    ``lr_max`` is where the smoothed loss falls fastest (torch-lr-finder's minimum-gradient rule, after
    dropping ``skip_start`` and ``skip_end`` points), searched only up to the loss minimum
    (``suggest_index``). ``lr_min = lr_max / lr_min_ratio``; the ratio 10 is the S11 reference's 0.0157 / 0.157.

    The model's weights, buffers, train/eval modes and device and the optimizer's state and LRs are
    restored afterwards, and gradients are cleared. Build the LR scheduler *after* this call: a scheduler
    writes ``initial_lr`` into the optimizer and the range test would fight it, so that is refused.
    The test stops early if the loss diverges (above 5x its best).
    """
    if num_iter < skip_start + skip_end + 2:
        raise ValueError(f"num_iter={num_iter} is too few: the suggestion needs at least "
                         f"skip_start + skip_end + 2 = {skip_start + skip_end + 2} iterations; raise num_iter")
    if any("initial_lr" in group for group in optimizer.param_groups):
        raise ValueError("this optimizer already has an LR scheduler attached; run find_lr on a fresh "
                         "optimizer and build the scheduler afterwards")
    modes = [(m, m.training) for m in model.modules()]
    finder = LRFinder(model, optimizer, criterion, device=device)
    try:
        # The library prints progress notes meant for its own plot(); the figure below says the same.
        with contextlib.redirect_stdout(io.StringIO()):
            finder.range_test(train_loader, start_lr=start_lr, end_lr=end_lr, num_iter=num_iter,
                              step_mode=step_mode)
    finally:
        finder.reset()  # weights, buffers, optimizer state and LRs; back to the original device
        model.zero_grad(set_to_none=True)
        for m, training in modes:
            m.training = training
    history = {"lr": list(finder.history["lr"]), "loss": list(finder.history["loss"])}
    n = len(history["lr"])
    if n < skip_start + skip_end + 2:
        raise ValueError(f"the loss diverged after {n} of {num_iter} iterations, too few to suggest an LR "
                         f"(need {skip_start + skip_end + 2}); lower end_lr or raise num_iter")

    best = suggest_index(history["loss"], skip_start, skip_end)
    lr_max = float(history["lr"][best])
    lr_min = lr_max / lr_min_ratio
    fig, ax = plt.subplots(figsize=(7, 4))
    with contextlib.redirect_stdout(io.StringIO()):
        # given an axis, the library draws on it and does not call plt.show()
        finder.plot(skip_start=skip_start, skip_end=skip_end, log_lr=step_mode == "exp", ax=ax, suggest_lr=False)
    ax.scatter(lr_max, history["loss"][best], s=75, color="red", zorder=3,
               label="steepest descent before the minimum")
    ax.axvline(lr_max, color="tab:red", ls="--", lw=1, label=f"lr_max = {lr_max:.3g}")
    ax.axvline(lr_min, color="tab:green", ls="--", lw=1, label=f"lr_min = lr_max / {lr_min_ratio:g} = {lr_min:.3g}")
    ax.legend()
    stopped = "" if n == num_iter else f", stopped at {n} (loss diverged)"
    ax.set_title(f"LR range test on the training set ({num_iter} iterations{stopped})")
    ax.set_ylabel("training loss (smoothed)")
    fig.tight_layout()
    if save_path is not None:
        fig.savefig(save_path, dpi=120, bbox_inches="tight")
    return LRFinderResult(lr_max, lr_min, history, fig)
