"""One Cycle as S10/S11 specify it (the S11 reference, SID-SURANGE/EVA-4.0: 24 epochs x 98 batches, peak at
epoch 5, 0.0157 -> 0.157), and the S11 triangular "zigzag"."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from utils.plots import plot_schedule, plot_zigzag
from utils.schedules import one_cycle, peak_inside, record_schedule, triangular_lr, triangular_schedule

EPOCHS, STEPS, PEAK, LR_MIN, LR_MAX = 24, 98, 5, 0.0157, 0.157


def sgd():
    return torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)


def seed_004(optimizer, **kwargs):
    return one_cycle(optimizer, LR_MIN, LR_MAX, EPOCHS, STEPS, PEAK, **kwargs)


@pytest.fixture(scope="module")
def trace():
    return record_schedule(sgd(), seed_004, EPOCHS * STEPS)


def test_starts_at_lr_min(trace):
    assert trace["lr"][0] == pytest.approx(LR_MIN, abs=1e-12)


def test_peaks_at_lr_max_on_the_last_batch_of_epoch_5(trace):
    lr = trace["lr"]
    peak = PEAK * STEPS - 1  # batches counted from 0
    assert int(np.argmax(lr)) == peak
    assert lr[peak] == pytest.approx(LR_MAX, abs=1e-12)


def test_ends_at_lr_min_without_annihilation(trace):
    # the last batch of epoch 24 trains at lr_min: OneCycleLR's default final_div_factor=1e4 would not
    assert len(trace["lr"]) == EPOCHS * STEPS
    assert abs(trace["lr"][-1] - LR_MIN) < 1e-9
    assert trace["lr"].min() >= LR_MIN - 1e-12


def test_linear_up_then_linear_down(trace):
    steps = np.diff(trace["lr"])
    rise, fall = steps[:PEAK * STEPS - 1], steps[PEAK * STEPS - 1:]
    assert np.all(rise > 0) and np.all(fall < 0)
    assert np.allclose(rise, (LR_MAX - LR_MIN) / (PEAK * STEPS - 1))
    assert np.allclose(fall, -(LR_MAX - LR_MIN) / ((EPOCHS - PEAK) * STEPS))


def test_sgd_momentum_cycles_against_the_lr(trace):
    momentum = trace["momentum"]
    assert momentum[0] == pytest.approx(0.95)
    assert momentum[PEAK * STEPS - 1] == pytest.approx(0.80)
    assert momentum[-1] == pytest.approx(0.95)
    assert np.argmin(momentum) == np.argmax(trace["lr"])


def test_annihilation_ends_far_below_lr_min():
    lr = record_schedule(sgd(), lambda o: seed_004(o, annihilate=True), EPOCHS * STEPS)["lr"]
    assert lr[-1] < LR_MIN / 100
    assert lr[PEAK * STEPS - 1] == pytest.approx(LR_MAX)


def test_adam_keeps_beta1_unless_asked():
    model = torch.nn.Linear(2, 2)
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    kept = record_schedule(adam, seed_004, 50)
    assert kept["momentum_name"] == "beta1" and np.all(kept["momentum"] == 0.9)
    cycled = record_schedule(adam, lambda o: seed_004(o, cycle_momentum=True), EPOCHS * STEPS)["momentum"]
    assert (cycled[0], cycled[PEAK * STEPS - 1], cycled[-1]) == pytest.approx((0.95, 0.80, 0.95))


def test_record_schedule_matches_real_training_and_leaves_optimizer_alone():
    optimizer = sgd()
    before = dict(optimizer.param_groups[0])
    recorded = record_schedule(optimizer, seed_004, EPOCHS * STEPS)["lr"]
    assert optimizer.param_groups[0] == before and "initial_lr" not in optimizer.param_groups[0]
    scheduler = seed_004(optimizer)
    used = []
    for _ in range(EPOCHS * STEPS):  # what a per-batch training loop sees
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(used, recorded, rtol=0, atol=1e-15)


@pytest.mark.parametrize("peak_epoch", [0, 24, 30])
def test_peak_outside_the_run_is_refused(peak_epoch):
    with pytest.raises(ValueError, match="peak"):
        one_cycle(sgd(), LR_MIN, LR_MAX, EPOCHS, STEPS, peak_epoch)


def test_plot_schedule_draws_lr_and_momentum():
    fig, trace = plot_schedule(sgd(), seed_004, EPOCHS * STEPS, steps_per_epoch=STEPS)
    lr_ax, momentum_ax = fig.axes
    x, y = lr_ax.lines[0].get_data()
    assert len(x) == EPOCHS * STEPS and x[PEAK * STEPS - 1] == PEAK and x[-1] == EPOCHS
    np.testing.assert_array_equal(y, trace["lr"])
    assert momentum_ax.get_ylabel() == "momentum"
    plt.close(fig)


def test_triangular_lr_at_the_corners_and_midpoints():
    lo, hi, step = 0.01, 0.11, 100
    corners = [triangular_lr(i * step, lo, hi, step) for i in range(5)]
    assert corners == pytest.approx([lo, hi, lo, hi, lo])
    assert triangular_lr(step // 2, lo, hi, step) == pytest.approx((lo + hi) / 2)       # halfway up
    assert triangular_lr(3 * step // 2, lo, hi, step) == pytest.approx((lo + hi) / 2)   # halfway down
    assert triangular_lr(step // 4, lo, hi, step) == pytest.approx(lo + 0.25 * (hi - lo))
    schedule = triangular_schedule(4 * step, lo, hi, step)
    assert len(schedule) == 4 * step and schedule.min() == pytest.approx(lo) and schedule.max() == pytest.approx(hi)
    # periodic with period 2 * step_size
    np.testing.assert_allclose(schedule[:2 * step], schedule[2 * step:])


def test_plot_zigzag():
    fig, lrs = plot_zigzag(0.0157, 0.157, 200, cycles=3)
    ax = fig.axes[0]
    assert len(lrs) == 2 * 200 * 3 + 1 and lrs[0] == pytest.approx(0.0157) and lrs[-1] == pytest.approx(0.0157)
    assert np.sum(np.isclose(lrs, 0.157)) == 3  # three peaks
    assert ax.get_xlabel() == "iteration" and ax.get_ylabel() == "learning rate" and ax.get_title()
    labels = " ".join(t.get_text() for t in ax.texts)
    assert "lr_min" in labels and "lr_max" in labels and "step size = 200" in labels
    # every annotation sits inside the axes and above LR 0 (a learning rate below 0 means nothing)
    low, high = ax.get_ylim()
    assert low >= 0 and all(low <= t.get_position()[1] <= high for t in ax.texts)
    brackets = [line for line in ax.lines if line.get_marker() == "|"]  # step size and cycle length
    assert len(brackets) == 2 and all(low <= y <= high for line in brackets for y in line.get_ydata())
    plt.close(fig)


def test_peak_inside_moves_only_a_peak_that_does_not_fit():
    assert peak_inside(5, 24, 98) == (5, None)
    peak, note = peak_inside(0.25, 1, 4)  # s9's peak (25 of 100 epochs) in a 1-epoch, 4-batch smoke run
    assert peak == 0.5 and "moved from epoch 0.25 to 0.5 (batch 2 of 4)" in note
    peak, note = peak_inside(2.9, 3, 2)   # too late: the last batch is the latest peak
    assert peak == 2.5 and "batch 5 of 6" in note
    with pytest.raises(ValueError, match="at least 3 batches"):
        peak_inside(0.5, 1, 2)
