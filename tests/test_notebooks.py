"""Every notebook runs top to bottom on the bundled samples, draws its plots, stays stripped,
and uses only podcap's public API plus pandas and matplotlib."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
ALLOWED_IMPORTS = {"podcap", "pandas", "matplotlib", "pathlib"}
CELL_TIMEOUT_S = 120


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_there_are_the_four_notebooks_of_the_issue():
    names = [path.name for path in NOTEBOOKS]
    assert names == [
        "01-first-look.ipynb",
        "02-is-my-marker-reaching.ipynb",
        "03-snat-deep-dive.ipynb",
        "04-tcp-health.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in code_cells(notebook):
        assert cell.outputs == [], f"{path.name}: a cell has stored outputs; strip them"
        assert cell.execution_count is None, f"{path.name}: a cell has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_imports_only_podcap_pandas_and_matplotlib(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in code_cells(notebook):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] in ALLOWED_IMPORTS, f"{path.name} imports {module}"
                assert not any(part.startswith("_") for part in module.split(".")), module
        # Notebooks hold no logic: helpers live in podcap (podcap/render/plots.py) with tests.
        assert "def " not in cell.source and "class " not in cell.source, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_and_draws_every_plot(path):
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, when one fails

    plot_cells = [c for c in code_cells(notebook) if "plot" in c.metadata.get("tags", [])]
    assert plot_cells, f"{path.name} has no cell tagged 'plot'"
    for cell in plot_cells:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert images, f"{path.name}: no image from the plot cell:\n{cell.source}"
        assert len(images[0]["data"]["image/png"]) > 5000  # base64 of a real drawing
    for cell in code_cells(notebook):
        assert cell.execution_count is not None
        for output in cell.outputs:
            assert output.output_type != "error", cell.source
            if output.output_type == "stream":
                assert output.name == "stdout", f"{path.name} wrote to stderr: {output.text}"
