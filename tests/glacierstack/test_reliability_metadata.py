"""Unreadable inputs and files that disagree with their STAC metadata are loud errors.

Each test damages a copy of a tiny synthetic region the way real catalogs go wrong (a
missing file, a float file described as scaled integer DNs, a wrong scale) and checks the
error names band, file, expected and found values; ``allow_missing`` masks and records.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from glacierstack.inputs import PHYSICAL_RANGES, InputError, ReadConfig
from glacierstack.stack import load_modalities
from glacierstack.synthetic import generate_region


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    out = tmp_path_factory.mktemp("rel") / "poiqu"
    return generate_region("poiqu", out, size_km=0.6, seed=1, progress=False)


@pytest.fixture
def region(pristine, tmp_path):
    """A private copy of the region (tests damage it)."""
    root = tmp_path / "poiqu"
    shutil.copytree(pristine.catalog_path.parent, root)
    return root, pristine.grid, pristine.datetime


def _item_json(root: Path, collection: str) -> Path:
    return sorted((root / collection).glob("*/*.json"))[0]


def _edit_asset(root: Path, collection: str, key: str, **raster_band) -> tuple[Path, Path]:
    """Change an asset's raster:bands entries (``None`` removes a key); return json, file."""
    path = _item_json(root, collection)
    d = json.loads(path.read_text())
    rb = d["assets"][key]["raster:bands"][0]
    for k, v in raster_band.items():
        if v is None:
            rb.pop(k, None)
        else:
            rb[k] = v
    path.write_text(json.dumps(d))
    return path, (path.parent / d["assets"][key]["href"]).resolve()


def test_missing_file_is_an_error_naming_the_href(region):
    root, grid, window = region
    _, tif = _edit_asset(root, "sentinel-2-l2a", "red")
    tif.unlink()
    with pytest.raises(InputError, match=r"band 'B04'.*" + str(tif.name)) as e:
        load_modalities(root / "catalog.json", grid, window, ["s2"])
    assert str(tif) in str(e.value) and "allow-missing" in str(e.value)
    assert "\n" not in str(e.value)


def test_allow_missing_masks_and_records_in_attrs(region):
    root, grid, window = region
    _, tif = _edit_asset(root, "sentinel-2-l2a", "red")
    tif.unlink()
    with pytest.warns(UserWarning, match="unreadable inputs"):
        ds = load_modalities(
            root / "catalog.json", grid, window, ["s2", "dem"], read=ReadConfig(allow_missing=True)
        )
    assert ds.attrs["missing_inputs"] == [str(tif)]
    assert ds.B04.attrs["missing_inputs"] == [str(tif)] and ds.B03.attrs["missing_inputs"] == []
    assert ds.attrs["read"]["allow_missing"] is True
    b04, b03, dem = (ds[v].values for v in ("B04", "B03", "elevation"))
    assert np.isnan(b04).all()
    assert np.isfinite(b03).all() and np.isfinite(dem).all()


def test_missing_file_at_compute_time_is_not_silently_nan(region):
    """Without the header check stackstac's default turned a 404 into NaN; now it raises."""
    root, grid, window = region
    _, tif = _edit_asset(root, "sentinel-2-l2a", "green")
    ds = load_modalities(
        root / "catalog.json", grid, window, ["s2"], read=ReadConfig(check_files=False)
    )
    tif.unlink()
    with pytest.raises(RuntimeError, match=str(tif.name)):
        ds.B03.compute()


def _rewrite_as_physical_float32(tif: Path, scale: float, offset: float) -> np.ndarray:
    with rasterio.open(tif) as src:
        dn = src.read(1)
        profile = src.profile
    phys = np.where(dn == 0, np.nan, dn * scale + offset).astype(np.float32)
    profile.update(dtype="float32", nodata=np.nan)
    tif.unlink()
    with rasterio.open(tif, "w", **profile) as dst:
        dst.write(phys, 1)
    return phys


def test_float_file_declared_as_scaled_uint16_is_refused(region):
    """A float32 reflectance file whose item still says uint16 * 1e-4 - 0.1 (issue 11)."""
    root, grid, window = region
    _, tif = _edit_asset(root, "sentinel-2-l2a", "green")
    _rewrite_as_physical_float32(tif, 1e-4, -0.1)
    with pytest.raises(InputError) as e:
        load_modalities(root / "catalog.json", grid, window, ["s2"])
    msg = str(e.value)
    for part in ("'B03'", str(tif), "uint16", "scale 0.0001", "offset -0.1", "float32"):
        assert part in msg, (part, msg)


def test_float_file_with_a_dn_scale_from_the_config_is_refused(region):
    """No data_type/scale in the item: the config's DN scale would hit physical values."""
    root, grid, window = region
    _, tif = _edit_asset(root, "sentinel-2-l2a", "green", data_type=None, scale=None, offset=None)
    _rewrite_as_physical_float32(tif, 1e-4, -0.1)
    with pytest.raises(InputError, match=r"'B03'.*float32.*scale 0.0001"):
        load_modalities(root / "catalog.json", grid, window, ["s2"])


def test_float_file_declared_float_is_read_unscaled(region):
    """The fix the error suggests: declare the float file as it is; values pass through."""
    root, grid, window = region
    _, tif = _edit_asset(root, "sentinel-2-l2a", "green", data_type="float32", scale=1, offset=0)
    phys = _rewrite_as_physical_float32(tif, 1e-4, -0.1)
    ds = load_modalities(root / "catalog.json", grid, window, ["s2"])
    got = ds.B03.values
    assert ds.B03.attrs["scale"] == [1.0] and ds.B03.attrs["offset"] == [0.0]
    np.testing.assert_allclose(np.nanmean(got), np.nanmean(phys), rtol=1e-3)


def test_wrong_scale_fails_the_physical_range_check(region):
    """Landsat ST declared with scale x10: Kelvin values far outside [150, 380]."""
    root, grid, window = region
    for p in sorted((root / "landsat-c2-l2").glob("*/*.json")):
        d = json.loads(p.read_text())
        d["assets"]["lwir11"]["raster:bands"][0]["scale"] = 0.0341802
        p.write_text(json.dumps(d))
    ds = load_modalities(root / "catalog.json", grid, window, ["lst"])
    with pytest.raises(InputError) as e:
        ds.lst.compute()
    msg = str(e.value)
    lo, hi = PHYSICAL_RANGES["kelvin"]
    assert "'lst'" in msg and "lwir11.tif" in msg and f"[{lo:g}, {hi:g}]" in msg
    assert "found" in msg and "%" in msg
    # turned off, the same (wrong) values are returned
    off = load_modalities(
        root / "catalog.json", grid, window, ["lst"], read=ReadConfig(max_out_of_range=None)
    )
    assert np.nanmin(off.lst.values) > hi


def test_a_few_outliers_below_the_threshold_pass(region):
    root, grid, window = region
    _, tif = _edit_asset(root, "cop-dem-glo-30", "data")
    with rasterio.open(tif, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:
        z = dst.read(1)
        z.flat[:3] = 20000.0  # three spikes, well under 2 % of the tile
        dst.write(z, 1)
    ds = load_modalities(root / "catalog.json", grid, window, ["dem"])
    assert np.nanmax(ds.elevation.values) > PHYSICAL_RANGES["metres"][1] - 1
    with rasterio.open(tif, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:
        z[:] = 20000.0
        dst.write(z, 1)
    with pytest.raises(InputError, match=r"'elevation'.*100%.*\[-500, 9000\]"):
        load_modalities(root / "catalog.json", grid, window, ["dem"]).elevation.compute()


def test_read_config_gdal_options_and_attrs_hide_secrets():
    cfg = ReadConfig.create(
        {"GDAL_HTTP_TIMEOUT": 5, "GDAL_HTTP_UNSAFESSL": True},
        {"Authorization": "Bearer s3cret", "X-Api-Key": "k"},
    )
    opts = cfg.gdal_options()
    assert opts["GDAL_HTTP_TIMEOUT"] == "5" and opts["GDAL_HTTP_UNSAFESSL"] == "YES"
    assert opts["GDAL_HTTP_HEADERS"] == "Authorization: Bearer s3cret\r\nX-Api-Key: k"
    attrs = cfg.to_attrs()
    assert attrs["http_headers"] == ["Authorization", "X-Api-Key"]
    assert "s3cret" not in json.dumps(attrs)
    # it travels inside the task graph: picklable and equal after the trip
    import pickle

    assert pickle.loads(pickle.dumps(cfg)) == cfg
