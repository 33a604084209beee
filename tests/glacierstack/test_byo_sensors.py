"""Bring your own data: multi-band files, sensor band maps, encodings, computable layers, --like."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from typer.testing import CliRunner

from glacierstack.byo import EncodingOptions, stac_from_files
from glacierstack.cli import app
from glacierstack.features import compute_features
from glacierstack.grid import Grid
from glacierstack.stack import load_modalities

CRS = "EPSG:32644"


def _write(path: Path, data: np.ndarray, *, scales=None, offsets=None, descr=None) -> Path:
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
        count=data.shape[0], dtype=data.dtype, crs=CRS,
        transform=from_origin(500015.0, 3100000.0, 30.0, 30.0), nodata=0,
    ) as ds:  # fmt: skip
        ds.write(data)
        if scales is not None:
            ds.scales, ds.offsets = scales, offsets
        for i, d in enumerate(descr or []):
            ds.set_band_description(i + 1, d)
    return path


def _etm6(tmp_path: Path, **kw) -> Path:
    data = np.stack([np.full((8, 10), 20 + 10 * k, np.uint8) for k in range(6)])
    data[:, 0, 0] = 0  # nodata
    return _write(tmp_path / "etm.tif", data, **kw)


def _asset(cat: Path) -> dict:
    item = json.loads(next(cat.parent.glob("*/*/*.json")).read_text())
    return item


def test_multiband_declared_encoding_wins_and_bands_read_right(tmp_path, stac_errors):
    # the file declares scale 0.004 and offset 0: the sensor's C2 L2 encoding must not apply
    f = _etm6(tmp_path, scales=(0.004,) * 6, offsets=(0.0,) * 6)
    cat = stac_from_files(
        [f], tmp_path / "cat", datetime="2020-08-01",
        bands={"": ("B1", "B2", "B3", "B4", "B5", "B7")},
        encoding=EncodingOptions(sensor="landsat-etm-c2l2"),
    )  # fmt: skip
    item = _asset(cat)
    assert stac_errors(cat.parent) == {}  # core + declared extension versions (eo, raster)
    assert item["collection"] == "optical"
    assert sorted(item["assets"]) == ["blue", "green", "nir", "red", "swir16", "swir22"]
    rb = item["assets"]["red"]["raster:bands"][0]
    assert (rb["scale"], rb["offset"]) == (0.004, 0.0)
    assert set(item["properties"]["glacierstack:encoding"].values()) == {"file"}
    grid = Grid.from_raster(f)
    raw = load_modalities(cat, grid, None, ["optical"], chunks=8).compute()
    assert raw.attrs["sensor"] == "landsat-etm-c2l2"
    # band k holds DN 20 + 10 k: each slot must read its own band, scaled by the file's 0.004
    for k, slot in enumerate(("B02", "B03", "B04", "B08", "B11", "B12")):
        v = raw[slot].values
        assert np.isnan(v[0, 0])
        np.testing.assert_allclose(v[1:, 1:], (20 + 10 * k) * 0.004, rtol=1e-6)
    # tasseled cap with Huang et al. (2002) ETM+ brightness coefficients, by hand
    tcb = compute_features(raw, ["tc_brightness"]).values[0, 3, 3]
    coef = (0.3561, 0.3972, 0.3904, 0.6966, 0.2286, 0.1596)
    expect = sum(c * (20 + 10 * k) * 0.004 for k, c in enumerate(coef))
    assert tcb == pytest.approx(expect, rel=1e-5)


def test_encoding_precedence_user_sensor_none(tmp_path):
    f = _etm6(tmp_path, descr=["B1", "B2", "B3", "B4", "B5", "B7"])  # no declared encoding
    user = stac_from_files([f], tmp_path / "u", datetime="2020", encoding=EncodingOptions(
        sensor="landsat-etm-c2l2", scale=0.01, offset=0.0))  # fmt: skip
    rb = _asset(user)["assets"]["blue"]["raster:bands"][0]
    assert (rb["scale"], rb["offset"]) == (0.01, 0.0)
    sensor = stac_from_files([f], tmp_path / "s", datetime="2020",
                             encoding=EncodingOptions(sensor="landsat-etm-c2l2"))  # fmt: skip
    rb = _asset(sensor)["assets"]["blue"]["raster:bands"][0]
    assert (rb["scale"], rb["offset"]) == (2.75e-5, -0.2)
    with pytest.warns(UserWarning, match="used as stored"):
        none = stac_from_files([f], tmp_path / "n", datetime="2020",
                               encoding=EncodingOptions(sensor="landsat-etm-toa"))  # fmt: skip
    rb = _asset(none)["assets"]["blue"]["raster:bands"][0]
    assert (rb["scale"], rb["offset"]) == (1.0, 0.0)


def test_layers_cli_and_cube_like_on_four_bands(tmp_path):
    data = np.stack([np.full((12, 12), 40 + 20 * k, np.uint8) for k in range(4)])
    data[1] += np.arange(12, dtype=np.uint8)[None, :]  # some texture / variance
    data[3] += (np.arange(144, dtype=np.uint8).reshape(12, 12) % 7) * 3
    f = _write(tmp_path / "rgbn.tif", data, scales=(0.004,) * 4, offsets=(0.0,) * 4)
    runner = CliRunner()
    res = runner.invoke(app, ["stac-from-files", str(f), "--out", str(tmp_path / "cat"),
                              "--sensor", "optical", "--bands", "blue,green,red,nir",
                              "--datetime", "2020-08-01"])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["layers", "--catalog", str(tmp_path / "cat")])
    assert res.exit_code == 0, res.output
    rows = {ln.split()[1]: ln for ln in res.output.splitlines() if ln.startswith("│")}
    assert "yes" in rows["NDVI"] and "yes" in rows["B08"] and "yes" in rows["PC3"]
    assert "no" in rows["NDSI"] and "B11" in rows["NDSI"]
    assert "no" in rows["tc_brightness"] and "optical" in rows["tc_brightness"]
    out = tmp_path / "cube.zarr"
    res = runner.invoke(
        app,
        [
            "cube",
            "--catalog",
            str(tmp_path / "cat"),
            "--like",
            str(f),
            "--out",
            str(out),
            "--no-progress",
            "--chunk-size",
            "16",
        ],
    )
    assert res.exit_code == 0, res.output
    from glacierstack.store import open_cube

    ds = open_cube(out)
    assert Grid.from_attrs(ds.attrs["grid"]) == Grid.from_raster(f)  # the file's own grid
    assert list(ds.band.values) == ["B02", "B03", "B04", "B08", "NDVI", "NDWI", "NDGI",
                                    "glcm_dissimilarity", "PC1", "PC2", "PC3"]  # fmt: skip
    np.testing.assert_allclose(ds["features"].sel(band="B04").values, 80 * 0.004, rtol=1e-6)
    # the same grid spelled out: --bbox in the grid CRS is taken exactly (origin not snapped)
    b = Grid.from_raster(f).bounds
    res = runner.invoke(app, ["cube", "--catalog", str(tmp_path / "cat"), "--out",
                              str(tmp_path / "c2.zarr"), "--bbox", ",".join(map(str, b)),
                              "--bbox-crs", CRS, "--crs", CRS, "--resolution", "30",
                              "--layers", "B04", "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert Grid.from_attrs(open_cube(tmp_path / "c2.zarr").attrs["grid"]) == Grid.from_raster(f)


def test_landsat_c2l2_recorded_items_layers(realdata):
    items = realdata / "stac" / "pc_landsat-c2-l2-items.json"
    res = CliRunner().invoke(app, ["layers", "--catalog", str(items), "--modalities", "landsat"])
    assert res.exit_code == 0, res.output
    assert "landsat-oli-c2l2" in res.output  # platform landsat-9 -> OLI coefficients
    rows = {ln.split()[1]: ln for ln in res.output.splitlines() if ln.startswith("│")}
    for name in ("B02", "B08", "B11", "B12", "NDSI", "tc_wetness", "PC3"):
        assert "yes" in rows[name], rows[name]
    assert "no" in rows["elevation"]
