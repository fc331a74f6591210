"""Curves, sample grids and the confusion matrix: the right panels, points, names and counts."""
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from utils.data import CIFAR10_CLASSES
from utils.inference import confusion_matrix
from utils.plots import plot_confusion, plot_curves, show_augmented, show_samples
from utils.transforms import eval_transform, s10_train_transform


def history(epochs=6):
    return [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 10.0 * e, "test_loss": 2.1 / e, "test_acc": 9.0 * e,
             "lr": 0.01 * e, "seconds": 1.0} for e in range(1, epochs + 1)]


def test_plot_curves_panels_and_points(tmp_path):
    fig = plot_curves(history(), save_path=tmp_path / "curves.png")
    loss_ax, acc_ax, lr_ax = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["Loss", "Accuracy (best test 54.00% at epoch 6)",
                                                    "Learning rate (last batch of each epoch)"]
    assert len(loss_ax.lines) == 2 and len(acc_ax.lines) == 3 and len(lr_ax.lines) == 1  # + the best-epoch star
    for ax in fig.axes:
        for line in ax.lines[:2]:
            x, _ = line.get_data()
            assert list(x) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(acc_ax.lines[1].get_ydata(), [9.0 * e for e in range(1, 7)])  # test accuracy
    np.testing.assert_allclose(lr_ax.lines[0].get_ydata(), [0.01 * e for e in range(1, 7)])
    assert (tmp_path / "curves.png").stat().st_size > 0
    plt.close(fig)


def test_plot_curves_draws_every_batch_lr_when_the_history_has_it():
    rows = history(3)
    for row, lrs in zip(rows, ([0.1, 0.2, 0.4, 1.0], [0.8, 0.6, 0.4, 0.2], [0.1, 0.1, 0.1, 0.1])):
        row["lrs"] = lrs
    fig = plot_curves(rows)
    lr_ax = fig.axes[2]
    assert lr_ax.get_title() == "Learning rate (every batch)"
    x, y = lr_ax.lines[0].get_data()
    np.testing.assert_allclose(x, [0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.25, 2.5, 2.75, 3])  # last batch at e
    assert list(y[:4]) == [0.1, 0.2, 0.4, 1.0]  # the warm-up an epoch-end point would hide
    plt.close(fig)


def test_show_samples_titles_are_class_names(synthetic):
    fig = show_samples(synthetic.train, n=12, ncols=5)
    assert len(fig.axes) == 12
    for ax in fig.axes:
        shown = ax.images[0].get_array()
        # the image shown is a training image, and the title is that image's class
        i = int(np.flatnonzero((synthetic.train.images == np.asarray(shown)).all(axis=(1, 2, 3)))[0])
        assert ax.get_title() == synthetic.train.classes[synthetic.train.labels[i]]
    plt.close(fig)


def test_show_augmented_rows_and_ranges(synthetic):
    fig = show_augmented(synthetic.train, s10_train_transform(seed=0), n=3, repeats=4)
    assert len(fig.axes) == 3 * 5
    for k, ax in enumerate(fig.axes):
        shown = np.asarray(ax.images[0].get_array())
        if k % 5 == 0:
            assert shown.dtype == np.uint8 and "(original)" in ax.get_title()
        else:  # de-normalised: floats in [0, 1], not the normalised values
            assert shown.dtype.kind == "f" and shown.min() >= 0 and shown.max() <= 1 and shown.shape == (32, 32, 3)
    plt.close(fig)


def test_show_augmented_identity_gives_back_the_image(synthetic):
    fig = show_augmented(synthetic.train, eval_transform(), n=2, repeats=1)
    for row in range(2):
        original = np.asarray(fig.axes[2 * row].images[0].get_array())
        shown = np.asarray(fig.axes[2 * row + 1].images[0].get_array())
        np.testing.assert_allclose(shown, original / 255, atol=1e-5)  # normalised once, de-normalised once
    plt.close(fig)


class FixedPredictions(nn.Module):
    """Predicts ``y % 3`` from an image that carries its label in pixel 0."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        y = x[:, 0, 0, 0].round().long() % 3
        return nn.functional.one_hot(y, 10).float() * self.scale


def test_confusion_matrix_counts_the_whole_loader():
    labels = torch.arange(50) % 10
    x = torch.zeros(50, 3, 4, 4)
    x[:, 0, 0, 0] = labels.float()
    test_loader = DataLoader(TensorDataset(x, labels), batch_size=16)  # 4 batches, the last of 2
    model = FixedPredictions().train()
    matrix = confusion_matrix(model, test_loader, 10)
    assert matrix.shape == (10, 10) and matrix.sum() == 50
    expected = np.zeros((10, 10), dtype=np.int64)
    np.add.at(expected, (labels.numpy(), labels.numpy() % 3), 1)
    np.testing.assert_array_equal(matrix, expected)
    assert model.training


def test_plot_confusion_per_class_accuracy():
    matrix = np.diag(np.full(10, 8)) + 2 * np.eye(10, k=1, dtype=int)  # 80% right, except the last class
    fig, per_class = plot_confusion(matrix, CIFAR10_CLASSES)
    np.testing.assert_allclose(per_class, [80.0] * 9 + [100.0])
    cm_ax, bar_ax = fig.axes[:2]
    assert [t.get_text() for t in cm_ax.get_xticklabels()] == list(CIFAR10_CLASSES)
    assert [t.get_text() for t in bar_ax.get_yticklabels()] == list(CIFAR10_CLASSES)
    assert len(cm_ax.texts) == 100 and "98 test images" in cm_ax.get_title()
    np.testing.assert_allclose([bar.get_width() for bar in bar_ax.patches], per_class)
    plt.close(fig)
