"""Checkpoints: everything a run needs to continue exactly where it stopped, written atomically.

A checkpoint holds the model, optimizer, scheduler and grad-scaler states, the history so far, the epoch,
every global RNG (Python, NumPy, torch CPU and CUDA) and the training loader's own random state
(``loader.state_dict()``: its shuffling generator and, in-process, its augmentation streams), so a resumed
run draws the same batches as one that never stopped. Files are read with ``weights_only=True``: loading
one never runs code from it.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from .errors import CourseError
from .files import replacing


class CheckpointError(CourseError, RuntimeError):
    """A checkpoint or weights file could not be read or does not match the run."""


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"python": list(random.getstate()[1]),
            "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2]),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    random.setstate((3, tuple(state["python"]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, model, optimizer, scheduler, scaler, history: list, epoch: int,
                    train_loader=None) -> None:
    """Write atomically: a temp file in the same folder, then rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict() if scheduler is not None else None,
             "scaler": scaler.state_dict() if scaler is not None else None,
             "history": list(history), "epoch": epoch, "rng": rng_state(),
             "loader": train_loader.state_dict() if hasattr(train_loader, "state_dict") else None}
    with replacing(path) as tmp:
        torch.save(state, tmp)


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


def restore(state: dict, model, optimizer, scheduler=None, scaler=None, train_loader=None) -> None:
    """Put a loaded checkpoint back into the objects of a run built the same way."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"]:  # {} from a disabled scaler: nothing to restore
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    if state["loader"] is not None and hasattr(train_loader, "load_state_dict"):
        train_loader.load_state_dict(state["loader"])


def read_state_dict(path: str | os.PathLike) -> dict:
    """The state_dict in a weights file or a training checkpoint (its "model"), read with ``weights_only``."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no weights file at {path}") from None
    except Exception as err:
        raise CheckpointError(f"weights file {path} is unreadable ({type(err).__name__})") from None
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state_dict (a dict of tensors); save model.state_dict()")
    return state


def load_weights(model: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Load a bare state_dict or a training checkpoint's model weights into ``model`` (any float dtype:
    half-precision weights files are cast to the model's dtype by ``load_state_dict``)."""
    state = read_state_dict(path)  # its own errors (no file, unreadable) say so, not "does not fit"
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"{path} does not fit {type(model).__name__}: {first}") from None
    return model


def export_half(source: str | os.PathLike, out: str | os.PathLike) -> int:
    """A weights file's (or checkpoint's) state_dict with every float tensor in fp16, contiguous: half the
    bytes, for committing a run's final weights. ``load_weights`` casts it back to the model's dtype.
    Returns the written file's size in bytes."""
    out = Path(out)
    state = read_state_dict(source)
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    with replacing(out) as tmp:  # a full disk must not destroy the weights already at ``out``
        torch.save(half, tmp)
    return out.stat().st_size
