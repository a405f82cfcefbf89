"""The Colab notebook runs to the end: executed on CPU with 8 forced host
devices (the member axis sharded over them, as on a TPU's 8 cores)."""

from __future__ import annotations

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_colab_notebook_runs_to_the_end(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    monkeypatch.setenv("JAXBATCH_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    nb = nbformat.read(os.path.join(ROOT, "notebooks", "colab_sweep.ipynb"), 4)
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": tmp_path}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "CpuDevice(id=7)" in text  # the 8 forced devices were in use
    assert "arms (mean ± 95% t-interval over seeds)" in text
    run = tmp_path / "runs" / "colab_bs_sweep"
    assert (run / "report.html").is_file() and (run / "members.csv").is_file()
    images = [o for c in nb.cells for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]  # fmt: skip
    assert len(images) >= 3  # the figures rendered inline
