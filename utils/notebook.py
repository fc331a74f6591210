"""What every session notebook needs before its first real call: a config, and smoke mode for CI.

``COURSE_SMOKE=1`` in the environment shrinks a notebook's work (a small data subset, a few batches,
two short epochs) so nbval can run all four on a CPU in minutes; without it the notebook runs the
session's full recipe. The data come from ``$CIFAR10_DIR`` when set (e.g. the JPEG copy), else
torchvision's download into ``data/``; smoke mode without ``$CIFAR10_DIR`` uses synthetic images.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .recipes import Recipe, get_recipe

SMOKE_ENV = "COURSE_SMOKE"
# Full runs share the command line's run folders (runs/<recipe> at the repository root), so a notebook
# replays or continues a run made with `python -m utils train <recipe>` instead of training it again.
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class NotebookConfig:
    recipe: Recipe
    smoke: bool
    data: str                    # "cifar10" or "synthetic"
    data_dir: str | None
    n_train: int | None          # None: the whole split
    n_test: int | None
    limit_batches: int | None    # None: whole epochs
    lr_find_iters: int
    run_dir: Path                # checkpoint, history and log of this notebook's run
    figures: Path                # where the session README's pictures are written
    seed: int = 0

    def figure(self, name: str) -> Path:
        self.figures.mkdir(parents=True, exist_ok=True)
        return self.figures / name

    def steps_per_epoch(self, train_loader) -> int:
        """Batches the scheduler will see per epoch (fewer in smoke mode)."""
        return len(train_loader) if self.limit_batches is None else min(self.limit_batches, len(train_loader))

    def __repr__(self):
        r = self.recipe
        mode = "SMOKE (CI-sized; numbers mean nothing)" if self.smoke else "full"
        subset = f"{self.n_train or 'all'} train / {self.n_test or 'all'} test images"
        return (f"{r.name} [{mode}]: {r.model}, {r.epochs} epochs x batch {r.batch_size}, {r.optimizer}, "
                f"lr {r.lr_min:g} -> {r.lr_max:g} (peak at epoch {r.peak_epoch:g}{', LR finder' if r.find_lr else ''})\n"
                f"data: {self.data} {self.data_dir or ''} ({subset}); run folder: {self.run_dir}; figures: {self.figures}")


def notebook_config(recipe: str, epochs: int | None = None, batch_size: int | None = None,
                    run_dir: str | os.PathLike | None = None, figures: str | os.PathLike = ".",
                    smoke: bool | None = None, seed: int = 0) -> NotebookConfig:
    """The recipe as the notebook will run it; in smoke mode everything small and written to a temp folder."""
    smoke = os.environ.get(SMOKE_ENV) == "1" if smoke is None else smoke
    data_dir = os.environ.get("CIFAR10_DIR")
    if smoke:
        scratch = Path(tempfile.mkdtemp(prefix=f"{recipe}-smoke-"))
        return NotebookConfig(get_recipe(recipe).scaled(2, 64), True, "cifar10" if data_dir else "synthetic",
                              data_dir, 1024, 512, 4, 20, scratch / "run", scratch, seed)
    return NotebookConfig(get_recipe(recipe).scaled(epochs, batch_size), False, "cifar10", data_dir or "data",
                          None, None, None, 100, Path(run_dir or REPO_ROOT / "runs" / recipe), Path(figures), seed)
