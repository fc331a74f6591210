"""``python -m utils bench``: how fast the data pipelines and the training step are on this machine.

Everything is measured side by side in one process, so ratios hold even where absolute numbers are noisy:

1. data pipeline images/s: the albumentations DataLoader the notebooks use vs ``utils.gpu_data``'s batched
   augmentation on the device (CPU here, CUDA there), for the S9 and S10 augmentations;
2. training images/s per model: a bare loop (forward, loss, backward, step on pre-made batches) vs
   ``utils.train.train_epoch`` on the same batches (its overhead), vs the notebook path (albumentations
   DataLoader -> train_epoch) vs the fast path (DeviceLoader -> train_epoch, plus channels_last and AMP on CUDA);
3. forward FLOPs per image counted from the layers, achieved FLOP/s (x3 for forward + backward) and, on a
   known GPU, the share of its dense bf16/fp16 peak;
4. seconds per 50,000-image epoch, extrapolated from the timed steps.

Worker start-up and warm-up steps are not timed. Default options finish in a few minutes on 2 CPU cores;
``--full`` is for GPUs (batch 512, more steps).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import Dataset, ImageData, load_dataset, make_loaders, make_synthetic
from .gpu_data import DeviceLoader
from .models import get_model
from .train import amp_settings, get_device, train_epoch
from .transforms import TRAIN_TRANSFORMS, eval_transform

EPOCH_IMAGES = 50_000
# Dense (no sparsity) bf16/fp16 tensor-core peak FLOP/s from the vendors' datasheets; first match wins.
PEAK_FLOPS = {r"H100 PCIe": 756e12, r"H100 NVL": 835e12, r"H100": 989e12, r"H200": 989e12,
              r"A100": 312e12, r"L4": 121e12, r"T4": 65e12}
PIPELINE_COLUMNS = ("augment", "albumentations img/s", "batched img/s", "speed-up")
TRAINING_COLUMNS = ("model", "GFLOP/img", "bare img/s", "train_epoch img/s", "overhead %", "notebook img/s",
                    "fast img/s", "fast TFLOP/s", "% of peak", "epoch s notebook (extrap.)", "epoch s fast (extrap.)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=["s9", "custom_resnet", "resnet18"])
    parser.add_argument("--data-dir", help="real CIFAR-10 (image folder or tarball); default: synthetic images")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--full", action="store_true", help="GPU run: batch 512, 5 warm-up + 30 timed steps, x2")
    parser.add_argument("--batch-size", type=int, help="training batch (default 16 on 2 CPU cores, 512 with --full)")
    parser.add_argument("--warmup", type=int, help="untimed steps per path (default 1, 5 with --full)")
    parser.add_argument("--steps", type=int, help="timed steps per path and repeat (default 2, 30 with --full)")
    parser.add_argument("--repeats", type=int, help="timed rounds, paths interleaved; the best counts (default 2)")
    parser.add_argument("--pipeline-batch-size", type=int, default=512, help="data pipeline batch (default 512)")
    parser.add_argument("--pipeline-images", type=int, help="images timed per pipeline (default 4096, 40000 --full)")
    parser.add_argument("--workers", type=int, help="albumentations DataLoader workers (default: as the notebooks)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the results to this JSON file")


# ------------------------------------------------------------------------------------------ measuring
def count_flops(model: nn.Module, input_shape=(3, 32, 32)) -> int:
    """Forward FLOPs per image: 2 x the multiply-adds of every Conv2d and Linear (biases, BN, ReLU ignored)."""
    macs = []

    def hook(module, inputs, output):
        per_output = module.in_features if isinstance(module, nn.Linear) else \
            module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        macs.append(output.numel() * per_output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()  # BN on running statistics, so one image is a valid batch
        param = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return 2 * sum(macs)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def peak_flops(name: str) -> float | None:
    """Dense bf16/fp16 peak FLOP/s of a GPU named like torch.cuda.get_device_name(), None when unknown."""
    return next((peak for key, peak in PEAK_FLOPS.items() if re.search(rf"\b{key}\b", name)), None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Stream:
    """Batches from one running pass over ``loader`` (workers stay up), ``take(n)`` at a time; a new
    pass starts when one runs out. Gives train_epoch a loader with ``len()`` and no start-up inside the timing."""

    def __init__(self, loader):
        self.loader, self.iterator, self.n = loader, iter(loader), 0

    def take(self, n: int) -> "_Stream":
        self.n = n
        return self

    def __len__(self):
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            batch = next(self.iterator, None)
            if batch is None:
                self.iterator = iter(self.loader)
                batch = next(self.iterator)
            yield batch


def _timed(fn, device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def pipeline_speed(stream: _Stream, n_batches: int, device: torch.device) -> float:
    """images/s of a loader, its batches moved to the device as train_epoch would."""
    def consume():
        for x, y in stream.take(n_batches):
            x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    for _ in stream.take(1):  # first batch: worker start-up, not timed
        pass
    return n_batches * stream.loader.batch_size / _timed(consume, device)


def bare_steps(model, batches, optimizer, criterion, amp_dtype=None, scaler=None) -> None:
    """The reference: forward, loss, backward, step -- nothing else."""
    model.train()
    for x, y in batches:
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()


def training_speed(name: str, data: Dataset, cfg: dict, device: torch.device) -> dict:
    """images/s of the four paths for one model, each with its own identically initialised model."""
    amp_dtype, _ = amp_settings(device)
    fast_layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    bs, steps = cfg["batch_size"], cfg["steps"]
    premade = list(_Stream(DeviceLoader(data.train, bs, device, channels_last=False)).take(max(cfg["warmup"], steps)))
    notebook = _Stream(make_loaders(data, TRAIN_TRANSFORMS["s10"](seed=0), eval_transform(), bs, cfg["workers"],
                                    device=device)[0])
    fast = _Stream(DeviceLoader(data.train, bs, device, channels_last=device.type == "cuda"))
    criterion = nn.CrossEntropyLoss()

    def setup(memory_format=torch.contiguous_format):
        torch.manual_seed(0)
        model = get_model(name).to(device, memory_format=memory_format)
        return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True), amp_settings(device)[1]

    def epoch(loader, model, optimizer, scaler):
        train_epoch(model, loader, optimizer, criterion, device, amp_dtype=amp_dtype, scaler=scaler, progress=False)

    paths = {
        "bare": (setup(), lambda m, o, s, n: bare_steps(m, premade[:n], o, criterion, amp_dtype, s)),
        "train_epoch": (setup(), lambda m, o, s, n: epoch(premade[:n], m, o, s)),
        "notebook": (setup(), lambda m, o, s, n: epoch(notebook.take(n), m, o, s)),
        "fast": (setup(fast_layout), lambda m, o, s, n: epoch(fast.take(n), m, o, s)),
    }
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for (model, optimizer, scaler), run in paths.values():
        run(model, optimizer, scaler, cfg["warmup"])
    best = {key: float("inf") for key in paths}
    for _ in range(cfg["repeats"]):  # interleaved, so a burst of load elsewhere hits every path alike
        for key, ((model, optimizer, scaler), run) in paths.items():
            best[key] = min(best[key], _timed(lambda: run(model, optimizer, scaler, steps), device))
    speed = {key: steps * bs / seconds for key, seconds in best.items()}
    flops = count_flops(paths["bare"][0][0])
    peak = peak_flops(device_name(device))
    achieved = 3 * flops * speed["fast"]
    return {"model": name, "GFLOP/img": flops / 1e9, "bare img/s": speed["bare"],
            "train_epoch img/s": speed["train_epoch"],
            "overhead %": 100 * (speed["bare"] / speed["train_epoch"] - 1),
            "notebook img/s": speed["notebook"], "fast img/s": speed["fast"], "fast TFLOP/s": achieved / 1e12,
            "% of peak": 100 * achieved / peak if peak and amp_dtype else None,
            "epoch s notebook (extrap.)": EPOCH_IMAGES / speed["notebook"],
            "epoch s fast (extrap.)": EPOCH_IMAGES / speed["fast"],
            "peak GPU MB": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}


# ------------------------------------------------------------------------------------------ reporting
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


def _config(args, device: torch.device) -> dict:
    full = args.full
    return {"batch_size": args.batch_size or (512 if full else 16), "warmup": args.warmup or (5 if full else 1),
            "steps": args.steps or (30 if full else 2), "repeats": args.repeats or 2,
            "pipeline_batch_size": args.pipeline_batch_size,
            "pipeline_images": args.pipeline_images or (40_000 if full else 4096), "workers": args.workers}


def _data(args, cfg: dict) -> Dataset:
    if args.data_dir:
        return load_dataset("cifar10", args.data_dir)
    # Throughput does not depend on content: tile 2,000 synthetic images to the size needed.
    n = max(cfg["pipeline_images"] + cfg["pipeline_batch_size"],
            (cfg["warmup"] + cfg["repeats"] * cfg["steps"] + 1) * cfg["batch_size"])
    base = make_synthetic(2000, 200, seed=0)
    reps = -(-n // 2000)
    train = ImageData(np.tile(base.train.images, (reps, 1, 1, 1)), np.tile(base.train.labels, reps), base.classes)
    return Dataset(train, base.test, f"synthetic, {len(train)} images (2,000 tiled)")


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    cfg = _config(args, device)
    data = _data(args, cfg)
    name = device_name(device)
    amp_dtype, _ = amp_settings(device)
    # Other processes on the same cores distort CPU timings (and ratios, less): say how busy the machine was.
    load = os.getloadavg()[0]
    print(f"bench on {name} ({torch.get_num_threads()} torch threads, {os.cpu_count()} cores, load average "
          f"{load:.1f} at start; torch {torch.__version__}); data: {data.source}; AMP: {amp_dtype}; {cfg}")
    if load > (os.cpu_count() or 1) and torch.get_num_threads() > 1:
        print("the cores are busy: each multi-threaded op may wait for a descheduled thread; --threads 1 avoids that")

    pipeline = []
    batch_size, n_batches = cfg["pipeline_batch_size"], max(1, cfg["pipeline_images"] // cfg["pipeline_batch_size"])
    for augment in ("s10", "s9"):
        loader = make_loaders(data, TRAIN_TRANSFORMS[augment](seed=0), eval_transform(), batch_size,
                              cfg["workers"], device=device)[0]
        albumentations = pipeline_speed(_Stream(loader), n_batches, device)
        device_loader = DeviceLoader(data.train, batch_size, device, augment=augment,
                                     channels_last=device.type == "cuda")
        batched = pipeline_speed(_Stream(device_loader), n_batches, device)
        pipeline.append({"augment": augment, "albumentations img/s": albumentations, "batched img/s": batched,
                         "speed-up": batched / albumentations})
    print(f"\n## Data pipeline (images/s, batch {batch_size}, worker start-up excluded)\n")
    print(markdown_table(pipeline, PIPELINE_COLUMNS))

    training = [training_speed(name, data, cfg, device) for name in args.models]
    columns = TRAINING_COLUMNS + (("peak GPU MB",) if device.type == "cuda" else ())
    print(f"\n## Training (images/s, batch {cfg['batch_size']}, best of {cfg['repeats']} x {cfg['steps']} steps; "
          f"epoch = {EPOCH_IMAGES:,} images, extrapolated)\n")
    print(markdown_table(training, columns))

    memory = {"peak host RSS MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "peak loader-worker RSS MB": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    print("\n" + "; ".join(f"{k}: {v:,.0f}" for k, v in memory.items()))
    if args.json:
        result = {"device": name, "peak FLOP/s": peak_flops(name), "torch": torch.__version__,
                  "threads": torch.get_num_threads(), "cores": os.cpu_count(), "load average": load,
                  "data": data.source, "config": cfg, "pipeline": pipeline, "training": training, "memory": memory}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":  # until ``python -m utils bench`` is wired in
    parser = argparse.ArgumentParser(prog="python -m utils.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
