"""``python -m utils bench``: how fast each recipe trains here, and which settings make it faster.

Measured side by side in one process, settings interleaved and the best of ``--repeats`` rounds kept, so
the ratios hold even where absolute numbers are noisy. For each model, at its recipe's batch size:

* memory format and precision: contiguous vs channels_last, fp32 vs bf16 autocast (and fp16 on a GPU);
* route: the albumentations DataLoader (workers share the cores with the training threads) vs the
  batched augmentation of ``utils.gpu_data``, each end to end (loading, augmenting, training);
* ``--full`` adds ``torch.compile`` and the models not in the default list.

Every timing is ``utils.train.train_epoch`` on a few batches (warm-up steps untimed). Achieved FLOP/s are
3 x the forward FLOPs counted from the layers (backward costs about twice the forward) x images/s; the
peak they are compared with is the faster of a large matrix product and a 1x1 convolution of the same
precision timed here (``dense_peak``; on a known GPU, its datasheet's). Finally, each recipe's epoch time with the defaults ``build_run`` chooses.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .data import Dataset, ImageData, load_dataset, make_synthetic
from .files import write_text
from .flops import count_flops, dense_peak, estimated_images_per_second, peak_flops, sync
from .gpu_data import DeviceLoader
from .loaders import Limited, make_loaders
from .models import get_model
from .recipes import RECIPES
from .run_folder import describe_hardware
from .train import amp_settings, get_device, train_epoch
from .transforms import TRAIN_TRANSFORMS, eval_transform

EPOCH_IMAGES = 50_000
COLUMNS = ("model", "batch", "setting", "img/s", "vs first", "GFLOP/s", "% of peak", "epoch s")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", help="model names (default: custom_resnet; --full: every recipe's)")
    parser.add_argument("--data-dir", help="real CIFAR-10 (image folder or tarball); default: synthetic images")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--full", action="store_true", help="every model, torch.compile too, more steps")
    parser.add_argument("--batch-size", type=int, help="one batch size for every model (default: each recipe's)")
    parser.add_argument("--warmup", type=int, help="untimed steps per setting (default 1, 3 with --full)")
    parser.add_argument("--steps", type=int, help="timed steps per setting and round (default 2, 5 with --full)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds, settings interleaved; the best counts")
    parser.add_argument("--workers", type=int, help="albumentations DataLoader workers (default: as the runs)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--loaders", action="store_true",
                        help="instead: each recipe's albumentations DataLoader alone (images/s with --workers, default "
                             "2 as on Colab) beside an estimate of a T4's training images/s")


class Batches:
    """``n`` batches at a time from one running pass over ``loader`` (its workers stay up between timings;
    a new pass starts when one runs out), with the ``len()`` that ``train_epoch`` reads."""

    def __init__(self, loader, n: int):
        self.loader, self.n, self.iterator = loader, n, iter(loader)

    def __len__(self):
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            batch = next(self.iterator, None)
            if batch is None:
                self.iterator = iter(self.loader)
                batch = next(self.iterator)
            yield batch


@dataclass
class Setting:
    name: str
    precision: str = "fp32"
    channels_last: bool = False
    route: str = "premade"   # "premade" batches (compute only), "dataloader" or "batched" (end to end)
    compile: bool = False


def settings_for(device: torch.device, full: bool) -> list[Setting]:
    """What to compare: the first is the baseline the others are divided by."""
    low = "bf16" if amp_settings(device)[0] == torch.bfloat16 else ("fp16" if device.type == "cuda" else None)
    settings = [Setting("fp32, contiguous"), Setting("fp32, channels_last", channels_last=True)]
    if low:
        settings += [Setting(f"{low}, contiguous", low), Setting(f"{low}, channels_last", low, True)]
    best = settings[-1]
    settings += [Setting(f"{best.name}, DataLoader route", best.precision, True, "dataloader"),
                 Setting(f"{best.name}, batched route", best.precision, True, "batched")]
    if full:
        settings.append(Setting(f"{best.name}, torch.compile", best.precision, True, compile=True))
    return settings


def compare_settings(name: str, data: Dataset, batch_size: int, settings: list[Setting], cfg: dict,
                     device: torch.device) -> list[dict]:
    """images/s of ``name`` under each setting, each with its own identically initialised model."""
    premade = [(x.contiguous(), y) for x, y in Batches(DeviceLoader(data.train, batch_size, device,
                                                                    channels_last=False),
                                                       max(cfg["steps"], cfg["warmup"]))]
    loaders = {"premade": premade,
               "dataloader": Batches(make_loaders(data, TRAIN_TRANSFORMS["s10"](seed=0), eval_transform(),
                                                  batch_size, cfg["workers"], device=device)[0], cfg["steps"]),
               "batched": Batches(DeviceLoader(data.train, batch_size, device), cfg["steps"])}
    criterion = nn.CrossEntropyLoss()
    runs = []
    for setting in settings:
        torch.manual_seed(0)
        model = get_model(name).to(device, memory_format=torch.channels_last if setting.channels_last
                                   else torch.contiguous_format)
        trainable = torch.compile(model) if setting.compile else model
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        amp_dtype, scaler = amp_settings(device, setting.precision)
        runs.append((setting, trainable, optimizer, amp_dtype, scaler))

    def steps(run, n):
        setting, trainable, optimizer, amp_dtype, scaler = run
        loader = loaders[setting.route]
        batches = loader[:n] if isinstance(loader, list) else Limited(loader, n)
        train_epoch(trainable, batches, optimizer, criterion, device, amp_dtype=amp_dtype, scaler=scaler,
                    progress=False)

    for run in runs:  # warm-up: first-call costs (workers, kernels, compilation) stay untimed
        steps(run, cfg["warmup"])
    best = [float("inf")] * len(runs)
    for _ in range(cfg["repeats"]):  # interleaved, so a burst of load elsewhere hits every setting alike
        for i, run in enumerate(runs):
            sync(device)
            start = time.perf_counter()
            steps(run, cfg["steps"])
            sync(device)
            best[i] = min(best[i], time.perf_counter() - start)
    flops = count_flops(runs[0][1] if not settings[0].compile else get_model(name))
    rows = []
    for (setting, *_), seconds in zip(runs, best):
        speed = cfg["steps"] * batch_size / seconds
        rows.append({"model": name, "batch": batch_size, "setting": setting.name, "img/s": speed,
                     "vs first": speed / (cfg["steps"] * batch_size / best[0]), "GFLOP/s": 3 * flops * speed / 1e9,
                     "precision": setting.precision, "epoch s": EPOCH_IMAGES / speed})
    return rows


def loader_throughput(recipe, data: Dataset, workers: int, batches: int = 30, warmup: int = 5) -> float:
    """Images/s of ``recipe``'s albumentations DataLoader alone: what it can feed a GPU, whatever the GPU."""
    loader = make_loaders(data, recipe.train_transform(seed=0), eval_transform(), recipe.batch_size, workers)[0]
    iterator = iter(loader)
    for _ in range(warmup):  # workers starting and filling their prefetch queues
        next(iterator)
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        images += len(next(iterator)[1])
    return images / (time.perf_counter() - start)


def compare_loaders(data: Dataset, workers: int, gpu: str = "T4", batches: int = 30, warmup: int = 5) -> list[dict]:
    """Per recipe: the DataLoader's images/s here, the ESTIMATED training images/s of ``gpu`` (``flops``), and the
    epoch and run time the slower of the two would give (evaluation not included)."""
    rows = []
    for recipe in RECIPES.values():
        fed = loader_throughput(recipe, data, workers, batches, warmup)
        trains = estimated_images_per_second(get_model(recipe.model), gpu)
        slower = min(fed, trains)
        rows.append({"recipe": recipe.name, "augmentation": recipe.transform, "batch": recipe.batch_size,
                     "loader img/s": fed, f"{gpu} img/s (estimate)": trains,
                     "bound": "loader" if fed < trains else gpu, "epoch s": EPOCH_IMAGES / slower,
                     "run min": EPOCH_IMAGES / slower * recipe.epochs / 60})
    return rows


def markdown_table(rows: list[dict], columns) -> str:
    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _config(args) -> dict:
    return {"warmup": args.warmup or (3 if args.full else 1), "steps": args.steps or (5 if args.full else 2),
            "repeats": args.repeats, "workers": args.workers}


def _data(args, n: int) -> Dataset:
    if args.data_dir:
        return load_dataset("cifar10", args.data_dir)
    # Throughput does not depend on content: tile 2,000 synthetic images to the size needed.
    base = make_synthetic(2000, 200, seed=0)
    reps = -(-n // 2000)
    train = ImageData(np.tile(base.train.images, (reps, 1, 1, 1)), np.tile(base.train.labels, reps), base.classes)
    return Dataset(train, base.test, f"synthetic, {len(train)} images (2,000 tiled)")


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.loaders:
        return main_loaders(args)
    device = get_device(args.device)
    cfg = _config(args)
    batch = {recipe.model: recipe.batch_size for recipe in reversed(RECIPES.values())}  # first recipe's wins
    models = [(name, args.batch_size or batch.get(name, 128))
              for name in args.models or (list(batch) if args.full else ["custom_resnet"])]
    if args.full and not args.models and not args.batch_size:
        models.append(("preact_resnet56", 128))  # does the recipe's batch 512 run as fast per image as 128?
    data = _data(args, (cfg["warmup"] + cfg["repeats"] * cfg["steps"] + 1) * max(b for _, b in models))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    load = os.getloadavg()[0]  # other processes on the same cores distort timings (ratios less)
    print(f"bench on {name} ({torch.get_num_threads()} torch threads, {os.cpu_count()} cores, load average "
          f"{load:.1f} at start; torch {torch.__version__}); data: {data.source}; {cfg}")

    settings = settings_for(device, args.full)
    peaks = {"fp32": dense_peak(device, torch.float32)}
    for precision in {s.precision for s in settings} - {"fp32"}:
        peaks[precision] = peak_flops(name) or dense_peak(device, amp_settings(device, precision)[0])
    print("peak: " + ", ".join(f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in peaks.items())
          + " (the faster of a 4096 x 4096 matrix product and a 1x1 convolution of that size, timed here"
          + (", or the GPU's datasheet)" if device.type == "cuda" else ")"))
    rows = []
    for model, batch_size in models:
        rows += compare_settings(model, data, batch_size, settings, cfg, device)
    for row in rows:
        row["% of peak"] = 100 * row["GFLOP/s"] * 1e9 / peaks[row["precision"]]
    print(f"\n## Training speed (best of {cfg['repeats']} x {cfg['steps']} steps after {cfg['warmup']} warm-up; "
          f"epoch = {EPOCH_IMAGES:,} images, extrapolated)\n")
    print(markdown_table(rows, COLUMNS))

    default = next(s.name for s in settings if s.route == "dataloader")  # build_run's default route
    epochs = [{"recipe": r.name, "model": r.model, "batch": r.batch_size, "epochs": r.epochs,
               "epoch s": row["epoch s"], "run h": row["epoch s"] * r.epochs / 3600}
              for r in RECIPES.values() for row in rows if row["model"] == r.model and row["setting"] == default
              and row["batch"] == r.batch_size]
    if epochs:
        print(f"\n## Recipes with the defaults ({default}): training time here, evaluation not included\n")
        print(markdown_table(epochs, ("recipe", "model", "batch", "epochs", "epoch s", "run h")))
    if args.json:
        write_text(args.json, json.dumps({"device": name, "torch": torch.__version__, "cores": os.cpu_count(),
                                               "threads": torch.get_num_threads(), "load average": load,
                                               "data": data.source, "config": cfg, "peak FLOP/s": peaks,
                                               "training": rows, "recipes": epochs}, indent=1))
    return 0


def main_loaders(args: argparse.Namespace) -> int:
    workers = 2 if args.workers is None else args.workers
    data = _data(args, 40 * 512)
    load = os.getloadavg()[0]
    print(f"loaders on {describe_hardware(torch.device('cpu'))}, {workers} workers (load average {load:.1f} at "
          f"start; torch {torch.__version__}); data: {data.source}")
    rows = compare_loaders(data, workers)
    print("\n## Can the albumentations DataLoader feed a T4? (T4 column: an estimate from FLOPs and the datasheet, "
          "not measured)\n")
    print(markdown_table(rows, list(rows[0])))
    if args.json:
        write_text(args.json, json.dumps({"cpu": describe_hardware(torch.device("cpu")), "workers": workers,
                                               "load average": load, "data": data.source, "loaders": rows}, indent=1))
    return 0
