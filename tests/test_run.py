"""build_run assembles every run, notebook or command line, on either route; the batched (GPU) route runs here."""
import json
from dataclasses import replace

import pytest
import torch

from utils.cli import main
from utils.gpu_data import DeviceLoader
from utils.recipes import RECIPES, get_recipe
from utils.run import build_run
from utils.spec import RunSpec

TINY = ["--data", "synthetic", "--batch-size", "16", "--n-train", "64", "--n-test", "32", "--workers", "0",
        "--no-progress"]


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_every_recipe_trains_on_the_batched_route(recipe, tmp_path):
    """What a CUDA runtime runs by default, forced on the CPU: loaders, LR finder, One Cycle, fit, run folder."""
    out = tmp_path / recipe
    assert main(["train", recipe, "--fast", "--epochs", "2", "--limit-batches", "2", "--out", str(out), *TINY]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["fast_path"] is True
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    if get_recipe(recipe).cycle_momentum:  # the last batch's momentum, back at the top of its cycle
        assert history[-1]["momentum"] == pytest.approx(0.95)
    log = (out / "train.log").read_text()
    assert "batched route" in log
    assert log.splitlines()[0].endswith(")") and "(this run: 2 epochs x batch 16, peak at epoch" in log.splitlines()[0]
    assert ("of 20 iterations" in log) == get_recipe(recipe).find_lr  # the LR finder's length in smoke runs
    assert (out / "lr_finder.json").exists() == get_recipe(recipe).find_lr


@pytest.mark.parametrize("fast", [False, True])
def test_build_run_puts_the_model_in_channels_last_and_picks_the_route(synthetic, fast):
    recipe = get_recipe("s10").scaled(2, 32)
    spec = RunSpec(recipe, fast=fast, device="cpu", precision="fp32", limit_batches=3, num_workers=0)
    run = build_run(spec, synthetic)
    assert isinstance(run.train_loader, DeviceLoader) == fast == run.fast
    conv = run.model.prep[0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert run.steps_per_epoch == 3 and spec.lr_find_iters == 20 and run.precision == "fp32"
    # the One Cycle peak of a 2-epoch x 3-batch run moves inside it (recipe: 5/24 of the run, batch 1.25)
    assert run.recipe.peak_epoch == pytest.approx(2 / 3) and "moved from epoch 0.416667" in run.note
    optimizer, scheduler = run.optimizer_and_scheduler(1e-3, 1e-2)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3) and scheduler.total_steps == 6


@pytest.mark.parametrize("fast", [False, True])
def test_find_lr_runs_on_either_loader_and_leaves_the_loader_as_it_was(synthetic, fast):
    recipe = get_recipe("s11").scaled(2, 32)
    run = build_run(RunSpec(recipe, fast=fast, device="cpu", limit_batches=2, num_workers=0), synthetic)
    before = run.train_loader.state_dict()
    weights = {k: v.clone() for k, v in run.model.state_dict().items()}
    found = run.find_lr(progress=False)
    assert 5 <= len(found.history["lr"]) <= 20 and 0 < found.lr_min < found.lr_max  # may stop on divergence
    after = run.train_loader.state_dict()
    assert torch.equal(before["generator"], after["generator"])
    assert all(torch.equal(weights[k], v) for k, v in run.model.state_dict().items())


def test_find_lr_reuses_the_range_test_saved_in_the_run_folder(synthetic, tmp_path, monkeypatch):
    run = build_run(RunSpec(get_recipe("s10").scaled(2, 32), device="cpu", limit_batches=2, num_workers=0), synthetic)
    (tmp_path / "figures").mkdir()
    first = run.find_lr(progress=False, run_dir=tmp_path, save_path=tmp_path / "figures" / "lr_finder.png")
    assert (tmp_path / "lr_finder.json").exists() and not first.reused
    assert not (tmp_path / "figures" / "lr_finder.json").exists()  # the record lives in the run folder only

    def no_second_test(*args, **kwargs):
        raise AssertionError("the range test ran again")

    monkeypatch.setattr("utils.run.find_lr", no_second_test)
    second = run.find_lr(progress=False, run_dir=tmp_path)  # a resumed or replayed notebook
    assert second.reused and (second.lr_min, second.lr_max) == (first.lr_min, first.lr_max)
    # the lr_max/lr_min lines only where the recipe trains with them; S8's fixes its LRs: the minimum alone
    assert len(second.fig.axes[0].lines) == 3
    fixed = replace(run, recipe=replace(run.recipe, find_lr=False)).find_lr(progress=False, run_dir=tmp_path)
    assert len(fixed.fig.axes[0].lines) == 1 and not get_recipe("s8").find_lr


def test_a_one_epoch_smoke_run_moves_the_peak_and_says_so(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "s9", "--epochs", "1", "--limit-batches", "4", "--out", str(out), *TINY]) == 0
    assert "One Cycle peak moved from epoch 0.25 to 0.5 (batch 2 of 4)" in (out / "train.log").read_text()


def test_compile_runs_where_a_compiler_is_present(tmp_path):
    import shutil

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile on the CPU needs a C++ compiler; none on this machine")
    out = tmp_path / "run"
    assert main(["train", "s9", "--compile", "--epochs", "2", "--limit-batches", "2", "--out", str(out), *TINY]) == 0
    # model.pt holds the plain model's keys, not torch.compile's "_orig_mod." ones
    assert not any(k.startswith("_orig_mod") for k in torch.load(out / "model.pt", weights_only=True))


def test_the_notebooks_full_run_is_the_command_lines_run(monkeypatch, tmp_path):
    """One specification: what "Run all" trains in full mode is what `python -m utils train` trains."""
    from utils.cli import build_parser, run_spec
    from utils.notebook import notebook_config

    for name in ("COURSE_SMOKE", "COURSE_SHORT", "COURSE_REPLAY", "COURSE_FAST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "cifar"))
    for recipe in RECIPES:
        notebook = notebook_config(recipe, figures=tmp_path).spec
        command_line = run_spec(build_parser().parse_args(["train", recipe, "--data-dir", str(tmp_path / "cifar")]))
        assert notebook == command_line, recipe
        assert notebook.device == torch.device("cpu") and notebook.precision in ("fp32", "bf16")  # settled once
        assert notebook.lr_find_iters == 100


def test_config_json_records_each_lr_once_and_a_resume_reads_the_checkpoint_once(tmp_path, monkeypatch):
    import utils.checkpoint

    out = tmp_path / "run"
    args = ["train", "s10", "--epochs", "3", "--limit-batches", "2", "--out", str(out), *TINY]
    assert main([*args, "--stop-after", "1"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert "lr_max" not in config["recipe"] and "lr_min" not in config["recipe"]  # the LR finder's, not the recipe's
    assert config["lr_max"] == pytest.approx(10 * config["lr_min"]) and config["lr_max"] != get_recipe("s10").lr_max
    reads = []
    real_load = torch.load
    monkeypatch.setattr(utils.checkpoint.torch, "load", lambda path, *a, **k: reads.append(path) or real_load(path, *a, **k))
    assert main([*args, "--resume"]) == 0
    assert [p for p in reads if str(p).endswith("checkpoint.pt")] == [out / "checkpoint.pt"]
    assert json.loads((out / "config.json").read_text())["lr_max"] == config["lr_max"]  # the same LRs, kept
