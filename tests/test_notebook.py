"""The Colab notebook runs top to bottom on a CPU with the tiny preset, so it cannot rot."""

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "colab_reproduction.ipynb"


def test_notebook_runs_on_cpu_with_the_tiny_preset(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("BLASSO_JAX_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    # One CPU device, as on a laptop; the compile flags of every test (conftest.py) kept.
    compile_flags = [f for f in os.environ["XLA_FLAGS"].split() if "device_count" not in f]
    monkeypatch.setenv("XLA_FLAGS", " ".join(compile_flags))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(NOTEBOOK.parents[1]), os.environ.get("PYTHONPATH", "")]))
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "| synthetic | β-LASSO β=50 |" in text and "| synthetic | SGD |" in text
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) == 3  # Figure 3, locality, Figure 4
    assert (tmp_path / "runs" / "colab" / "blasso" / "results.json").exists()
