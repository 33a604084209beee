"""Data loss: an overwrite replaces only a store of its own kind, never an input or user data."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from glacierstack.pipeline import build_cube
from glacierstack.storage import ForeignStoreError, StoreError, remove_store
from glacierstack.store import open_cube, write_cube
from glacierstack.synthetic import generate_region

from .conftest import GRID, make_cube, tiny_features


def test_cube_overwrite_refuses_user_folder(tmp_path):
    victim = tmp_path / "mine"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    feats, labels = tiny_features()
    with pytest.raises(ForeignStoreError, match="not a glacierstack cube"):
        write_cube(feats, labels, victim, grid=GRID, overwrite=True, progress=False)
    assert (victim / "thesis.tex").read_text() == "years of work"


def test_cube_overwrite_refuses_its_own_catalog(tmp_path):
    region = generate_region("poiqu", tmp_path / "reg", size_km=0.6, progress=False)
    with pytest.raises(StoreError, match="input of this run"):
        build_cube(region.catalog_path.parent, tmp_path / "reg", bbox=(0, 0, 1, 1),
                   overwrite=True, progress=False)  # fmt: skip
    assert region.catalog_path.is_file()


def test_remove_store_refuses_other_kind_and_inputs(tmp_path):
    cube = make_cube(tmp_path / "c.zarr")
    with pytest.raises(ForeignStoreError, match="cube, not a mosaic"):
        remove_store(cube, "mosaic")
    with pytest.raises(StoreError, match="input"):
        remove_store(cube, "cube", inputs=[cube / "features"])
    assert open_cube(cube).features.shape[0] == 6


def test_synth_overwrite_refuses_foreign_folder(tmp_path):
    victim = tmp_path / "data"
    victim.mkdir()
    (victim / "notes.txt").write_text("keep")
    with pytest.raises(ForeignStoreError, match="not a synthetic region"):
        generate_region("poiqu", victim, size_km=0.6, overwrite=True, progress=False)
    assert (victim / "notes.txt").read_text() == "keep"
    assert not list(tmp_path.glob(".data.*"))


def test_synth_overwrite_replaces_own_region(tmp_path):
    out = tmp_path / "reg"
    generate_region("poiqu", out, size_km=0.6, seed=1, progress=False)
    region = generate_region("poiqu", out, size_km=0.6, seed=2, overwrite=True, progress=False)
    assert "seed 2" in region.catalog_path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reg"]


def test_killed_synth_debris_is_cleaned_by_next_run(tmp_path):
    out = tmp_path / "reg"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    debris = tmp_path / f".reg.partial-{dead}"
    (debris / "sentinel-2-l2a").mkdir(parents=True)
    live = tmp_path / f".reg.partial-{os.getppid()}"  # a running process's stage is kept
    live.mkdir()
    generate_region("poiqu", out, size_km=0.6, progress=False)
    assert not debris.exists() and live.exists()


def _tiny_checkpoint(path):
    import numpy as np

    from cryonet.checkpoint import save_checkpoint
    from cryonet.models import create_model
    from glacierstack.classes import class_table

    from .conftest import BANDS

    model = create_model("unet-tiny", in_channels=len(BANDS), num_classes=5)
    return save_checkpoint(path, model, bands=BANDS, mean=np.zeros(6), std=np.ones(6),
                           classes=class_table(), epoch=1)  # fmt: skip


def test_predict_overwrite_never_deletes_input_cube_or_user_folder(tmp_path):
    from cryonet.infer import predict

    cube = make_cube(tmp_path / "victim.zarr")
    ck = _tiny_checkpoint(tmp_path / "m.pt")
    kw = dict(tile_size=32, overlap=8, chunk_size=32, device="cpu", progress=False)
    with pytest.raises(StoreError, match="input of this run"):
        predict(ck, cube, cube, overwrite=True, **kw)
    assert open_cube(cube).features.shape == (6, 64, 96)
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ForeignStoreError, match="not a glacierstack mosaic"):
        predict(ck, cube, folder, overwrite=True, **kw)
    assert (folder / "holiday.jpg").exists()
    with pytest.raises(ForeignStoreError, match="cube, not a mosaic"):
        predict(ck, cube, make_cube(tmp_path / "other.zarr"), overwrite=True, **kw)
    with pytest.raises(StoreError, match="input of this run"):
        predict(ck, cube, tmp_path, overwrite=True, **kw)  # a folder holding the inputs
    out = predict(ck, cube, tmp_path / "map.zarr", **kw)
    assert predict(ck, cube, out, overwrite=True, **kw) == out  # its own kind: replaced
