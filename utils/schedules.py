"""Learning-rate schedules: One Cycle (Smith & Topin 2017, "Super-Convergence") and the triangular
cyclic LR of S11 (Smith 2017, "Cyclical Learning Rates for Training Neural Networks").

``one_cycle`` is a thin wrapper over ``torch.optim.lr_scheduler.OneCycleLR`` that speaks in epochs
(peak at the end of epoch ``peak_epoch``, end at ``lr_min`` unless annihilating). It is stepped once per
batch. ``record_schedule`` reads what a scheduler will do by running a copy of it on a stand-in optimizer,
so the real optimizer and scheduler are never stepped (``utils.plots.plot_schedule`` draws it).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.optim.lr_scheduler import OneCycleLR

from .errors import UsageError


MOMENTUM_RANGE = (0.80, 0.95)  # the S11 reference's, and Smith's: momentum low while the LR is high


def one_cycle(optimizer: torch.optim.Optimizer, lr_min: float, lr_max: float, epochs: int,
              steps_per_epoch: int, peak_epoch: float, annihilate: bool = False,
              cycle_momentum: bool | None = None) -> OneCycleLR:
    """One Cycle, linear both ways: lr_min -> lr_max at the end of epoch ``peak_epoch`` -> lr_min.

    Step it after every batch (``epochs * steps_per_epoch`` steps in all). Counting batches from 0,
    batch 0 trains at ``lr_min``, the last batch of epoch ``peak_epoch`` at ``lr_max`` and the last
    batch of the run at ``lr_min`` again -- so a history that logs each epoch's last LR reads
    ``lr_max`` at epoch ``peak_epoch`` and ``lr_min`` at the end. (The final ``step()`` after the last
    batch moves the LR one step further down; no batch uses it.)

    ``annihilate=False`` (the S10/S11 "no annihilation") sets ``final_div_factor=1``: OneCycleLR's
    default of 1e4 would end 10,000x below lr_min. ``annihilate=True`` keeps that default, so the
    second phase runs down to lr_min / 1e4.

    Momentum is cycled against the LR (``MOMENTUM_RANGE``: 0.95 -> 0.80 at the peak -> back) when
    ``cycle_momentum`` is True. ``None`` means: only for an optimizer with a ``momentum`` setting above 0
    (SGD with momentum). Adam is left alone by default; ``cycle_momentum=True`` on Adam cycles beta1
    between the same two values, as OneCycleLR does.

    Build the scheduler after ``find_lr``: OneCycleLR writes ``initial_lr`` into the optimizer, which
    the LR finder refuses.
    """
    total_steps = epochs * steps_per_epoch
    peak_steps = peak_epoch * steps_per_epoch
    # OneCycleLR ends its rise at step pct_start * total_steps - 1 (counted from 0), and needs at least
    # two steps in each phase (otherwise it divides by zero).
    if not 1 < peak_steps < total_steps:
        raise UsageError(f"peak_epoch={peak_epoch} puts the peak at batch {peak_steps:g} of {total_steps}; "
                         f"it must fall strictly inside the run, after at least 2 batches")
    if lr_min <= 0 or lr_max <= lr_min:
        raise UsageError(f"need 0 < lr_min < lr_max, got lr_min={lr_min}, lr_max={lr_max}")
    if cycle_momentum is None:
        cycle_momentum = optimizer.param_groups[0].get("momentum", 0) > 0
    return OneCycleLR(optimizer, max_lr=lr_max, total_steps=total_steps, pct_start=float(peak_steps / total_steps),
                      anneal_strategy="linear", div_factor=lr_max / lr_min,
                      final_div_factor=1e4 if annihilate else 1.0, three_phase=False,
                      cycle_momentum=cycle_momentum, base_momentum=MOMENTUM_RANGE[0], max_momentum=MOMENTUM_RANGE[1])


def peak_inside(peak_epoch: float, epochs: int, steps_per_epoch: int) -> tuple[float, str | None]:
    """``peak_epoch`` moved just inside a run too short for it (a smoke run of a batch or two per epoch),
    with a note saying so; unchanged, with None, when it already fits ``one_cycle``'s bounds."""
    total = epochs * steps_per_epoch
    if total < 3:
        raise UsageError(f"a One Cycle run needs at least 3 batches in all, got {epochs} epochs x "
                         f"{steps_per_epoch} batches; raise --epochs or --limit-batches")
    steps = min(max(peak_epoch * steps_per_epoch, 2), total - 1)
    if steps == peak_epoch * steps_per_epoch:
        return peak_epoch, None
    moved = steps / steps_per_epoch
    return moved, (f"One Cycle peak moved from epoch {peak_epoch:g} to {moved:g} (batch {steps:g} of {total}): "
                   f"the run is too short for the recipe's peak")


def triangular_lr(iteration, lr_min: float, lr_max: float, step_size: int):
    """The triangular cyclic LR of S11 (Smith 2017, eq. in section 3.1) at ``iteration`` (int or array).

    It rises linearly from lr_min to lr_max over ``step_size`` iterations, falls back over the next
    ``step_size``, and repeats: one cycle is ``2 * step_size`` iterations.
    """
    it = np.asarray(iteration, dtype=np.float64)
    cycle = np.floor(1 + it / (2 * step_size))
    x = np.abs(it / step_size - 2 * cycle + 1)
    lr = lr_min + (lr_max - lr_min) * np.maximum(0.0, 1 - x)
    return float(lr) if lr.ndim == 0 else lr


def triangular_schedule(n_iterations: int, lr_min: float, lr_max: float, step_size: int) -> np.ndarray:
    """``triangular_lr`` at iterations 0 .. n_iterations - 1."""
    return triangular_lr(np.arange(n_iterations), lr_min, lr_max, step_size)


def _stand_in(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """An optimizer of the same class and per-group settings over one dummy parameter per group."""
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [torch.zeros(1, requires_grad=True)]}
              for g in optimizer.param_groups]
    shadow = type(optimizer)(groups, lr=optimizer.defaults["lr"])
    shadow.defaults = dict(optimizer.defaults)  # schedulers consult these (OneCycleLR: momentum or betas?)
    return shadow


def record_schedule(optimizer: torch.optim.Optimizer, make_scheduler: Callable, n_steps: int) -> dict:
    """LR (and momentum / Adam's beta1, where the optimizer has one) of batches 0 .. n_steps - 1.

    ``make_scheduler(optimizer) -> scheduler`` is the same function that builds the training scheduler;
    here it is applied to a stand-in optimizer (same class and settings, dummy parameters), so neither
    ``optimizer`` nor any scheduler attached to it is touched. Values are read before each ``step()``,
    i.e. ``lr[i]`` is the LR batch ``i`` trains with. Only the first parameter group is recorded.
    """
    shadow = _stand_in(optimizer)
    scheduler = make_scheduler(shadow)
    lrs, moms = [], []
    for _ in range(n_steps):
        group = shadow.param_groups[0]
        lrs.append(float(group["lr"]))
        moms.append(group["betas"][0] if "betas" in group else group.get("momentum"))
        shadow.step()  # no gradients, so nothing moves; keeps the scheduler's step-order check quiet
        scheduler.step()
    momentum = None if moms and moms[0] is None else np.array(moms, dtype=np.float64)
    return {"lr": np.array(lrs), "momentum": momentum,
            "momentum_name": "beta1" if "betas" in shadow.param_groups[0] else "momentum"}
