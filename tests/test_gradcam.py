"""Misclassified images with Grad-CAM: the whole loader, RGB in [0, 1], and no hooks or mode changes left."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from utils.data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from utils.gradcam import (collect_misclassified, default_target_layer, gradcam, show_misclassified,
                           spread_over_classes)
from utils.models import CustomResNet, PreActResNet56, ResNet18, S9Net


def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


def normalise(pixels):
    """uint8 N x H x W x 3 -> the loaders' normalised N x 3 x H x W."""
    x = torch.from_numpy(pixels).float().permute(0, 3, 1, 2) / 255
    return (x - torch.tensor(CIFAR10_MEAN).view(3, 1, 1)) / torch.tensor(CIFAR10_STD).view(3, 1, 1)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (50, 16, 16, 3), dtype=np.uint8)


def loader(pixels, labels, batch_size=16):
    return DataLoader(TensorDataset(normalise(pixels), torch.as_tensor(labels)), batch_size=batch_size)


class AlwaysZero(nn.Module):
    """Predicts class 0 for every image."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 10, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.copy_(torch.arange(10, 0, -1).float())

    def forward(self, x):
        return self.pool(self.conv(x)).flatten(1)


def test_collect_misclassified_covers_the_whole_loader(images):
    labels = np.arange(50) % 10
    wrong = collect_misclassified(AlwaysZero(), loader(images, labels))  # 4 batches, the last of 2
    expected = np.flatnonzero(labels != 0)
    np.testing.assert_array_equal(wrong.indices.numpy(), expected)
    np.testing.assert_array_equal(wrong.targets.numpy(), labels[expected])
    assert torch.all(wrong.preds == 0)
    torch.testing.assert_close(wrong.images, normalise(images)[expected])  # still normalised, on the CPU
    assert wrong.images.device.type == "cpu"


def test_show_misclassified_grid_and_records(images):
    model = tiny_net()
    labels = np.arange(50) % 10
    wrong = collect_misclassified(model, loader(images, labels))
    fig, records = show_misclassified(model, loader(images, labels), CIFAR10_CLASSES, n=7)
    assert len(records) == 7 and len(fig.axes) == 14  # an image and its Grad-CAM each; empty places removed
    titles = [ax.get_title() for ax in fig.axes]
    for record, i in zip(records, wrong.indices[spread_over_classes(wrong.targets, 7)].tolist()):
        assert record["index"] == i and record["true"] == labels[i] and record["true"] != record["pred"]
        assert f"true: {CIFAR10_CLASSES[record['true']]}\npred: {CIFAR10_CLASSES[record['pred']]}" in titles
        # de-normalised exactly once, RGB, in [0, 1]: the original pixels back
        np.testing.assert_allclose(record["image"], images[i] / 255, atol=1e-5)
        for key in ("cam", "overlay"):
            assert record[key].min() >= 0 and record[key].max() <= 1
        assert record["overlay"].shape == (16, 16, 3) and record["cam"].shape == (16, 16)
    assert sum("Grad-CAM" in t for t in titles) == 7
    plt.close(fig)


def test_mistakes_shown_are_spread_over_the_true_classes():
    # a test set stored class by class (as image folders are): 5 airplanes, 3 cars, 4 birds, 1 cat
    targets = torch.tensor([0] * 5 + [1] * 3 + [2] * 4 + [3])
    picks = spread_over_classes(targets, 6)
    assert targets[picks].tolist() == [0, 1, 2, 3, 0, 1]  # every class once before any class twice
    assert picks.tolist() == [0, 5, 8, 12, 1, 6]          # within a class, in loader order
    assert sorted(spread_over_classes(targets, 100).tolist()) == list(range(13))


def test_heatmap_is_rgb_not_bgr():
    # grey images: the colour of an overlay pixel is the heatmap's. JET is red where the CAM is high and
    # blue where it is low -- swapped if BGR were shown as RGB.
    grey = np.repeat(np.random.default_rng(1).integers(60, 200, (20, 16, 16, 1), dtype=np.uint8), 3, axis=3)
    fig, records = show_misclassified(tiny_net(), loader(grey, np.arange(20) % 10), CIFAR10_CLASSES, n=5)
    checked = 0
    for record in records:
        cam, overlay = record["cam"], record["overlay"]
        if cam.max() - cam.min() < 0.5:
            continue
        checked += 1
        hot, cold = np.unravel_index(cam.argmax(), cam.shape), np.unravel_index(cam.argmin(), cam.shape)
        assert overlay[hot][0] > overlay[hot][2] and overlay[cold][2] > overlay[cold][0]
    assert checked > 0
    plt.close(fig)


@pytest.mark.parametrize("train_mode", [True, False])
def test_modes_restored_and_hooks_released(images, train_mode):
    model = tiny_net().train(train_mode)
    fig, _ = show_misclassified(model, loader(images, np.arange(50) % 10), CIFAR10_CLASSES, n=3)
    assert all(m.training == train_mode for m in model.modules())
    for m in model.modules():
        assert not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
    assert all(p.grad is None for p in model.parameters())
    plt.close(fig)


def test_gradcam_explains_the_requested_class(images):
    model = tiny_net().eval()
    x = normalise(images[:4])
    maps = [gradcam(model, x, [c] * 4) for c in (0, 1)]
    assert maps[0].shape == (4, 16, 16)
    assert not np.allclose(maps[0], maps[1])


def test_default_target_layers():
    resnet, custom, preact, s9 = ResNet18(), CustomResNet(), PreActResNet56(), S9Net()
    assert default_target_layer(resnet) is resnet.layer4[-1]
    assert default_target_layer(custom) is custom.res2
    assert default_target_layer(preact) is preact.stage3[-1]
    assert default_target_layer(s9) is s9.c4
    model = tiny_net()
    assert default_target_layer(model) is model[4]  # a model without gradcam_layer(): its last Conv2d


def test_show_misclassified_draws_grad_cam_for_the_predicted_class_not_the_true_one(images, monkeypatch):
    # Grad-CAM for the true class would show where the net failed to see it; the grid's titles promise the prediction
    import utils.gradcam

    asked = []
    real = utils.gradcam.gradcam

    def recording(model, images, classes, *args, **kwargs):
        asked.append([int(c) for c in classes])
        return real(model, images, classes, *args, **kwargs)

    monkeypatch.setattr(utils.gradcam, "gradcam", recording)
    labels = np.arange(50) % 10
    fig, records = show_misclassified(AlwaysZero(), loader(images, labels), CIFAR10_CLASSES, n=6)
    assert asked == [[0] * 6]  # AlwaysZero predicts 0 for every image, and none of the six is a 0
    assert [r["pred"] for r in records] == [0] * 6 and all(r["true"] != 0 for r in records)
    plt.close(fig)
