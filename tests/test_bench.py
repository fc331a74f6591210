"""The benchmark runs end to end in a tiny configuration, and its FLOP counter is pinned by hand."""
import argparse
import json

import pytest
from torch import nn

from utils.bench import PIPELINE_COLUMNS, TRAINING_COLUMNS, add_arguments, count_flops, main, peak_flops
from utils.models import CustomResNet


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


def test_tiny_bench_prints_tables_and_writes_json(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "bench.json"
    args = parser.parse_args(["--models", "s9", "--device", "cpu", "--batch-size", "8", "--warmup", "1",
                              "--steps", "1", "--repeats", "1", "--pipeline-batch-size", "8",
                              "--pipeline-images", "16", "--workers", "0", "--json", str(out)])
    assert main(args) == 0
    printed = capsys.readouterr().out
    for header in ("| " + " | ".join(PIPELINE_COLUMNS) + " |", "| " + " | ".join(TRAINING_COLUMNS) + " |"):
        assert header in printed
    assert "peak host RSS MB" in printed
    result = json.loads(out.read_text())
    assert [row["augment"] for row in result["pipeline"]] == ["s10", "s9"]
    (row,) = result["training"]
    assert row["model"] == "s9" and set(TRAINING_COLUMNS) <= set(row)
    assert all(row[k] > 0 for k in ("bare img/s", "train_epoch img/s", "notebook img/s", "fast img/s"))
    assert row["% of peak"] is None  # no known peak on a CPU
