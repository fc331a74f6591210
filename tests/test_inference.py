"""recompute_batchnorm: running statistics replaced by the data's own, weights and modes untouched."""
import pytest
import torch
from torch import nn

from utils.cli import main
from utils.inference import recompute_batchnorm
from utils.recipes import get_recipe


class Counted:
    """An iterable of batches that counts how many were taken."""

    def __init__(self, batches):
        self.batches, self.taken = batches, 0

    def __iter__(self):
        for batch in self.batches:
            self.taken += 1
            yield batch


def test_running_statistics_become_the_datas_and_nothing_else_changes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5))
    bn = model[1]
    bn.running_mean.fill_(100.0)  # stale statistics, as after a fast-moving epoch
    bn.running_var.fill_(1e-3)
    model.eval()
    model[3].train()  # a mixed mode must come back mixed
    weights = {k: v.clone() for k, v in model.named_parameters()}
    batches = [(torch.randn(8, 3, 6, 6) * 2 + 1, torch.zeros(8, dtype=torch.long)) for _ in range(5)]
    loader = Counted(batches)

    assert recompute_batchnorm(model, loader, batches=3) is model

    assert loader.taken == 3
    # update_bn's cumulative average: the mean over the 3 batches of each batch's mean and unbiased variance
    with torch.no_grad():
        per_batch = [model[0](x) for x, _ in batches[:3]]
    mean = torch.stack([f.mean((0, 2, 3)) for f in per_batch]).mean(0)
    var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in per_batch]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean)
    torch.testing.assert_close(bn.running_var, var)
    assert bn.momentum == 0.1  # update_bn's cumulative mode undone
    assert all(torch.equal(weights[k], v) for k, v in model.named_parameters())
    assert not model.training and not bn.training and model[3].training


def test_at_least_one_batch():
    with pytest.raises(ValueError, match="at least 1"):
        recompute_batchnorm(nn.BatchNorm2d(3), [], batches=0)


def test_evaluate_scores_before_and_after_recomputing(tmp_path, capsys):
    weights = tmp_path / "w.pt"
    torch.save(get_recipe("s9").build_model().state_dict(), weights)
    evaluate = ["evaluate", "s9", "--weights", str(weights), "--data", "synthetic", "--n-train", "512",
                "--n-test", "128", "--workers", "0"]
    assert main([*evaluate, "--recompute-bn", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "test accuracy" in lines[0]
    assert lines[1].startswith("  with batch-norm statistics recomputed from 2 training batches of 256: test accuracy")
    assert main([*evaluate, "--recompute-bn", "0"]) == 2
    assert "--recompute-bn takes a number of batches, at least 1; got 0" in capsys.readouterr().err


class LeftOrRight(nn.Module):
    """Class 1 when the left half of the image is brighter than the right, else class 0, with a margin that
    grows with the difference: the mirror image gets the other class, so flip TTA decides by the larger margin."""

    def forward(self, x):
        half = x.shape[-1] // 2
        d = x[..., :half].mean(dim=(1, 2, 3)) - x[..., half:].mean(dim=(1, 2, 3))
        return torch.stack([-d - 0.1, d], dim=1)


def test_flip_tta_averages_an_image_with_its_mirror_and_counts_what_changes():
    from utils.inference import flip_tta

    torch.manual_seed(0)
    x, y = torch.randn(40, 3, 8, 8), torch.randint(0, 2, (40,))
    loader = [(x[:25], y[:25]), (x[25:], y[25:])]  # two batches, one short: counts add up over the loader
    model = LeftOrRight()
    logits, mirrored = model(x), model(x.flip(3))
    plain, tta = logits.argmax(1) == y, (logits + mirrored).argmax(1) == y
    result = flip_tta(model, loader)
    assert result["samples"] == 40
    assert result["plain"] == pytest.approx(100 * plain.float().mean().item())
    assert result["tta"] == pytest.approx(100 * tta.float().mean().item())
    assert (result["fixed"], result["broken"]) == (int((tta & ~plain).sum()), int((plain & ~tta).sum()))
    assert result["fixed"] + result["broken"] > 0  # the mirror changed some answers here, so the counts are tested
    assert result["agree"] == pytest.approx(100 * (logits.argmax(1) == mirrored.argmax(1)).float().mean().item())
    # a net that cannot tell left from right (global pooling) gets nothing from the mirror
    symmetric = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    same = flip_tta(symmetric, loader)
    assert same["plain"] == same["tta"] and same["fixed"] == same["broken"] == 0 and same["agree"] == 100


def test_evaluate_tta_prints_both_views(tmp_path, capsys):
    weights = tmp_path / "w.pt"
    torch.save(get_recipe("s9").build_model().state_dict(), weights)
    assert main(["evaluate", "s9", "--weights", str(weights), "--data", "synthetic", "--n-train", "256",
                 "--n-test", "128", "--workers", "0", "--tta"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("  fp32: test accuracy ") and "with flip TTA" in lines[1]
