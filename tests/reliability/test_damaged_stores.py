"""Damaged stores: a lost or garbage chunk is found on open, by ``verify``, or named on read."""

from __future__ import annotations

import os

import fsspec
import numpy as np
import pytest
from typer.testing import CliRunner

from glacierstack.cli import app
from glacierstack.storage import DamagedStoreError, verify
from glacierstack.store import IncompleteCubeError, open_cube

from .conftest import make_cube


def test_deleted_chunk_is_refused_on_open(tiny_cube):
    (tiny_cube / "features" / "0.1.1").unlink()
    with pytest.raises(DamagedStoreError, match=r"features/0\.1\.1") as err:
        open_cube(tiny_cube)
    assert str(tiny_cube) in str(err.value)


def test_truncated_chunk_is_refused_on_open(tiny_cube):
    chunk = tiny_cube / "labels" / "1.2"
    chunk.write_bytes(chunk.read_bytes()[:-7])
    with pytest.raises(DamagedStoreError, match=r"labels/1\.2"):
        open_cube(tiny_cube)


def test_garbage_chunk_named_on_read_and_by_verify(tiny_cube):
    chunk = tiny_cube / "features" / "0.0.2"
    chunk.write_bytes(os.urandom(chunk.stat().st_size))  # same size: open's cheap check passes
    ds = open_cube(tiny_cube)
    np.asarray(ds.features[:, :32, :64])  # intact chunks still read
    with pytest.raises(DamagedStoreError) as err:
        ds.features.values  # noqa: B018
    msg = str(err.value)
    assert str(tiny_cube) in msg and "'features'" in msg and "features/0.0.2" in msg
    assert "blosc" not in msg.split("(")[0]
    report = verify(tiny_cube)
    assert not report.ok and report.problems == ["features/0.0.2: checksum differs (damaged)"]
    res = CliRunner().invoke(app, ["verify", str(tiny_cube)])
    assert res.exit_code == 1 and "features/0.0.2" in res.output


def test_verify_intact_store(tiny_cube):
    report = verify(tiny_cube)
    assert report.ok and report.checked >= 2 * 2 * 3  # 6 tiles x (features + labels) at least
    res = CliRunner().invoke(app, ["verify", str(tiny_cube)])
    assert res.exit_code == 0 and "all intact" in res.output


def test_memory_url_store_roundtrip_and_damage():
    url = "memory://reliability/damaged.zarr"
    fs = fsspec.filesystem("memory")
    fs.rm("/reliability", recursive=True) if fs.exists("/reliability") else None
    make_cube(url)
    ds = open_cube(url)
    assert ds.features.shape == (6, 64, 96) and verify(url).ok
    fs.rm("/reliability/damaged.zarr/labels/0.0")
    with pytest.raises(DamagedStoreError, match=r"labels/0\.0"):
        open_cube(url)
    fs.rm("/reliability", recursive=True)


def test_unfinished_store_is_not_verified_as_intact(tmp_path):
    path = make_cube(tmp_path / "c.zarr")
    zattrs = path / ".zmetadata"
    zattrs.write_text(zattrs.read_text().replace('"complete": true', '"complete": false'))
    with pytest.raises(IncompleteCubeError):
        open_cube(path)
    assert not verify(path).ok


def test_unwritten_mosaic_chunks_read_as_nodata_in_plain_xarray(tmp_path):
    import xarray as xr

    from cryonet.infer.mosaic import create_store
    from glacierstack.classes import class_table
    from glacierstack.storage import claim

    from .conftest import GRID

    c = claim(tmp_path / "m.zarr", "mosaic", {"model": "x"})
    create_store(c, GRID, class_table(), 32, {"run": {"model": "x"}, "complete": False})
    ds = xr.open_zarr(tmp_path / "m.zarr")  # a plain reader, CF decoding on
    assert bool(ds.classes.isnull().all()) and bool(ds.probabilities.isnull().all())
    raw = xr.open_zarr(tmp_path / "m.zarr", mask_and_scale=False)
    assert int(raw.classes.min()) == 255 and int(raw.probabilities.min()) == 255


def test_memory_url_mosaic_roundtrip_and_damage(tmp_path):
    import torch

    from cryonet.checkpoint import save_checkpoint
    from cryonet.infer import open_mosaic, predict
    from cryonet.models import create_model
    from glacierstack.classes import class_table

    from .conftest import BANDS

    cube = make_cube(tmp_path / "c.zarr")
    torch.manual_seed(0)
    model = create_model("unet-tiny", in_channels=len(BANDS), num_classes=5)
    ck = save_checkpoint(tmp_path / "m.pt", model, bands=BANDS, mean=np.zeros(6),
                         std=np.ones(6), classes=class_table(), epoch=1)  # fmt: skip
    kw = dict(tile_size=32, overlap=8, chunk_size=32, device="cpu", progress=False)
    url = "memory://reliability-mosaic/m.zarr"
    fs = fsspec.filesystem("memory")
    if fs.exists("/reliability-mosaic"):
        fs.rm("/reliability-mosaic", recursive=True)
    assert predict(ck, cube, url, **kw) == url
    local = open_mosaic(predict(ck, cube, tmp_path / "m.zarr", **kw))
    np.testing.assert_array_equal(open_mosaic(url).classes.values, local.classes.values)
    assert verify(url).ok
    fs.rm("/reliability-mosaic/m.zarr/probabilities/0.1.0")
    with pytest.raises(DamagedStoreError, match=r"probabilities/0\.1\.0"):
        open_mosaic(url)
    fs.rm("/reliability-mosaic", recursive=True)
