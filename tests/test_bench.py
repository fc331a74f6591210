"""The benchmark runs end to end in a tiny configuration, and its FLOP counter is pinned by hand."""
import argparse
import json

import pytest
from torch import nn

from utils.bench import COLUMNS, add_arguments, main
from utils.flops import count_flops, peak_flops
from utils.models import CustomResNet
from utils.train import cpu_has_bf16


def test_flops_of_a_conv_are_2_x_macs():
    assert count_flops(nn.Conv2d(3, 8, 3, padding=1)) == 2 * 3 * 8 * 9 * 32 * 32


def test_flops_count_groups_strides_and_linear():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),   # 16x16x8
                        nn.Conv2d(8, 8, 3, padding=1, groups=8),                # depthwise: 9 MACs per output
                        nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    macs = 3 * 8 * 9 * 16 * 16 + 8 * 9 * 16 * 16 + 8 * 16 * 16 * 10
    assert count_flops(net) == 2 * macs


def test_flops_of_the_custom_resnet():
    model = CustomResNet()
    assert count_flops(model.prep) == 2 * 3 * 64 * 9 * 32 * 32      # 3x3 conv, 3 -> 64, at 32x32
    conv = lambda c_in, c_out, side: c_in * c_out * 9 * side * side  # noqa: E731  MACs of a 3x3 conv
    macs = (conv(3, 64, 32) + conv(64, 128, 32) + 2 * conv(128, 128, 16) + conv(128, 256, 16)
            + conv(256, 512, 8) + 2 * conv(512, 512, 4) + 512 * 10)   # pools come after the convs
    assert count_flops(model) == 2 * macs == 758_523_904
    assert model.training  # counting leaves the mode alone


@pytest.mark.parametrize("name, peak", [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12),
                                        ("NVIDIA A100-SXM4-40GB", 312e12), ("NVIDIA L4", 121e12),
                                        ("Tesla T4", 65e12), ("NVIDIA L40S", None), ("cpu", None)])
def test_peak_flops_by_device_name(name, peak):
    assert peak_flops(name) == peak


def test_tiny_bench_compares_every_setting_and_writes_json(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "bench.json"
    args = parser.parse_args(["--models", "s9", "--device", "cpu", "--batch-size", "8", "--warmup", "1",
                              "--steps", "1", "--repeats", "1", "--workers", "0", "--json", str(out)])
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| " + " | ".join(COLUMNS) + " |" in printed
    result = json.loads(out.read_text())
    settings = [row["setting"] for row in result["training"]]
    low = "bf16" if cpu_has_bf16() else None
    expected = ["fp32, contiguous", "fp32, channels_last"] + ([f"{low}, contiguous", f"{low}, channels_last"] if low else [])
    best = expected[-1]
    assert settings == expected + [f"{best}, DataLoader route", f"{best}, batched route"]
    first = result["training"][0]
    assert first["vs first"] == 1 and all(row["img/s"] > 0 and row["% of peak"] > 0 for row in result["training"])
    assert set(result["peak FLOP/s"]) == {"fp32"} | ({low} if low else set())
    # a recipe's epoch time is printed only for the recipe's own batch size (8 is nobody's)
    assert result["recipes"] == []


def test_the_t4_estimate_is_pages_v100_fraction_of_the_t4s_datasheet():
    from utils.flops import estimated_images_per_second
    from utils.models import get_model

    page = 24 * 50_000 / 79  # images/s of Page's ResNet-9 on a V100: the estimate reproduces it by construction
    assert estimated_images_per_second(CustomResNet(), "V100") == pytest.approx(page)
    assert estimated_images_per_second(CustomResNet(), "T4") == pytest.approx(page * 65 / 125)
    # twice the forward FLOPs, half the images/s
    ratio = count_flops(get_model("resnet18")) / count_flops(CustomResNet())
    assert estimated_images_per_second(get_model("resnet18")) == pytest.approx(page * 65 / 125 / ratio)


def test_loader_bench_names_the_slower_of_loader_and_gpu_per_recipe(capsys):
    from utils.bench import compare_loaders
    from utils.data import make_synthetic
    from utils.recipes import RECIPES

    rows = compare_loaders(make_synthetic(3 * 512, 10), workers=0, batches=2, warmup=1)
    assert [row["recipe"] for row in rows] == list(RECIPES)
    for row in rows:
        slower = min(row["loader img/s"], row["T4 img/s (estimate)"])
        assert row["bound"] == ("loader" if row["loader img/s"] < row["T4 img/s (estimate)"] else "T4")
        assert row["epoch s"] == pytest.approx(50_000 / slower)
        assert row["run min"] == pytest.approx(row["epoch s"] * RECIPES[row["recipe"]].epochs / 60)
