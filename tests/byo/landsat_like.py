"""Make a Landsat-like 4-band uint8 GeoTIFF (another CRS and grid) from a synthetic region.

Stands in for a user's own scene in the bring-your-own-data tests: bands blue, green, red, NIR
in Landsat 7 ETM+ order (B1-B4), 30 m pixels in the neighbouring UTM zone, reflectance stored
as uint8 with a declared scale of 1/250 (offset 0) and nodata 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject

S2_FOR_ETM = ("blue", "green", "red", "nir")  # S2 asset keys of ETM+ B1..B4
SCALE = 0.004


def make_landsat_like(catalog_dir: Path, out: Path, crs: str = "EPSG:32644") -> Path:
    """Write ``out`` from the S2 item of the synthetic catalog in ``catalog_dir``."""
    s2 = sorted((catalog_dir / "sentinel-2-l2a").iterdir())[0]
    names = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}
    with rasterio.open(s2 / f"{names['blue']}.tif") as ds:
        src_crs, src_t, (h, w), b = ds.crs, ds.transform, ds.shape, ds.bounds
    t, width, height = calculate_default_transform(src_crs, crs, w, h, *b, resolution=30.0)
    # shift the origin by a third of a pixel: a grid that matches no 10 m grid of the source
    t = rasterio.Affine(t.a, 0, t.c + 10.0, 0, t.e, t.f - 10.0)
    data = np.zeros((4, height, width), np.uint8)
    for i, key in enumerate(S2_FOR_ETM):
        with rasterio.open(s2 / f"{names[key]}.tif") as ds:
            refl = ds.read(1).astype(np.float32) * 1e-4 - 0.1
            refl[ds.read(1) == 0] = np.nan
        dst = np.full((height, width), np.nan, np.float32)
        reproject(refl, dst, src_transform=src_t, src_crs=src_crs, dst_transform=t,
                  dst_crs=crs, resampling=Resampling.average, src_nodata=np.nan,
                  dst_nodata=np.nan)  # fmt: skip
        dn = np.clip(np.round(dst / SCALE), 1, 255)
        data[i] = np.where(np.isfinite(dst), dn, 0).astype(np.uint8)
    with rasterio.open(
        out, "w", driver="GTiff", width=width, height=height, count=4, dtype="uint8",
        crs=crs, transform=t, nodata=0,
    ) as ds:  # fmt: skip
        ds.write(data)
        ds.scales = (SCALE,) * 4
        ds.offsets = (0.0,) * 4
    return out
