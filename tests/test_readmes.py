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


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped (hyphens kept), spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_github_anchor():
    assert github_anchor("The ResNet-56's test loss early in training") == "the-resnet-56s-test-loss-early-in-training"
    assert github_anchor("Short CPU run: the loop learning (not the session's result)") == \
        "short-cpu-run-the-loop-learning-not-the-sessions-result"


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_every_section_link_names_a_heading(readme):
    # a renamed heading silently breaks "see below" links: GitHub then just opens the page at its top
    broken = []
    for target in re.findall(r"\]\(([^()\s]*#[^()\s]+)\)", readme.read_text()):
        path, anchor = target.split("#", 1)
        if re.match(r"[a-z]+:", path):
            continue
        page = (readme.parent / path) if path else readme
        prose = "".join(page.read_text().split("```")[0::2])  # a "# comment" in a code block is no heading
        headings = re.findall(r"^#+ (.+)$", prose, re.M)
        if anchor not in {github_anchor(h) for h in headings}:
            broken.append(target)
    assert not broken, f"{readme.relative_to(REPO_ROOT)} links to sections that do not exist: {broken}"


SESSION_READMES = sorted(REPO_ROOT.glob("S*/README.md"))
MOST_LINES = {"S8": 200, "S9": 200, "S10": 200, "S11": 300}  # S11 has two recipes and the zigzag


@pytest.mark.parametrize("readme", SESSION_READMES, ids=lambda p: p.parent.name)
def test_a_session_readme_opens_with_its_lesson_and_result_and_stays_short(readme):
    # a student reads the top: what the session teaches, the result against the target, one picture, the take-away
    lines = readme.read_text().splitlines()
    top = "\n".join(lines[:15])
    assert "**What this session teaches:**" in top and "**Result" in top and "take away" in top, readme
    assert re.search(r"!\[[^\]]*\]\([^)]+\.png\)", top), f"{readme}: no picture in the first 15 lines"
    assert re.search(r"\*\*(reached|missed)", top), f"{readme}: the verdict against the target is not on top"
    assert len(lines) <= MOST_LINES[readme.parent.name], f"{readme}: {len(lines)} lines"
    prose = "".join(readme.read_text().split("```")[0::2])  # a "# comment" in a code block is no heading
    sections = re.findall(r"^## (.+)$", prose, re.M)
    assert sections[-1] == "How this was made", f"{readme}: provenance goes last, in its own section"
