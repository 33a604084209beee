"""Execute the tutorial notebook end to end so it never rots."""

from __future__ import annotations

import ast
import inspect
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


def _code_cells():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_notebook_uses_only_the_public_api():
    """Cheap default-run guard: every ``gs.X``/``cryonet.X`` exists and takes those keywords."""
    import cryonet
    import glacierstack

    modules = {"gs": glacierstack, "cryonet": cryonet}
    used = 0
    for source in _code_cells():
        tree = ast.parse(source)  # a syntax error fails here
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
            ):
                continue
            mod = modules[node.value.id]
            assert node.attr in mod.__all__ or node.attr == "__version__", (
                f"notebook uses {node.value.id}.{node.attr}, not in {mod.__name__}.__all__"
            )
            used += 1
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            f = call.func
            if not (
                isinstance(f, ast.Attribute)
                and isinstance(f.value, ast.Name)
                and f.value.id in modules
            ):
                continue
            target = getattr(modules[f.value.id], f.attr)
            params = inspect.signature(target).parameters
            if any(p.kind is p.VAR_KEYWORD for p in params.values()):
                continue
            for kw in call.keywords:
                assert kw.arg is None or kw.arg in params, (
                    f"notebook passes {kw.arg}= to {f.value.id}.{f.attr}, which has no such "
                    "parameter"
                )
    assert used >= 10


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


def test_progress_bars_render_as_widgets_in_jupyter():
    """With ipywidgets (notebook extra) tqdm.auto bars are widgets, not "IProgress not found"."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='tiles'):\n    pass"
        )
    ]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    text = "".join(o.get("text", "") for o in outputs)
    assert "IProgress not found" not in text, text
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs), (
        outputs
    )
