from utils.notebook import REPO_ROOT, notebook_config


def test_smoke_mode_is_small_and_writes_nothing_into_the_repo(monkeypatch):
    monkeypatch.setenv("COURSE_SMOKE", "1")
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    config = notebook_config("s10")
    assert config.smoke and config.data == "synthetic"
    assert (config.recipe.epochs, config.recipe.batch_size, config.limit_batches) == (2, 64, 4)
    assert REPO_ROOT not in config.run_dir.parents and REPO_ROOT not in config.figures.parents
    assert config.steps_per_epoch(range(16)) == 4 and config.steps_per_epoch(range(3)) == 3
    assert "SMOKE" in repr(config)


def test_full_mode_is_the_recipe_and_shares_the_cli_run_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("COURSE_SMOKE", raising=False)
    monkeypatch.setenv("CIFAR10_DIR", "/data/cifar")
    config = notebook_config("s10", figures=tmp_path / "figs")
    assert not config.smoke and config.data_dir == "/data/cifar"
    assert (config.recipe.epochs, config.recipe.batch_size, config.recipe.peak_epoch) == (24, 512, 5)
    assert config.run_dir == REPO_ROOT / "runs" / "s10"
    assert config.limit_batches is None and config.steps_per_epoch(range(98)) == 98
    assert config.figure("x.png") == tmp_path / "figs" / "x.png" and (tmp_path / "figs").is_dir()
