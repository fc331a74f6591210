"""The READMEs are what students read: every picture, log and file they link to must be in the repository."""
import re

import pytest

from utils.notebook import REPO_ROOT

READMES = [REPO_ROOT / "README.md", REPO_ROOT / "CONTRIBUTING.md", *sorted(REPO_ROOT.glob("S*/README.md")),
           *sorted(REPO_ROOT.glob("S*/case-study.md")), *sorted(REPO_ROOT.glob("S*/logs/*/README.md"))]


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
MOST_LINES = {"S8": 170, "S9": 170, "S10": 170, "S11": 220}  # S11 has two recipes and the zigzag


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


ARXIV = re.compile(r"\[arXiv:(\d{4}\.\d{4,5})\]\(https://arxiv\.org/abs/(\d{4}\.\d{4,5})\)")


def sections_of(text):
    """{heading: body} of the ## sections; a "## " line inside a code block is no heading."""
    chunks = text.split("```")
    hidden = "```".join(c.replace("\n#", "\n\x00#") if i % 2 else c for i, c in enumerate(chunks))
    parts = re.split(r"^## (.+)$", hidden, flags=re.M)
    return {head: body.replace("\x00", "") for head, body in zip(parts[1::2], parts[2::2])}


def test_sections_of_skips_code_blocks():
    text = "# T\n## The idea\nx\n```bash\n## not a heading\n```\n## Pitfalls\ny\n"
    assert list(sections_of(text)) == ["The idea", "Pitfalls"]
    assert "## not a heading" in sections_of(text)["The idea"]


@pytest.mark.parametrize("readme", SESSION_READMES, ids=lambda p: p.parent.name)
def test_a_session_readme_is_a_lesson_the_idea_and_its_core_first_pitfalls_before_provenance(readme):
    import json

    text = readme.read_text()
    sections = sections_of(text)
    heads = list(sections)
    assert heads[:2] == ["The idea", "The core, in a few lines"], f"{readme}: starts with {heads[:2]}"
    papers = ARXIV.findall(sections["The idea"])
    assert papers and all(a == b for a, b in papers), f"{readme}: the idea cites no paper by its arXiv id"
    # the core shown is the notebook's own core cell, word for word, so the two cannot drift apart
    session = readme.parent.name
    nb = json.loads((readme.parent / f"{session}.ipynb").read_text())
    cores = ["".join(c["source"]).strip() for c in nb["cells"] if "core" in c["metadata"].get("tags", [])]
    shown = [block.strip() for block in re.findall(r"```python\n(.*?)```", sections["The core, in a few lines"], re.S)]
    assert shown and all(block in cores for block in shown), f"{readme}: the core differs from the notebook's"
    assert "Pitfalls" in heads and heads.index("Pitfalls") < heads.index("How this was made"), readme


@pytest.mark.parametrize("session", ["S8", "S9", "S10", "S11"])
def test_a_notebook_opens_with_its_idea_and_says_which_mode_made_its_outputs(session):
    import json

    nb = json.loads((REPO_ROOT / session / f"{session}.ipynb").read_text())
    first = "".join(nb["cells"][0]["source"])
    assert "**The idea" in first and ARXIV.search(first), f"{session}: the first cell does not teach the idea"
    assert "made in **replay** mode" in first, f"{session}: the first cell does not say which mode made the outputs"
    config = [c for c in nb["cells"] if c["cell_type"] == "code" and "MODE = " in "".join(c["source"])][0]
    assert 'MODE = "full"  # @param ["full", "replay", "short", "smoke"]' in "".join(config["source"])  # a Colab form
    shown = "".join(config["outputs"][0]["data"]["text/plain"])
    assert "[replay, " in shown and "set by COURSE_REPLAY=" in shown and "overrides MODE = 'full'" in shown, shown


def test_the_notebooks_t4_times_are_the_estimates_performance_md_derives():
    import json

    table = (REPO_ROOT / "PERFORMANCE.md").read_text().split("## On a Colab T4: how long a run takes (an estimate)")[1]
    derived = set(re.findall(r"\| (\d+–\d+) min \|", table))
    for session in ["S8", "S9", "S10", "S11"]:
        first = "".join(json.loads((REPO_ROOT / session / f"{session}.ipynb").read_text())["cells"][0]["source"])
        quoted = re.findall(r"(\d+–\d+) minutes", first.replace("1–3 minutes for the setup", ""))
        assert quoted and set(quoted) <= derived, (session, quoted, derived)  # a range, from the table
        assert "not measured" in first or "neither measured" in first, session  # and said to be an estimate
