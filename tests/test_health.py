"""utils.health counts dead batch-norm channels and weight norms per stage, from weights alone."""
import pytest
import torch

from utils.cli import main
from utils.health import model_health
from utils.models import get_model


def test_dead_channels_are_counted_per_stage_and_nothing_else_is():
    model = get_model("preact_resnet56")
    with torch.no_grad():
        stem_bn = model.stem[1]
        stem_bn.weight[:5] = 0.001
        stem_bn.bias[:5] = -0.005   # |gamma| and |beta| both below 0.01: dead
        stem_bn.weight[5] = 0.001   # a small scale with a real shift still carries a constant: not dead
        stem_bn.bias[5] = 0.5
        model.head[0].weight[:] = 0.0
        model.head[0].bias[:] = 0.0
    health = {s.stage: s for s in model_health(model).stages}
    assert (health["stem"].bn_channels, health["stem"].dead) == (16, 5)
    assert (health["head"].bn_channels, health["head"].dead, health["head"].weight_norm) == (256, 256, None)
    assert health["stage1"].dead == health["stage2"].dead == health["stage3"].dead == 0
    assert health["stage2"].bn_channels == 64 + 6 * 2 * 64 + 5 * 128  # first input, two at the 64-wide middle, later inputs
    assert health["fc"].bn_channels == 0
    assert health["fc"].weight_norm == pytest.approx(model.fc.weight.norm().item())
    assert model_health(model).dead == 261


def test_inspect_reads_a_weights_file_and_a_checkpoint(tmp_path, capsys):
    model = get_model("custom_resnet")
    with torch.no_grad():
        model.res2[1][1].weight[:100] = 0.0
        model.res2[1][1].bias[:100] = 0.0
    torch.save(model.state_dict(), tmp_path / "w.pt")
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "checkpoint.pt")
    for name in ("w.pt", "checkpoint.pt"):
        assert main(["inspect", str(tmp_path / name)]) == 0
        out = capsys.readouterr().out
        assert "100 of 2240 batch-norm channels dead" in out
        assert "| res2 | 1024 | 100 | 9.8 |" in out


def test_inspect_refuses_what_is_not_weights(tmp_path, capsys):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert main(["inspect", str(tmp_path / "bad.pt")]) == 2
    assert "unreadable" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "none.pt")]) == 2
    assert "no weights file" in capsys.readouterr().err
