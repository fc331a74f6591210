"""A whole training run from a recipe: data, loaders, (LR finder), fit, and a run folder of results.

This is the "main job" behind ``python -m utils train``; the notebooks call the same pieces one by one.
A run folder holds ``config.json``, ``train.log``, ``history.json``/``.csv``, ``curves.png``,
``checkpoint.pt`` (after every epoch, for ``--resume``) and ``model.pt`` (final weights, a state_dict).
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .data import load_dataset
from .plots import plot_curves
from .recipes import get_recipe
from .train import History, fit, get_device, seed_everything


class RunLog:
    """Prints a line and appends it to the run's log file, so the log survives an interrupted run."""

    def __init__(self, path: Path, echo: bool = True):
        self.path, self.echo = path, echo
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, line: str) -> None:
        if self.echo:
            print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def describe_hardware(device: torch.device) -> str:
    """The GPU's name, or the CPU's model, cores and torch threads: what a timing in a log was measured on."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:  # Linux names the CPU model here; platform.processor() only says "x86_64"
        name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name} CPU ({os.cpu_count()} cores), {torch.get_num_threads()} torch threads"


def train_recipe(recipe_name: str, epochs: int | None = None, batch_size: int | None = None,
                 data: str = "cifar10", data_dir: str | None = None, out: str | os.PathLike | None = None,
                 resume: bool = False, seed: int = 0, limit_batches: int | None = None,
                 n_train: int | None = None, n_test: int | None = None, validation: int = 0,
                 device: str | None = None, num_workers: int | None = None, fast: bool | None = None,
                 compile_model: bool = False, progress: bool = True,
                 echo: bool = True, settings: list[str] | None = None) -> tuple[History, Path]:
    """Train ``recipe_name`` and write its run folder; returns (history, run folder).

    ``validation``: carve that many images out of the training set and evaluate on them instead of the
    test set -- for choosing a recipe without looking at the test set.
    ``settings``: ``field=value`` changes to the recipe (``Recipe.with_overrides``).
    """
    recipe = get_recipe(recipe_name).with_overrides(settings).scaled(epochs, batch_size)
    device = get_device(device)
    out = Path(out or Path("runs") / recipe.name)
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists() and not resume:
        raise FileExistsError(f"{checkpoint} exists: pass --resume to continue it, or --out another folder")
    log = RunLog(out / "train.log", echo)
    seed_everything(seed)

    dataset = load_dataset(data, data_dir)
    if validation:
        dataset = dataset.split_validation(validation, seed)
    if n_train or n_test:
        dataset = dataset.subset(n_train, n_test, seed)
    train_loader, test_loader = recipe.loaders(dataset, seed, device, fast, num_workers)
    net = recipe.build_model()
    fast = not isinstance(train_loader, torch.utils.data.DataLoader)
    if fast:  # the batched path yields channels_last batches; convolutions run fastest with weights to match
        net = net.to(memory_format=torch.channels_last)
    model = torch.compile(net) if compile_model else net  # `net` keeps plain state_dict keys for model.pt
    config = {"recipe": asdict(recipe), "data": dataset.source, "fast_path": fast, "n_train": len(dataset.train),
              "n_test": len(dataset.test), "seed": seed, "device": str(device),
              "hardware": describe_hardware(device), "limit_batches": limit_batches, "torch": torch.__version__,
              "parameters": sum(p.numel() for p in net.parameters())}
    steps = len(train_loader) if limit_batches is None else min(limit_batches, len(train_loader))
    lr_min, lr_max = recipe.lr_min, recipe.lr_max
    if resume and (out / "config.json").exists():
        previous = json.loads((out / "config.json").read_text())
        # A One Cycle schedule is built for its length, and a run is one recipe: resuming with other
        # settings would silently train something that matches neither.
        was, now = previous["recipe"], json.loads(json.dumps(asdict(recipe), default=str))
        changed = [f"{key} {was.get(key)!r} (now {now[key]!r})" for key in now if was.get(key) != now[key]]
        if changed:
            raise ValueError(f"{out} was started with {', '.join(changed)}; resume with the same --epochs, "
                             f"--batch-size and --set values, or train into a new --out folder")
        lr_min, lr_max = previous["lr_min"], previous["lr_max"]  # the LR finder is not re-run on resume
    elif recipe.find_lr:
        from .lr_finder import find_lr

        found = find_lr(model, recipe.build_optimizer(model, lr=1e-7), recipe.criterion(), train_loader,
                        device=device, num_iter=min(100, max(steps, 20)), save_path=out / "lr_finder.png")
        lr_min, lr_max = found.lr_min, found.lr_max
        log(f"LR finder (training set, {min(100, max(steps, 20))} iterations): lr_max {lr_max:.4g}, lr_min {lr_min:.4g}")
    config.update(lr_min=lr_min, lr_max=lr_max)
    (out / "config.json").write_text(json.dumps(config, indent=1, default=str))
    if not resume:
        log(f"{recipe.description}\ndata: {dataset.source}, {len(dataset.train)} train / {len(dataset.test)} "
            f"{'validation' if validation else 'test'} images; {config['parameters']:,} parameters; "
            f"{recipe.epochs} epochs, batch {recipe.batch_size}, lr {lr_min:.4g} -> {lr_max:.4g}; "
            f"seed {seed}; {config['hardware']}" + (f"\nrecipe changed by --set {' '.join(settings)}" if settings else ""))

    optimizer = recipe.build_optimizer(model, lr_min)
    scheduler = recipe.build_scheduler(optimizer, steps, lr_min, lr_max)
    start = time.perf_counter()
    history = fit(model, train_loader, test_loader, optimizer, recipe.epochs, recipe.criterion(), scheduler,
                  step_per_batch=True, device=device, checkpoint_path=checkpoint, resume=resume,
                  max_batches=limit_batches, progress=progress, log=log, epoch_end=lambda h: h.save(out))
    torch.save(net.state_dict(), out / "model.pt")
    best = history.best()
    log(f"done in {time.perf_counter() - start:.0f} s: final test acc {history[-1]['test_acc']:.2f}% "
        f"(best {best['test_acc']:.2f}% at epoch {best['epoch']})")
    plot_curves(history, save_path=out / "curves.png")
    return history, out
