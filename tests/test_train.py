import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from utils.checkpoint import CheckpointError, load_checkpoint, load_weights
from utils.data import make_synthetic
from utils.loaders import make_loaders
from utils.history import History
from utils.train import NonFiniteLossError, amp_settings, evaluate, fit, seed_everything, train_epoch
from utils.transforms import eval_transform, s10_train_transform


def tiny_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(4),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Dropout(0.2), nn.Linear(16, 10))


def _run(synthetic, epochs=2, checkpoint=None, resume=False, seed=0, model=None, precision="fp32"):
    seed_everything(seed)
    train_loader, test_loader = make_loaders(synthetic, s10_train_transform(seed=seed), eval_transform(),
                                             batch_size=64, num_workers=0, seed=seed)
    model = model or tiny_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, epochs=3, steps_per_epoch=len(train_loader))
    history = fit(model, train_loader, test_loader, optimizer, epochs, scheduler=scheduler,
                  precision=precision, checkpoint_path=checkpoint, resume=resume, progress=False, log=None)
    return history, model


def test_evaluate_is_the_true_mean_over_samples():
    """Batches of unequal size: the mean of batch means would be wrong."""
    torch.manual_seed(0)
    x, y = torch.randn(10, 3, 32, 32), torch.randint(0, 10, (10,))
    loader = [(x[:7], y[:7]), (x[7:], y[7:])]
    model = tiny_net().train()
    result = evaluate(model, loader, torch.device("cpu"))
    model.eval()
    expected = nn.functional.cross_entropy(model(x), y).item()
    assert result["loss"] == pytest.approx(expected, rel=1e-6)
    assert result["samples"] == 10
    assert model.training is False
    model.train()
    evaluate(model, loader, torch.device("cpu"))
    assert model.training  # mode restored


def test_evaluate_turns_dropout_off():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.9), nn.Linear(3 * 32 * 32, 10))
    loader = [(torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long))]
    a = evaluate(model, loader, torch.device("cpu"))["loss"]
    b = evaluate(model, loader, torch.device("cpu"))["loss"]
    assert a == b


def test_train_epoch_steps_the_scheduler_after_every_batch():
    model = tiny_net()
    loader = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))] * 5
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    result = train_epoch(model, loader, optimizer, nn.CrossEntropyLoss(), torch.device("cpu"), scheduler,
                         progress=False)
    assert scheduler.last_epoch == 5 and result["lrs"] == [1.0, 1 / 2, 1 / 3, 1 / 4, 1 / 5]
    assert result["samples"] == 20


@pytest.mark.parametrize("progress, env, bar_shown", [(True, "", True), (True, "1", False), (False, "", False)])
def test_progress_bar_obeys_the_flag_and_tqdm_disable(progress, env, bar_shown):
    # tqdm reads TQDM_* variables when it is imported, so each case runs in a fresh interpreter.
    code = ("import torch; from torch import nn; from utils.train import train_epoch\n"
            "model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))\n"
            "loader = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))] * 3\n"
            "train_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),\n"
            f"            torch.device('cpu'), epoch=7, progress={progress})\n")
    env_vars = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"} | ({"TQDM_DISABLE": env} if env else {})
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env_vars,
                            cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert result.returncode == 0, result.stderr
    assert ("epoch 7" in result.stderr) == bar_shown


def test_fit_learns_synthetic_data_and_history_has_every_field(tmp_path):
    seed_everything(0)
    data = make_synthetic(2000, 500, seed=0)
    train_loader, test_loader = make_loaders(data, eval_transform(), eval_transform(), 64, num_workers=0)
    model = tiny_net()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = fit(model, train_loader, test_loader, optimizer, 5, progress=False, log=None)
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]
    assert set(history[0]) == {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "momentum",
                               "seconds", "lrs"}
    assert history[0]["momentum"] == 0.9 and len(history[0]["lrs"]) == len(train_loader)  # Adam's beta1
    assert history[-1]["test_acc"] > 25.0  # chance is 10%; a model this tiny reaches ~38% here
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    json_path, csv_path = History(history).save(tmp_path)
    assert json.loads(json_path.read_text()) == list(history)
    assert csv_path.read_text().splitlines()[0] == "epoch,train_loss,train_acc,test_loss,test_acc,lr,momentum,seconds"


def test_two_seeded_runs_are_identical(synthetic):
    a, model_a = _run(synthetic, epochs=2, seed=5)
    b, model_b = _run(synthetic, epochs=2, seed=5)
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(a) == strip(b)
    for p, q in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(p, q)


def test_resume_continues_exactly_where_it_stopped(synthetic, tmp_path):
    straight, model_straight = _run(synthetic, epochs=3, checkpoint=tmp_path / "a.pt")
    _run(synthetic, epochs=2, checkpoint=tmp_path / "b.pt")  # "interrupted" after epoch 2 ...
    resumed, model_resumed = _run(synthetic, epochs=3, checkpoint=tmp_path / "b.pt", resume=True, seed=99)
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(resumed) == strip(straight)  # ... and resumed, with another seed that must not matter
    for p, q in zip(model_straight.state_dict().values(), model_resumed.state_dict().values()):
        assert torch.equal(p, q)
    state = load_checkpoint(tmp_path / "a.pt")
    assert state["epoch"] == 3 and set(state) >= {"model", "optimizer", "scheduler", "scaler", "history"}
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temp files


def test_nan_loss_stops_with_epoch_batch_and_lr_and_keeps_last_checkpoint(synthetic, tmp_path):
    train_loader, test_loader = make_loaders(synthetic, eval_transform(), eval_transform(), 64, num_workers=0)
    model = tiny_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    fit(model, train_loader, test_loader, optimizer, 1, checkpoint_path=tmp_path / "c.pt",
        progress=False, log=None)
    good = load_checkpoint(tmp_path / "c.pt")

    def poisoned(logits, y):
        return nn.functional.cross_entropy(logits, y) * float("nan")

    lines = []
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 1 \(lr 0.01\); the checkpoint after epoch 1 is kept"):
        fit(model, train_loader, test_loader, optimizer, 2, criterion=poisoned,
            checkpoint_path=tmp_path / "c.pt", resume=True, progress=False, log=lines.append)
    assert lines[-1].startswith("stopped: loss became non-finite at epoch 2")  # the log says why it stopped
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written"):
        fit(tiny_net(), train_loader, test_loader, torch.optim.SGD(model.parameters(), lr=0.01), 1,
            criterion=poisoned, progress=False, log=None)
    kept = load_checkpoint(tmp_path / "c.pt")
    assert kept["epoch"] == 1
    assert all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])


def test_corrupt_or_missing_checkpoint_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable") as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_weights(tiny_net(), bad)


def test_load_weights_accepts_state_dict_and_rejects_wrong_model(tmp_path):
    model = tiny_net()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    other = load_weights(tiny_net(), tmp_path / "w.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(nn.Linear(3, 3), tmp_path / "w.pt")


@pytest.mark.parametrize("precision, dtype, scaling", [("fp32", None, False), ("bf16", torch.bfloat16, False),
                                                      ("fp16", torch.float16, True)])
def test_precision_settings_on_the_cpu(precision, dtype, scaling):
    amp_dtype, scaler = amp_settings(torch.device("cpu"), precision)
    assert amp_dtype == dtype and scaler.is_enabled() == scaling
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        amp_settings(torch.device("cpu"), "fp8")


@pytest.mark.parametrize("gpu, capability, expected", [("Tesla T4", (7, 5), torch.float16),
                                                       ("Tesla V100", (7, 0), torch.float16),
                                                       ("NVIDIA L4", (8, 9), torch.bfloat16),
                                                       ("NVIDIA A100", (8, 0), torch.bfloat16)])
def test_auto_precision_takes_bf16_only_where_the_gpu_has_bf16_convolutions(monkeypatch, gpu, capability, expected):
    # A T4 answers is_bf16_supported() with True (emulation counts), but cuDNN has no bf16 convolutions below 8.0
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    assert amp_settings(torch.device("cuda"), "auto")[0] == expected
    assert amp_settings(torch.device("cuda"), "bf16")[0] == torch.bfloat16  # --precision still overrides
    assert amp_settings(torch.device("cuda"), "fp32")[0] is None


def test_fp16_autocast_with_grad_scaler_trains_on_the_cpu(synthetic, tmp_path):
    """The CUDA route's fp16 autocast + GradScaler code, run here: the scale is saved and restored on resume."""
    straight, _ = _run(synthetic, epochs=2, checkpoint=tmp_path / "a.pt", precision="fp16")
    assert straight[-1]["train_loss"] < straight[0]["train_loss"]
    state = load_checkpoint(tmp_path / "a.pt")
    assert state["scaler"]["scale"] > 0  # a live GradScaler's state, not the disabled one's {}
    _run(synthetic, epochs=1, checkpoint=tmp_path / "b.pt", precision="fp16")
    resumed, _ = _run(synthetic, epochs=2, checkpoint=tmp_path / "b.pt", resume=True, precision="fp16")
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(resumed) == strip(straight)


def test_bf16_autocast_runs_the_model_in_bf16():
    seen = []
    model = tiny_net()
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    loader = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))]
    amp_dtype, scaler = amp_settings(torch.device("cpu"), "bf16")
    train_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                torch.device("cpu"), amp_dtype=amp_dtype, scaler=scaler, progress=False)
    evaluate(model, loader, torch.device("cpu"), amp_dtype)
    assert seen == [torch.bfloat16, torch.bfloat16]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay fp32


def test_s9_net_learns_real_images(cifar_jpeg):
    """A short fit on 1,500 real CIFAR-10 images (JPEG q75 copy) clearly beats chance (10%)."""
    from utils.models import S9Net

    seed_everything(0)
    data = cifar_jpeg.subset(1500, 1000, seed=0)
    train_loader, test_loader = make_loaders(data, eval_transform(), eval_transform(), 64, num_workers=0)
    model = S9Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = fit(model, train_loader, test_loader, optimizer, 3, progress=False, log=None)
    assert history[-1]["test_acc"] > 25.0


def test_fit_saves_the_history_beside_its_checkpoint_and_refuses_one_of_another_model(synthetic, tmp_path):
    history, _ = _run(synthetic, epochs=1, checkpoint=tmp_path / "run" / "c.pt")
    saved = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [row["epoch"] for row in saved] == [1] and saved[0]["train_loss"] == history[0]["train_loss"]
    assert (tmp_path / "run" / "history.csv").read_text().splitlines()[0].startswith("epoch,train_loss")
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    with pytest.raises(CheckpointError, match=r"c.pt does not fit this model and optimizer: .*another folder"):
        _run(synthetic, epochs=2, checkpoint=tmp_path / "run" / "c.pt", resume=True, model=other)


def test_a_limited_loader_yields_its_first_batches_and_keeps_the_loaders_state(synthetic):
    from utils.loaders import Limited

    train_loader, _ = make_loaders(synthetic, eval_transform(), eval_transform(), 64, num_workers=0)
    assert Limited.to(train_loader, None) is train_loader
    limited = Limited.to(train_loader, 3)
    assert len(limited) == 3 and len(Limited(train_loader, 100)) == len(train_loader)
    assert [len(y) for _, y in limited] == [64, 64, 64]
    assert torch.equal(limited.state_dict()["generator"], train_loader.state_dict()["generator"])
    # a limited pass draws no batch past its limit: on the batched route each batch's augmentation advances the
    # loader's generator, so one drawn and thrown away would change every later epoch
    from utils.gpu_data import DeviceLoader

    cut, twin = (DeviceLoader(synthetic.train, 64, "cpu", seed=0) for _ in range(2))
    assert len(list(Limited(cut, 2))) == 2
    batches = iter(twin)
    next(batches), next(batches)
    assert torch.equal(cut.generator.get_state(), twin.generator.get_state())
