"""The numbers the READMEs publish can be checked: committed weights, re-evaluated, give the logged result.

Each session's final weights are committed beside its README with the run's history. Their predicted class for
each of the 10,000 test images, computed under the run's own precision and layout, is committed too
(``tests/predictions/``), and the check has two halves:
- the committed predictions give the last logged test accuracy, and the README's claim about the assignment's
  target holds (exact arithmetic, no model);
- the weights, run here, still predict those classes on a fixed fifth of the test set (every 5th image): a wrong
  model, weights file, normalisation or image layout changes far more of them than the 0.5% allowed for
  near-ties that another CPU's kernels, or fp32 where bf16 is emulated, decide the other way.
Scoring all 10,000 images per run took most of the suite's time; a fifth checks the same files.
After committing new weights, write their predictions again: ``PYTHONPATH=. python tests/test_results.py
[SESSION ...]`` (e.g. ``S11/resnet56``; no names: every session's).
"""
import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from utils.checkpoint import load_weights
from utils.dataset import ImageData
from utils.inference import predict
from utils.loaders import AlbumentationsDataset
from utils.recipes import get_recipe
from utils.train import amp_settings, cpu_has_bf16
from utils.transforms import eval_transform

REPO = Path(__file__).resolve().parents[1]

# session folder, recipe, precision of the run's own evaluation, target, whether the README says it was reached,
# largest size of the weights file, parameter count, tolerance; every run but S9's evaluated in channels_last
RESULTS = [
    # S9 trained and evaluated in fp32 and the default layout (before bf16 autocast and channels_last were
    # adopted); its weights are fp32 too: exact match
    ("S9", "s9", "fp32", 85.0, True, 1_000_000, 181_970, 0.015),
    # S10 trained and evaluated under bf16 autocast (channels_last); its weights are committed in fp16
    ("S10", "s10", "bf16", 90.0, True, 14_000_000, 6_573_130, 0.1),
    # S11: the same net, SGD with cycled momentum; bf16 autocast, fp16 weights
    ("S11", "s11", "bf16", 90.0, False, 14_000_000, 6_573_130, 0.1),
    # S8: ResNet18, bf16 autocast + channels_last, fp16 weights (11.2 M parameters: 22.4 MB)
    ("S8", "s8", "bf16", 85.0, True, 23_000_000, 11_173_962, 0.1),
    # S11's second recipe, pre-activation ResNet-56 v2: no assignment target, so its reference's 91.00% stands in;
    # bf16 autocast, fp16 weights (1.66 M parameters: 3.3 MB)
    ("S11/resnet56", "s11-resnet56", "bf16", 91.0, False, 4_000_000, 1_657_690, 0.1),
]


PREDICTIONS = REPO / "tests" / "predictions"
EVERY = 5        # the weights are run on test images 0, 5, 10, ...: 2,000 of the 10,000
DISAGREE = 0.005  # at most this fraction of those may be predicted otherwise than the committed predictions


def predictions_file(session: str) -> Path:
    return PREDICTIONS / f"{session.replace('/', '-')}.npy"


def committed_model(session: str, recipe: str) -> torch.nn.Module:
    """The session's committed weights in the layout its run used (every run but S9's in channels_last)."""
    model = load_weights(get_recipe(recipe).build_model(), REPO / session / f"{recipe}_weights.pt")
    return model if session == "S9" else model.to(memory_format=torch.channels_last)


def predicted_classes(model, precision, images) -> np.ndarray:
    """The model's predicted class for each image under the run's precision; where this CPU only emulates
    bf16 (about 10x slower), in fp32."""
    if precision == "bf16" and not cpu_has_bf16():
        precision = "fp32"
    loader = torch.utils.data.DataLoader(AlbumentationsDataset(images, eval_transform()), batch_size=500)
    device = torch.device("cpu")
    amp_dtype = amp_settings(device, precision)[0]
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        return torch.cat([pred for _, _, pred in predict(model, loader, device)]).numpy()


def logged_test_acc(session: str) -> float:
    with open(REPO / session / "history.csv") as f:
        return float(list(csv.DictReader(f))[-1]["test_acc"])


@pytest.mark.parametrize("session, recipe, precision, target, reached, max_bytes, params, tolerance", RESULTS,
                         ids=[row[0] for row in RESULTS])
def test_committed_predictions_give_the_logged_test_accuracy(cifar_jpeg, session, recipe, precision, target,
                                                             reached, max_bytes, params, tolerance):
    predicted = np.load(predictions_file(session))
    assert predicted.shape == (10_000,)
    acc = 100.0 * float((predicted == cifar_jpeg.test.labels).mean())
    # the last epoch of the logged run evaluated these same weights on the same 10,000 test images
    assert acc == pytest.approx(logged_test_acc(session), abs=tolerance)
    assert (acc >= target) == reached  # what the session's README says about the assignment's target


@pytest.mark.parametrize("session, recipe, precision, target, reached, max_bytes, params, tolerance", RESULTS,
                         ids=[row[0] for row in RESULTS])
def test_committed_weights_predict_the_committed_predictions(cifar_jpeg, session, recipe, precision, target,
                                                             reached, max_bytes, params, tolerance):
    weights = REPO / session / f"{recipe}_weights.pt"
    assert weights.stat().st_size < max_bytes  # a state_dict, not a checkpoint with optimizer state
    model = committed_model(session, recipe)
    assert sum(p.numel() for p in model.parameters()) == params
    sample = np.arange(0, len(cifar_jpeg.test), EVERY)
    predicted = predicted_classes(model, precision, cifar_jpeg.test.subset(indices=sample))
    committed = np.load(predictions_file(session))[sample]
    assert len(predicted) == 2_000
    assert (predicted != committed).mean() <= DISAGREE


def test_the_sampled_check_catches_images_in_the_wrong_channel_order(cifar_jpeg):
    # what the 0.5% allowance must not hide: one pipeline mistake (BGR for RGB) on the cheapest net
    sample = np.arange(0, len(cifar_jpeg.test), EVERY)
    test = cifar_jpeg.test.subset(indices=sample)
    bgr = ImageData(np.ascontiguousarray(test.images[..., ::-1]), test.labels, test.classes)
    predicted = predicted_classes(committed_model("S9", "s9"), "fp32", bgr)
    assert (predicted != np.load(predictions_file("S9"))[sample]).mean() > 10 * DISAGREE


if __name__ == "__main__":  # write tests/predictions/ from the committed weights (docstring)
    from utils.image_folder import load_image_folder

    from conftest import JPEG_ARCHIVE

    if not cpu_has_bf16():
        sys.exit("this CPU emulates bf16: write the predictions where bf16 is native, as the runs were scored")
    sessions = [row[0] for row in RESULTS]
    wanted = sys.argv[1:] or sessions
    for name in wanted:
        if name not in sessions:
            sys.exit(f"unknown session {name!r}; choose from {', '.join(sessions)}")
    test_images = load_image_folder(JPEG_ARCHIVE).test
    for session, recipe, precision, *_ in (row for row in RESULTS if row[0] in wanted):
        predicted = predicted_classes(committed_model(session, recipe), precision, test_images)
        acc = 100.0 * float((predicted == test_images.labels).mean())
        np.save(predictions_file(session), predicted.astype(np.uint8))
        print(f"{session}: {acc:.2f}% ({precision}), logged {logged_test_acc(session):.2f}%")
