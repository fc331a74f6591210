import subprocess
import sys

import utils


def test_every_exported_name_is_its_modules_own():
    """``utils.X`` is the object defined in the module ``_EXPORTS`` names (a stale entry raises here)."""
    import importlib

    for name in utils.__all__:
        value = getattr(utils, name)
        module = f"utils.{utils._WHERE[name]}"
        assert value is getattr(importlib.import_module(module), name), name
        if callable(value):  # functions and classes: defined there, not merely imported into it
            assert value.__module__.startswith(module), (name, value.__module__)


def test_import_is_cheap_and_silent():
    code = "import sys, utils; print(sorted(m for m in ('torch', 'albumentations', 'pytorch_grad_cam') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip() == "[]" and result.stderr == ""


def test_colab_install_keeps_colabs_own_torch_and_jupyter():
    """The notebooks' Colab setup cell runs `pip install -r requirements.txt`: torch must be a range, not a
    pin, and nothing may pull in Jupyter (it would upgrade Colab's pinned ipykernel/ipython)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    lines = [l.split("#")[0].strip() for l in (root / "requirements.txt").read_text().splitlines()]
    names = {re.split(r"[<>=!~ \[]", l)[0].lower(): l for l in lines if l}
    assert not {"jupyter", "notebook", "jupyterlab", "ipykernel", "ipython", "nbval"} & names.keys()
    assert "==" not in names["torch"] and "==" not in names["torchvision"]
    dev = (root / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in dev and "nbval" in dev and "jupyter" in dev
    for notebook in sorted(root.glob("S*/S*.ipynb")):
        assert "pip install -q -r ../requirements.txt" in notebook.read_text(), notebook
