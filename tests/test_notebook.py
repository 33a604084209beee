"""Execute the tutorial notebook end to end so it never rots."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "docs" / "tutorials"
NOTEBOOK = TUTORIALS / "glacier_mapping_quickstart.ipynb"


def test_notebook_is_committed_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not dirty, f"{NOTEBOOK.name}: cells {dirty} hold outputs; commit it cleared"


@pytest.mark.distributed
def test_tutorial_notebook_executes(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    work = tmp_path / "run"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(work)}},
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start

    out = work / "tutorial-output"
    # the workflow produced every artefact it promises
    for name in ("cube.zarr", "prediction.zarr", "outlines.gpkg", "run/checkpoints/best.pt"):
        assert (out / name).exists(), f"notebook did not produce {name}"
    # the quicklook and the class map were drawn
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
    ]
    assert len(images) >= 2, "expected the quicklook figure and the class map"
    # the dashboard link of the LocalCluster is shown
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "dashboard: http" in text
    print(f"notebook executed in {elapsed:.0f} s")
