import json
import subprocess
import sys

import pytest
import torch

from utils.cli import main
from utils.models import get_model
from utils.recipes import RECIPES, get_recipe


def test_every_session_has_a_recipe():
    assert list(RECIPES) == ["s8", "s9", "s10", "s11", "s11-resnet56"]
    s10, s11 = get_recipe("s10"), get_recipe("s11")
    assert (s10.optimizer, s10.batch_size, s10.epochs, s10.peak_epoch, s10.annihilate) == ("adam", 512, 24, 5, False)
    assert (s11.optimizer, s11.cycle_momentum, s11.lr_min, s11.lr_max) == ("sgd", True, 0.0157, 0.157)
    # the LR finder's suggestion: a tenth of the loss minimum for both (S11's range test is sound once its logits
    # are scaled; unscaled, its minimum sat a decade too low and the first S11 run took ten times it)
    assert (s10.find_lr, s10.lr_finder_factor, s11.find_lr, s11.lr_finder_factor) == (True, 0.1, True, 0.1)
    assert get_recipe("s11-resnet56").lr_max == 1.5


def test_unknown_recipe_is_a_clear_error(capsys):
    with pytest.raises(ValueError, match="s9, s10"):
        get_recipe("s12")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "s12"])
    assert exit_.value.code == 2
    assert "invalid choice: 's12'" in capsys.readouterr().err


def test_scaled_recipe_keeps_the_peak_in_proportion():
    recipe = get_recipe("s10").scaled(epochs=12)
    assert recipe.epochs == 12 and recipe.peak_epoch == pytest.approx(2.5)
    assert get_recipe("s10").scaled(epochs=1).peak_epoch == pytest.approx(5 / 24)  # a 1-epoch run still rises and falls


def test_a_log_headline_names_the_run_length_where_it_is_not_the_recipes():
    s10 = get_recipe("s10")
    assert s10.headline() == s10.description == "S10: custom ResNet, LR finder -> One Cycle (Adam), 24 epochs, peak at 5"
    assert s10.scaled(24, 512).headline() == s10.description
    assert s10.scaled(3, 128).headline() == f"{s10.description} (this run: 3 epochs x batch 128, peak at epoch 0.625)"


SMOKE = ["--data", "synthetic", "--limit-batches", "3", "--batch-size", "32", "--n-train", "256", "--n-test", "128",
         "--workers", "0", "--no-progress"]


def test_train_command_writes_a_run_folder(tmp_path, monkeypatch):
    import utils.train

    out = tmp_path / "run"
    real_evaluate, calls = utils.train.evaluate, []

    def interrupted_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the session ends in the middle of epoch 3
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(utils.train, "evaluate", interrupted_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        main(["train", "s9", "--epochs", "3", "--out", str(out), *SMOKE])
    monkeypatch.setattr(utils.train, "evaluate", real_evaluate)
    assert [row["epoch"] for row in json.loads((out / "history.json").read_text())] == [1, 2]
    for name in ("train.log", "history.csv", "config.json", "checkpoint.pt"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "config.json").read_text())["n_train"] == 256
    # a second run into the same folder must not silently overwrite it ...
    assert main(["train", "s9", "--epochs", "3", "--out", str(out), *SMOKE]) == 2
    # ... nor resume with a schedule of another length, or another recipe setting ...
    assert main(["train", "s9", "--epochs", "4", "--out", str(out), "--resume", *SMOKE]) == 2
    assert main(["train", "s9", "--epochs", "3", "--out", str(out), "--resume", "--set", "weight_decay=0",
                 *SMOKE]) == 2
    # ... but --resume continues it to the end
    assert main(["train", "s9", "--epochs", "3", "--out", str(out), "--resume", *SMOKE]) == 0
    assert [row["epoch"] for row in json.loads((out / "history.json").read_text())] == [1, 2, 3]
    for name in ("curves.png", "model.pt"):
        assert (out / name).stat().st_size > 0, name
    assert "resuming on " in (out / "train.log").read_text()
    assert "resumed from checkpoint.pt after epoch 2\n" in (out / "train.log").read_text()
    assert main(["evaluate", "s9", "--weights", str(out / "model.pt"), "--data", "synthetic", "--n-test", "128",
                 "--workers", "0"]) == 0


def test_set_changes_one_recipe_field_with_its_type():
    recipe = get_recipe("s9").with_overrides(["weight_decay=1e-4", "nesterov=false", "lr_max=0.2"])
    assert (recipe.weight_decay, recipe.nesterov, recipe.lr_max) == (1e-4, False, 0.2)
    assert (recipe.lr_min, recipe.epochs) == (get_recipe("s9").lr_min, get_recipe("s9").epochs)
    assert get_recipe("s9").with_overrides(None) == get_recipe("s9")
    # a float field written as an int in the recipe (s11: peak_epoch=5) takes a float, and an int is widened
    assert get_recipe("s11").with_overrides(["peak_epoch=20.0"]).peak_epoch == 20.0
    assert type(get_recipe("s11").with_overrides(["peak_epoch=20"]).peak_epoch) is float


@pytest.mark.parametrize("setting, message", [
    ("wd=1e-4", "field one of"),               # not a field
    ("weight_decay", "field one of"),          # no value
    ("epochs=40", "field one of"),             # has its own flag, which also moves the LR peak
    ("weight_decay=lots", "takes a float"),
    ("nesterov=maybe", "takes a bool"),
    ("model.dropout=lots", "takes a Python literal"),
    ("model.init=he_normal", "quote a word: --set \"model.init='he_normal'\""),
])
def test_set_rejects_what_it_cannot_apply(setting, message):
    with pytest.raises(ValueError, match=message):
        get_recipe("s9").with_overrides([setting])


def test_lr_find_takes_set_and_the_recipe_factor(tmp_path, capsys):
    out = tmp_path / "lr.png"
    args = ["lr-find", "s11", "--data", "synthetic", "--n-train", "256", "--batch-size", "16", "--num-iter", "30",
            "--workers", "0", "--out", str(out)]
    assert main([*args, "--set", "lr_finder_factor=1.0", "--set", "momentum=0.8"]) == 0
    once = json.loads(out.with_suffix(".json").read_text())
    assert once["rule"] == "loss minimum" and "(loss minimum)" in capsys.readouterr().out
    lowest = once["lowest"]
    assert once["lr_max"] == pytest.approx(once["lr"][lowest])  # factor 1: the minimum itself
    assert main([*args, "--set", "lr_finder_factor=0.1"]) == 2  # the plot and curve are there: not replaced unasked
    assert "already exists: pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--set", "lr_finder_factor=0.1"]) == 0  # the same test (seeded), a decade lower
    again = json.loads(out.with_suffix(".json").read_text())
    assert again["rule"] == "loss minimum / 10" and again["lr_max"] == pytest.approx(again["lr"][again["lowest"]] / 10)
    assert main([*args, "--set", "lr_finder_factor=0"]) == 2
    assert "lr_finder_factor 0.0 is not positive" in capsys.readouterr().err


def test_set_is_recorded_in_the_run_config(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "s9", "--epochs", "2", "--out", str(out), "--set", "weight_decay=1e-4",
                 "--set", "label_smoothing=0.1", *SMOKE]) == 0
    recipe = json.loads((out / "config.json").read_text())["recipe"]
    assert (recipe["weight_decay"], recipe["label_smoothing"]) == (1e-4, 0.1)
    assert "recipe changed by --set weight_decay=1e-4 label_smoothing=0.1" in (out / "train.log").read_text()


def test_evaluate_rejects_corrupt_weights(tmp_path, capsys):
    bad = tmp_path / "w.pt"
    bad.write_text("garbage")
    assert main(["evaluate", "s9", "--weights", str(bad), "--data", "synthetic", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "unreadable" in err and err.count("\n") == 1


def test_module_entry_point_runs_summary():
    result = subprocess.run([sys.executable, "-m", "utils", "summary", "s9"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    params = sum(p.numel() for p in get_recipe("s9").build_model().parameters())
    assert f"parameters: {params:,}" in result.stdout
    assert "r_out" in result.stdout


def test_set_reaches_the_model_constructor():
    base = get_recipe("s9")
    assert base.model_kwargs == {"dropout": 0}  # the recipe turns the model's Dropout2d off (S9/README.md)
    assert not any(isinstance(m, torch.nn.Dropout2d) for m in base.build_model().modules())
    heavier = base.with_overrides(["model.dropout=0.1"])
    assert heavier.model_kwargs == {"dropout": 0.1} and base.model_kwargs == {"dropout": 0}
    dropouts = [m for m in heavier.build_model().modules() if isinstance(m, torch.nn.Dropout2d)]
    assert len(dropouts) == 10 and all(m.p == 0.1 for m in dropouts)  # every conv but the last one
    with pytest.raises(ValueError, match="takes no argument no_such_argument; it takes: dropout"):
        base.with_overrides(["model.no_such_argument=1"]).build_model()


def test_resume_refuses_a_config_that_lacks_a_setting(tmp_path, capsys):
    """A config.json without a setting that defines the run cannot show it is the same run: refused, by name."""
    out = tmp_path / "run"
    assert main(["train", "s9", "--epochs", "2", "--out", str(out), *SMOKE]) == 0
    config = json.loads((out / "config.json").read_text())
    del config["validation"], config["recipe"]["label_smoothing"]
    (out / "config.json").write_text(json.dumps(config))
    assert main(["train", "s9", "--epochs", "2", "--out", str(out), "--resume", *SMOKE]) == 2
    err = capsys.readouterr().err
    assert "validation not recorded (now 0), recipe.label_smoothing not recorded (now 0.0)" in err
    assert "epoch 2 is done already" not in (out / "train.log").read_text()


def test_export_halves_the_weights_and_evaluate_reads_them_back(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "s9", "--epochs", "2", "--out", str(out), *SMOKE]) == 0
    assert main(["export", str(out / "checkpoint.pt"), "--out", str(tmp_path / "w16.pt")]) == 0
    full, half = (torch.load(p, weights_only=True) for p in (out / "model.pt", tmp_path / "w16.pt"))
    assert full.keys() == half.keys()
    for key, value in half.items():
        assert value.dtype == (torch.float16 if full[key].is_floating_point() else full[key].dtype), key
        assert value.is_contiguous()
        torch.testing.assert_close(value.float(), full[key].float(), rtol=1e-3, atol=1e-3)
    capsys.readouterr()
    evaluate = ["evaluate", "s9", "--data", "synthetic", "--n-test", "128", "--workers", "0"]
    assert main([*evaluate, "--weights", str(out / "model.pt")]) == 0
    assert main([*evaluate, "--weights", str(tmp_path / "w16.pt"), "--precision", "bf16"]) == 0
    fp32, bf16 = (line.split("test accuracy ")[1].split("%")[0] for line in capsys.readouterr().out.splitlines())
    assert abs(float(fp32) - float(bf16)) <= 2.5  # 128 images: a few may flip under half weights and bf16


def test_evaluate_takes_the_recipe_as_the_weights_were_trained(tmp_path, capsys):
    # Weights trained before a recipe changed (S10's previous run predates its logit scale) are scored as trained
    # with --set model.logit_scale=1. The scale leaves every argmax, so the accuracy, unchanged, and changes the loss.
    torch.manual_seed(0)
    torch.save(get_model("custom_resnet").state_dict(), tmp_path / "w.pt")
    evaluate = ["evaluate", "s10", "--weights", str(tmp_path / "w.pt"), "--data", "synthetic", "--n-test", "64",
                "--workers", "0"]
    capsys.readouterr()
    assert main(evaluate) == 0 and main([*evaluate, "--set", "model.logit_scale=1"]) == 0
    (acc_scaled, loss_scaled), (acc_plain, loss_plain) = (
        (line.split("test accuracy ")[1].split("%")[0], float(line.rsplit("loss ", 1)[1]))
        for line in capsys.readouterr().out.splitlines())
    assert acc_scaled == acc_plain and loss_scaled != pytest.approx(loss_plain, rel=1e-3)


def test_stop_after_ends_at_that_epoch_of_the_full_schedule_and_resume_finishes_it(tmp_path):
    out, whole = tmp_path / "stopped", tmp_path / "whole"
    assert main(["train", "s9", "--epochs", "3", "--out", str(out), "--stop-after", "1", *SMOKE]) == 0
    assert [row["epoch"] for row in json.loads((out / "history.json").read_text())] == [1]
    assert not (out / "model.pt").exists()  # no final weights from a run that has not finished
    assert "stopped after epoch 1 of 3, as asked" in (out / "train.log").read_text()
    assert main(["train", "s9", "--epochs", "3", "--out", str(out), "--resume", *SMOKE]) == 0
    assert main(["train", "s9", "--epochs", "3", "--out", str(whole), *SMOKE]) == 0
    stopped, uninterrupted = (json.loads((d / "history.json").read_text()) for d in (out, whole))
    # the same 3-epoch schedule, so the same LR at every batch as a run that never stopped
    assert [r["lrs"] for r in stopped] == [r["lrs"] for r in uninterrupted]
    assert (out / "model.pt").exists()
    seconds = sum(row["seconds"] for row in stopped)
    last = (out / "train.log").read_text().splitlines()[-1]
    assert last.startswith("done: final test acc") and f"; {seconds:.0f} s in its 3 epochs, " in last
    assert last.endswith(" s since the resume")  # the whole run's time, and this process's stretch of it
    # the log lists each epoch once: one header, epochs 1, 2, 3, and two lines where the resume happened
    lines = (out / "train.log").read_text().splitlines()
    rows = [line.split()[0] for line in lines if line.split()[0].isdigit()]
    assert rows == ["1", "2", "3"] and sum(line.startswith("epoch  train_loss") for line in lines) == 1
    resumed = [line for line in lines if line.startswith("resum")]
    assert [line.split(" on ")[0] for line in resumed] == ["resuming", "resumed from checkpoint.pt after epoch 1"]
    assert lines.index(resumed[1]) == lines.index(next(line for line in lines if line.split()[0] == "2")) - 1
