"""find_lr: lr_max from the loss minimum, on any loader, and the model and optimizer left exactly as found."""
import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from utils.lr_finder import find_lr, load_lr_finder, loss_minimum, rule_name


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
    find_lr(model, optimizer, nn.CrossEntropyLoss(), loader(), num_iter=30)
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


def test_suggestion_is_the_loss_minimum_over_ten(setup, tmp_path):
    model, optimizer = setup
    # to 3: this net's loss turns up before the end (at iteration 34) but never diverges: all 40 run
    result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader(), start_lr=1e-5, end_lr=3, num_iter=40,
                     save_path=tmp_path / "lr.png")
    lrs, losses = result.history["lr"], result.history["loss"]
    assert len(lrs) == len(losses) == 40
    np.testing.assert_allclose(np.diff(np.log(lrs)), np.log(3e5) / 39)  # exponential: constant ratio
    assert lrs[0] == pytest.approx(1e-5) and lrs[-1] == pytest.approx(3)  # end_lr at the last iteration
    lowest = 10 + int(np.argmin(losses[10:]))
    assert 10 < lowest < 39
    assert result.lr_max == pytest.approx(lrs[lowest] / 10) and result.rule == "loss minimum / 10"
    assert result.lr_min == pytest.approx(result.lr_max / 10)
    ax, = result.fig.axes
    assert ax.get_xscale() == "log" and "training set" in ax.get_title()
    labels = ax.get_legend_handles_labels()[1]
    assert any(label.startswith("lr_max = loss minimum / 10") for label in labels)
    assert any(label.startswith("lr_min") for label in labels)
    assert (tmp_path / "lr.png").stat().st_size > 0
    saved = json.loads((tmp_path / "lr.json").read_text())  # the curve beside the plot, to re-read it later
    assert saved["lr"] == lrs and saved["loss"] == losses and saved["lr_max"] == result.lr_max
    plt.close(result.fig)

    # read back and redrawn, not re-run: the same LRs, rule, curve and marked minimum
    again = load_lr_finder(tmp_path / "lr.json", save_path=tmp_path / "again.png")
    assert again.reused and not result.reused
    assert (again.lr_max, again.lr_min, again.rule) == (result.lr_max, result.lr_min, result.rule)
    assert again.history == result.history and (tmp_path / "again.png").stat().st_size > 0
    point = again.fig.axes[0].collections[0].get_offsets()[0]
    assert point[0] == pytest.approx(lrs[lowest]) and point[1] == pytest.approx(losses[lowest])
    # a file written before the minimum's index was stored (the S10 run's) gets it recomputed
    for key in ("lowest", "skip_start", "log_lr"):
        saved.pop(key)
    (tmp_path / "old.json").write_text(json.dumps(saved))
    old = load_lr_finder(tmp_path / "old.json")
    assert old.fig.axes[0].collections[0].get_offsets()[0][0] == pytest.approx(lrs[lowest])
    plt.close("all")


def saved_range_test(path, losses):
    """A range test as find_lr saves it, with a chosen curve (its minimum found on loading)."""
    lrs = np.geomspace(1e-5, 10, len(losses)).tolist()
    record = {"lr": lrs, "loss": losses, "num_iter": len(losses), "lr_max": 1e-3, "lr_min": 1e-4,
              "rule": "loss minimum / 10"}
    path.write_text(json.dumps(record))
    return path


def test_the_plot_frames_the_descent_and_lets_the_divergence_leave_the_top(tmp_path):
    # the curve drawn from point 2 (skip_start of 23 points): a descent to 2.0 at point 15, then a blow-up to 9
    losses = [4.5] * 10 + [4.0, 3.5, 3.0, 2.5, 2.2, 2.0, 2.1, 2.8, 3.5, 3.0, 2.9, 4.0, 9.0]
    ax, = load_lr_finder(saved_range_test(tmp_path / "lr.json", losses)).fig.axes
    bottom, top = ax.get_ylim()
    assert bottom < 2.0 and top > 4.5  # every point from the first drawn one to the minimum is inside
    assert top < 9.0 and top - bottom < 4.5  # the spike is cut: the descent fills the frame
    plt.close("all")


def test_the_rule_lines_are_drawn_only_when_asked(tmp_path):
    path = saved_range_test(tmp_path / "lr.json", [3.0] * 10 + [2.9, 2.5, 2.0, 2.5, 5.0])
    with_rule, = load_lr_finder(path).fig.axes
    without, = load_lr_finder(path, show_rule=False).fig.axes
    assert len(with_rule.lines) == 3 and len(without.lines) == 1  # the curve; + the lr_max and lr_min lines
    assert without.get_legend_handles_labels()[1] == [f"loss minimum at {np.geomspace(1e-5, 10, 15)[12]:.3g}"]
    assert [label.split(" =")[0] for label in with_rule.get_legend_handles_labels()[1][1:]] == ["lr_max", "lr_min"]
    plt.close("all")


@pytest.mark.parametrize("text", ["", "{not json", '{"lr": [1, 2]}', '{"lr": [1], "loss": [1, 2], "num_iter": 2,'
                                  ' "lr_max": 1, "lr_min": 0.1, "rule": "x", "lowest": 0}'])
def test_a_broken_saved_range_test_is_a_clear_error(tmp_path, text):
    (tmp_path / "lr_finder.json").write_text(text)
    with pytest.raises(ValueError, match="is not a saved LR range test.*delete it to run the LR finder again"):
        load_lr_finder(tmp_path / "lr_finder.json")


def test_the_minimum_is_searched_after_the_smoothing_warm_up():
    # the Adam curve of the custom ResNet: a long descent, the minimum, a blow-up, a fall, a second blow-up
    losses = [4.5] * 10 + [4.0, 3.5, 3.0, 2.5, 2.2, 2.0, 2.1, 2.8, 3.5, 3.0, 2.9, 4.0, 9.0]
    assert loss_minimum(losses, skip_start=10) == 15
    assert loss_minimum([1.0] * 10 + [3.0, 2.0, 2.5, 5.0]) == 11  # a low warm-up point is skipped
    # lowest at the first searched point: the skipped points join the search (a short, coarse test)
    assert loss_minimum([3.0, 2.9, 2.5, 2.0, 2.5, 3.0, 4.0], skip_start=3) == 3
    assert loss_minimum([3.0, 2.9, 1.5, 2.0, 2.5, 3.0, 4.0], skip_start=3) == 2
    with pytest.raises(ValueError, match="lower start_lr"):  # lowest at the very start: no descent at all
        loss_minimum([2.0, 2.5, 3.0, 3.5, 4.0], skip_start=2)
    with pytest.raises(ValueError, match="raise end_lr"):    # still falling at the end
        loss_minimum([3.0] * 10 + [2.9, 2.5, 2.0])
    with pytest.raises(ValueError, match="too few"):
        loss_minimum([3.0] * 12)


def test_too_few_iterations_is_a_clear_error(setup):
    model, optimizer = setup
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="raise num_iter"):
        find_lr(model, optimizer, nn.CrossEntropyLoss(), loader(), num_iter=4)
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


def test_rule_names():
    assert [rule_name(f) for f in (0.1, 1, 10, 0.5)] == ["loss minimum / 10", "loss minimum", "loss minimum x 10",
                                                           "loss minimum / 2"]
