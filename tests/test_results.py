"""The numbers the READMEs publish can be checked: committed weights, re-evaluated, give the logged result.

The S9 run reached 87.51%, above the assignment's 85%; the test checks both the logged number and the target.
"""
import csv
from pathlib import Path

import pytest
import torch

from utils.loaders import make_loaders
from utils.recipes import get_recipe
from utils.checkpoint import load_weights
from utils.train import evaluate
from utils.transforms import eval_transform

REPO = Path(__file__).resolve().parents[1]


def test_committed_s9_weights_match_the_logged_test_accuracy(cifar_jpeg):
    weights = REPO / "S9" / "s9_weights.pt"
    assert weights.stat().st_size < 1_000_000  # a state_dict, well under 1 MB
    model = load_weights(get_recipe("s9").build_model(), weights)
    assert sum(p.numel() for p in model.parameters()) < 200_000
    _, test_loader = make_loaders(cifar_jpeg, eval_transform(), eval_transform(), 500, num_workers=0)
    result = evaluate(model, test_loader, torch.device("cpu"))
    with open(REPO / "S9" / "history.csv") as f:
        logged = float(list(csv.DictReader(f))[-1]["test_acc"])
    assert result["samples"] == 10_000
    # the last epoch of the logged run evaluated these same weights on the same 10,000 test images
    assert result["acc"] == pytest.approx(logged, abs=0.015)
    assert result["acc"] >= 85.0  # the S9 assignment's target, which S9/README.md says this run reached
