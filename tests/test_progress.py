"""Progress bars obey TQDM_DISABLE inside Jupyter too, where tqdm's notebook bar ignores the variable."""
import pytest
import torch
import torch_lr_finder.lr_finder
import tqdm.auto
from torch import nn

from utils.lr_finder import find_lr
from utils.progress import bars_enabled
from utils.train import train_epoch

notebook = pytest.importorskip("tqdm.notebook")  # needs ipywidgets, as Jupyter has


@pytest.fixture
def notebook_bars(monkeypatch):
    """Swap in tqdm's notebook bar (what Jupyter gets) everywhere a bar is made; returns each bar's
    ``disable`` as it was made (closing a bar sets it)."""
    bars = []

    class Recorded(notebook.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self.disable)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorded)
    monkeypatch.setattr(torch_lr_finder.lr_finder, "tqdm", Recorded)
    return bars


def tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
    batches = [(torch.randn(8, 3, 4, 4), torch.randint(0, 10, (8,))) for _ in range(3)]
    return model, torch.optim.SGD(model.parameters(), lr=0.01), batches


@pytest.mark.parametrize("env, progress, enabled", [("", True, True), ("1", True, False), ("", False, False),
                                                    ("1", False, False)])
def test_bars_enabled(monkeypatch, env, progress, enabled):
    monkeypatch.setenv("TQDM_DISABLE", env)
    assert bars_enabled(progress) is enabled


@pytest.mark.parametrize("env", ["", "1"])
def test_training_bar_in_a_notebook_obeys_tqdm_disable(monkeypatch, notebook_bars, env):
    monkeypatch.setenv("TQDM_DISABLE", env)
    model, optimizer, batches = tiny()
    train_epoch(model, batches, optimizer, nn.CrossEntropyLoss(), torch.device("cpu"), progress=True)
    assert len(notebook_bars) == 1 and notebook_bars[0] is bool(env)


@pytest.mark.parametrize("env", ["", "1"])
def test_lr_finder_library_bar_in_a_notebook_obeys_tqdm_disable(monkeypatch, notebook_bars, env):
    monkeypatch.setenv("TQDM_DISABLE", env)
    model, optimizer, batches = tiny()
    before = torch_lr_finder.lr_finder.tqdm
    find_lr(model, optimizer, nn.CrossEntropyLoss(), batches, num_iter=5)
    assert len(notebook_bars) == 1 and notebook_bars[0] is bool(env)
    assert torch_lr_finder.lr_finder.tqdm is before  # the library's own bar is put back afterwards
