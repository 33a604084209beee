"""load_modalities on a 1 km synthetic region: units, ranges, encoding, cross-modal alignment."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, reproject

import glacierstack.synthetic as synthetic
from glacierstack.layers import ALL_LAYERS
from glacierstack.stack import load_modalities

pytestmark = pytest.mark.filterwarnings(
    "ignore:Use `@` matmul:PendingDeprecationWarning"
)  # rasterio/odc-geo internals
S2 = [b for b in ALL_LAYERS if b.startswith("B")]


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "poiqu"
    return synthetic.generate_region("poiqu", out, size_km=1, seed=0, progress=False)


@pytest.fixture(scope="module")
def loaded(region):
    ds = load_modalities(region.catalog_path, region.grid, region.datetime)
    return ds, ds.compute()


def _items(region):
    import pystac

    return {
        it.collection_id: it
        for it in pystac.read_file(str(region.catalog_path)).get_items(recursive=True)
    }


def test_variables_dtypes_units(loaded, region):
    lazy, ds = loaded
    assert list(ds.data_vars) == [*S2, "elevation", "lst", "velocity", "s1_ref", "s1_sec"]
    assert all(v.chunks is not None for v in lazy.data_vars.values())  # lazy until computed
    assert (ds.sizes["y"], ds.sizes["x"]) == region.grid.shape
    np.testing.assert_array_equal(ds.x.values, region.grid.x)
    assert ds.attrs["grid"] == region.grid.to_attrs()
    for b in S2:
        assert ds[b].dtype == np.float32 and ds[b].attrs["units"] == "1"
    assert ds.s1_ref.dtype == ds.s1_sec.dtype == np.complex64
    units = {v: ds[v].attrs["units"] for v in ("elevation", "lst", "velocity")}
    assert units == {"elevation": "m", "lst": "K", "velocity": "m/yr"}
    assert ds.s1_ref.attrs["datetime"] < ds.s1_sec.attrs["datetime"]
    assert len(ds.attrs["stac_items"]) == len(set(ds.attrs["stac_items"])) >= 6


def test_physical_ranges(loaded):
    _, ds = loaded
    refl = np.stack([ds[b].values for b in S2])
    assert np.isfinite(refl).all()
    # bulk of the reflectance in 0..1 (sunlit snow slopes may exceed 1, as in real L2A)
    assert refl.min() >= 0.0 and np.percentile(refl, 99) <= 1.0
    lst = ds.lst.values
    assert np.isfinite(lst).all()  # the two Landsat scenes are mosaicked: no gap
    assert 240 < lst.min() and lst.max() < 320
    v = ds.velocity.values
    assert np.nanmin(v) >= 0 and np.nanmax(v) < 1000 and np.isfinite(v).mean() > 0.5
    assert 0 < np.nanmin(ds.elevation.values) < np.nanmax(ds.elevation.values) < 9000
    assert np.abs(ds.s1_ref.values).mean() > 0


def test_s2_encoding_exact_against_rasterio(loaded, region):
    """B04 (10 m) and B11 (20 m): DN read and warped by rasterio, then DN * 1e-4 - 0.1."""
    _, ds = loaded
    item = _items(region)["sentinel-2-l2a"]
    g = region.grid
    for band, asset in (("B04", "red"), ("B11", "swir16")):
        rb = json.loads(json.dumps(item.assets[asset].extra_fields["raster:bands"][0]))
        assert (rb["scale"], rb["offset"], rb["nodata"]) == (0.0001, -0.1, 0)
        dn = np.full(g.shape, np.nan, np.float32)
        with rasterio.open(item.assets[asset].get_absolute_href()) as src:
            reproject(
                rasterio.band(src, 1), dn, dst_transform=g.transform, dst_crs=g.crs,
                resampling=Resampling.bilinear, src_nodata=0, dst_nodata=np.nan,
            )  # fmt: skip
        np.testing.assert_allclose(ds[band].values, dn * 1e-4 - 0.1, rtol=1e-5, atol=2e-4)


def test_modalities_are_aligned_with_the_truth(loaded, region):
    """Cross-modal sanity: clean ice is cold, snowy (NDSI) and moving; a flipped axis fails."""
    _, ds = loaded
    with rasterio.open(region.truth_labels) as src:
        labels = src.read(1)
        assert src.transform == region.grid.transform
    ice, ground = labels == 1, labels == 0
    assert ice.sum() > 50
    assert np.median(ds.lst.values[ice]) < np.median(ds.lst.values[ground])
    ndsi = (ds.B03 - ds.B11) / (ds.B03 + ds.B11)
    assert np.median(ndsi.values[ice]) > 0.4 > np.median(ndsi.values[ground])
    assert np.nanmedian(ds.velocity.values[ice]) > np.nanmedian(ds.velocity.values[ground])
