"""The DataLoaders that feed training: albumentations per image in worker processes, seeded and resumable;
and ``Limited``, either route cut to a few batches for smoke runs.

(The batched alternative, whole batches augmented on the device, is ``utils.gpu_data``.)
"""
from __future__ import annotations

import itertools
import json
import os

import numpy as np
import torch

from .dataset import Dataset, ImageData


class AlbumentationsDataset(torch.utils.data.Dataset):
    """Applies an albumentations pipeline to one uint8 HWC image at a time."""

    def __init__(self, data: ImageData, transform):
        self.images, self.labels, self.transform = data.images, data.labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(image=self.images[i])["image"], int(self.labels[i])


def seed_worker(worker_id: int) -> None:
    """Give each loader worker its own augmentation stream.

    albumentations 2.x keeps its own RNG inside ``Compose``; forked workers would all inherit the same
    state, so every worker (and every epoch) would replay identical crops and flips. torch gives each
    worker a distinct, per-epoch seed derived from the loader's generator; reuse it for numpy, random and
    the pipeline.
    """
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    dataset = torch.utils.data.get_worker_info().dataset
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def default_num_workers() -> int:
    # Colab gives 2 vCPUs; more workers than cores only adds contention.
    return min(2, os.cpu_count() or 1)


class AugmentedLoader(torch.utils.data.DataLoader):
    """A DataLoader over an ``AlbumentationsDataset`` whose random state can be saved and restored, so a
    resumed run draws the same shuffles and augmentations as an uninterrupted one.

    The state is the shuffling generator (workers derive their per-epoch seeds from it, ``seed_worker``)
    and, when augmenting in this process (``num_workers=0``), albumentations' own generators.
    """

    def _pipelines(self) -> list:
        return _albumentations_nodes(self.dataset.transform) if self.num_workers == 0 else []

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(),
                "albumentations": json.dumps([[t.random_generator.bit_generator.state, list(t.py_random.getstate()[1])]
                                              for t in self._pipelines() if hasattr(t, "random_generator")])}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        streams = [t for t in self._pipelines() if hasattr(t, "random_generator")]
        for t, (bit_state, py_state) in zip(streams, json.loads(state.get("albumentations", "[]"))):
            t.random_generator.bit_generator.state = bit_state
            t.py_random.setstate((3, tuple(py_state), None))


def _albumentations_nodes(transform) -> list:
    """A Compose and every transform under it: albumentations 2.x gives each its own generators."""
    nodes = [transform]
    for child in getattr(transform, "transforms", []):
        nodes += _albumentations_nodes(child)
    return nodes


def eval_batch_size(batch_size: int) -> int:
    """The test loaders' batch: evaluation holds no gradients, so at least 256 images a batch."""
    return max(batch_size, 256)


def make_loaders(data: Dataset, train_transform, test_transform, batch_size: int = 128, num_workers: int | None = None,
                 seed: int = 0, device: torch.device | str | None = None):
    """(train_loader, test_loader): a shuffled, seeded train loader and a deterministic test loader."""
    num_workers = default_num_workers() if num_workers is None else num_workers
    pin = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    if num_workers == 0 and hasattr(train_transform, "set_random_seed"):
        train_transform.set_random_seed(seed)  # in-process: one reproducible stream
    common = dict(num_workers=num_workers, pin_memory=pin, persistent_workers=False,
                  worker_init_fn=seed_worker if num_workers else None)
    generator = torch.Generator().manual_seed(seed)
    train_loader = AugmentedLoader(AlbumentationsDataset(data.train, train_transform), batch_size=batch_size,
                                   shuffle=True, drop_last=False, generator=generator, **common)
    test_loader = torch.utils.data.DataLoader(AlbumentationsDataset(data.test, test_transform),
                                              batch_size=eval_batch_size(batch_size), shuffle=False,
                                              **common)
    return train_loader, test_loader


class Limited:
    """The first ``batches`` batches of ``loader`` on every pass (smoke runs). Anything else, its random
    state (``state_dict``) included, is the loader's own."""

    def __init__(self, loader, batches: int):
        self.loader, self.batches = loader, batches

    @classmethod
    def to(cls, loader, batches: int | None):
        """``loader`` cut to ``batches`` (None: as it is)."""
        return loader if batches is None else cls(loader, batches)

    def __len__(self) -> int:
        return min(self.batches, len(self.loader))

    def __iter__(self):
        return itertools.islice(self.loader, len(self))

    def __getattr__(self, name):
        return getattr(self.loader, name)
