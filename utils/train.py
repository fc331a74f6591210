"""The training loop: plain functions that take everything they use and return what they measured.

``train_epoch`` and ``evaluate`` return dicts; ``fit`` runs epochs, prints one table row per epoch,
checkpoints atomically after each, and returns the ``History``. Nothing here is global: the device,
scheduler stepping, mixed precision and regularisation are all arguments.
"""
from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import CheckpointError, load_checkpoint, restore, save_checkpoint
from .errors import CourseError, UsageError
from .history import TABLE_HEADER, History, format_row
from .inference import eval_mode
from .progress import progress_bar


class NonFiniteLossError(CourseError, RuntimeError):
    """The loss became NaN or inf; training stopped (``fit`` says whether a checkpoint holds the last good epoch)."""


def get_device(prefer: str | None = None) -> torch.device:
    """``prefer`` if this machine has it, else CUDA, then Apple MPS, then CPU -- decided when called, never at import."""
    if prefer:
        try:
            device = torch.device(prefer)
        except RuntimeError:
            raise UsageError(f"unknown device {prefer!r}; use cpu, cuda or mps") from None
        available = {"cpu": True, "cuda": torch.cuda.is_available(),
                     "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
        if not available.get(device.type, True):
            raise UsageError(f"--device {prefer}: this machine has no {device.type.upper()} device that torch can "
                             f"use; leave --device out to take the best one available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device). Loader workers are seeded per epoch
    from the loader's own generator (see ``utils.loaders.seed_worker``)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds all CUDA devices


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX); torch's own probes, absent -> False."""
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported",
                                                                        "_is_amx_tile_supported"))


def amp_settings(device: torch.device, precision: str = "auto") -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """(autocast dtype or None for fp32, GradScaler) for ``precision`` on ``device``.

    ``auto``: bf16 where the hardware computes it natively -- a GPU of compute capability 8.0 or above (A100,
    L4, H100), or a CPU with AVX512-BF16/AMX, where convolutions then train about twice as fast as in fp32
    (``python -m utils bench``) -- else fp16 on older GPUs (T4, V100, P100) and fp32 elsewhere. Weights, optimizer state and the loss stay fp32 (autocast), as on a GPU.
    The scaler is one code path for all: it only scales for fp16, whose small range needs it; otherwise
    it is a pass-through.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            # not torch.cuda.is_bf16_supported(): it also says True on a T4 (7.5), which emulates bf16 and has no
            # cuDNN bf16 convolutions; capability 8.0 is where they start
            precision = "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp16"
        else:
            precision = "bf16" if device.type == "cpu" and cpu_has_bf16() else "fp32"
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return dtype, torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return optimizer.param_groups[0]["lr"]


def current_momentum(optimizer: torch.optim.Optimizer) -> float | None:
    """SGD's momentum or Adam's beta1 (what One Cycle cycles), None for an optimizer with neither."""
    group = optimizer.param_groups[0]
    return group["momentum"] if "momentum" in group else group.get("betas", (None,))[0]


REFRESH_EVERY = 10  # batches between reads of the running loss: a per-batch .item() would stall a GPU


def train_epoch(model: torch.nn.Module, train_loader: Iterable, optimizer: torch.optim.Optimizer,
                criterion: Callable, device: torch.device, scheduler=None, *,
                amp_dtype: torch.dtype | None = None, scaler: torch.amp.GradScaler | None = None, epoch: int = 1,
                progress: bool = True) -> dict:
    """One pass over ``train_loader``; steps ``scheduler`` (One Cycle) after every batch.

    ``amp_dtype``/``scaler`` as ``amp_settings`` gives them (None: fp32, no scaling). Loss and accuracy
    accumulate on the device and are read back only every ``REFRESH_EVERY`` batches (for the progress bar)
    so a GPU is never stalled by a per-batch ``.item()``. The loss is the mean over samples. A non-finite
    loss raises ``NonFiniteLossError`` naming epoch, batch and LR. Returns loss, acc, the last batch's LR
    and momentum, every batch's LR (``lrs``), seconds and samples.
    """
    model.train()
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
    total = len(train_loader)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    seen, lrs, momentum = 0, [], None
    start = time.perf_counter()
    # TQDM_DISABLE=1 also turns it off (executed notebooks store the log, not dead progress widgets).
    bar = progress_bar(progress, total=total, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True)
    for i, (x, y) in enumerate(train_loader):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        lrs.append(current_lr(optimizer))
        momentum = current_momentum(optimizer)  # the batch's own, read before the scheduler moves it
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(x)
            loss = criterion(logits, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        loss = loss.detach()
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), i, first_bad)
        loss_sum += loss.float() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if (i + 1) % REFRESH_EVERY == 0 or i + 1 == total:
            _check_finite(first_bad, epoch, lrs)
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{100 * correct.item() / seen:.2f}",
                            lr=f"{lrs[-1]:.3g}", refresh=False)
            bar.update((i + 1) - bar.n)
    bar.close()
    _check_finite(first_bad, epoch, lrs)
    if seen == 0:
        raise UsageError("the training loader yielded no batches")
    return {"loss": loss_sum.item() / seen, "acc": 100.0 * correct.item() / seen, "lr": lrs[-1],
            "momentum": momentum, "lrs": lrs, "seconds": time.perf_counter() - start,
            "samples": seen}


def _check_finite(first_bad: torch.Tensor, epoch: int, lrs: list) -> None:
    bad = int(first_bad.item())
    if bad >= 0:
        raise NonFiniteLossError(f"loss became non-finite at epoch {epoch}, batch {bad + 1} (lr {lrs[bad]:.4g})")


@torch.no_grad()
def evaluate(model: torch.nn.Module, test_loader: Iterable, device: torch.device,
             amp_dtype: torch.dtype | None = None) -> dict:
    """Cross-entropy averaged over every test sample (summed per sample, divided by the count) and accuracy.

    Plain cross-entropy even when training uses label smoothing, so test losses compare across recipes.
    The model's train/eval mode is restored afterwards.
    """
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    with eval_mode(model):
        for x, y in test_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
    if seen == 0:
        raise UsageError("the test loader yielded no batches")
    return {"loss": loss_sum.item() / seen, "acc": 100.0 * correct.item() / seen, "samples": seen}


def fit(model: torch.nn.Module, train_loader, test_loader, optimizer: torch.optim.Optimizer, epochs: int,
        criterion: Callable | None = None, scheduler=None, *, precision: str = "auto",
        checkpoint_path: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
        log: Callable[[str], None] | None = print) -> History:
    """Train up to epoch ``epochs`` on the device the model is on, and return the history (one row per epoch).

    ``scheduler`` is stepped after every batch (One Cycle).
    ``precision``: "auto" (bf16 autocast where the GPU or CPU computes it natively), "fp32", "bf16" or
    "fp16" (with loss scaling) -- see ``amp_settings``.
    ``checkpoint_path``: written after every epoch (``utils.checkpoint``), with the history so far beside it
    (``history.json``, ``history.csv``); with ``resume=True`` training continues from it exactly where it
    stopped. To look at a model early in a long run, pass a smaller ``epochs`` than the scheduler was built
    for and resume later with the full number.
    A row's ``seconds`` is the epoch's wall time, training and evaluation.
    """
    device = next(model.parameters()).device
    criterion = criterion or torch.nn.CrossEntropyLoss()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels once
    amp_dtype, scaler = amp_settings(device, precision)
    history, start_epoch = History(), 1
    if resume:
        if checkpoint_path is None:
            raise UsageError("resume=True needs a checkpoint_path")
        state = load_checkpoint(checkpoint_path)  # on the CPU: RNG states must stay there; load_state_dict moves the rest
        try:
            restore(state, model, optimizer, scheduler, scaler, train_loader)
        except (RuntimeError, ValueError) as err:  # load_state_dict's "size mismatch", "missing keys", groups
            raise CheckpointError(f"{checkpoint_path} does not fit this model and optimizer: "
                                  f"{str(err).splitlines()[0]}; train into another folder") from None
        history, start_epoch = History(state["history"]), state["epoch"] + 1
        if log:
            log(f"resumed from {Path(checkpoint_path).name} after epoch {state['epoch']}" +
                (f": epoch {epochs} is done already, so this replays the table and trains nothing"
                 if start_epoch > epochs else ""))
    if log:  # on resume, the epochs already done first: the log reads as one run
        log(TABLE_HEADER)
        for row in history:
            log(format_row(row))
    for epoch in range(start_epoch, epochs + 1):
        start = time.perf_counter()
        try:
            train = train_epoch(model, train_loader, optimizer, criterion, device, scheduler, amp_dtype=amp_dtype,
                                scaler=scaler, epoch=epoch, progress=progress)
            test = evaluate(model, test_loader, device, amp_dtype)
            if not math.isfinite(test["loss"]):
                raise NonFiniteLossError(f"test loss became non-finite after epoch {epoch} (lr {train['lr']:.4g})")
        except NonFiniteLossError as err:
            kept = (f"the checkpoint after epoch {epoch - 1} is kept" if checkpoint_path is not None and epoch > 1
                    else "no checkpoint was written")
            err = NonFiniteLossError(f"{err}; {kept}; lower the learning rate or check the data")
            if log:
                log(f"stopped: {err}")
            raise err from None
        row = {"epoch": epoch, "train_loss": train["loss"], "train_acc": train["acc"], "test_loss": test["loss"],
               "test_acc": test["acc"], "lr": train["lr"], "momentum": train["momentum"],
               "seconds": time.perf_counter() - start, "lrs": train["lrs"]}
        history.append(row)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, model, optimizer, scheduler, scaler, history, epoch, train_loader)
            history.save(Path(checkpoint_path).parent)
        if log:
            log(format_row(row))
    return history
