"""The session notebook in smoke mode on the batched route -- what a Colab GPU runs -- forced on this CPU.

nbval (``python -m pytest`` collects S8-S11) runs every notebook on the default route, the albumentations
DataLoader; this runs S11 again with ``COURSE_FAST=1``, the batched route a fast GPU may take. S11 stands for all
four: it trains both model families' recipes, and every cell of the others that touches the data route is one of
its cells (checked below), so a route bug in any notebook shows in S11.
"""
import json
import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
ROUTE_WORDS = re.compile(r"\b(data|data56|loader|train_loader|test_loader|run|fit|train_or_replay)\b")


def code_cells(session: str) -> list[str]:
    notebook = json.loads((REPO / session / f"{session}.ipynb").read_text())
    return [re.sub(r"\b[sS](8|9|10|11)\b", "SX", "".join(cell["source"]))  # the session's own name aside
            for cell in notebook["cells"] if cell["cell_type"] == "code"]


def test_every_cell_that_touches_the_data_route_is_one_of_s11s():
    s11 = set(code_cells("S11"))
    for session in ("S8", "S9", "S10"):
        for cell in code_cells(session):
            if cell not in s11 and not cell.lstrip().startswith(("import", "from")):
                # the model and the recipe do not depend on the route (S9's receptive field, the lesson cores)
                assert not ROUTE_WORDS.search(cell.replace("run.model", "").replace("run.recipe", "")), (session, cell)


def test_s11_runs_on_the_batched_route(monkeypatch):
    monkeypatch.setenv("COURSE_SMOKE", "1")
    monkeypatch.setenv("COURSE_FAST", "1")  # the kernel inherits this process's environment
    monkeypatch.setenv("TQDM_DISABLE", "1")
    notebook = nbformat.read(REPO / "S11" / "S11.ipynb", as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "S11")}}).execute()  # raises on a cell's error
    text = "".join(output.get("text", "") + output.get("data", {}).get("text/plain", "")
                   for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)
    assert text.count("DeviceLoader:") == 2  # the route cell of each recipe names the loader that fed it
    assert text.count("data route: batched on the device (COURSE_FAST=1)") == 2
