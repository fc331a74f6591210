"""No committed file names the machine that built it: data sources by name, run folders relative to the repository."""
import re
import shutil
import subprocess

import pytest

from utils.notebook import REPO_ROOT

from test_stored_outputs import ABSOLUTE_PATH

# A build machine's folders, in prose and commands: a home folder (the package's own cache default is documented,
# not a machine's), the workspace beside the repository, and the usual roots of a Linux or macOS machine.
MACHINE_PATH = re.compile(r"~/(?!\.cache/cifar10-course)|\.\./shared/|(?<![\w.~/:])/(?:root|home|work|tmp|Users|mnt)/")
PROSE = {".md", ".ipynb", ".txt", ".toml"}  # may name Colab's /content and URLs, so only the machine roots above
RECORDS = {".log", ".json", ".csv"}  # what runs wrote: no absolute path at all


def committed_files():
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout: the committed files cannot be listed")
    names = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    return [REPO_ROOT / name for name in names.splitlines()]


def test_the_machine_path_pattern():
    for bad in ("--out ~/course-runs/s10", "--data-dir ../shared/data/cifar10-jpeg.tar.gz", "data: /work/shared/x",
                "cd /home/me/course", "/Users/me/cifar", "/tmp/run/checkpoint.pt"):
        assert MACHINE_PATH.search(bad), bad
    for fine in ("$CIFAR10_CACHE_DIR (default `~/.cache/cifar10-course`)", "--data-dir PATH/TO/CIFAR10",
                 "--out runs/s10", "https://github.com/a/b/work/", "/content/course", "190 img/s"):
        assert not MACHINE_PATH.search(fine), fine


def test_no_committed_file_names_a_build_machine_path():
    found = []
    for path in committed_files():
        if path.suffix not in PROSE | RECORDS or not path.exists():
            continue
        text = path.read_text(errors="replace")
        for pattern in (MACHINE_PATH, ABSOLUTE_PATH) if path.suffix in RECORDS else (MACHINE_PATH,):
            match = pattern.search(text)
            if match:
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(REPO_ROOT)}:{line}: {match.group(0)!r}")
    assert not found, "committed files name a build machine's paths (use PATH/TO/CIFAR10 and runs/...): " + \
        "; ".join(found[:8])
