"""Inventory-like vector outlines from the 10 m truth (GeoPackage, EPSG:4326).

Glacier outlines imitate the Randolph Glacier Inventory: one polygon per connected glacier,
generalised (closed and simplified), with a small temporal mismatch: the
inventory predates the scene, so each outline is the union of the current glacier and a copy
shifted down-valley (an older, slightly more advanced terminus), and glaciers smaller than
0.01 km² (the RGI minimum) are left out. Debris outlines are the debris-covered parts,
lightly simplified.
"""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio.features
import shapely
from shapely.affinity import translate

from glacierstack.grid import Grid

RGI_MIN_AREA_KM2 = 0.01
CLOSING_M = 10.0
"""Radius (m) of the morphological closing that generalises the glacier outlines."""
TERMINUS_SHIFT_M = 15.0
"""Down-valley shift of the inventory outline (older, more advanced terminus)."""
SIMPLIFY_M = 10.0
"""Douglas-Peucker tolerance of the glacier outlines."""


def _polygons(mask: np.ndarray, grid: Grid) -> list:
    shapes = rasterio.features.shapes(
        mask.astype(np.uint8), mask=mask, transform=grid.transform, connectivity=8
    )
    return [shapely.geometry.shape(geom) for geom, _ in shapes]


def glacier_outlines(
    labels: np.ndarray,
    grid: Grid,
    downvalley_azimuth: float,
    region: str,
    scale: float = 1.0,
) -> gpd.GeoDataFrame:
    """RGI-like glacier outlines (EPSG:4326) from a class map (classes 1 and 2 are glacier).

    Generalisation: a morphological closing by :data:`CLOSING_M` (merges ice bodies closer than
    twice that and fills small notches and holes), the union with a copy shifted
    :data:`TERMINUS_SHIFT_M` down-valley (older, more advanced termini), Douglas-Peucker
    simplification by :data:`SIMPLIFY_M`, and the RGI minimum area. ``scale`` (the region's
    vertical compression, <= 1) shrinks the shift (not below one pixel) and the minimum area of
    small, miniature regions in proportion to their glaciers.
    """
    shift = max(TERMINUS_SHIFT_M * scale, grid.resolution)
    min_area = RGI_MIN_AREA_KM2 * scale**2
    polys = _polygons(np.isin(labels, (1, 2)), grid)
    if polys:
        closed = shapely.union_all([p.buffer(CLOSING_M) for p in polys]).buffer(-CLOSING_M)
    else:
        closed = shapely.geometry.GeometryCollection()
    a = math.radians(downvalley_azimuth)
    dx, dy = shift * math.sin(a), shift * math.cos(a)
    out = []
    for p in getattr(closed, "geoms", [closed]):
        if p.is_empty:
            continue
        g = shapely.union(p, translate(p, dx, dy)).buffer(0)
        g = g.simplify(SIMPLIFY_M, preserve_topology=True)
        if g.area / 1e6 >= min_area:
            out.append(g)
    # shifted copies of neighbours can touch: merge them as an inventory would
    merged = shapely.union_all(out) if out else shapely.geometry.GeometryCollection()
    parts = list(getattr(merged, "geoms", [merged])) if not merged.is_empty else []
    parts.sort(key=lambda g: -g.area)
    gdf = gpd.GeoDataFrame(
        {
            "glac_id": [f"SYN-{region}.{i + 1:05d}" for i in range(len(parts))],
            "area_km2": [g.area / 1e6 for g in parts],
        },
        geometry=parts,
        crs=grid.crs,
    )
    return gdf.to_crs("EPSG:4326")


def debris_outlines(labels: np.ndarray, grid: Grid, region: str) -> gpd.GeoDataFrame:
    """Debris-cover outlines (EPSG:4326) from a class map (class 2)."""
    parts = []
    for p in _polygons(labels == 2, grid):
        g = p.simplify(grid.resolution / 2, preserve_topology=True)
        if g.area >= 4 * grid.resolution**2:
            parts.append(g)
    parts.sort(key=lambda g: -g.area)
    gdf = gpd.GeoDataFrame(
        {
            "debris_id": [f"SYN-{region}.D{i + 1:05d}" for i in range(len(parts))],
            "area_km2": [g.area / 1e6 for g in parts],
        },
        geometry=parts,
        crs=grid.crs,
    )
    return gdf.to_crs("EPSG:4326")


def write_gpkg(gdf: gpd.GeoDataFrame, path: Path, layer: str) -> None:
    """Write a GeoDataFrame as a single-layer GeoPackage."""
    gdf.to_file(path, layer=layer, driver="GPKG", engine="pyogrio")
