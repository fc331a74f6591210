"""Receptive-field table against hand-computed values, and the torchsummary wrapper on CPU."""
import pytest
import torch
from torch import nn

from utils.models import CustomResNet, S9Net
from utils.receptive_field import receptive_field, summary


def conv(c_in=3, c_out=3, k=3, s=1, p=1, d=1, groups=1):
    return nn.Conv2d(c_in, c_out, k, s, p, d, groups=groups)


def column(table, key):
    return [getattr(row, key) for row in table.rows]


def test_three_3x3_convs_see_7_pixels():
    table = receptive_field(nn.Sequential(conv(), nn.ReLU(), conv(), nn.ReLU(), conv()))
    assert column(table, "r_out") == [3, 5, 7] and table.total == 7
    assert column(table, "j_out") == [1, 1, 1] and column(table, "n_out") == [32, 32, 32]


def test_stride_2_doubles_the_jump():
    table = receptive_field(nn.Sequential(conv(s=2), conv()))
    first, second = table.rows
    assert (first.n_in, first.n_out, first.j_in, first.j_out, first.r_out) == (32, 16, 1, 2, 3)
    assert (second.n_in, second.n_out, second.j_in, second.j_out, second.r_in, second.r_out) == (16, 16, 2, 2, 3, 7)


def test_dilated_3x3_sees_5_pixels():
    row, = receptive_field(conv(p=2, d=2)).rows
    assert (row.k, row.d, row.p, row.n_out, row.r_out) == (3, 2, 2, 32, 5)


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.AvgPool2d(2)])
def test_pooling_counts_as_a_layer(pool):
    table = receptive_field(nn.Sequential(conv(), pool, conv()))
    assert column(table, "kind") == ["Conv2d", type(pool).__name__, "Conv2d"]
    assert column(table, "r_out") == [3, 4, 8]
    assert column(table, "j_out") == [1, 2, 2] and column(table, "n_out") == [32, 16, 16]


def test_depthwise_separable_conv():
    # depthwise 3x3 (groups = channels) grows the field like any 3x3; the pointwise 1x1 adds nothing
    table = receptive_field(nn.Sequential(conv(3, 8), conv(8, 8, groups=8), conv(8, 16, k=1, p=0)))
    assert column(table, "r_out") == [3, 5, 5]


def test_global_average_pool_covers_the_remaining_map():
    model = nn.Sequential(conv(s=2), conv(s=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    gap = receptive_field(model).rows[-1]
    # after two stride-2 convs: 8x8 map, jump 4, r = 3 + 2*2 = 7; the pool adds (8 - 1) * 4
    assert (gap.n_in, gap.k, gap.n_out, gap.j_in, gap.r_in, gap.r_out) == (8, 8, 1, 4, 7, 35)


def test_parameter_free_model():
    row, = receptive_field(nn.MaxPool2d(3, stride=1, padding=1)).rows
    assert (row.n_out, row.r_out) == (32, 3)


def test_padding_same_is_resolved():
    row, = receptive_field(nn.Conv2d(3, 3, 5, padding="same")).rows
    assert (row.p, row.n_out, row.r_out) == (2, 32, 5)


class Block(nn.Module):
    """A ResNet block whose strided 1x1 shortcut runs after the main path, as in kuangliu's ResNet."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = conv(s=2), conv()
        self.shortcut = conv(k=1, s=2, p=0)

    def forward(self, x):
        out = self.conv2(torch.relu(self.conv1(x)))
        return torch.relu(out + self.shortcut(x))


def test_branches_follow_the_tensors_not_the_execution_order():
    table = receptive_field(nn.Sequential(Block(), conv()))
    rows = {row.name: row for row in table.rows}
    assert [row.name for row in table.rows] == ["0.conv1", "0.conv2", "0.shortcut", "1"]
    # the shortcut reads the block input (j 1), not conv2's output: its stride is not applied twice
    assert (rows["0.shortcut"].j_in, rows["0.shortcut"].r_in, rows["0.shortcut"].j_out) == (1, 1, 2)
    # after the addition the larger field (the conv path, 7) wins over the shortcut's (1)
    assert (rows["1"].j_in, rows["1"].r_in, rows["1"].r_out) == (2, 7, 11)


def test_trace_leaves_model_as_found():
    model = nn.Sequential(conv(), nn.BatchNorm2d(3), nn.Dropout(0.5), conv())
    model.train()
    model[2].eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    receptive_field(model)
    summary(model)
    assert model.training and model[1].training and not model[2].training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN buffers untouched
    assert all(not m._forward_hooks for m in model.modules())


def test_to_markdown_has_one_line_per_layer():
    table = receptive_field(nn.Sequential(conv(), conv()))
    lines = table.to_markdown().splitlines()
    assert lines[0].startswith("| name | kind | n_in | k | s | p | d | n_out | j_in | j_out | r_in | r_out")
    assert len(lines) == 2 + 2 and lines[-1].endswith("| 3 | 5 |")


def test_summary_on_cpu():
    model = nn.Sequential(conv(3, 16), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 10))
    model[0].weight.requires_grad_(False)
    for device in (None, "cpu", torch.device("cpu")):
        result = summary(model, device=device)
        assert result.total_params == sum(p.numel() for p in model.parameters())
        assert result.trainable_params == result.total_params - model[0].weight.numel()
        assert "Conv2d-1" in result.text and "Total params: " + f"{result.total_params:,}" in result.text
        assert str(result) == result.text


def test_summary_has_a_compact_line_per_stage():
    # the ResNet-56's torchsummary table runs to 200+ lines; a notebook shows one line per top-level child
    from utils.models import get_model

    result = summary(get_model("preact_resnet56"))
    assert [s.name for s in result.stages] == ["stem", "stage1", "stage2", "stage3", "head", "pool", "fc"]
    assert [s.output_shape for s in result.stages] == [(16, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8),
                                                       (256, 8, 8), (256, 1, 1), (10,)]
    assert sum(s.params for s in result.stages) == result.total_params == 1_657_690
    lines = result._repr_markdown_().splitlines()
    assert len(lines) == 2 + 7 + 1 and lines[2] == "| stem | 16 x 32 x 32 | 464 |"
    assert lines[-1] == "| **total** | | **1,657,690** |"
    assert len(result.text.splitlines()) > 200  # the full table stays one print() away


def test_tables_render_as_markdown_in_a_notebook():
    table = receptive_field(nn.Sequential(conv(), conv()))
    assert table._repr_markdown_() == table.to_markdown()
    assert repr(table) == "RFTable(2 layers, receptive field 5)"


def test_s9_net_receptive_field_over_44():
    table = receptive_field(S9Net())
    convs = [row for row in table.rows if row.kind == "Conv2d" and row.k > 1]
    assert table.total > 44
    # the numbers in utils/models/s9_net.py's docstring: last 3x3 conv 79, with GAP 103
    assert convs[-1].r_out == 79 and table.total == 103
    assert any(row.d == 2 for row in table.rows)  # the dilated conv is traced as dilated


def test_custom_resnet_receptive_field():
    table = receptive_field(CustomResNet())
    # prep 3, layer1 5 -> pool 6 (j 2), res1 10, 14, layer2 18 -> pool 20 (j 4), layer3 28 -> pool 32 (j 8),
    # res2 48, 64, MaxPool(4) 64 + 3 * 8 = 88
    assert column(table, "r_out") == [3, 5, 6, 10, 14, 18, 20, 28, 32, 48, 64, 88]
