"""The training loop: plain functions that take everything they use and return what they measured.

``train_epoch`` and ``evaluate`` return dicts; ``fit`` runs epochs, prints one table row per epoch,
checkpoints atomically after each, and returns the ``History``. Nothing here is global: the device,
scheduler stepping, mixed precision and regularisation are all arguments.
"""
from __future__ import annotations

import csv
import itertools
import json
import math
import os
import random
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; training stopped and the last good checkpoint was kept."""


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or does not match the run."""


# ------------------------------------------------------------------------------------------ environment
def get_device(prefer: str | None = None) -> torch.device:
    """CUDA, then Apple MPS, then CPU -- decided when called, never at import."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device). Loader workers are seeded per epoch
    from the loader's own generator (see ``utils.data.seed_worker``)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds all CUDA devices


def amp_settings(device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """Mixed precision on CUDA only: bf16 where the GPU has it (no scaler needed), else fp16 + scaler."""
    if device.type != "cuda":
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's tensors are (CPU for a model with none, e.g. a bare pooling net)."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


@contextmanager
def eval_mode(model: torch.nn.Module):
    """Eval mode inside the block, then every submodule's own train/eval flag back.

    ``model.train(was_training)`` would not do: it resets every submodule to one flag, so a BatchNorm
    someone froze in eval mode would come back training.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return optimizer.param_groups[0]["lr"]


# ------------------------------------------------------------------------------------------ one epoch
def train_epoch(model: torch.nn.Module, train_loader: Iterable, optimizer: torch.optim.Optimizer,
                criterion: Callable, device: torch.device, scheduler=None, step_per_batch: bool = True,
                l1: float = 0.0, amp_dtype: torch.dtype | None = None, scaler=None, epoch: int = 1,
                max_batches: int | None = None, progress: bool = True, refresh_every: int = 10) -> dict:
    """One pass over ``train_loader``; steps ``scheduler`` after every batch when ``step_per_batch``.

    Loss and accuracy accumulate on the device and are read back only every ``refresh_every`` batches
    (for the progress bar) so a GPU is never stalled by a per-batch ``.item()``. The loss is the mean
    over samples. A non-finite loss raises ``NonFiniteLossError`` naming epoch, batch and LR.
    """
    model.train()
    total = len(train_loader) if max_batches is None else min(max_batches, len(train_loader))
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    seen, lrs = 0, []
    start = time.perf_counter()
    # Only force `disable` when asked to: left unset, TQDM_DISABLE=1 in the environment turns the bars off
    # (e.g. when executing a notebook whose stored outputs should hold the log, not dead progress widgets).
    bar = tqdm(total=total, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True,
               **({} if progress else {"disable": True}))
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
    for i, (x, y) in enumerate(train_loader):
        if i >= total:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        lrs.append(current_lr(optimizer))
        with autocast:
            logits = model(x)
            loss = criterion(logits, y)
        if l1:
            loss = loss + l1 * sum(p.abs().sum() for p in model.parameters() if p.ndim > 1)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None and step_per_batch:
            scheduler.step()
        loss = loss.detach()
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), i, first_bad)
        loss_sum += loss.float() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if (i + 1) % refresh_every == 0 or i + 1 == total:
            _check_finite(first_bad, epoch, lrs)
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{100 * correct.item() / seen:.2f}",
                            lr=f"{lrs[-1]:.3g}", refresh=False)
            bar.update((i + 1) - bar.n)
    bar.close()
    _check_finite(first_bad, epoch, lrs)
    if scheduler is not None and not step_per_batch:
        scheduler.step()
    if seen == 0:
        raise ValueError("the training loader yielded no batches")
    return {"loss": loss_sum.item() / seen, "acc": 100.0 * correct.item() / seen, "lr": lrs[-1],
            "seconds": time.perf_counter() - start, "samples": seen}


def _check_finite(first_bad: torch.Tensor, epoch: int, lrs: list) -> None:
    bad = int(first_bad.item())
    if bad >= 0:
        raise NonFiniteLossError(f"loss became non-finite at epoch {epoch}, batch {bad + 1} (lr {lrs[bad]:.4g}); "
                                 f"lower the learning rate or check the data -- the last good checkpoint was kept")


@torch.no_grad()
def evaluate(model: torch.nn.Module, test_loader: Iterable, device: torch.device,
             amp_dtype: torch.dtype | None = None, max_batches: int | None = None) -> dict:
    """Cross-entropy averaged over every test sample (summed per sample, divided by the count) and accuracy.

    Plain cross-entropy even when training uses label smoothing, so test losses compare across recipes.
    The model's train/eval mode is restored afterwards.
    """
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
    with eval_mode(model):
        for i, (x, y) in enumerate(test_loader):
            if max_batches is not None and i >= max_batches:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast:
                logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
    if seen == 0:
        raise ValueError("the test loader yielded no batches")
    return {"loss": loss_sum.item() / seen, "acc": 100.0 * correct.item() / seen, "samples": seen}


# ------------------------------------------------------------------------------------------ history
class History(list):
    """One dict per epoch with ``HISTORY_KEYS``; a list, so it is JSON-ready as it is."""

    def save(self, folder: str | os.PathLike, stem: str = "history") -> tuple[Path, Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        json_path, csv_path = folder / f"{stem}.json", folder / f"{stem}.csv"
        json_path.write_text(json.dumps(list(self), indent=1))
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY_KEYS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self)
        return json_path, csv_path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "History":
        return cls(json.loads(Path(path).read_text()))

    def best(self, key: str = "test_acc") -> dict:
        return max(self, key=lambda row: row[key])


def format_row(row: dict) -> str:
    return (f"{row['epoch']:>5}  {row['train_loss']:>10.4f}  {row['train_acc']:>9.2f}  {row['test_loss']:>9.4f}"
            f"  {row['test_acc']:>8.2f}  {row['lr']:>9.5f}  {row['seconds']:>7.1f}")


TABLE_HEADER = f"{'epoch':>5}  {'train_loss':>10}  {'train_acc':>9}  {'test_loss':>9}  {'test_acc':>8}  {'lr':>9}  {'seconds':>7}"


# ------------------------------------------------------------------------------------------ checkpoints
def _rng_state(train_loader) -> dict:
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]),
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    generator = getattr(train_loader, "generator", None)
    if generator is not None:
        state["loader"] = generator.get_state()
    transform = getattr(getattr(train_loader, "dataset", None), "transform", None)
    if hasattr(transform, "random_generator"):  # in-process albumentations streams (num_workers=0)
        state["albumentations"] = json.dumps([[t.random_generator.bit_generator.state, list(t.py_random.getstate()[1])]
                                              for t in _albumentations_nodes(transform)])
    return state


def _set_rng_state(state: dict, train_loader) -> None:
    random.setstate((3, tuple(state["python"]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "loader" in state and getattr(train_loader, "generator", None) is not None:
        train_loader.generator.set_state(state["loader"])
    transform = getattr(getattr(train_loader, "dataset", None), "transform", None)
    if "albumentations" in state and hasattr(transform, "random_generator"):
        for t, (bit_state, py_state) in zip(_albumentations_nodes(transform), json.loads(state["albumentations"])):
            t.random_generator.bit_generator.state = bit_state
            t.py_random.setstate((3, tuple(py_state), None))


def _albumentations_nodes(transform) -> list:
    """A Compose and every transform under it: albumentations 2.x gives each its own generators."""
    nodes = [transform]
    for child in getattr(transform, "transforms", []):
        nodes += _albumentations_nodes(child)
    return nodes


def save_checkpoint(path: str | os.PathLike, model, optimizer, scheduler, scaler, history: History, epoch: int,
                    train_loader=None) -> None:
    """Write atomically: a temp file in the same folder, then rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict() if scheduler is not None else None,
             "scaler": scaler.state_dict() if scaler is not None else None,
             "history": list(history), "epoch": epoch, "rng": _rng_state(train_loader)}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load with ``weights_only=True`` (no arbitrary code from a file); a bad file gets a one-line error."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; run without --resume to start fresh")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(err).__name__}); delete it or "
                              f"point --out at another folder to start fresh") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a training checkpoint (no 'model' entry)")
    return state


def load_weights(model: torch.nn.Module, path: str | os.PathLike, map_location="cpu") -> torch.nn.Module:
    """Load a bare state_dict or a training checkpoint's model weights into ``model``."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no weights file at {path}") from None
    except Exception as err:
        raise CheckpointError(f"weights file {path} is unreadable ({type(err).__name__})") from None
    state = state.get("model", state) if isinstance(state, dict) else state
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"{path} does not fit {type(model).__name__}: {first}") from None
    return model


# ------------------------------------------------------------------------------------------ fit
def fit(model: torch.nn.Module, train_loader, test_loader, optimizer: torch.optim.Optimizer, epochs: int,
        criterion: Callable | None = None, scheduler=None, step_per_batch: bool = True,
        device: torch.device | str | None = None, l1: float = 0.0, mixed_precision: bool = True,
        checkpoint_path: str | os.PathLike | None = None, resume: bool = False,
        max_batches: int | None = None, progress: bool = True, log: Callable[[str], None] | None = print,
        epoch_end: Callable[[History], None] | None = None) -> History:
    """Train for ``epochs`` and return the history (one row per epoch).

    ``scheduler`` is stepped per batch (``step_per_batch=True``, e.g. OneCycleLR) or per epoch.
    ``checkpoint_path``: written after every epoch (model, optimizer, scheduler, scaler, history, RNG
    states); with ``resume=True`` training continues from it exactly where it stopped.
    ``max_batches`` caps batches per epoch (train and test) for smoke runs.
    ``epoch_end(history)`` is called after every epoch (e.g. to save the history or a plot as it grows).
    """
    device = get_device() if device is None else torch.device(device)
    criterion = criterion or torch.nn.CrossEntropyLoss()
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels once
    amp_dtype, scaler = amp_settings(device) if mixed_precision else (None, None)
    history, start_epoch = History(), 1
    if resume:
        if checkpoint_path is None:
            raise ValueError("resume=True needs a checkpoint_path")
        state = load_checkpoint(checkpoint_path)  # on the CPU: RNG states must stay there; load_state_dict moves the rest
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], train_loader)
        history, start_epoch = History(state["history"]), state["epoch"] + 1
        if log:
            log(f"resumed from {checkpoint_path} after epoch {state['epoch']}")
    if log:  # on resume, the epochs already done first: the log reads as one run
        log(TABLE_HEADER)
        for row in history:
            log(format_row(row))
    for epoch in range(start_epoch, epochs + 1):
        train = train_epoch(model, train_loader, optimizer, criterion, device, scheduler, step_per_batch, l1,
                            amp_dtype, scaler, epoch, max_batches, progress)
        test = evaluate(model, test_loader, device, amp_dtype, max_batches)
        row = {"epoch": epoch, "train_loss": train["loss"], "train_acc": train["acc"], "test_loss": test["loss"],
               "test_acc": test["acc"], "lr": train["lr"], "seconds": train["seconds"]}
        if not all(math.isfinite(row[k]) for k in ("train_loss", "test_loss")):
            raise NonFiniteLossError(f"loss became non-finite at epoch {epoch} (lr {row['lr']:.4g}); "
                                     f"the last good checkpoint was kept")
        history.append(row)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, model, optimizer, scheduler, scaler, history, epoch, train_loader)
        if log:
            log(format_row(row))
        if epoch_end:
            epoch_end(history)
    return history
