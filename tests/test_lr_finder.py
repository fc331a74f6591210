"""find_lr: steepest descent before the loss minimum, and the model and optimizer left exactly as found."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from utils.lr_finder import find_lr, suggest_index


def tiny_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def loader(n=64, batch_size=16):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=g)


def snapshot(model, optimizer):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups],
            {k: {n: t.clone() for n, t in s.items()} for k, s in optimizer.state_dict()["state"].items()})


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = tiny_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    # one real step first, so there is optimizer state (momentum buffers) to preserve
    x, y = next(iter(loader()))
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model, optimizer


def test_model_and_optimizer_restored(setup):
    model, optimizer = setup
    model.eval()
    model[3].train()  # a mixed mode must come back mixed
    weights, groups, state = snapshot(model, optimizer)
    find_lr(model, optimizer, nn.CrossEntropyLoss(), loader(), num_iter=30, end_lr=1)
    weights_after, groups_after, state_after = snapshot(model, optimizer)
    assert weights.keys() == weights_after.keys()
    for k in weights:  # weights and BN running stats, num_batches_tracked included
        assert torch.equal(weights[k], weights_after[k]), k
    assert groups_after == groups and groups[0]["lr"] == 0.05
    assert state.keys() == state_after.keys()
    for k in state:
        assert all(torch.equal(state[k][n], state_after[k][n]) for n in state[k])
    assert not model.training and not model[1].training and model[3].training
    assert all(p.grad is None for p in model.parameters())
    # the optimizer still drives the same parameters
    assert [p for g in optimizer.param_groups for p in g["params"]] == list(model.parameters())
    plt.close("all")


def test_suggestion_is_the_steepest_descent_of_the_smoothed_loss(setup, tmp_path):
    model, optimizer = setup
    result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader(), start_lr=1e-5, end_lr=1, num_iter=40,
                     lr_min_ratio=10, save_path=tmp_path / "lr.png")
    lrs, losses = result.history["lr"], result.history["loss"]
    assert 17 <= len(lrs) <= 40 and len(lrs) == len(losses)
    assert lrs[0] == pytest.approx(1e-5) and np.all(np.diff(lrs) > 0)
    if len(lrs) == 40:  # exponential steps: constant ratio, end_lr reached at the last iteration
        assert lrs[-1] == pytest.approx(1.0)
    index = suggest_index(losses, skip_start=10, skip_end=5)
    assert result.lr_max == lrs[index] and index <= 10 + int(np.argmin(losses[10:-5]))
    assert result.lr_min == pytest.approx(result.lr_max / 10)
    ax, = result.fig.axes
    assert ax.get_xscale() == "log" and "training set" in ax.get_title()
    labels = ax.get_legend_handles_labels()[1]
    assert any(label.startswith("lr_max") for label in labels) and any(label.startswith("lr_min") for label in labels)
    assert (tmp_path / "lr.png").stat().st_size > 0
    plt.close(result.fig)


def test_a_fall_after_the_blow_up_is_never_suggested():
    # what the custom ResNet with Adam drew: a slow descent, the minimum, a blow-up, then a fall from the peak
    descent = [3.1, 3.1, 3.09, 3.07, 3.0, 2.95, 2.85, 2.75, 2.7, 2.62, 2.6]   # steepest step: 2.95 -> 2.85
    blow_up = [2.7, 3.3, 4.2, 4.7, 4.0, 3.2, 3.1]                              # 4.7 -> 3.2 is steeper
    losses = [3.2] * 10 + descent + blow_up + [3.1] * 5
    index = suggest_index(losses, skip_start=10, skip_end=5)
    assert index == 10 + 6  # np.gradient's central difference is steepest at 2.85, before the minimum
    assert index < 10 + len(descent)
    # minimum right after the skipped start (a short, noisy test): the skipped points join the search
    assert suggest_index([3.0] * 8 + [2.9, 2.5, 2.0, 2.5, 3.0, 4.0] + [4.0] * 5) == 9
    with pytest.raises(ValueError, match="lower start_lr"):  # lowest at the very first point: no descent at all
        suggest_index([1.0, 3.0] + [3.0] * 8 + [3.0, 3.5, 4.0] + [4.0] * 5)


def test_too_few_iterations_is_a_clear_error(setup):
    model, optimizer = setup
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="raise num_iter"):
        find_lr(model, optimizer, nn.CrossEntropyLoss(), loader(), num_iter=10)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_refuses_an_optimizer_with_a_scheduler(setup):
    model, optimizer = setup
    torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10)
    with pytest.raises(ValueError, match="scheduler"):
        find_lr(model, optimizer, nn.CrossEntropyLoss(), loader(), num_iter=30)


def test_model_restored_even_when_the_run_fails(setup):
    model, optimizer = setup
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []

    def failing_criterion(output, target):
        calls.append(1)
        if len(calls) > 5:
            raise RuntimeError("boom")
        return nn.functional.cross_entropy(output, target)

    with pytest.raises(RuntimeError, match="boom"):
        find_lr(model, optimizer, failing_criterion, loader(), num_iter=30)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert optimizer.param_groups[0]["lr"] == 0.05
