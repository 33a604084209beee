"""Inventory-like vector outlines from the 10 m truth (GeoPackage, EPSG:4326).

Glacier outlines imitate the Randolph Glacier Inventory: one polygon per connected glacier,
generalised (closed by one pixel and simplified), with a small temporal mismatch: the
inventory predates the scene, so each outline is the union of the current glacier and a copy
shifted down-valley (an older, slightly more advanced terminus), and glaciers smaller than
0.01 km² (the RGI minimum) are left out. Debris outlines are the debris-covered parts,
lightly simplified.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio.features
import shapely
from affine import Affine
from scipy import ndimage
from shapely.affinity import translate
from shapely.geometry import Polygon

from glacierstack.grid import Grid

RGI_MIN_AREA_KM2 = 0.01
TERMINUS_SHIFT_M = 15.0
"""Down-valley shift of the inventory outline (older, more advanced terminus)."""
SIMPLIFY_M = 10.0
"""Douglas-Peucker tolerance of the glacier outlines."""


def _polygons(mask: np.ndarray, grid: Grid, min_pixels: int = 1) -> Iterator[Polygon]:
    """Polygons of the 8-connected components of ``mask`` with at least ``min_pixels`` pixels.

    Each component is polygonised inside its own bounding box, so memory is bounded by the
    largest component rather than by the whole raster.
    """
    comp, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
    for i, sl in enumerate(ndimage.find_objects(comp), start=1):
        if sl is None:
            continue
        sub = comp[sl] == i
        if sub.sum() < min_pixels:
            continue
        transform = grid.transform @ Affine.translation(sl[1].start, sl[0].start)
        for geom, _ in rasterio.features.shapes(
            sub.astype(np.uint8), mask=sub, transform=transform, connectivity=8
        ):
            yield shapely.geometry.shape(geom)


def _frame(parts: list, grid: Grid, id_col: str, prefix: str) -> gpd.GeoDataFrame:
    parts = sorted(parts, key=lambda g: -g.area)
    gdf = gpd.GeoDataFrame(
        {
            id_col: [f"{prefix}{i + 1:05d}" for i in range(len(parts))],
            "area_km2": [g.area / 1e6 for g in parts],
        },
        geometry=parts,
        crs=grid.crs,
    )
    return gdf.to_crs("EPSG:4326")


def glacier_outlines(
    labels: np.ndarray,
    grid: Grid,
    downvalley_azimuth: float,
    region: str,
    scale: float = 1.0,
) -> gpd.GeoDataFrame:
    """RGI-like glacier outlines (EPSG:4326) from a class map (classes 1 and 2 are glacier).

    Generalisation: a morphological closing of the glacier mask by one pixel (merges ice bodies
    a pixel or two apart, fills notches and pinholes), the union of each glacier with a copy
    shifted :data:`TERMINUS_SHIFT_M` down-valley (older, more advanced termini),
    Douglas-Peucker simplification by :data:`SIMPLIFY_M`, and the RGI minimum area. ``scale``
    (the region's vertical compression, <= 1) shrinks the shift (not below one pixel) and the
    minimum area of small, miniature regions in proportion to their glaciers.
    """
    shift = max(TERMINUS_SHIFT_M * scale, grid.resolution)
    min_area = RGI_MIN_AREA_KM2 * 1e6 * scale**2
    mask = ndimage.binary_closing(np.isin(labels, (1, 2)), np.ones((3, 3), bool)) | np.isin(
        labels, (1, 2)
    )
    a = math.radians(downvalley_azimuth)
    dx, dy = shift * math.sin(a), shift * math.cos(a)
    out = []
    min_pixels = max(1, int(0.5 * min_area / grid.resolution**2))
    for p in _polygons(mask, grid, min_pixels):
        g = shapely.union(p, translate(p, dx, dy)).buffer(0)
        g = g.simplify(SIMPLIFY_M, preserve_topology=True)
        if g.area >= min_area:
            out.append(g)
    # shifted copies of neighbours can touch: merge them as an inventory would
    merged = shapely.union_all(out) if out else shapely.geometry.GeometryCollection()
    parts = list(getattr(merged, "geoms", [merged])) if not merged.is_empty else []
    gdf = _frame(parts, grid, "glac_id", f"SYN-{region}.")
    # an RGI-style id column (RGI 6: ``RGI60-rr.nnnnn``), as inventories name it
    gdf.insert(0, "RGIId", [f"RGI60-SYN{region}.{i + 1:05d}" for i in range(len(gdf))])
    return gdf


def debris_outlines(labels: np.ndarray, grid: Grid, region: str) -> gpd.GeoDataFrame:
    """Debris-cover outlines (EPSG:4326) from a class map (class 2)."""
    parts = [
        p.simplify(grid.resolution / 2, preserve_topology=True)
        for p in _polygons(labels == 2, grid, min_pixels=4)
    ]
    return _frame(parts, grid, "debris_id", f"SYN-{region}.D")


def write_gpkg(gdf: gpd.GeoDataFrame, path: Path, layer: str) -> None:
    """Write a GeoDataFrame as a single-layer GeoPackage."""
    gdf.to_file(path, layer=layer, driver="GPKG", engine="pyogrio")
