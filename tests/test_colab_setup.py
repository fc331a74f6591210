"""The notebooks' Colab setup cell, run as Colab would run it, short of the internet.

A kernel with a stand-in ``google.colab`` module starts in an empty folder (Colab's /content) and runs each
notebook's setup cell with the GitHub URL pointed at this repository's own git history. The cell must clone
once, land in the session folder, import ``utils`` from the clone, leave torch alone, and survive the two
things students do: run it again, and restart the runtime (cwd back to /content) and run it again. Then, with
torch answering as on a T4, the clone must choose fp16 with loss scaling and the albumentations loader.
"""
import json
import shutil
import subprocess

import nbclient
import nbformat
import pytest

from utils.notebook import REPO_ROOT

SESSIONS = ["S8", "S9", "S10", "S11"]
URL = "https://github.com/cifar10-course/cifar10-course"

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or not (REPO_ROOT / ".git").exists(), reason="needs git and a git checkout")


# What torch answers on Colab's free Tesla T4 (compute capability 7.5; bf16 "supported" there only by emulation),
# then what the course chooses from it: device, autocast dtype, loss scaling, route, and the config's hardware.
T4_PROBE = """import torch
torch.cuda.is_available = lambda: True
torch.cuda.get_device_capability = lambda device=None: (7, 5)
torch.cuda.is_bf16_supported = lambda including_emulation=True: True
torch.cuda.get_device_name = lambda device=None: "Tesla T4"
from utils.notebook import notebook_config
from utils.train import amp_settings
config = notebook_config("{recipe}", mode="full")
dtype, scaler = amp_settings(config.spec.device, config.spec.precision)  # what the run's spec settled on
print(config.spec.device, dtype, scaler.is_enabled(), config.spec.fast, sep="\\n")
print(repr(config).splitlines()[0].split("data route: ")[1], "|", repr(config).split("this machine: ")[1].splitlines()[0])"""


def setup_cell(session: str) -> str:
    nb = json.loads((REPO_ROOT / session / f"{session}.ipynb").read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code" and "google.colab" in "".join(c["source"])]
    assert len(cells) == 1, f"{session}: expected one Colab setup cell"
    return cells[0]


def run_like_colab(content, cells: list[str]) -> list[str]:
    """Execute the cells in a fresh kernel whose cwd is `content`, with google.colab importable; each cell's text output."""
    stub = "import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in [stub, *cells]])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(content)}}).execute()
    outputs = ["".join(o.get("text", "") for o in c.outputs) for c in nb.cells[1:]]
    # git and pip report failures as text, not exceptions: a failed clone or install must not pass unseen
    assert not any(word in out for out in outputs for word in ("ERROR", "error:", "fatal:")), outputs
    return outputs


def test_the_setup_cells_differ_only_in_the_session_folder():
    # so one notebook's cell, run as Colab would below, stands for all four (each run clones and starts kernels)
    cells = {setup_cell(session).replace(f"/{session}", "/SESSION") for session in SESSIONS}
    assert len(cells) == 1 and "course/SESSION" in cells.pop()


@pytest.mark.parametrize("session", ["S11"])  # the others' cells are the same text (above)
def test_colab_setup_cell_clones_once_and_imports_utils_from_the_clone(session, tmp_path):
    cell = setup_cell(session)
    assert URL in cell
    # Offline, and never changing this environment: --no-index makes pip fail loudly instead of downloading,
    # so a requirement the installed packages do not meet (e.g. a torch pin) shows up as an error below.
    cell = cell.replace(URL, REPO_ROOT.as_uri()).replace("%pip install -q", "%pip install --no-index -q")
    import torch

    probe = "import os, torch, utils\nprint(os.getcwd(), utils.__file__, torch.__version__, sep='\\n')"
    content = tmp_path / "content"
    content.mkdir()
    session_dir = content / "course" / session
    expected = f"{session_dir}\n{content / 'course' / 'utils' / '__init__.py'}\n{torch.__version__}\n"

    first = run_like_colab(content, [cell, probe, cell, probe, T4_PROBE.format(recipe=session.lower())])
    assert first[1] == expected and first[3] == expected, first
    # on a free Colab GPU: fp16 with loss scaling (no bf16 convolutions below capability 8.0), albumentations
    assert first[4] == "cuda\ntorch.float16\nTrue\nFalse\nalbumentations DataLoader | Tesla T4\n", first[4]
    assert not (session_dir / "course").exists(), "running the cell twice cloned the repository into itself"

    # A restarted runtime: a new kernel in /content, the clone already there.
    head = subprocess.run(["git", "-C", str(content / "course"), "rev-parse", "HEAD"], capture_output=True, text=True)
    after_restart = run_like_colab(content, [cell, probe])
    assert after_restart[1] == expected, after_restart
    again = subprocess.run(["git", "-C", str(content / "course"), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert head.returncode == 0 and again.stdout == head.stdout
    assert sorted(p.name for p in content.iterdir()) == ["course"]


def test_every_colab_link_opens_an_existing_notebook_of_the_one_published_repository():
    """Badges and README links, all from the same URL as the setup cell's clone, each naming a notebook that exists
    (a renamed notebook or a fork that changed the URL in one place only fails here)."""
    import re

    link = re.compile(r"https://colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/main/([\w./-]+\.ipynb)")
    found = {}
    for path in [REPO_ROOT / "README.md", *sorted(REPO_ROOT.glob("S*/README.md")), *sorted(REPO_ROOT.glob("S*/S*.ipynb"))]:
        name = path.relative_to(REPO_ROOT).as_posix()
        for repo, notebook in link.findall(path.read_text()):
            assert f"https://github.com/{repo}" == URL, f"{name}: {repo}"
            assert (REPO_ROOT / notebook).is_file(), f"{name} links to {notebook}"
            found.setdefault(notebook, set()).add(name)
    for session in SESSIONS:
        notebook = f"{session}/{session}.ipynb"
        # its own badge, its README and the top README's table
        assert found.get(notebook) == {notebook, f"{session}/README.md", "README.md"}, (notebook, found.get(notebook))
