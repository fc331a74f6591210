"""What every session notebook needs before its first real call: a config, and the size to run at.

Three modes, chosen by the environment:

- ``COURSE_SMOKE=1`` shrinks a notebook's work (a small data subset, a few batches, two short epochs) so
  nbval can run all four on a CPU in minutes; its numbers mean nothing.
- ``COURSE_SHORT=1`` is a short labelled run on real images (5,000 train / 2,000 test, 3 epochs, batch
  128): what a CPU can show of a big model learning. It writes the session's pictures and the run
  folder ``runs/<recipe>-short``; it is never the session's result.
- neither: the session's full recipe.

The data come from ``$CIFAR10_DIR`` when set (e.g. the JPEG copy), else torchvision's download into
``data/``; smoke mode without ``$CIFAR10_DIR`` uses synthetic images.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from .recipes import Recipe, get_recipe

SMOKE_ENV = "COURSE_SMOKE"
SHORT_ENV = "COURSE_SHORT"
SHORT = dict(n_train=5000, n_test=2000, epochs=3, batch_size=128, lr_find_iters=50)
# Full runs share the command line's run folders (runs/<recipe> at the repository root), so a notebook
# replays or continues a run made with `python -m utils train <recipe>` instead of training it again.
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class NotebookConfig:
    recipe: Recipe
    mode: str                    # "smoke", "short" or "full"
    data: str                    # "cifar10" or "synthetic"
    data_dir: str | None
    n_train: int | None          # None: the whole split
    n_test: int | None
    limit_batches: int | None    # None: whole epochs
    lr_find_iters: int
    run_dir: Path                # checkpoint, history and log of this notebook's run
    figures: Path                # where the session README's pictures are written
    seed: int = 0

    @property
    def smoke(self) -> bool:
        return self.mode == "smoke"

    def figure(self, name: str) -> Path:
        self.figures.mkdir(parents=True, exist_ok=True)
        return self.figures / name

    def steps_per_epoch(self, train_loader) -> int:
        """Batches the scheduler will see per epoch (fewer in smoke mode)."""
        return len(train_loader) if self.limit_batches is None else min(self.limit_batches, len(train_loader))

    def __repr__(self):
        r = self.recipe
        mode = {"smoke": "SMOKE (CI-sized; numbers mean nothing)",
                "short": "SHORT (a real subset for a few epochs: shows the loop learning, not the session's result)",
                "full": "full"}[self.mode]
        from .run import describe_hardware
        from .train import get_device

        subset = f"{self.n_train or 'all'} train / {self.n_test or 'all'} test images"
        run_dir = self.run_dir.relative_to(REPO_ROOT) if self.run_dir.is_relative_to(REPO_ROOT) else self.run_dir
        return (f"{r.name} [{mode}]: {r.model}, {r.epochs} epochs x batch {r.batch_size}, {r.optimizer}, "
                f"lr {r.lr_min:g} -> {r.lr_max:g} (peak at epoch {r.peak_epoch:g}{', LR finder' if r.find_lr else ''})\n"
                f"data: {self.data} {Path(self.data_dir).name if self.data_dir else ''} ({subset}); "
                f"hardware: {describe_hardware(get_device())}\nrun folder: {run_dir}; figures: {self.figures}")


def notebook_config(recipe: str, epochs: int | None = None, batch_size: int | None = None,
                    run_dir: str | os.PathLike | None = None, figures: str | os.PathLike = ".",
                    smoke: bool | None = None, seed: int = 0) -> NotebookConfig:
    """The recipe as the notebook will run it; in smoke mode everything small and written to a temp folder."""
    smoke = os.environ.get(SMOKE_ENV) == "1" if smoke is None else smoke
    data_dir = os.environ.get("CIFAR10_DIR")
    if smoke:
        scratch = Path(tempfile.mkdtemp(prefix=f"{recipe}-smoke-"))
        return NotebookConfig(get_recipe(recipe).scaled(2, 64), "smoke", "cifar10" if data_dir else "synthetic",
                              data_dir, 1024, 512, 4, 20, scratch / "run", scratch, seed)
    if os.environ.get(SHORT_ENV) == "1":
        if not data_dir:
            raise ValueError(f"{SHORT_ENV}=1 is a run on real images: set CIFAR10_DIR to a CIFAR-10 folder or tarball")
        full = get_recipe(recipe)
        short = full.scaled(SHORT["epochs"], SHORT["batch_size"])
        # Linear scaling rule: a smaller batch takes proportionally smaller steps (the LR finder, where the
        # recipe uses it, measures its own range at this batch size anyway).
        ratio = short.batch_size / full.batch_size
        short = replace(short, lr_min=full.lr_min * ratio, lr_max=full.lr_max * ratio)
        return NotebookConfig(short, "short", "cifar10", data_dir, SHORT["n_train"], SHORT["n_test"], None,
                              SHORT["lr_find_iters"], Path(run_dir or REPO_ROOT / "runs" / f"{recipe}-short"),
                              Path(figures), seed)
    return NotebookConfig(get_recipe(recipe).scaled(epochs, batch_size), "full", "cifar10", data_dir or "data",
                          None, None, None, 100, Path(run_dir or REPO_ROOT / "runs" / recipe), Path(figures), seed)
