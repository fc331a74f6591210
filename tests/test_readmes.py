"""The READMEs are what students read: every picture, log and file they link to must be in the repository."""
import re

import pytest

from utils.notebook import REPO_ROOT

READMES = [REPO_ROOT / "README.md", *sorted(REPO_ROOT.glob("S*/README.md"))]


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_every_relative_link_resolves(readme):
    targets = re.findall(r"\]\(([^()\s]+)\)", readme.read_text())
    relative = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert relative, "no relative links found: the pattern is wrong"
    missing = [t for t in relative if not (readme.parent / t).exists()]
    assert not missing, f"{readme.relative_to(REPO_ROOT)} links to missing files: {missing}"
