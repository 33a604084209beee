"""Feature layers on real data: ITS_LIVE velocity (Columbia Glacier) and a real DEM."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from pyproj import Transformer

from glacierstack.features import FeatureOptions, compute_features
from glacierstack.grid import Grid

rasterio = pytest.importorskip("rasterio")
pytest.importorskip("rioxarray")


def _reproject(path, grid: Grid) -> np.ndarray:
    from rasterio.warp import Resampling, reproject

    with rasterio.open(path) as src:
        out = np.full(grid.shape, np.nan, np.float32)
        reproject(
            rasterio.band(src, 1),
            out,
            src_nodata=src.nodata,
            dst_transform=grid.transform,
            dst_crs=grid.crs,
            dst_nodata=np.nan,
            resampling=Resampling.bilinear,
        )
    return out


def test_its_live_speed_on_utm_10m_grid(realdata):
    """ITS_LIVE vx/vy (EPSG:3413, 120 m) reprojected to UTM 6N at 10 m; speed = hypot(vx, vy)."""
    shop = realdata / "oggm/shop"
    vx_path, vy_path = shop / "crop_ALA_G0120_0000_vx.tif", shop / "crop_ALA_G0120_0000_vy.tif"
    with rasterio.open(vx_path) as src:
        from rasterio.warp import transform_bounds

        lon0, lat0, lon1, lat1 = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        native_vx = src.read(1, masked=True).filled(np.nan)
        native_transform, native_crs = src.transform, src.crs
    with rasterio.open(vy_path) as src:
        native_vy = src.read(1, masked=True).filled(np.nan)
    # a 4 km x 3 km box in the middle of the crop (over the glacier's lower reach)
    cx, cy = (lon0 + lon1) / 2, (lat0 + lat1) / 2
    grid = Grid.from_bbox((cx - 0.036, cy - 0.0135, cx + 0.036, cy + 0.0135), resolution=10)
    assert grid.crs == "EPSG:32606" and grid.resolution == 10
    vx, vy = _reproject(vx_path, grid), _reproject(vy_path, grid)
    raw = xr.Dataset(
        {
            "vx": (("y", "x"), da.from_array(vx, chunks=(128, 96))),
            "vy": (("y", "x"), da.from_array(vy, chunks=(128, 96))),
        },
        coords=grid.coords(),
        attrs={"grid": grid.to_attrs()},
    )
    speed = compute_features(raw, ["velocity"]).sel(band="velocity").values
    np.testing.assert_allclose(speed, np.hypot(vx, vy), rtol=1e-6, equal_nan=True)
    assert np.isfinite(speed).mean() > 0.5
    # speed is invariant to the rotation between polar-stereographic and UTM axes: compare
    # with the native 120 m speeds whose pixel centres fall inside the box
    native = np.hypot(native_vx, native_vy)
    rows, cols = np.mgrid[0 : native.shape[0], 0 : native.shape[1]]
    xs, ys = rasterio.transform.xy(native_transform, rows.ravel(), cols.ravel())
    ux, uy = Transformer.from_crs(native_crs, grid.crs, always_xy=True).transform(xs, ys)
    x0, y0, x1, y1 = grid.bounds
    inside = ((ux > x0 + 120) & (ux < x1 - 120) & (uy > y0 + 120) & (uy < y1 - 120)).reshape(
        native.shape
    )
    assert inside.sum() > 200
    ratio = np.nanmedian(speed) / np.nanmedian(native[inside])
    assert 0.9 < ratio < 1.1, ratio
    assert np.nanmax(speed) <= np.nanmax(native) * 1.001


def test_slope_on_real_dem_through_compute_features(realdata):
    """dem_chhota_shigri.tif (metric TM, 94 m): cube slope vs an independent NumPy Horn."""
    with rasterio.open(realdata / "oggm/test-files/dem_chhota_shigri.tif") as src:
        z = src.read(1).astype(np.float32)
        z[z == src.nodata] = np.nan
        t = src.transform
        crs = src.crs.to_wkt()
    h, w = z.shape
    x = t.c + t.a * (np.arange(w) + 0.5)
    y = t.f + t.e * (np.arange(h) + 0.5)
    raw = xr.Dataset(
        {"elevation": (("y", "x"), da.from_array(z, chunks=(37, 53)))}, coords={"y": y, "x": x}
    )
    raw = raw.rio.write_crs(crs)
    slope = compute_features(raw, ["slope"], FeatureOptions(edges="nan")).sel(band="slope").values
    zz = z.astype(np.float64)
    east = (
        (zz[:-2, 2:] + 2 * zz[1:-1, 2:] + zz[2:, 2:])
        - (zz[:-2, :-2] + 2 * zz[1:-1, :-2] + zz[2:, :-2])
    ) / (8 * t.a)
    north = (
        (zz[:-2, :-2] + 2 * zz[:-2, 1:-1] + zz[:-2, 2:])
        - (zz[2:, :-2] + 2 * zz[2:, 1:-1] + zz[2:, 2:])
    ) / (8 * -t.e)
    ref = np.degrees(np.arctan(np.hypot(east, north)))
    ref[np.isnan(zz[1:-1, 1:-1])] = np.nan
    np.testing.assert_allclose(slope[1:-1, 1:-1], ref, atol=2e-5, equal_nan=True)
