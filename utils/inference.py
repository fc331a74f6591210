"""Inference over a whole loader -- predictions, flip test-time augmentation, the confusion matrix, batch-norm
statistics recomputed from data -- and the mode helpers it needs.

Everything here runs the model in eval mode (BatchNorm on running statistics, dropout off) and then gives
every submodule its own train/eval flag back, so a model can be inspected in the middle of training.
"""
from __future__ import annotations

import itertools
from contextlib import contextmanager
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from .errors import UsageError


def model_device(model: nn.Module) -> torch.device:
    """Where the model's tensors are (CPU for a model with none, e.g. a bare pooling net)."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


@contextmanager
def preserve_modes(model: nn.Module):
    """Every submodule's train/eval flag back as it was after the block.

    ``model.train(was_training)`` would not do: it resets every submodule to one flag, so a BatchNorm
    someone froze in eval mode would come back training.
    """
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@contextmanager
def eval_mode(model: nn.Module):
    """Eval mode inside the block, then every submodule's own flag back (``preserve_modes``)."""
    with preserve_modes(model):
        model.eval()
        yield


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, device=None) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(images, labels, predicted labels) for each batch of ``loader``, all on the CPU, in eval mode.

    Batches may come from any device (the batched route keeps them on the GPU); they are moved to the
    model's device for the forward pass and back to the CPU for whoever collects them.
    """
    device = model_device(model) if device is None else torch.device(device)
    with eval_mode(model):
        for x, y in loader:
            pred = model(x.to(device)).argmax(1).cpu()
            yield x.cpu(), y.cpu(), pred


@torch.no_grad()
def flip_tta(model: nn.Module, test_loader: Iterable, device=None) -> dict:
    """Test accuracy (%) of the plain view and of flip test-time augmentation, in fp32 and eval mode.

    Flip TTA scores each image by its logits added to its mirror image's, as Page's ResNet-9 and airbench
    evaluate. Also counted: the images it fixes (wrong alone, right with TTA), those it breaks, and the share
    of images whose mirror gets the same class (what TTA can change lies in the rest).
    """
    device = model_device(model) if device is None else torch.device(device)
    counts = dict.fromkeys(["samples", "plain", "tta", "fixed", "broken", "agree"], 0)
    with eval_mode(model):
        for x, y in test_loader:
            x, y = x.to(device), y.to(device)
            logits, mirrored = model(x), model(x.flip(3))  # N x C x H x W: dim 3 is the width
            plain, tta = logits.argmax(1) == y, (logits + mirrored).argmax(1) == y
            for key, hits in [("plain", plain), ("tta", tta), ("fixed", tta & ~plain), ("broken", plain & ~tta),
                              ("agree", logits.argmax(1) == mirrored.argmax(1))]:
                counts[key] += int(hits.sum())
            counts["samples"] += len(y)
    if counts["samples"] == 0:
        raise UsageError("the test loader yielded no batches")
    share = {key: 100.0 * counts[key] / counts["samples"] for key in ("plain", "tta", "agree")}
    return {**share, "fixed": counts["fixed"], "broken": counts["broken"], "samples": counts["samples"]}


def confusion_matrix(model: nn.Module, test_loader: Iterable, num_classes: int, device=None) -> np.ndarray:
    """Counts over the whole test loader: ``matrix[true, predicted]``."""
    matrix = torch.zeros(num_classes * num_classes, dtype=torch.int64)
    for _, y, pred in predict(model, test_loader, device):
        matrix += torch.bincount(y * num_classes + pred, minlength=num_classes * num_classes)
    return matrix.view(num_classes, num_classes).numpy()


def recompute_batchnorm(model: nn.Module, loader: Iterable, batches: int, device=None) -> nn.Module:
    """Every BatchNorm's running mean and variance replaced by the average over ``batches`` batches of
    ``loader`` (torch's ``update_bn``); the weights are untouched. Returns ``model``, changed in place.

    A test pass normalises with running averages (momentum 0.1) that trail the weights; at a high LR early in
    training they trail far, and the test loss can be wildly worse than the model. Scoring before and after
    this shows how much of a bad test loss stale statistics explain.
    """
    if batches < 1:
        raise UsageError(f"batches must be at least 1, got {batches}")
    device = model_device(model) if device is None else torch.device(device)
    with preserve_modes(model):  # update_bn leaves every submodule in one mode; give each its own back
        update_bn((x for x, _ in itertools.islice(loader, batches)), model, device=device)
    return model
