import json

import pytest

import torch

from utils.history import History
from utils.notebook import REPO_ROOT, notebook_config, train_or_replay
from utils.recipes import get_recipe
from utils.run import build_run
from utils.spec import RunSpec


def test_smoke_mode_is_small_and_writes_nothing_into_the_repo(monkeypatch):
    monkeypatch.setenv("COURSE_SMOKE", "1")
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    config = notebook_config("s10")
    assert config.smoke and config.spec.data.source == "synthetic"
    spec = config.spec
    assert (config.recipe.epochs, config.recipe.batch_size, spec.limit_batches, spec.lr_find_iters) == (2, 32, 4, 30)
    assert REPO_ROOT not in config.run_dir.parents and REPO_ROOT not in config.figures.parents
    assert "SMOKE" in repr(config)


def test_short_mode_is_a_labelled_real_subset_with_scaled_lr(monkeypatch, tmp_path):
    monkeypatch.delenv("COURSE_SMOKE", raising=False)
    monkeypatch.setenv("COURSE_SHORT", "1")
    monkeypatch.setenv("CIFAR10_DIR", "/data/cifar")
    config = notebook_config("s8", figures=tmp_path)
    assert config.mode == "short" and not config.smoke and "SHORT" in repr(config)
    data = config.spec.data
    assert (data.n_train, data.n_test, config.spec.limit_batches) == (5000, 2000, None)
    assert (config.recipe.epochs, config.recipe.batch_size) == (3, 128)
    # s8: batch 256, lr 0.01 -> 0.1, peak at epoch 5 of 20; at batch 128 half the LR, peak at the same fraction
    assert config.recipe.lr_min == pytest.approx(0.005) and config.recipe.lr_max == pytest.approx(0.05)
    assert config.recipe.peak_epoch == pytest.approx(0.75)
    assert config.run_dir == REPO_ROOT / "runs" / "s8-short" and config.figures == tmp_path


def test_full_mode_is_the_recipe_and_shares_the_cli_run_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("COURSE_SMOKE", raising=False)
    monkeypatch.delenv("COURSE_SHORT", raising=False)
    monkeypatch.setenv("CIFAR10_DIR", "/data/cifar")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a Colab T4: the route stays albumentations
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    config = notebook_config("s10", figures=tmp_path / "figs")
    assert (config.spec.device.type, config.spec.precision) == ("cuda", "fp16")  # settled once, in the spec
    assert not config.smoke and config.spec.data.data_dir == "/data/cifar"
    assert (config.recipe.epochs, config.recipe.batch_size, config.recipe.peak_epoch) == (24, 512, 5)
    assert config.run_dir == REPO_ROOT / "runs" / "s10"
    assert config.spec.limit_batches is None and config.spec.fast is False  # the albumentations DataLoader, everywhere
    assert config.figure("x.png") == tmp_path / "figs" / "x.png" and (tmp_path / "figs").is_dir()


@pytest.mark.parametrize("session", ["S8", "S9", "S10", "S11"])
def test_notebooks_seed_before_they_build_a_model(session):
    # Unseeded, each execution starts from other weights: smoke runs of the LR finder were flaky in CI
    # and a stored run could not be reproduced by rerunning its notebook.
    nb = json.loads((REPO_ROOT / session / f"{session}.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "seed_everything(config.seed)" in code
    assert code.index("seed_everything(config.seed)") < code.index("build_run(")


@pytest.mark.parametrize("value, fast", [("1", True), ("0", False)])
def test_course_fast_forces_a_route(monkeypatch, value, fast):
    monkeypatch.setenv("COURSE_FAST", value)
    config = notebook_config("s10", mode="smoke")
    assert config.spec.fast is fast and ("batched on the device" if fast else "albumentations DataLoader") in repr(config)
    monkeypatch.setenv("COURSE_FAST", "yes")
    with pytest.raises(ValueError, match="COURSE_FAST must be 1"):
        notebook_config("s10", mode="smoke")


def test_replay_mode_loads_the_committed_weights_and_history_and_trains_nothing(monkeypatch, tmp_path, synthetic):
    for name in ("COURSE_SMOKE", "COURSE_SHORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COURSE_REPLAY", "1")
    config = notebook_config("s9", figures=tmp_path, run_dir=tmp_path / "never-written")
    assert config.replay == tmp_path and "replaying the committed weights and history" in repr(config)
    run = build_run(RunSpec(get_recipe("s9").scaled(2, 32), device="cpu", limit_batches=2, num_workers=0), synthetic)
    with pytest.raises(FileNotFoundError, match="unset COURSE_REPLAY to train"):
        train_or_replay(run, None, None, config)
    torch.manual_seed(1)
    committed = get_recipe("s9").build_model().state_dict()
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in committed.items()}, tmp_path / "s9_weights.pt")
    rows = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 50.0 + e, "test_loss": 1.1 / e, "test_acc": 55.0 + e,
             "lr": 0.01 * e, "seconds": 50.5} for e in (1, 2)]  # an older run's table: no momentum column
    History(rows).save(tmp_path)
    (tmp_path / "history.json").unlink()  # the S9 run committed its CSV only
    printed = []
    history = train_or_replay(run, None, None, config, log=printed.append)
    assert list(history) == rows
    assert printed[0].startswith("replayed, nothing trained: the final weights (s9_weights.pt) and the history "
                                 "(history.csv)") and len(printed) == 4  # the note, the header, two epochs
    for key, value in run.model.state_dict().items():
        expected = committed[key].half().to(value.dtype) if value.is_floating_point() else committed[key]
        assert torch.equal(value, expected), key
    assert not (tmp_path / "never-written").exists()


def test_replay_is_off_unless_asked_and_refused_outside_full_mode(monkeypatch):
    for name in ("COURSE_SMOKE", "COURSE_SHORT", "COURSE_REPLAY"):
        monkeypatch.delenv(name, raising=False)
    assert notebook_config("s9").replay is None
    monkeypatch.setenv("COURSE_REPLAY", "1")
    monkeypatch.setenv("COURSE_SMOKE", "1")
    with pytest.raises(ValueError, match="s9 cannot also be smoke or short: unset COURSE_SMOKE"):  # not ignored
        notebook_config("s9")
    monkeypatch.delenv("COURSE_SMOKE")
    monkeypatch.setenv("COURSE_SHORT", "1")
    monkeypatch.setenv("CIFAR10_DIR", "/data/cifar")
    with pytest.raises(ValueError, match="replays a session's committed full run"):
        notebook_config("s9")


def test_modes_can_name_recipes_so_one_notebook_mixes_a_replay_and_a_short_run(monkeypatch, tmp_path):
    # S11 holds two recipes whose full runs finish sessions apart: replay the one that is done, show the other short
    monkeypatch.delenv("COURSE_SMOKE", raising=False)
    monkeypatch.setenv("CIFAR10_DIR", "/data/cifar")
    monkeypatch.setenv("COURSE_REPLAY", "s11")
    monkeypatch.setenv("COURSE_SHORT", "s11-resnet56")
    first = notebook_config("s11", figures=tmp_path)
    second = notebook_config("s11-resnet56", figures=tmp_path / "resnet56")
    assert (first.mode, first.replay, first.recipe.epochs) == ("full", tmp_path, 24)
    assert (second.mode, second.replay, second.recipe.epochs) == ("short", None, 3)
    assert second.run_dir == REPO_ROOT / "runs" / "s11-resnet56-short"
    monkeypatch.setenv("COURSE_SHORT", "s11-resnet56, s11")  # both named: a conflict for s11, said so
    with pytest.raises(ValueError, match="s11 cannot also be smoke or short"):
        notebook_config("s11")
    monkeypatch.setenv("COURSE_SHORT", "s11-resnet65")  # a typo must not start a 50-epoch run on a CPU
    with pytest.raises(ValueError, match="COURSE_SHORT=s11-resnet65: unknown recipe 's11-resnet65'"):
        notebook_config("s11-resnet56")
    monkeypatch.setenv("COURSE_SHORT", "0")
    monkeypatch.delenv("COURSE_REPLAY")
    assert notebook_config("s11").mode == "full"


def clear_mode_environment(monkeypatch):
    for name in ("COURSE_SMOKE", "COURSE_SHORT", "COURSE_REPLAY", "CIFAR10_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("mode", ["full", "replay", "short", "smoke"])
def test_the_notebooks_mode_comes_from_its_config_cell_and_the_environment_overrides_it(monkeypatch, tmp_path, mode):
    clear_mode_environment(monkeypatch)
    config = notebook_config("s10", mode=mode, figures=tmp_path)
    assert (config.mode, config.replay) == ({"replay": "full"}.get(mode, mode), tmp_path if mode == "replay" else None)
    monkeypatch.setenv("COURSE_SMOKE", "1")  # CI's nbval runs: whatever the cell says, a smoke run
    assert notebook_config("s10", mode=mode).mode == "smoke"


def test_the_config_output_says_which_mode_ran_and_what_chose_it(monkeypatch, tmp_path):
    # A stored output reads "replay" under a cell that says MODE = "full" only with the variable that overrode it
    clear_mode_environment(monkeypatch)
    first = repr(notebook_config("s10", mode="replay", figures=tmp_path)).splitlines()[0]
    assert first.startswith("s10 [replay, replaying the committed weights") and "set by" not in first
    assert "set by" not in repr(notebook_config("s10", mode="full", figures=tmp_path))
    monkeypatch.setenv("COURSE_REPLAY", "1")
    first = repr(notebook_config("s10", mode="full", figures=tmp_path)).splitlines()[0]
    assert first.startswith("s10 [replay, ") and "set by COURSE_REPLAY=1, which overrides MODE = 'full']" in first
    monkeypatch.setenv("COURSE_REPLAY", "s10,s11")
    assert "set by COURSE_REPLAY=s10,s11, which overrides MODE = 'short'" in repr(notebook_config("s10", mode="short"))


@pytest.mark.parametrize("variable, value, message", [
    ("COURSE_SMOKE", "true", "COURSE_SMOKE='true': use 1 for a smoke run"),  # used to run the full 24 epochs
    ("COURSE_SMOKE", "yes", "COURSE_SMOKE='yes'"),
    ("COURSE_REPLAY", "true", "COURSE_REPLAY=true: unknown recipe 'true'"),
    (None, None, "MODE = 'quick' is not one of 'full', 'replay', 'short', 'smoke'"),
])
def test_a_mode_it_cannot_mean_is_an_error_not_a_full_run(monkeypatch, variable, value, message):
    clear_mode_environment(monkeypatch)
    if variable:
        monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=message):
        notebook_config("s10", mode="full" if variable else "quick")


def test_short_mode_online_downloads_cifar10_with_torchvision(monkeypatch, tmp_path):
    # Colab: no CIFAR10_DIR, so short mode downloads as full mode does (a stand-in for torchvision's download)
    import numpy as np
    import torchvision.datasets

    clear_mode_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    asked = []

    class StandIn:
        classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

        def __init__(self, root, train=True, download=False):
            asked.append((root, train, download))
            if not download:
                raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")
            n = 6000 if train else 2500
            self.data = np.zeros((n, 32, 32, 3), dtype=np.uint8)
            self.targets = list(np.arange(n) % 10)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", StandIn)
    config = notebook_config("s10", mode="short", figures=tmp_path)
    assert (config.mode, config.spec.data.source, config.spec.data.data_dir) == ("short", "cifar10", "data")
    data = config.spec.load_data()
    assert ("data", True, True) in asked and ("data", False, True) in asked
    assert (len(data.train), len(data.test)) == (5000, 2000)



def test_a_replay_reads_the_committed_range_test_not_a_run_folder(monkeypatch, tmp_path):
    clear_mode_environment(monkeypatch)
    monkeypatch.setenv("COURSE_REPLAY", "1")
    assert notebook_config("s10", figures=tmp_path).record_dir == tmp_path
    monkeypatch.delenv("COURSE_REPLAY")
    assert notebook_config("s10", figures=tmp_path).record_dir == REPO_ROOT / "runs" / "s10"
