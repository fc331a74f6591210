"""Bad input to ``python -m utils``: exit code 2, one line on stderr that says what to do, nothing lost on disk."""
import io
import shutil
import json
import tarfile

import pytest
import torch

from utils.cli import main

SMOKE_FLAGS = {"data": "synthetic", "limit_batches": 2, "batch_size": 16, "n_train": 64, "n_test": 32, "workers": 0}


def smoke(**changes):
    """A tiny synthetic run's flags, some changed or added: smoke(limit_batches=3, seed=1)."""
    flags = SMOKE_FLAGS | changes
    return [item for key, value in flags.items() for item in ("--" + key.replace("_", "-"), str(value))] + \
        ["--no-progress"]


SMOKE = smoke()


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(capsys, argv, folder, *words):
    """Runs argv; asserts exit 2, a one-line 'error:' naming ``words``, and ``folder`` unchanged."""
    before = snapshot(folder)
    assert run_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1, err
    assert all(word in err for word in words), err
    assert snapshot(folder) == before
    return err


def run_main(argv):
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        return exit_.code


@pytest.mark.parametrize("flags, words", [
    (["--epochs", "0"], ["--epochs", "positive"]),
    (["--epochs", "-1"], ["--epochs", "positive"]),
    (["--batch-size", "0"], ["--batch-size", "positive"]),
    (["--n-train", "0"], ["--n-train", "positive"]),
    (["--n-test", "0"], ["--n-test", "positive"]),
    (["--limit-batches", "0"], ["--limit-batches", "positive"]),
    (["--validation", "-100"], ["--validation", "positive"]),
    (["--validation", "10000"], ["validation split", "10000"]),       # more than the 5,000 synthetic images
    (["--set", "transform=nope"], ["transform 'nope'", "s9, s10"]),
    (["--set", "label_smoothing=2"], ["label_smoothing 2.0"]),
    (["--device", "foo"], ["unknown device 'foo'"]),
    (["--precision", "fp8"], ["--precision", "invalid choice"]),
])
def test_bad_values_are_refused_before_anything_is_written(tmp_path, capsys, flags, words):
    out = tmp_path / "run"
    argv = ["train", "s9", "--out", str(out), *SMOKE, *flags]
    before = snapshot(tmp_path)
    assert run_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1, err
    assert all(word in err for word in words), err
    assert snapshot(tmp_path) == before and not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_device_cuda_without_a_gpu(tmp_path, capsys):
    assert run_main(["train", "s9", "--out", str(tmp_path / "run"), "--device", "cuda", *SMOKE]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_a_folder_with_results_is_never_overwritten(tmp_path, capsys):
    session = tmp_path / "S9"
    session.mkdir()
    (session / "history.csv").write_text("100 epochs of results")
    (session / "curves.png").write_bytes(b"a picture")
    refused(capsys, ["train", "s8", "--out", str(session), *SMOKE], tmp_path, "--resume", "--overwrite", "history.csv")
    assert main(["train", "s9", "--out", str(session), "--overwrite", "--epochs", "2", *SMOKE]) == 0  # asked for
    assert (session / "history.csv").read_text() != "100 epochs of results"


def test_out_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    refused(capsys, ["train", "s9", "--out", str(target), *SMOKE], tmp_path, "is a file")


def test_resume_refuses_another_run_definition_and_leaves_config_alone(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "s9", "--epochs", "3", "--out", str(out), *SMOKE]) == 0
    history = json.loads((out / "history.json").read_text())
    for changes, words in [({"limit_batches": 3}, ["limit_batches 2 (now 3)"]),
                           ({"n_test": 16}, ["n_test 32 (now 16)"]),
                           ({"seed": 1}, ["seed 0 (now 1)"]),
                           ({"precision": "fp16"}, ["precision", "(now 'fp16')"])]:
        refused(capsys, ["train", "s9", "--epochs", "3", "--out", str(out), "--resume", *smoke(**changes)],
                tmp_path, *words)
    assert json.loads((out / "history.json").read_text()) == history
    # config.json gone: the run's settings and LRs are unknown, so refused, and config.json not rewritten
    (out / "config.json").unlink()
    refused(capsys, ["train", "s10", "--epochs", "3", "--out", str(out), "--resume", *SMOKE], tmp_path,
            "no config.json with its learning rates")
    assert not (out / "config.json").exists()


def test_set_of_an_lr_turns_the_finder_off_and_says_so(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "s10", "--epochs", "2", "--out", str(out), "--set", "lr_max=0.05", *SMOKE]) == 0
    log = (out / "train.log").read_text()
    assert "LR finder off: the --set changes fix the LRs" in log and "LR finder (" not in log
    config = json.loads((out / "config.json").read_text())
    assert config["lr_max"] == 0.05 and config["recipe"]["find_lr"] is False


def _image_folder(root, bad_name=None, bad_bytes=b""):
    from PIL import Image

    from utils.data import CIFAR10_CLASSES

    for split in ("train", "test"):
        for cls in CIFAR10_CLASSES:
            (root / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (32, 32), (i * 50, 0, 0)).save(root / split / cls / f"{i}.png")
    if bad_name:
        (root / bad_name).write_bytes(bad_bytes)


@pytest.mark.parametrize("bad_bytes", [b"", b"this is text, not a JPEG"])
def test_an_unreadable_image_is_named(tmp_path, capsys, monkeypatch, bad_bytes):
    monkeypatch.setenv("CIFAR10_CACHE_DIR", str(tmp_path / "cache"))
    _image_folder(tmp_path / "data", "train/cat/broken.jpg", bad_bytes)
    refused(capsys, ["evaluate", "s9", "--weights", str(tmp_path / "w.pt"), "--data-dir", str(tmp_path / "data")],
            tmp_path / "data", "train/cat/broken.jpg", "remove or replace")


def test_a_truncated_tarball(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CIFAR10_CACHE_DIR", str(tmp_path / "cache"))
    _image_folder(tmp_path / "data")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp_path / "data", arcname="cifar")
    (tmp_path / "cut.tar.gz").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    refused(capsys, ["evaluate", "s9", "--weights", str(tmp_path / "w.pt"), "--data-dir", str(tmp_path / "cut.tar.gz")],
            tmp_path, "cut.tar.gz", "not a readable tar archive")


def test_weights_that_are_not_a_state_dict(tmp_path, capsys):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    refused(capsys, ["evaluate", "s9", "--weights", str(tmp_path / "list.pt"), "--data", "synthetic", "--workers",
                     "0"], tmp_path, "no state_dict")


def test_evaluate_with_a_missing_data_dir_creates_nothing(tmp_path, capsys, monkeypatch):
    import torchvision.datasets

    def offline(root, train=True, download=False, **kwargs):
        if download:  # what torchvision does before a download fails: make the folder
            (tmp_path / "missing").mkdir(exist_ok=True)
            raise OSError("network unreachable")
        raise RuntimeError("Dataset not found or corrupted.")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    torch.save({}, tmp_path / "w.pt")
    refused(capsys, ["evaluate", "s9", "--weights", str(tmp_path / "w.pt"), "--data-dir", str(tmp_path / "missing")],
            tmp_path, "cannot be downloaded")
    assert not (tmp_path / "missing").exists()


def test_the_api_refuses_what_the_command_line_refuses(synthetic):
    from utils.recipes import get_recipe
    from utils.spec import DataSpec, RunSpec

    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        get_recipe("s9").scaled(epochs=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        get_recipe("s9").scaled(batch_size=-1)
    with pytest.raises(ValueError, match="0 < n_val < 600"):
        synthetic.split_validation(600)
    with pytest.raises(ValueError, match="0 < n_val"):
        synthetic.split_validation(-100)
    with pytest.raises(ValueError, match="positive number of images"):
        synthetic.subset(0, 10)
    with pytest.raises(ValueError, match="limit_batches must be a positive number of batches"):
        RunSpec(get_recipe("s9"), limit_batches=0)
    with pytest.raises(ValueError, match="n_train must be a positive integer"):
        DataSpec("synthetic", n_train=0)


def test_an_unwritable_out_or_cache_folder(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    # a folder cannot be made under a file (the same OSError a read-only folder gives a normal user)
    refused(capsys, ["train", "s9", "--out", str(blocker / "run"), *SMOKE], tmp_path, "cannot write to --out")
    _image_folder(tmp_path / "data")
    monkeypatch.setenv("CIFAR10_CACHE_DIR", str(blocker / "cache"))
    refused(capsys, ["evaluate", "s9", "--weights", str(tmp_path / "w.pt"), "--data-dir", str(tmp_path / "data")],
            tmp_path, "CIFAR10_CACHE_DIR", "writable")


def test_an_image_added_after_caching_is_seen(tmp_path, monkeypatch):
    from PIL import Image

    from utils.image_folder import load_image_folder

    monkeypatch.setenv("CIFAR10_CACHE_DIR", str(tmp_path / "cache"))
    _image_folder(tmp_path / "data")
    assert len(load_image_folder(tmp_path / "data").test) == 20
    Image.new("RGB", (32, 32), (0, 0, 200)).save(tmp_path / "data" / "test" / "cat" / "new.png")
    assert len(load_image_folder(tmp_path / "data").test) == 21  # the folder's own mtime did not change
    (tmp_path / "data" / "test" / "cat" / "new.png").unlink()
    assert len(load_image_folder(tmp_path / "data").test) == 20


def test_only_the_projects_own_errors_become_one_line_and_a_bug_keeps_its_traceback(monkeypatch, capsys):
    from utils import cli
    from utils.errors import UsageError

    def bug(args):
        raise ValueError("mat1 and mat2 shapes cannot be multiplied")  # inside torch: not the user's input

    monkeypatch.setitem(cli.COMMANDS, "summary", bug)
    with pytest.raises(ValueError, match="shapes cannot be multiplied"):
        main(["summary", "s10"])

    def refused(args):
        raise UsageError("--thing 3: use 1 or 2")

    monkeypatch.setitem(cli.COMMANDS, "summary", refused)
    assert main(["summary", "s10"]) == 2
    assert capsys.readouterr().err == "error: --thing 3: use 1 or 2\n"


def test_export_and_lr_find_never_replace_a_file_unasked(tmp_path, capsys):
    weights = tmp_path / "w.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), weights)
    committed = tmp_path / "s9_weights.pt"
    committed.write_bytes(b"committed weights")
    plot = tmp_path / "lr_finder.png"
    plot.write_bytes(b"committed plot")
    assert main(["export", str(weights), "--out", str(committed)]) == 2
    assert "s9_weights.pt already exists: pass --overwrite" in capsys.readouterr().err
    assert main(["lr-find", "s9", "--data", "synthetic", "--out", str(plot)]) == 2
    assert "lr_finder.png already exists" in capsys.readouterr().err
    assert committed.read_bytes() == b"committed weights" and plot.read_bytes() == b"committed plot"
    assert main(["export", str(weights), "--out", str(committed), "--overwrite"]) == 0


def test_a_full_disk_leaves_the_old_file_whole_and_says_so(tmp_path, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    import utils.checkpoint

    weights = tmp_path / "w.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), weights)
    good = tmp_path / "s9_weights.pt"
    good.write_bytes(b"the good weights")

    def full_disk_save(obj, path):  # what torch.save does on a full disk: a partial file, then a RuntimeError
        open(path, "wb").write(b"\0" * 1_000_000)
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 1000000 vs 999936")

    monkeypatch.setattr(utils.checkpoint.torch, "save", full_disk_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: namedtuple("usage", "total used free")(10, 10, 0))
    assert main(["export", str(weights), "--out", str(good), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write ") and "no space left on device" in err and err.count("\n") == 1
    assert good.read_bytes() == b"the good weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s9_weights.pt", "w.pt"]  # no temporary file left


def test_writers_use_a_temporary_name_of_their_own_so_two_processes_never_collide(tmp_path):
    from utils.files import WriteError, replacing

    target = tmp_path / "cache.npz"
    with replacing(target) as first, replacing(target) as second:  # two writers of the same file at once
        assert first != second and first.suffix == second.suffix == ".npz" and first.parent == tmp_path
        first.write_bytes(b"one")
        second.write_bytes(b"two")
    assert target.read_bytes() in (b"one", b"two") and list(tmp_path.iterdir()) == [target]
    with pytest.raises(WriteError, match="Permission denied|Read-only"):
        with replacing(tmp_path / "sub" / "x.json") as tmp:
            tmp.parent.chmod(0o500)
            try:
                raise PermissionError(13, "Permission denied")
            finally:
                tmp.parent.chmod(0o700)


def _rename_cat(root):
    (root / "train" / "cat").rename(root / "train" / "kitty")


def _keep_three_classes(root):
    for split in ("train", "test"):
        for name in ("bird", "deer", "dog", "frog", "horse", "ship", "truck"):
            shutil.rmtree(root / split / name)


def _add_a_class(root):
    (root / "test" / "cats").mkdir()
    shutil.copy(root / "test" / "cat" / "0.png", root / "test" / "cats" / "0.png")


@pytest.mark.parametrize("change, words", [
    (_rename_cat, ["train/", "missing: cat", "unexpected: kitty"]),
    (_keep_three_classes, ["missing: bird, deer, dog, frog, horse, ship, truck"]),
    (_add_a_class, ["test/", "unexpected: cats"]),
])
def test_class_folders_must_be_cifar10s_ten(tmp_path, capsys, monkeypatch, change, words):
    # a folder's name is its label: a renamed or missing one would permute every label and score silently wrong
    monkeypatch.setenv("CIFAR10_CACHE_DIR", str(tmp_path / "cache"))
    _image_folder(tmp_path / "data")
    change(tmp_path / "data")
    refused(capsys, ["evaluate", "s9", "--weights", str(tmp_path / "w.pt"), "--data-dir", str(tmp_path / "data")],
            tmp_path / "data", "must hold CIFAR-10's ten class folders", *words)


def test_hidden_folders_and_files_are_not_classes(tmp_path, monkeypatch):
    from utils.image_folder import load_image_folder

    _image_folder(tmp_path / "data")
    (tmp_path / "data" / "train" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "data" / "train" / ".ipynb_checkpoints" / "0.png").write_bytes(
        (tmp_path / "data" / "train" / "cat" / "0.png").read_bytes())
    data = load_image_folder(tmp_path / "data", cache_dir=tmp_path / "cache")
    assert len(data.train.labels) == 20 and data.train.labels.tolist() == [c for c in range(10) for _ in range(2)]


def test_a_second_train_into_a_folder_in_use_is_refused(tmp_path, capsys):
    from utils.run_folder import holding

    out = tmp_path / "run"
    with holding(out):  # another process's run, as far as the lock can tell
        refused(capsys, ["train", "s9", "--epochs", "2", "--out", str(out), *SMOKE], out,
                "another run is training into", "another --out")
    assert main(["train", "s9", "--epochs", "2", "--out", str(out), *SMOKE]) == 0  # the lock went with its holder


def test_an_overwrite_that_fails_in_its_first_epoch_keeps_the_run_it_was_to_replace(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "s9", "--epochs", "2", "--out", str(out), *SMOKE]) == 0
    before = snapshot(out)
    # an LR that makes the first epoch's loss NaN: the new run stops before it has anything of its own
    assert main(["train", "s9", "--epochs", "2", "--out", str(out), "--overwrite", "--set", "lr_max=1e30",
                 "--set", "lr_min=1e29", *SMOKE]) == 2
    assert "non-finite" in capsys.readouterr().err
    assert snapshot(out) == before and not (out / ".replaced").exists()
    assert main(["train", "s9", "--epochs", "2", "--out", str(out), "--overwrite", "--seed", "1", *SMOKE]) == 0
    assert snapshot(out) != before and not (out / ".replaced").exists()
    assert "seed 1" in (out / "train.log").read_text()


@pytest.mark.parametrize("flags, words", [
    (["--epochs", "99999999999999999999999"], ["--epochs", "at most 10,000"]),
    (["--seed", "-5"], ["--seed", "from 0 to 4294967295, got -5"]),
])
def test_numbers_out_of_range_are_refused_naming_the_flag(tmp_path, capsys, flags, words):
    refused(capsys, ["train", "s9", "--out", str(tmp_path / "run"), *flags, *SMOKE], tmp_path, *words)


def test_a_missing_weights_file_is_named_as_missing_not_as_a_misfit(tmp_path, capsys):
    err = refused(capsys, ["evaluate", "s9", "--weights", str(tmp_path / "none.pt"), "--data", "synthetic"],
                  tmp_path, "no weights file at")
    assert "does not fit" not in err


def test_a_truncated_config_json_says_which_file_is_damaged(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "s9", "--epochs", "3", "--stop-after", "1", "--out", str(out), *SMOKE]) == 0
    (out / "config.json").write_text((out / "config.json").read_text()[:40])
    refused(capsys, ["train", "s9", "--epochs", "3", "--out", str(out), "--resume", *SMOKE], out,
            "config.json is damaged (not valid JSON)", "new --out")


def test_full_mode_refuses_to_continue_a_run_folder_of_other_settings(monkeypatch, tmp_path, synthetic):
    # the README's smoke command writes runs/s9; full mode must not list its synthetic epochs as its own
    from utils.notebook import notebook_config, train_or_replay
    from utils.run import build_run
    from utils.spec import RunSpec

    for name in ("COURSE_SMOKE", "COURSE_SHORT", "COURSE_REPLAY", "CIFAR10_DIR"):
        monkeypatch.delenv(name, raising=False)
    run_dir = tmp_path / "runs" / "s9"
    assert main(["train", "s9", "--data", "synthetic", "--n-train", "64", "--n-test", "32", "--epochs", "2",
                 "--limit-batches", "2", "--batch-size", "16", "--workers", "0", "--out", str(run_dir)]) == 0
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    config = notebook_config("s9", run_dir=run_dir, figures=tmp_path)
    run = build_run(RunSpec(config.recipe, device="cpu", precision="fp32", num_workers=0), synthetic)
    optimizer, scheduler = run.optimizer_and_scheduler()
    with pytest.raises(ValueError, match=r"was started with .*recipe.epochs 2 \(now 100\).*another folder"):
        train_or_replay(run, optimizer, scheduler, config)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
