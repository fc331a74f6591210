"""Each notebook shows its session's core computation from scratch (cells tagged "core"); each must compute what
the library the course uses computes, on the same input, or the lesson teaches something the run does not do."""
import ast
import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.notebook import REPO_ROOT

SESSIONS = ["S8", "S9", "S10", "S11"]


def core_cells(session):
    nb = json.loads((REPO_ROOT / session / f"{session}.ipynb").read_text())
    return ["".join(c["source"]) for c in nb["cells"] if "core" in c["metadata"].get("tags", [])]


def core(session):
    """The names the notebook's core cells define, run in a namespace holding only what the notebooks import."""
    namespace = {"torch": torch, "nn": nn, "F": F, "np": np, "itertools": itertools}
    for source in core_cells(session):
        exec(compile(source, f"{session} core cell", "exec"), namespace)
    return namespace


def code_lines(source):
    """Lines a student reads as code: no blank lines, comment lines or docstrings."""
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node) is not None:
            first = node.body[0]
            docstrings.update(range(first.lineno, first.end_lineno + 1))
    return [line for n, line in enumerate(source.splitlines(), 1)
            if line.strip() and not line.strip().startswith("#") and n not in docstrings]


@pytest.mark.parametrize("session", SESSIONS)
def test_every_notebook_shows_its_core_in_a_few_lines(session):
    cells = core_cells(session)
    assert cells, f"{session}: no cell tagged 'core'"
    for source in cells:
        assert len(code_lines(source)) <= 15, f"{session}: a core cell of {len(code_lines(source))} lines of code"


def test_the_one_cycle_core_is_the_same_in_s10_and_s11():
    assert set(core_cells("S10")) & set(core_cells("S11")), "S11 shows S10's One Cycle lines, unchanged"


def test_the_residual_block_is_utils_basic_block():
    from utils.models.resnet import BasicBlock

    torch.manual_seed(0)
    theirs = BasicBlock(16, 16)
    for bn in (theirs.bn1, theirs.bn2):  # batch-norm statistics and affine parameters away from their defaults
        for tensor in (bn.weight, bn.bias, bn.running_mean):
            tensor.data.uniform_(-1, 1)
        bn.running_var.data.uniform_(0.5, 2)
    ours = core("S8")["Residual"](16)
    ours.load_state_dict(theirs.state_dict())  # same parameter names: strict loading fails otherwise
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), theirs.eval()(x), atol=1e-6)
        ours.bn2.weight.zero_(), ours.bn2.bias.zero_()
        assert torch.equal(ours(x), F.relu(x))  # F(x) = 0: the block is the identity (after its ReLU)


def test_the_receptive_field_recurrence_gives_the_traced_table():
    from utils.models import S9Net
    from utils.receptive_field import receptive_field

    by_hand = core("S9")["receptive_field_by_hand"]
    table = receptive_field(S9Net())
    assert by_hand([(row.k, row.s, row.d) for row in table.rows]) == [(row.r_out, row.j_out) for row in table.rows]
    convs = [m for m in S9Net().modules() if isinstance(m, nn.Conv2d)]
    assert by_hand([(m.kernel_size[0], m.stride[0], m.dilation[0]) for m in convs])[-1] == (79, 8)  # README's 79
    assert by_hand([(3, 2, 1), (3, 1, 2)]) == [(3, 2), (11, 2)]  # dilation 2 after a stride 2: 3 + 2*2*2


def tiny_net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 10))


def test_the_range_test_loop_records_what_the_library_records():
    from utils.lr_finder import find_lr

    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(12 * 16, 3, 8, 8, generator=generator), torch.randint(0, 10, (12 * 16,), generator=generator)
    batches = list(zip(x.split(16), y.split(16)))
    ours, theirs = tiny_net(), tiny_net()
    lrs, losses = core("S10")["range_test"](ours, torch.optim.SGD(ours.parameters(), lr=1, momentum=0.9),
                                             nn.CrossEntropyLoss(), batches, num_iter=40)
    found = find_lr(theirs, torch.optim.SGD(theirs.parameters(), lr=1, momentum=0.9), nn.CrossEntropyLoss(),
                    batches, num_iter=40, progress=False)
    assert len(lrs) == len(found.history["lr"]) >= 20  # both stop at the same step once the loss diverges
    np.testing.assert_allclose(lrs, found.history["lr"], rtol=1e-12)
    np.testing.assert_allclose(losses, found.history["loss"], rtol=1e-6)
    assert lrs[0] == 1e-5 and lrs[1] == pytest.approx(1e-5 * 1e6 ** (1 / 39))


@pytest.mark.parametrize("recipe", ["s10", "s11", "s11-resnet56"])
def test_one_cycle_as_two_lines_is_the_scheduler(recipe):
    from utils.recipes import get_recipe
    from utils.schedules import record_schedule

    r, steps = get_recipe(recipe), 98
    names = core("S11")
    optimizer = r.build_optimizer(nn.Linear(2, 2), lr=r.lr_max)
    trace = record_schedule(optimizer, lambda o: r.build_scheduler(o, steps), r.epochs * steps)
    total, peak, step = r.epochs * steps, r.peak_epoch * steps - 1, np.arange(r.epochs * steps)
    np.testing.assert_allclose(names["one_cycle_lr"](step, r.lr_min, r.lr_max, peak, total), trace["lr"], rtol=1e-12)
    if r.cycle_momentum:
        np.testing.assert_allclose(names["one_cycle_momentum"](step, peak, total), trace["momentum"], rtol=1e-12)


@pytest.mark.parametrize("recipe, weights", [("s11", "S11/s11_weights.pt"), ("s9", "S9/s9_weights.pt")])
def test_grad_cam_from_scratch_is_the_grad_cam_package(recipe, weights):
    from utils.checkpoint import load_weights
    from utils.gradcam import default_target_layer, gradcam
    from utils.recipes import get_recipe

    # trained weights: an untrained net's maps can be all but zero, and then 1e-7 in the scaling decides them
    model = get_recipe(recipe).build_model().eval()
    load_weights(model, REPO_ROOT / weights)
    images, classes = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([1, 3, 5, 7])
    grad_cam = core("S11")["grad_cam"]
    ours = grad_cam(model, default_target_layer(model), images, classes).detach().numpy()
    theirs = gradcam(model, images, classes)
    assert ours.shape == theirs.shape == (4, 32, 32)
    np.testing.assert_allclose(ours, theirs, atol=1e-3)  # torch bilinear against OpenCV bilinear: ~1e-4 apart
    other = grad_cam(model, default_target_layer(model), images, torch.tensor([0, 2, 4, 6])).detach().numpy()
    assert np.abs(other - ours).max() > 0.1  # the class it is asked for matters
