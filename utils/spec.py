"""What defines one run, settled once: the recipe as it will train, the images it sees, and where and how.

``python -m utils train`` and the notebooks (``utils.notebook``) both build a ``RunSpec``; ``utils.run.build_run``
makes the model and loaders from it, and every later step reads its device and precision instead of working
them out again. A recipe stays plain data: the command line's ``--set`` changes are applied to it before it
goes in.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import load_dataset
from .dataset import Dataset
from .errors import UsageError
from .recipes import Recipe
from .train import amp_settings, get_device

LR_FINDER_ITERATIONS = 100  # at the recipe's batch size: about one epoch of CIFAR-10 at batch 512


@dataclass(frozen=True)
class DataSpec:
    """The images a run trains and is scored on."""
    source: str = "cifar10"       # "cifar10" or "synthetic"
    data_dir: str | None = None   # torchvision's folder, an image folder or its tarball (None: $CIFAR10_DIR, ./data)
    n_train: int | None = None    # a random subset of this many training images (None: all)
    n_test: int | None = None     # likewise of the test (or validation) images
    validation: int = 0           # hold out this many training images and score on them instead of the test set

    def __post_init__(self):
        for name in ("n_train", "n_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"{name} must be a positive integer, got {value}")
        if self.validation < 0:
            raise UsageError(f"validation must be 0 (off) or a positive number of images, got {self.validation}")

    def load(self, seed: int = 0) -> Dataset:
        return self.select(load_dataset(self.source, self.data_dir), seed)

    def select(self, dataset: Dataset, seed: int = 0) -> Dataset:
        """This spec's images out of an already loaded ``dataset``: the validation split, then the subsets."""
        if self.validation:
            dataset = dataset.split_validation(self.validation, seed)
        return dataset.subset(self.n_train, self.n_test, seed)


@dataclass(frozen=True)
class RunSpec:
    """One run's settings. ``device`` and ``precision`` may be given as wishes (None: the best device;
    "auto": see ``utils.train.amp_settings``) and are stored as what this machine runs: a ``torch.device``
    and "fp32", "bf16" or "fp16"."""
    recipe: Recipe                      # as it trains: --set changes applied, scaled to its epochs and batch
    data: DataSpec = DataSpec()
    seed: int = 0
    device: torch.device | str | None = None
    precision: str = "auto"
    fast: bool = False                  # the batched route (utils.gpu_data) instead of the albumentations loader
    limit_batches: int | None = None    # at most this many batches per epoch (smoke runs)
    lr_find_iters: int | None = None    # None: LR_FINDER_ITERATIONS, or max(20, limit_batches) in a smoke run
    num_workers: int | None = None      # DataLoader workers (None: utils.loaders.default_num_workers)
    compile: bool = False               # train torch.compile(model)
    settings: tuple[str, ...] = ()      # the --set changes already in ``recipe``, for the run's log

    def __post_init__(self):
        if self.limit_batches is not None and self.limit_batches < 1:
            raise UsageError(f"limit_batches must be a positive number of batches, got {self.limit_batches}")
        if self.lr_find_iters is not None and self.lr_find_iters < 1:
            raise UsageError(f"lr_find_iters must be a positive number of iterations, got {self.lr_find_iters}")
        device = get_device(str(self.device) if self.device is not None else None)
        dtype = amp_settings(device, self.precision)[0]
        iters = self.lr_find_iters or (LR_FINDER_ITERATIONS if self.limit_batches is None
                                       else max(20, self.limit_batches))
        # frozen: these three are set once, here, to what the wishes resolve to on this machine
        object.__setattr__(self, "device", device)
        object.__setattr__(self, "precision", {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype])
        object.__setattr__(self, "lr_find_iters", iters)
        object.__setattr__(self, "settings", tuple(self.settings))

    def load_data(self) -> Dataset:
        """The run's images, read from their source."""
        return self.data.load(self.seed)

    def select_data(self, dataset: Dataset) -> Dataset:
        """The run's images out of a dataset already loaded (a notebook's second recipe)."""
        return self.data.select(dataset, self.seed)
