"""The notebooks run top to bottom (small-size switch on) and their own assertions hold.

Each notebook executes in a fresh kernel of *this* interpreter: the test writes a kernelspec
pointing at ``sys.executable`` into a temporary JUPYTER_PATH, so a stray user-level
``python3`` kernelspec for some other Python cannot be picked up instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "tfsynth-test-python"
CELL_TIMEOUT_S = 240


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A kernelspec for the running interpreter, and the notebooks' small-size switch."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tfsynth test kernel",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("TFSYNTH_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    return tmp_path


@pytest.mark.parametrize("name", ["01_quickstart.ipynb", "02_tuning.ipynb", "03_completion.ipynb"])
def test_notebook_runs(name, kernel_env, monkeypatch):
    path = NOTEBOOKS / name
    notebook = nbformat.read(path, as_version=4)
    # Committed without outputs, so diffs show code changes only.
    assert all(
        not cell.get("outputs") and not cell.get("execution_count")
        for cell in notebook.cells
        if cell.cell_type == "code"
    )

    work = kernel_env / "work"
    monkeypatch.setenv("TFSYNTH_NOTEBOOK_DIR", str(work))
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(kernel_env)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    # The small switch took effect and the notebook wrote where it was told to.
    assert "small=True" in "".join(out.get("text", "") for out in outputs)
    assert (work / "prepared" / "manifest.json").exists()
    # Figures were drawn (contrasts, live images, trials).
    assert any("image/png" in out.get("data", {}) for out in outputs)
