"""The mosaic read by plain clients (xarray defaults, rioxarray, odc-geo, GDAL's Zarr driver)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import xarray as xr

from cryonet.infer import InMemoryModel, LoadedModel, open_mosaic, predict
from glacierstack.classes import NODATA_LABEL
from glacierstack.grid import Grid
from glacierstack.store import write_cube

GRID = Grid("EPSG:32645", (500_000, 3_100_000, 500_400, 3_100_480), 10)  # 48 x 40 px


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("mosaic")
    rng = np.random.default_rng(5)
    feats = xr.DataArray(rng.normal(size=(3, *GRID.shape)).astype("f4"), dims=("band", "y", "x"),
                         coords={"band": ["B02", "B03", "B04"], **GRID.coords()})  # fmt: skip
    labels = xr.DataArray(np.zeros(GRID.shape, "u1"), dims=("y", "x"), coords=GRID.coords())
    cube = write_cube(feats, labels, tmp / "cube.zarr", grid=GRID, chunk_size=32, progress=False)
    torch.manual_seed(0)
    model = LoadedModel(torch.nn.Conv2d(3, 5, 3, padding=1), ("B02", "B03", "B04"),
                        np.zeros(3), np.ones(3))  # fmt: skip
    return predict(InMemoryModel(model, key="interop"), cube, tmp / "m.zarr",
                   tile_size=32, overlap=8, chunk_size=24, device="cpu", scheduler="synchronous",
                   progress=False)  # fmt: skip


def test_plain_xarray_defaults_recover_crs_and_mask_nodata(mosaic):
    import odc.geo.xr  # noqa: F401  (registers .odc)

    ref = open_mosaic(mosaic)
    ds = xr.open_zarr(mosaic)  # default arguments: the fill value 255 is decoded as missing
    assert "spatial_ref" in ds.coords and {"classes", "probabilities"} <= set(ds.data_vars)
    assert ds.rio.crs.to_epsg() == 32645 and ds.classes.rio.crs.to_epsg() == 32645
    assert tuple(ds.classes.rio.transform())[:6] == tuple(ref.rio.transform())[:6]
    assert ds.classes.rio.encoded_nodata == NODATA_LABEL
    want = np.where(ref.classes.values == NODATA_LABEL, np.nan, ref.classes.values)
    np.testing.assert_array_equal(ds.classes.values, want)
    raw = xr.open_zarr(mosaic, mask_and_scale=False)  # uint8 as stored, 255 = nodata
    assert raw.classes.dtype == np.uint8 and raw.classes.rio.nodata == NODATA_LABEL
    np.testing.assert_array_equal(raw.classes.values, ref.classes.values)
    assert ds.classes.odc.geobox.crs.epsg == 32645


def test_gdal_sees_crs_and_no_bookkeeping_arrays(mosaic, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(str(mosaic)) as root:
            subdatasets = root.subdatasets
    assert subdatasets and not any("progress" in s for s in subdatasets), subdatasets
    assert not (mosaic / "_progress").exists()
    with rasterio.open(f'ZARR:"{mosaic}":/classes') as src:
        assert src.crs.to_epsg() == 32645 and src.dtypes[0] == "uint8"
        classes = src.read(1)
    np.testing.assert_array_equal(classes, open_mosaic(mosaic).classes.values)
    tif = tmp_path / "classes.tif"
    xr.open_zarr(mosaic).classes.rio.to_raster(tif)
    with rasterio.open(tif) as src:
        assert src.crs.to_epsg() == 32645 and src.nodata == NODATA_LABEL


def test_open_mosaic_reads_the_previous_layout(mosaic, tmp_path):
    old = tmp_path / "old.zarr"
    shutil.copytree(mosaic, old)
    zmeta = json.loads((old / ".zmetadata").read_text())
    for key, meta in zmeta["metadata"].items():
        if key.endswith(".zattrs"):
            meta.pop("coordinates", None)
    (old / ".zmetadata").write_text(json.dumps(zmeta))
    assert "spatial_ref" in xr.open_zarr(old).data_vars  # what plain xarray saw before
    ds = open_mosaic(old)
    assert ds.rio.crs.to_epsg() == 32645 and ds.classes.dtype == np.uint8
