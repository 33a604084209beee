"""Horn slope/aspect kernel vs independent NumPy/SciPy implementations, planes and real DEMs."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from glacierstack.dispatch import apply_kernel
from glacierstack.kernels import horn_slope_aspect


def _horn_numpy(z: np.ndarray, dx: float, dy: float):
    """Independent Horn (1981) with array slicing; interior pixels only, float64."""
    z = z.astype(np.float64)
    a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
    d, f = z[1:-1, :-2], z[1:-1, 2:]
    g, h, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
    east = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * dx)
    north = ((a + 2 * b + c) - (g + 2 * h + i)) / (8 * dy)
    slope = np.degrees(np.arctan(np.hypot(east, north)))
    aspect = np.degrees(np.arctan2(-east, -north)) % 360.0
    missing = np.isnan(z[1:-1, 1:-1])  # documented: a missing centre pixel is missing too
    slope[missing] = np.nan
    aspect[missing] = np.nan
    return slope, aspect


def _horn_sobel(z: np.ndarray, dx: float, dy: float):
    """Second independent route: SciPy's Sobel filters are 8x Horn's differences."""
    z = z.astype(np.float64)
    east = ndimage.sobel(z, axis=1, mode="nearest") / (8 * dx)  # columns increase eastwards
    north = -ndimage.sobel(z, axis=0, mode="nearest") / (8 * dy)  # rows increase southwards
    slope = np.degrees(np.arctan(np.hypot(east, north)))
    aspect = np.degrees(np.arctan2(-east, -north)) % 360.0
    slope[np.isnan(z)] = np.nan
    aspect[np.isnan(z)] = np.nan
    return slope, aspect


def _angle_diff(a, b):
    return np.abs((a - b + 180.0) % 360.0 - 180.0)


def _check(ours, slope_ref, aspect_ref, flat_tol=1e-9):
    slope, aspect = ours
    ok = np.isfinite(slope_ref)
    np.testing.assert_array_equal(np.isfinite(slope), ok)
    np.testing.assert_allclose(slope[ok], slope_ref[ok], atol=2e-5, rtol=1e-6)
    sloped = ok & (slope_ref > flat_tol)
    assert _angle_diff(aspect[sloped], aspect_ref[sloped]).max() < 1e-4


@pytest.mark.parametrize(
    ("gx", "gy", "aspect"),
    [(0.5, 0.0, 270.0), (-0.5, 0.0, 90.0), (0.0, 0.3, 180.0), (0.0, -0.3, 0.0), (1.0, 1.0, 225.0)],
)
def test_planes_give_exact_slope_and_downslope_azimuth(gx, gy, aspect):
    """z = gx * east + gy * north: slope atan(|grad|), aspect = azimuth of -grad."""
    dx, dy = 10.0, 20.0
    east = np.arange(12) * dx
    north = -np.arange(9)[:, None] * dy  # row 0 is the northernmost
    z = gx * east[None, :] + gy * north
    slope, asp = apply_kernel(
        horn_slope_aspect, z, depth=1, args=(dx, dy, -1.0), outputs=("s", "a")
    )
    inner = (slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(slope[inner], np.degrees(np.arctan(np.hypot(gx, gy))), atol=1e-5)
    assert _angle_diff(asp[inner], aspect).max() < 1e-4


def test_flat_area_gets_flat_aspect_and_zero_slope():
    z = np.full((6, 7), 1234.0)
    slope, asp = apply_kernel(
        horn_slope_aspect, z, depth=1, args=(30.0, 30.0, -1.0), outputs=("s", "a")
    )
    assert (slope[1:-1, 1:-1] == 0).all() and (asp[1:-1, 1:-1] == -1).all()


def test_random_surface_vs_numpy_and_sobel_references():
    rng = np.random.default_rng(1)
    z = ndimage.gaussian_filter(rng.random((60, 80)), 3) * 500
    z[20, 30] = np.nan
    ours = apply_kernel(
        horn_slope_aspect, z, depth=1, boundary="nan", args=(10.0, 12.0, -1.0), outputs=("s", "a")
    )
    s_ref, a_ref = _horn_numpy(z, 10.0, 12.0)
    _check(ours[:, 1:-1, 1:-1], s_ref, a_ref)
    assert np.isnan(ours[:, 0]).all() and np.isnan(ours[:, :, -1]).all()
    # "nearest" edges equal the Sobel route with mode="nearest" on every pixel
    near = apply_kernel(
        horn_slope_aspect,
        z,
        depth=1,
        boundary="nearest",
        args=(10.0, 12.0, -1.0),
        outputs=("s", "a"),
    )
    s_sob, a_sob = _horn_sobel(z, 10.0, 12.0)
    _check(near, s_sob, a_sob)


@pytest.mark.parametrize("chunks", [(37, 53), (1, 300), (200, 2)])
def test_numpy_and_dask_agree_across_chunk_boundaries(chunks):
    rng = np.random.default_rng(2)
    z = (ndimage.gaussian_filter(rng.random((200, 300)), 4) * 800).astype(np.float32)
    z[100:103, 40:45] = np.nan
    kw = dict(depth=1, boundary="nearest", args=(30.0, 30.0, -1.0), outputs=("slope", "aspect"))
    ours = apply_kernel(horn_slope_aspect, z, **kw)
    lazy = apply_kernel(horn_slope_aspect, da.from_array(z, chunks=chunks), **kw)
    np.testing.assert_array_equal(lazy.compute(), ours)


def _read_dem(path):
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(path) as src:
        z = src.read(1).astype(np.float64)
        if src.nodata is not None:
            z[z == src.nodata] = np.nan
        return z, src.crs, src.transform, src.res


def test_real_dem_chhota_shigri_metric_tm(realdata):
    """Real SRTM DEM on a metric transverse-Mercator grid (94 m), read with rasterio."""
    z, crs, _, (dx, dy) = _read_dem(realdata / "oggm/test-files/dem_chhota_shigri.tif")
    assert not crs.is_geographic
    ours = apply_kernel(
        horn_slope_aspect,
        da.from_array(z.astype(np.float32), chunks=(37, 53)),
        depth=1,
        boundary="nan",
        args=(dx, dy, -1.0),
        outputs=("slope", "aspect"),
    ).compute()
    s_ref, a_ref = _horn_numpy(z.astype(np.float32), dx, dy)
    _check(ours[:, 1:-1, 1:-1], s_ref, a_ref)
    slope = ours[0][np.isfinite(ours[0])]
    assert 15 < np.median(slope) < 45 and slope.max() < 90  # steep Himalayan terrain


@pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")  # inside rasterio
def test_real_dem_hintereisferner_reprojected_to_utm(realdata):
    """Geographic SRTM DEM (EPSG:4326) reprojected to UTM 32N at 30 m, then Horn in metres."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(realdata / "oggm/test-files/hef_srtm.tif") as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:32632", src.width, src.height, *src.bounds, resolution=30
        )
        z = np.full((height, width), np.nan, np.float32)
        reproject(
            rasterio.band(src, 1),
            z,
            dst_transform=transform,
            dst_crs="EPSG:32632",
            dst_nodata=np.nan,
            resampling=Resampling.bilinear,
        )
    ours = apply_kernel(
        horn_slope_aspect,
        da.from_array(z, chunks=(37, 53)),
        depth=1,
        boundary="nan",
        args=(30.0, 30.0, -1.0),
        outputs=("slope", "aspect"),
    ).compute()
    s_ref, a_ref = _horn_numpy(z, 30.0, 30.0)
    _check(ours[:, 1:-1, 1:-1], s_ref, a_ref)
    s_sob, a_sob = _horn_sobel(z, 30.0, 30.0)
    _check(ours[:, 1:-1, 1:-1], s_sob[1:-1, 1:-1], a_sob[1:-1, 1:-1])
    assert np.isfinite(ours[0]).mean() > 0.5
