"""What a model costs and what the hardware can do: forward FLOPs counted from the layers, and the dense
peak FLOP/s of this machine (timed) or of a known GPU (its datasheet). ``utils.bench`` divides the one by the
other to say how close a training setting comes to the hardware's limit."""
from __future__ import annotations

import re
import time

import torch
from torch import nn

from .inference import eval_mode

# Dense (no sparsity) bf16/fp16 tensor-core peak FLOP/s from the vendors' datasheets; first match wins.
PEAK_FLOPS = {r"H100 PCIe": 756e12, r"H100 NVL": 835e12, r"H100": 989e12, r"H200": 989e12,
              r"A100": 312e12, r"L4": 121e12, r"V100": 125e12, r"T4": 65e12}
# What fraction of that peak CIFAR-10 training reaches in practice, from a published run: David Page's ResNet-9
# (the custom ResNet's layout) trained 24 epochs in 79 s on one V100 (DAWNBench 2018, "How to train your
# ResNet", part 4). An estimate for another GPU assumes the same fraction of its datasheet peak.
PAGE_RESNET9_V100 = {"images": 24 * 50_000, "seconds": 79.0, "gpu": "V100"}


def count_flops(model: nn.Module, input_shape=(3, 32, 32)) -> int:
    """Forward FLOPs per image: 2 x the multiply-adds of every Conv2d and Linear (biases, BN, ReLU ignored)."""
    macs = []

    def hook(module, inputs, output):
        per_output = module.in_features if isinstance(module, nn.Linear) else \
            module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        macs.append(output.numel() * per_output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        param = next(model.parameters())
        with eval_mode(model), torch.no_grad():  # BN on running statistics, so one image is a valid batch
            model(torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype))
    finally:
        for h in handles:
            h.remove()
    return 2 * sum(macs)


def peak_flops(name: str) -> float | None:
    """Dense bf16/fp16 peak FLOP/s of a GPU named like torch.cuda.get_device_name(), None when unknown."""
    return next((peak for key, peak in PEAK_FLOPS.items() if re.search(rf"\b{key}\b", name)), None)


def estimated_images_per_second(model: nn.Module, gpu: str = "T4") -> float:
    """An ESTIMATE of ``model``'s training images/s on ``gpu`` (fp16), not a measurement: the fraction of the
    V100's peak that Page's ResNet-9 reached, times ``gpu``'s datasheet peak, over 3 x its forward FLOPs."""
    from .models import get_model

    page = PAGE_RESNET9_V100
    fraction = page["images"] / page["seconds"] * 3 * count_flops(get_model("custom_resnet")) / peak_flops(page["gpu"])
    return fraction * peak_flops(gpu) / (3 * count_flops(model))


def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work, so a wall-clock timing covers it (a no-op elsewhere)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(fn, device: torch.device, repeats: int = 3) -> float:
    fn()  # first call: allocation and kernel choice, untimed
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def dense_peak(device: torch.device, dtype: torch.dtype) -> float:
    """This machine's practical dense peak FLOP/s in ``dtype``: the faster of a 4096 x 4096 matrix product
    and a 1x1 convolution of the same size class (8 x 1024 x 64 x 64, channels_last) -- on a CPU the
    convolutions run on oneDNN, which can outrun the BLAS behind ``torch.mm``."""
    a, b = (torch.randn(4096, 4096, device=device).to(dtype) for _ in "ab")
    best = 2 * 4096 ** 3 / _best_seconds(lambda: a @ b, device)
    x = torch.randn(8, 1024, 64, 64, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    conv = nn.Conv2d(1024, 1024, 1, bias=False).to(device, dtype).to(memory_format=torch.channels_last)
    return max(best, 2 * 8 * 64 * 64 * 1024 * 1024 / _best_seconds(lambda: conv(x), device))
