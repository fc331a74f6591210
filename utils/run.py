"""A ``RunSpec`` made into a run, one way for everyone: ``build_run`` for the notebooks, ``train_recipe`` for
``python -m utils train`` (which adds a run folder around the same calls).

``build_run`` puts the model on the device in channels_last (NHWC convolutions are 1.2-1.9x faster on a
CPU and what tensor cores want on a GPU; ``python -m utils bench``) and builds the loaders of the chosen route
(the albumentations DataLoader, or with ``fast`` the batched augmentation of ``utils.gpu_data``). Its ``Run``
then does the three steps of every session: ``find_lr``, ``optimizer_and_scheduler`` and ``fit``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable

import torch

from .dataset import Dataset
from .errors import UsageError
from .files import replacing, write_text
from .history import History
from .loaders import Limited
from .lr_finder import LRFinderResult, find_lr, load_lr_finder
from .plots import plot_curves
from .recipes import RECIPES, Recipe
from .run_folder import RunLog, check_folder, check_resume, code_version, describe_hardware, holding, run_folder
from .schedules import peak_inside
from .spec import RunSpec
from .train import amp_settings, fit, seed_everything

LR_FINDER_START = 1e-5  # to 10: six decades, ~16 iterations each (see utils/lr_finder.py)


@dataclass
class Run:
    spec: RunSpec
    recipe: Recipe               # the spec's, with a smoke run's One Cycle peak moved inside its few steps
    dataset: Dataset
    model: torch.nn.Module       # on the device, channels_last; its state_dict has plain keys
    trainable: torch.nn.Module   # what trains: ``model``, or torch.compile(model)
    train_loader: Iterable
    test_loader: Iterable
    steps_per_epoch: int         # batches the scheduler sees per epoch
    note: str | None = None      # what the builder changed (a smoke run's moved One Cycle peak)

    @property
    def device(self) -> torch.device:
        return self.spec.device

    @property
    def precision(self) -> str:
        return self.spec.precision

    @property
    def fast(self) -> bool:
        """Whether the batched route (``utils.gpu_data``) feeds this run."""
        return self.spec.fast

    def record(self) -> dict:
        """What defines this run, as config.json records it and a resume compares it (``run_folder.DEFINING``).
        The LRs are recorded once, outside the recipe: the recipe's own, or (``find_lr``) the LR finder's
        once it has run."""
        recipe = asdict(self.recipe)
        lrs = {key: recipe.pop(key) for key in ("lr_min", "lr_max")}
        return {"recipe": recipe, "data": self.dataset.source, "n_train": len(self.dataset.train),
                "n_test": len(self.dataset.test), "validation": self.spec.data.validation,
                "limit_batches": self.spec.limit_batches, "seed": self.spec.seed, "fast_path": self.fast,
                "precision": self.precision, **({} if self.recipe.find_lr else lrs)}

    def find_lr(self, save_path=None, progress: bool = True, run_dir=None) -> LRFinderResult:
        """The LR range test on the training loader, in the run's precision. The model and the loader's
        random state are put back afterwards, so training sees the batches it would have seen without it.

        ``run_dir``: a range test saved there (``lr_finder.json``, as ``python -m utils train`` writes it) is
        redrawn instead of run again, so a resumed or replayed run shows the LRs it trained with; a new
        test is saved there. The plot draws the lr_max/lr_min lines only when the recipe trains with them
        (``find_lr``); otherwise the curve and its minimum."""
        saved = Path(run_dir) / "lr_finder.json" if run_dir is not None else None
        show_rule = self.recipe.find_lr
        if saved is not None and saved.exists():
            return load_lr_finder(saved, save_path, show_rule)
        amp_dtype, _ = amp_settings(self.device, self.precision)
        loader_state = self.train_loader.state_dict()
        try:
            return find_lr(self.model, self.recipe.build_optimizer(self.model, lr=LR_FINDER_START),
                           self.recipe.criterion(), self.train_loader, start_lr=LR_FINDER_START,
                           num_iter=self.spec.lr_find_iters, factor=self.recipe.lr_finder_factor, amp_dtype=amp_dtype,
                           progress=progress, save_path=save_path, record_path=saved, show_rule=show_rule)
        finally:
            self.train_loader.load_state_dict(loader_state)

    def optimizer_and_scheduler(self, lr_min: float | None = None, lr_max: float | None = None):
        """The recipe's optimizer at lr_min and its One Cycle, stepped per batch (the recipe's LRs by default)."""
        optimizer = self.recipe.build_optimizer(self.model, self.recipe.lr_min if lr_min is None else lr_min)
        return optimizer, self.recipe.build_scheduler(optimizer, self.steps_per_epoch, lr_min, lr_max)

    def fit(self, optimizer, scheduler, *, stop_after: int | None = None, **kwargs) -> History:
        """``utils.train.fit`` with this run's model, loaders (cut to ``limit_batches``), loss and precision, for
        the recipe's epochs; ``stop_after``: only up to that epoch of the schedule (``resume=True`` continues)."""
        if stop_after is not None and stop_after < 1:
            raise UsageError(f"stop_after must be a positive epoch number, got {stop_after}")
        epochs = self.recipe.epochs if stop_after is None else min(stop_after, self.recipe.epochs)
        limit = self.spec.limit_batches
        return fit(self.trainable, Limited.to(self.train_loader, limit), Limited.to(self.test_loader, limit),
                   optimizer, epochs, self.recipe.criterion(), scheduler, precision=self.precision, **kwargs)


def build_run(spec: RunSpec, data: Dataset) -> Run:
    """``spec`` on ``data`` (``spec.load_data()``), ready to train."""
    recipe = spec.recipe
    train_loader, test_loader = recipe.loaders(data, spec.seed, spec.device, spec.fast, spec.num_workers)
    steps = len(Limited.to(train_loader, spec.limit_batches))
    peak, note = peak_inside(recipe.peak_epoch, recipe.epochs, steps)
    recipe = replace(recipe, peak_epoch=peak)
    model = recipe.build_model().to(spec.device, memory_format=torch.channels_last)
    trainable = torch.compile(model) if spec.compile else model
    return Run(spec, recipe, data, model, trainable, train_loader, test_loader, steps, note)


def train_recipe(spec: RunSpec, out: str | Path | None = None, *, resume: bool = False, overwrite: bool = False,
                 progress: bool = True, stop_after: int | None = None) -> tuple[History, Path]:
    """Train ``spec`` and write its run folder (default ``runs/<recipe>``); returns (history, run folder).

    ``resume``: continue the folder's checkpoint (the same run: ``run_folder.check_resume``); ``overwrite``:
    replace the run already there. ``stop_after``: end after that epoch with the checkpoint kept."""
    recipe = spec.recipe
    out = Path(out or Path("runs") / recipe.name)
    check_folder(out, resume, overwrite)
    seed_everything(spec.seed)
    dataset = spec.load_data()
    run = build_run(spec, dataset)
    hardware = describe_hardware(spec.device)
    config = {**run.record(), "device": str(spec.device), "hardware": hardware, "torch": torch.__version__,
              "code": code_version(), "parameters": sum(p.numel() for p in run.model.parameters())}
    with holding(out):  # a second train into this folder is refused while this one runs
        check_folder(out, resume, overwrite)  # again, now that no other run can write here
        previous = check_resume(out, config) if resume else None
        with run_folder(out, resume):  # a fresh run that fails before its first epoch puts the old files back
            log = RunLog(out / "train.log")
            if previous is not None:
                log(f"resuming on {hardware}, torch {torch.__version__}, code {config['code']}")
                lr_min, lr_max = previous["lr_min"], previous["lr_max"]  # the LR finder is not re-run on resume
            else:
                lr_min, lr_max = _start(run, out, log, config, progress)
            write_text(out / "config.json", json.dumps({**config, "lr_min": lr_min, "lr_max": lr_max}, indent=1,
                                                       default=str))
            optimizer, scheduler = run.optimizer_and_scheduler(lr_min, lr_max)
            start = time.perf_counter()
            history = run.fit(optimizer, scheduler, checkpoint_path=out / "checkpoint.pt", resume=resume,
                              progress=progress, log=log, stop_after=stop_after)
            plot_curves(history, save_path=out / "curves.png")
            if len(history) < run.recipe.epochs:
                log(f"stopped after epoch {len(history)} of {run.recipe.epochs}, as asked; resume to continue")
                return history, out  # no final weights yet
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


def _start(run: Run, out: Path, log: RunLog, config: dict, progress: bool) -> tuple[float, float]:
    """A fresh run's first lines, and its LRs: the LR finder's (saved in ``out``) or the recipe's."""
    spec, recipe = run.spec, run.recipe
    validation = "validation" if spec.data.validation else "test"
    log(f"{recipe.headline()}\ndata: {config['data']}, {config['n_train']} train / {config['n_test']} {validation} "
        f"images; {config['parameters']:,} parameters; {recipe.epochs} epochs, batch {recipe.batch_size}; seed "
        f"{spec.seed}; {spec.precision}, channels_last, {'batched' if spec.fast else 'albumentations DataLoader'} "
        f"route; {config['hardware']}; torch {torch.__version__}; code {config['code']}")
    if spec.settings:
        log(f"recipe changed by --set {' '.join(spec.settings)}")
    base = RECIPES.get(recipe.name)
    if base is not None and base.find_lr and not recipe.find_lr:
        log("LR finder off: the --set changes fix the LRs")
    if run.note:
        log(run.note)
    lr_min, lr_max = recipe.lr_min, recipe.lr_max
    if recipe.find_lr:
        found = run.find_lr(save_path=out / "lr_finder.png", progress=progress)
        lr_min, lr_max = found.lr_min, found.lr_max
        log(f"LR finder (training set, {len(found.history['lr'])} of {spec.lr_find_iters} iterations, "
            f"{found.rule}): lr_max {lr_max:.4g}, lr_min {lr_min:.4g}")
    log(f"One Cycle: lr {lr_min:.4g} -> {lr_max:.4g} at epoch {recipe.peak_epoch:g} -> "
        f"{lr_min / 1e4 if recipe.annihilate else lr_min:.4g} at epoch {recipe.epochs}")
    return lr_min, lr_max
