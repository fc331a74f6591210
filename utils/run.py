"""A recipe made into a run, one way for everyone: ``build_run`` for the notebooks, ``train_recipe`` for
``python -m utils train`` (which adds a run folder around the same calls).

``build_run`` puts the model on the device in channels_last (NHWC convolutions are 1.2-1.9x faster on a
CPU and what tensor cores want on a GPU; ``python -m utils bench``), builds the loaders of the chosen route
(the albumentations DataLoader, or with ``fast`` the batched augmentation of ``utils.gpu_data``), and
fixes the LR finder's length and the precision. Its ``Run`` then does the three steps of every session:
``find_lr``, ``optimizer_and_scheduler`` and ``fit``.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable

import torch

from .data import Dataset, load_dataset
from .errors import UsageError
from .files import replacing, write_text
from .history import History
from .lr_finder import LRFinderResult, find_lr, load_lr_finder
from .plots import plot_curves
from .recipes import Recipe, get_recipe
from .run_folder import (RunLog, check_folder, check_resume, code_version, describe_hardware, drop_replaced, holding,
                         run_folder)
from .schedules import peak_inside
from .train import amp_settings, fit, get_device, seed_everything

LR_FINDER_ITERATIONS = 100  # at the recipe's batch size: about one epoch of CIFAR-10 at batch 512
LR_FINDER_START = 1e-5      # to 10: six decades, ~16 iterations each (see utils/lr_finder.py)


@dataclass
class Run:
    recipe: Recipe               # already scaled to the run's epochs and batch size
    model: torch.nn.Module       # on the device, channels_last; its state_dict has plain keys
    trainable: torch.nn.Module   # what trains: ``model``, or torch.compile(model)
    train_loader: Iterable
    test_loader: Iterable
    device: torch.device
    precision: str               # resolved: "fp32", "bf16" or "fp16"
    steps_per_epoch: int         # batches the scheduler sees per epoch
    limit_batches: int | None    # at most this many batches per epoch (smoke runs)
    lr_find_iters: int
    note: str | None = None      # what the builder changed (a smoke run's moved One Cycle peak)

    @property
    def fast(self) -> bool:
        """Whether the batched route (``utils.gpu_data``) feeds this run."""
        return not isinstance(self.train_loader, torch.utils.data.DataLoader)

    def find_lr(self, save_path=None, progress: bool = True, run_dir=None) -> LRFinderResult:
        """The LR range test on the training loader, in the run's precision. The model and the loader's
        random state are put back afterwards, so training sees the batches it would have seen without it.

        ``run_dir``: a range test saved there (``lr_finder.json``, as ``python -m utils train`` writes it) is
        redrawn instead of run again, so a resumed or replayed run shows the LRs it trained with; a new
        test is saved there."""
        saved = Path(run_dir) / "lr_finder.json" if run_dir is not None else None
        if saved is not None and saved.exists():
            return load_lr_finder(saved, save_path)
        amp_dtype, _ = amp_settings(self.device, self.precision)
        loader_state = self.train_loader.state_dict()
        try:
            return find_lr(self.model, self.recipe.build_optimizer(self.model, lr=LR_FINDER_START),
                           self.recipe.criterion(), self.train_loader, start_lr=LR_FINDER_START,
                           num_iter=self.lr_find_iters, factor=self.recipe.lr_finder_factor, amp_dtype=amp_dtype,
                           progress=progress, save_path=save_path, record_path=saved)
        finally:
            self.train_loader.load_state_dict(loader_state)

    def optimizer_and_scheduler(self, lr_min: float | None = None, lr_max: float | None = None):
        """The recipe's optimizer at lr_min and its One Cycle, stepped per batch (the recipe's LRs by default)."""
        optimizer = self.recipe.build_optimizer(self.model, self.recipe.lr_min if lr_min is None else lr_min)
        return optimizer, self.recipe.build_scheduler(optimizer, self.steps_per_epoch, lr_min, lr_max)

    def fit(self, optimizer, scheduler, **kwargs) -> History:
        """``utils.train.fit`` with this run's model, loaders, epochs, loss, device, precision and limit."""
        return fit(self.trainable, self.train_loader, self.test_loader, optimizer, self.recipe.epochs,
                   self.recipe.criterion(), scheduler, device=self.device, precision=self.precision,
                   max_batches=self.limit_batches, **kwargs)


def build_run(recipe: Recipe, data: Dataset, *, seed: int = 0, device: torch.device | str | None = None,
              fast: bool = False, precision: str = "auto", limit_batches: int | None = None,
              lr_find_iters: int | None = None, num_workers: int | None = None,
              compile_model: bool = False) -> Run:
    """``recipe`` on ``data``, ready to train. ``fast``: the batched route instead of the albumentations DataLoader;
    ``precision``: see ``utils.train.amp_settings``; ``limit_batches`` caps every epoch (smoke runs),
    and the LR finder then runs ``max(20, limit_batches)`` iterations instead of 100."""
    device = torch.device(device) if device is not None else get_device()
    if limit_batches is not None and limit_batches < 1:
        raise UsageError(f"limit_batches must be a positive number of batches, got {limit_batches}")
    amp_dtype, _ = amp_settings(device, precision)
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype]
    train_loader, test_loader = recipe.loaders(data, seed, device, fast, num_workers)
    steps = len(train_loader) if limit_batches is None else min(limit_batches, len(train_loader))
    peak, note = peak_inside(recipe.peak_epoch, recipe.epochs, steps)
    recipe = replace(recipe, peak_epoch=peak)
    model = recipe.build_model().to(device, memory_format=torch.channels_last)
    trainable = torch.compile(model) if compile_model else model
    if lr_find_iters is None:
        lr_find_iters = LR_FINDER_ITERATIONS if limit_batches is None else max(20, limit_batches)
    return Run(recipe, model, trainable, train_loader, test_loader, device, precision, steps, limit_batches,
               lr_find_iters, note)


def train_recipe(recipe_name: str, *, epochs: int | None = None, batch_size: int | None = None,
                 data: str = "cifar10", data_dir: str | None = None, out: str | os.PathLike | None = None,
                 resume: bool = False, overwrite: bool = False, seed: int = 0, limit_batches: int | None = None,
                 n_train: int | None = None, n_test: int | None = None, validation: int = 0,
                 device: str | None = None, num_workers: int | None = None, fast: bool = False,
                 precision: str = "auto", compile_model: bool = False, progress: bool = True,
                 settings: list[str] | None = None,
                 stop_after: int | None = None) -> tuple[History, Path]:
    """Train ``recipe_name`` and write its run folder; returns (history, run folder).

    ``validation``: carve that many images out of the training set and evaluate on them instead of the
    test set -- for choosing a recipe without looking at the test set.
    ``settings``: ``field=value`` changes to the recipe (``Recipe.with_overrides``); setting ``lr_max`` or
    ``lr_min`` turns the recipe's LR finder off for the run (the log says so).
    ``stop_after``: end after that epoch with the checkpoint kept (``resume=True`` continues the same run).
    """
    for name, value in (("n_train", n_train), ("n_test", n_test), ("limit_batches", limit_batches)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value}")
    if validation < 0:
        raise UsageError(f"validation must be 0 (off) or a positive number of images, got {validation}")
    recipe = get_recipe(recipe_name).with_overrides(settings).scaled(epochs, batch_size)
    lr_set = [s.split("=", 1)[0] for s in settings or [] if s.split("=", 1)[0] in ("lr_max", "lr_min")]
    if lr_set and recipe.find_lr:
        recipe = replace(recipe, find_lr=False)
    device = get_device(device)
    out = Path(out or Path("runs") / recipe.name)
    check_folder(out, resume, overwrite)
    seed_everything(seed)

    dataset = load_dataset(data, data_dir)
    if validation:
        dataset = dataset.split_validation(validation, seed)
    if n_train or n_test:
        dataset = dataset.subset(n_train, n_test, seed)
    run = build_run(recipe, dataset, seed=seed, device=device, fast=fast, precision=precision,
                    limit_batches=limit_batches, num_workers=num_workers, compile_model=compile_model)
    config = {"recipe": asdict(run.recipe), "data": dataset.source, "n_train": len(dataset.train),
              "n_test": len(dataset.test), "validation": validation, "limit_batches": limit_batches, "seed": seed,
              "fast_path": run.fast, "precision": run.precision, "device": str(device),
              "hardware": describe_hardware(device), "torch": torch.__version__, "code": code_version(),
              "parameters": sum(p.numel() for p in run.model.parameters())}
    with holding(out):  # a second train into this folder is refused while this one runs
        check_folder(out, resume, overwrite)  # again, now that no other run can write here
        if resume:
            previous, previous_epochs = check_resume(out, config, run.model, run.recipe.name)
            lr_min, lr_max = previous["lr_min"], previous["lr_max"]  # the LR finder is not re-run on resume
        with run_folder(out, resume):  # a fresh run that fails before its first epoch puts the old files back
            log = RunLog(out / "train.log")
            if resume:
                log(f"resumed after epoch {previous_epochs} on {config['hardware']}, torch {torch.__version__}, "
                    f"code {config['code']}")
            else:
                log(f"{recipe.headline()}\ndata: {dataset.source}, {len(dataset.train)} train / {len(dataset.test)} "
                    f"{'validation' if validation else 'test'} images; {config['parameters']:,} parameters; "
                    f"{recipe.epochs} epochs, batch {recipe.batch_size}; seed {seed}; {run.precision}, channels_last, "
                    f"{'batched' if run.fast else 'albumentations DataLoader'} route; {config['hardware']}; "
                    f"torch {torch.__version__}; code {config['code']}"
                    + (f"\nrecipe changed by --set {' '.join(settings)}" if settings else "")
                    + (f"\nLR finder off: {' and '.join(lr_set)} set by --set" if lr_set else ""))
                if run.note:
                    log(run.note)
                lr_min, lr_max = recipe.lr_min, recipe.lr_max
                if recipe.find_lr:
                    found = run.find_lr(save_path=out / "lr_finder.png", progress=progress)
                    lr_min, lr_max = found.lr_min, found.lr_max
                    log(f"LR finder (training set, {len(found.history['lr'])} of {run.lr_find_iters} iterations, "
                        f"{found.rule}): lr_max {lr_max:.4g}, lr_min {lr_min:.4g}")
                log(f"One Cycle: lr {lr_min:.4g} -> {lr_max:.4g} at epoch {run.recipe.peak_epoch:g} -> "
                    f"{lr_min / 1e4 if recipe.annihilate else lr_min:.4g} at epoch {recipe.epochs}")
            config.update(lr_min=lr_min, lr_max=lr_max)
            write_text(out / "config.json", json.dumps(config, indent=1, default=str))

            def epoch_end(history):
                history.save(out)
                drop_replaced(out)  # this run has results of its own now: the replaced run's files go

            optimizer, scheduler = run.optimizer_and_scheduler(lr_min, lr_max)
            start = time.perf_counter()
            history = run.fit(optimizer, scheduler, checkpoint_path=out / "checkpoint.pt", resume=resume,
                              progress=progress, log=log, epoch_end=epoch_end, stop_after=stop_after)
            plot_curves(history, save_path=out / "curves.png")
            if len(history) < run.recipe.epochs:
                return history, out  # stopped early: no final weights yet
            with replacing(out / "model.pt") as tmp:
                torch.save(run.model.state_dict(), tmp)
            best = history.best()
            # A resumed run's own clock covers only its last stretch; the epochs' seconds cover the whole run.
            took = f"{sum(row['seconds'] for row in history):.0f} s in its {len(history)} epochs"
            if resume:
                took += f", {time.perf_counter() - start:.0f} s since the resume"
            log(f"done: final test acc {history[-1]['test_acc']:.2f}% (best {best['test_acc']:.2f}% at epoch "
                f"{best['epoch']}); {took}")
            return history, out
