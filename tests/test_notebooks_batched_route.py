"""Every session notebook in smoke mode on the batched route -- what a Colab GPU runs -- forced on this CPU.

nbval (``python -m pytest`` collects S8-S11) runs the notebooks on the default route, the albumentations
DataLoader; this runs them again with ``COURSE_FAST=1``, the batched route a fast GPU may take.
"""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("session", ["S8", "S9", "S10", "S11"])
def test_notebook_runs_on_the_batched_route(session, monkeypatch):
    monkeypatch.setenv("COURSE_SMOKE", "1")
    monkeypatch.setenv("COURSE_FAST", "1")  # the kernel inherits this process's environment
    monkeypatch.setenv("TQDM_DISABLE", "1")
    notebook = nbformat.read(REPO / session / f"{session}.ipynb", as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / session)}}).execute()  # raises on a cell's error
    text = "".join(output.get("text", "") + output.get("data", {}).get("text/plain", "")
                   for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)
    assert "DeviceLoader:" in text  # the route cell names the loader that fed the run
    assert "data route: batched on the device (COURSE_FAST=1)" in text
