"""The LR range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks", section 3.3)
as a thin wrapper over ``torch_lr_finder.LRFinder`` (davidtvs/pytorch-lr-finder).

``find_lr`` runs it on the *training* loader only, suggests ``lr_max`` = the LR of the smoothed loss's
minimum x ``factor`` (the recipe's ``lr_finder_factor``), and restores the model and the optimizer before
returning. ``load_lr_finder`` redraws a saved test, so a resumed or replayed run shows the one it used.

Why the minimum and not torch-lr-finder's steepest descent: on a curve that falls almost evenly over
decades, the steepest point is noise; the minimum is the largest LR at which the untrained net still
improves. A tenth of it (fastai's rule of thumb) is the peak of the recipes that use it (S10/README.md).
"""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import TqdmExperimentalWarning

with warnings.catch_warnings():
    # torch-lr-finder imports tqdm.autonotebook, which warns (with the library's absolute path) inside Jupyter.
    # The bar itself is ours to turn off: find_lr(progress=False) or TQDM_DISABLE=1 (utils.progress).
    warnings.simplefilter("ignore", TqdmExperimentalWarning)
    import torch_lr_finder.lr_finder
    from torch_lr_finder import LRFinder, TrainDataLoaderIter

from .errors import UsageError
from .files import write_text
from .inference import preserve_modes
from .plots import save_figure
from .progress import library_bars


LR_MIN_RATIO = 10  # lr_min = lr_max / 10: the S11 reference's 0.0157 -> 0.157


def loss_minimum(losses, skip_start: int = 10) -> int:
    """Index of the smoothed loss's minimum, searched from ``skip_start``: the first points are the
    smoothing's warm-up, pinned to the first batch's loss. When the minimum is the first point searched
    (a short, coarse test), the skipped points join the search.

    A minimum at the very first point means the range starts too high to see a descent; at the last
    point, that the loss was still falling when the test ended.
    """
    losses = np.asarray(losses, dtype=float)
    if len(losses) < skip_start + 3:
        raise UsageError(f"{len(losses)} points are too few to find the loss minimum after the first "
                         f"{skip_start}; raise num_iter or lower end_lr")
    lowest = skip_start + int(np.argmin(losses[skip_start:]))
    if lowest == skip_start:
        lowest = int(np.argmin(losses[:skip_start + 1]))
    if lowest == 0:
        raise UsageError("the smoothed loss is lowest at the start of the range test: the range starts too "
                         "high to see a descent; lower start_lr")
    if lowest == len(losses) - 1:
        raise UsageError("the smoothed loss was still falling at the end of the range test; raise end_lr")
    return lowest


def rule_name(factor: float) -> str:
    """How lr_max is read off the curve, in words: "loss minimum / 10", "loss minimum", "loss minimum x 10"."""
    if factor == 1:
        return "loss minimum"
    return f"loss minimum / {1 / factor:g}" if factor < 1 else f"loss minimum x {factor:g}"


@dataclass
class LRFinderResult:
    lr_max: float   # the LR at the smoothed loss's minimum x factor: One Cycle's peak
    lr_min: float   # lr_max / lr_min_ratio: One Cycle's start (and end, without annihilation)
    history: dict   # {"lr": [...], "loss": [...]}, one entry per iteration (the loss is smoothed)
    fig: Figure
    rule: str       # how lr_max was read off the curve, in words
    reused: bool = False  # True: read from a saved range test (load_lr_finder), not run again

    def __str__(self):
        where = "; the run's own range test from its lr_finder.json, redrawn, not run again" if self.reused else ""
        return f"lr_max {self.lr_max:.4g}, lr_min {self.lr_min:.4g} ({self.rule}{where})"


def find_lr(model: torch.nn.Module, optimizer: torch.optim.Optimizer, criterion, train_loader,
            start_lr: float = 1e-5, end_lr: float = 10, num_iter: int = 100, factor: float = 0.1,
            amp_dtype: torch.dtype | None = None, progress: bool = True, save_path=None,
            record_path=None, show_rule: bool = True) -> LRFinderResult:
    """Raise the LR exponentially from ``start_lr`` to ``end_lr`` over ``num_iter`` training batches, on the
    model's own device, and suggest lr_max.

    ``lr_max`` = the LR at the smoothed loss's minimum (``loss_minimum``, after the first tenth of the points,
    at least 2) x ``factor`` (0.1: a tenth of it); ``lr_min = lr_max / LR_MIN_RATIO``.

    The model's weights, buffers, train/eval modes and device and the optimizer's state and LRs are
    restored afterwards, and gradients are cleared. Build the LR scheduler *after* this call: a scheduler
    writes ``initial_lr`` into the optimizer and the range test would fight it, so that is refused.
    The test stops early if the loss diverges (above 5x its best).

    ``train_loader``: a DataLoader or any iterable of (inputs, labels) batches, such as the batched route's
    ``DeviceLoader`` (handed to the library as its documented ``TrainDataLoaderIter``). ``amp_dtype``: train
    under autocast in that dtype, as the run will (bf16 or fp16; fp16 with loss scaling).
    ``progress``: the library's progress bar (on stderr; ``TQDM_DISABLE=1`` also turns it off).
    ``save_path``: the plot; the curve itself goes beside it as JSON (``.json``), or to ``record_path``
    when given (``load_lr_finder`` reads it back). ``show_rule``: draw the lr_max/lr_min lines read off the
    curve; False for a run that does not train with them (the curve and its minimum only).
    """
    skip_start = max(2, num_iter // 10)
    if num_iter < skip_start + 3:
        raise UsageError(f"num_iter={num_iter} is too few: the suggestion needs at least "
                         f"skip_start + 3 = {skip_start + 3} iterations; raise num_iter")
    if any("initial_lr" in group for group in optimizer.param_groups):
        raise UsageError("this optimizer already has an LR scheduler attached; run find_lr on a fresh "
                         "optimizer and build the scheduler afterwards")
    if not isinstance(train_loader, torch.utils.data.DataLoader):
        train_loader = TrainDataLoaderIter(train_loader)  # re-iterates the loader when it runs out
    amp = {}
    if amp_dtype is not None:
        device_type = next(model.parameters()).device.type
        amp = dict(amp_backend="torch", amp_config={"device_type": device_type, "dtype": amp_dtype},
                   grad_scaler=torch.amp.GradScaler(device_type, enabled=amp_dtype == torch.float16))
    finder = LRFinder(model, optimizer, criterion, device=next(model.parameters()).device, **amp)
    try:
        # The library prints progress notes meant for its own plot(); the figure below says the same.
        with preserve_modes(model), contextlib.redirect_stdout(io.StringIO()), \
                library_bars(torch_lr_finder.lr_finder, progress):
            finder.range_test(train_loader, start_lr=start_lr, end_lr=end_lr, num_iter=num_iter, step_mode="exp")
    finally:
        finder.reset()  # weights, buffers, optimizer state and LRs; back to the original device
        model.zero_grad(set_to_none=True)
    history = {"lr": list(finder.history["lr"]), "loss": list(finder.history["loss"])}
    lowest = loss_minimum(history["loss"], skip_start)
    rule = rule_name(factor)
    lr_max = float(history["lr"][lowest]) * factor
    record = {"lr_max": lr_max, "lr_min": lr_max / LR_MIN_RATIO, "rule": rule, "num_iter": num_iter,
              "start_lr": start_lr, "end_lr": end_lr, "skip_start": skip_start, "lowest": lowest,
              "log_lr": True, **history}
    fig = _draw(record, show_rule)
    save_figure(fig, save_path)
    if record_path is None and save_path is not None:
        record_path = Path(save_path).with_suffix(".json")
    if record_path is not None:
        write_text(record_path, json.dumps(record, indent=1))
    return LRFinderResult(lr_max, record["lr_min"], history, fig, rule)


def load_lr_finder(path, save_path=None, show_rule: bool = True) -> LRFinderResult:
    """A range test that ``find_lr`` saved (its ``.json``), redrawn and not re-run: a resumed or replayed run
    shows the LR finder it trained with. Files written before ``lowest`` was stored get it recomputed.
    ``show_rule``: as in ``find_lr``."""
    try:
        record = json.loads(Path(path).read_text())
        n = len(record["lr"])
        record.setdefault("skip_start", max(2, record["num_iter"] // 10))
        record.setdefault("log_lr", True)
        record.setdefault("lowest", loss_minimum(record["loss"], record["skip_start"]))
        lr_max, lr_min, rule = float(record["lr_max"]), float(record["lr_min"]), record["rule"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{path} is not a saved LR range test ({err}); delete it to run the LR finder again") from None
    if n != len(record["loss"]) or not 0 <= record["lowest"] < n:
        raise UsageError(f"{path} is not a saved LR range test (lr and loss differ in length); delete it to "
                         f"run the LR finder again")
    fig = _draw(record, show_rule)
    save_figure(fig, save_path)
    history = {"lr": record["lr"], "loss": record["loss"]}
    return LRFinderResult(lr_max, lr_min, history, fig, rule, reused=True)


def _draw(record: dict, show_rule: bool = True) -> Figure:
    """The smoothed loss against the LR, its minimum, and (``show_rule``) the LRs read off it.

    The y-range is the part of the curve that is read, from its highest point before the minimum down to the
    minimum: a divergence leaves through the top of the frame instead of flattening that part.
    """
    lrs, losses, lowest, skip = record["lr"], record["loss"], record["lowest"], record["skip_start"]
    lr_max, lr_min = record["lr_max"], record["lr_min"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(lrs[skip:], losses[skip:])  # the first points are the smoothing's warm-up (see loss_minimum)
    if record["log_lr"]:
        ax.set_xscale("log")
    ax.scatter(lrs[lowest], losses[lowest], s=75, color="black", zorder=3, label=f"loss minimum at {lrs[lowest]:.3g}")
    if show_rule:
        ax.axvline(lr_max, color="tab:red", ls="--", lw=1, label=f"lr_max = {record['rule']} = {lr_max:.3g}")
        ax.axvline(lr_min, color="tab:green", ls="--", lw=1,
                   label=f"lr_min = lr_max / {lr_max / lr_min:.3g} = {lr_min:.3g}")
    top, bottom = max(losses[min(skip, lowest):lowest + 1]), losses[lowest]
    if top > bottom:
        margin = 0.1 * (top - bottom)
        ax.set_ylim(bottom - margin, top + margin)
    ax.legend()
    n, num_iter = len(lrs), record["num_iter"]
    stopped = "" if n == num_iter else f", stopped at {n} (loss diverged)"
    ax.set_title(f"LR range test on the training set ({num_iter} iterations{stopped})")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    return fig
