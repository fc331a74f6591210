import subprocess
import sys

import utils


def test_every_exported_name_resolves():
    for name in utils.__all__:
        assert getattr(utils, name) is not None, name


def test_import_is_cheap_and_silent():
    code = "import sys, utils; print(sorted(m for m in ('torch', 'albumentations', 'pytorch_grad_cam') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip() == "[]" and result.stderr == ""
