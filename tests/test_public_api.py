"""The public API: what ``__all__`` promises, import weight, CLI <-> Python parity, summary()."""

from __future__ import annotations

import inspect
import subprocess
import sys

import dask.array as da
import numpy as np
import pytest
import typer.main
import xarray as xr

import glacierstack
from glacierstack.grid import Grid


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return out.stdout.strip()


def test_import_glacierstack_is_light_and_torch_free():
    code = (
        "import sys, glacierstack as gs; "
        "heavy = [m for m in ('torch', 'xarray', 'dask', 'rasterio', 'numba') "
        "if m in sys.modules]; "
        "gs.open_cube; gs.build_cube; gs.summary; gs.generate_region; gs.search; "
        "print(heavy, 'torch' in sys.modules)"
    )
    assert _run(code) == "[] False"


@pytest.mark.parametrize("package", ["glacierstack", "cryonet"])
def test_all_names_resolve(package):
    mod = __import__(package)
    assert len(set(mod.__all__)) == len(mod.__all__)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name
    assert set(mod.__all__) <= set(dir(mod))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mod.nope  # noqa: B018


def test_import_cryonet_is_lazy_and_no_name_shadows_a_module():
    code = (
        "import sys, pkgutil, cryonet; "
        "print('torch' in sys.modules, end=' '); "
        "subs = {m.name for m in pkgutil.iter_modules(cryonet.__path__)}; "
        "print(sorted(subs & set(cryonet.__all__)), end=' '); "
        "from cryonet.training import TrainConfig; import cryonet.evaluation; "
        "print(all(callable(f) and not isinstance(f, type(cryonet)) "
        "for f in (cryonet.train, cryonet.evaluate, cryonet.importance)))"
    )
    assert _run(code) == "False [] True"


def _cli_defaults(app, command: str) -> dict[str, object]:
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="x")
    cmd = group.get_command(ctx, command)
    return {p.name: p.default for p in cmd.params if p.name}


def _py_defaults(func) -> dict[str, object]:
    return {
        n: p.default
        for n, p in inspect.signature(func).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


# (CLI, command) -> the Python function it wraps (same parameters, same defaults)
_PAIRS = {
    "glacierstack cube": ("glacierstack", "build_cube"),
    "glacierstack synth": ("glacierstack", "generate_region"),
    "glacierstack search": ("glacierstack", "search"),
    "glacierstack stac-from-files": ("glacierstack", "stac_from_files"),
    "cryonet predict": ("cryonet", "predict"),
    "cryonet evaluate": ("cryonet", "evaluate"),
    "cryonet importance": ("cryonet", "importance"),
    "cryonet export": ("cryonet", "export_polygons"),
    "cryonet demo": ("cryonet", "DemoConfig"),
}


@pytest.mark.parametrize("command", sorted(_PAIRS))
def test_cli_and_python_share_defaults(command):
    import importlib

    from cryonet.cli import app as capp
    from glacierstack.cli import app as gapp

    prog, sub = command.split(" ", 1)
    package, attr = _PAIRS[command]
    app, func = (
        {"glacierstack": gapp, "cryonet": capp}[prog],
        getattr(importlib.import_module(package), attr),
    )
    cli = _cli_defaults(app, sub)
    py = _py_defaults(func)
    shared = [
        n
        for n in cli
        if n in py and cli[n] is not None and py[n] is not None and n not in ("device",)
    ]
    assert shared, f"{command}: no shared parameter with a default to compare"
    for name in shared:
        cli_value, py_value = cli[name], py[name]
        if isinstance(py_value, float | int) and not isinstance(py_value, bool):
            assert float(cli_value) == float(py_value), (command, name, cli_value, py_value)
        else:
            assert str(cli_value) == str(py_value), (command, name, cli_value, py_value)


def _toy(chunks: int) -> xr.DataArray:
    grid = Grid(crs="EPSG:32645", bounds=(400000.0, 3130000.0, 400640.0, 3130480.0), resolution=10)
    h, w = grid.shape
    data = da.random.default_rng(0).random((3, h, w), chunks=(1, chunks, chunks)).astype("f4")
    arr = xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={"band": ["B04", "NDVI", "slope"], "y": grid.y, "x": grid.x},
    )
    return arr.rio.write_crs(grid.crs) + 1.0


def test_summary_matches_dask_and_rioxarray():
    arr = _toy(chunks=20)
    s = glacierstack.summary(arr)
    assert s.bands == ("B04", "NDVI", "slope")
    assert s.shape == (48, 64)
    assert s.crs == arr.rio.crs.to_string()
    assert s.grid is not None and s.grid.bounds == (400000.0, 3130000.0, 400640.0, 3130480.0)
    assert s.grid.resolution == 10
    assert s.n_chunks == arr.data.npartitions == 3 * 3 * 4
    assert s.n_tasks == len(dict(arr.data.__dask_graph__()))
    assert s.chunks == {"band": (1,), "y": (20, 8), "x": (20, 4)}
    assert s.nbytes == 3 * 48 * 64 * 4
    assert s.complete is None
    text = str(s)
    assert "EPSG:32645" in text and "64 x 48 px @ 10 m" in text and f"{s.n_tasks:,} tasks" in text
    assert "<table>" in s._repr_html_()
    # accessor delegates; nothing was computed (still lazy)
    assert repr(arr.gs) == text and arr.gs.summary() == s
    assert isinstance(arr.data, da.Array)


def test_summary_in_memory_dataset_and_errors():
    ds = _toy(chunks=64).compute().to_dataset(name="features")
    ds.attrs["complete"] = True
    s = glacierstack.summary(ds)
    assert s.n_chunks == 0 and not s.lazy and s.complete is True
    assert "in memory" in str(s) and "complete" in str(s)
    with pytest.raises(TypeError, match="ndarray"):
        glacierstack.summary(np.zeros((2, 2)))


def test_search_needs_exactly_one_of_modality_and_collection():
    with pytest.raises(ValueError, match="exactly one of modality= or collection="):
        glacierstack.search("synthetic", (0, 0, 1, 1))
    with pytest.raises(ValueError, match="exactly one"):
        glacierstack.search("synthetic", (0, 0, 1, 1), modality="s2", collection="x")
