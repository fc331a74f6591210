"""What GitHub shows of a committed notebook: text and pictures only -- no widget, no error, no machine path."""
import json
import re

import pytest

from utils.notebook import REPO_ROOT

# A path that starts at the file system's root: "/work/...", "/content/...", "/home/...". Not a slash inside a
# word ("img/s"), a URL's "//", or a spaced "5,000 / 2,000".
ABSOLUTE_PATH = re.compile(r"(?<![\w.~/:])/(?:[\w.-]+/)+")


SESSIONS = ["S8", "S9", "S10", "S11"]


def stored_outputs(session):
    nb = json.loads((REPO_ROOT / session / f"{session}.ipynb").read_text())
    return nb, [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]


def output_text(output) -> str:
    data = output.get("data", {})
    return "".join(output.get("text", "")) + "".join(data.get("text/plain", "")) + "".join(output.get("traceback", []))


def test_the_absolute_path_pattern():
    assert ABSOLUTE_PATH.search("data: /work/shared/data/cifar10-jpeg.tar.gz")
    assert ABSOLUTE_PATH.search("resumed from /content/course/runs/s9/checkpoint.pt")
    for fine in ("train 5,000 / 2,000 test", "190 img/s", "https://github.com/a/b/", "runs/s10/checkpoint.pt"):
        assert not ABSOLUTE_PATH.search(fine), fine


@pytest.mark.parametrize("session", SESSIONS)
def test_stored_outputs_render_on_github(session):
    # GitHub cannot draw a Jupyter widget (a tqdm bar run without TQDM_DISABLE=1): it shows "0/40" or nothing.
    nb, outputs = stored_outputs(session)
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert not widgets and "widgets" not in nb.get("metadata", {}), f"{session}: re-execute with TQDM_DISABLE=1"
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, f"{session} was stored with an error: {output_text(errors[0])[:200]}"


@pytest.mark.parametrize("session", SESSIONS)
def test_stored_outputs_hold_no_machine_paths(session):
    _, outputs = stored_outputs(session)
    found = [m.group(0) for o in outputs for m in [ABSOLUTE_PATH.search(output_text(o))] if m]
    assert not found, f"{session} prints absolute paths of the machine it ran on: {found[:3]}"


# (session, which training log of the notebook, the folder of the run's committed history); S11 trains two recipes
FULL_RUN_LOGS = [("S8", 0, "S8"), ("S9", 0, "S9"), ("S10", 0, "S10"), ("S11", 0, "S11"), ("S11", 1, "S11/resnet56")]


@pytest.mark.parametrize("session, index, folder", FULL_RUN_LOGS, ids=[row[2] for row in FULL_RUN_LOGS])
def test_a_full_run_notebook_shows_the_committed_run(session, index, folder):
    # The stored training log is the committed history's: the notebook replayed that run, not another one.
    import csv

    _, outputs = stored_outputs(session)
    logs = [output_text(o) for o in outputs if "train_loss  train_acc" in output_text(o)]
    last = logs[index].strip().splitlines()[-1].split()
    with open(REPO_ROOT / folder / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert int(last[0]) == len(rows) == int(rows[-1]["epoch"])
    assert float(last[4]) == pytest.approx(float(rows[-1]["test_acc"]), abs=0.005)
