"""Export a prediction mosaic: class-map Cloud-Optimized GeoTIFF and outline polygons.

Both read the Zarr store written by :func:`cryonet.infer.predict` (opened with
:func:`cryonet.infer.open_mosaic`, which refuses unfinished stores).

Polygons are one GeoPackage with one layer per *outline group*:

========  ===========================  =============================================
layer     classes                      meaning
========  ===========================  =============================================
glacier   clean_ice + debris           whole glacier area (RGI-style outline)
debris    debris                       debris-covered parts
lakes     water                        glacial lakes and other open water
========  ===========================  =============================================

Each polygon is one 4-connected component of the group's pixels (holes kept), traced along
pixel edges with :func:`rasterio.features.shapes`, with attributes ``area_km2`` (polygon area;
equal to pixel count x pixel area), ``n_pixels``, ``mean_confidence`` and ``min_confidence``
(mean and minimum over the component's pixels of the summed probability of the group's
classes).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from glacierstack.grid import Grid

__all__ = ["OUTLINE_GROUPS", "export_cog", "export_polygons"]

OUTLINE_GROUPS: Mapping[str, tuple[str, ...]] = {
    "glacier": ("clean_ice", "debris"),
    "debris": ("debris",),
    "lakes": ("water",),
}
"""Layer name -> class names merged into it."""


def _hex_to_rgba(color: str) -> tuple[int, int, int, int]:
    c = color.lstrip("#")
    return (int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16), 255)


def export_cog(
    mosaic: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    compress: str = "DEFLATE",
    blocksize: int = 512,
    overwrite: bool = False,
) -> Path:
    """Write the class map as a Cloud-Optimized GeoTIFF (uint8, nodata 255, class colormap).

    The map is copied window by window (one Zarr chunk at a time) into a tiled temporary
    GeoTIFF, which GDAL's ``COG`` driver then turns into the final file (overviews by nearest
    neighbour); the result only appears at ``out`` once complete.

    Parameters
    ----------
    mosaic
        Zarr store from :func:`cryonet.infer.predict`.
    out
        Output ``.tif`` path.
    compress
        GDAL compression (``DEFLATE``, ``LZW``, ``ZSTD``, ...).
    blocksize
        COG tile size in pixels.
    overwrite
        Replace an existing ``out``.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    import rasterio
    import rasterio.shutil
    from rasterio.windows import Window

    from cryonet.infer import open_mosaic

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    ds = open_mosaic(mosaic)
    grid = Grid.from_attrs(ds.attrs["grid"])
    h, w = grid.shape
    nodata = int(ds.attrs.get("nodata", 255))
    classes = ds["classes"]
    cy, cx = (c[0] for c in classes.data.chunks)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".cog-") as tmp:
        tmp_tif = Path(tmp) / "classes.tif"
        profile = {
            "driver": "GTiff",
            "width": w,
            "height": h,
            "count": 1,
            "dtype": "uint8",
            "crs": grid.crs,
            "transform": grid.transform,
            "nodata": nodata,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "DEFLATE",
            "BIGTIFF": "IF_SAFER",
        }
        with rasterio.open(tmp_tif, "w", **profile) as dst:
            for y0 in range(0, h, cy):
                for x0 in range(0, w, cx):
                    block = classes[y0 : y0 + cy, x0 : x0 + cx].values
                    dst.write(block, 1, window=Window(x0, y0, block.shape[1], block.shape[0]))
            table = ds.attrs["classes"]
            if all("color" in c for c in table):
                dst.write_colormap(1, {int(c["id"]): _hex_to_rgba(str(c["color"])) for c in table})
            dst.update_tags(
                1, classes=",".join(f"{c['id']}={c['name']}" for c in ds.attrs["classes"])
            )
            dst.update_tags(source=str(Path(mosaic).resolve()))
        part = Path(tmp) / "out.tif"
        rasterio.shutil.copy(
            tmp_tif,
            part,
            driver="COG",
            COMPRESS=compress,
            BLOCKSIZE=blocksize,
            OVERVIEW_RESAMPLING="NEAREST",
            BIGTIFF="IF_SAFER",
        )
        os.replace(part, out)
    return out


def _group_ids(class_table: Sequence[Mapping[str, object]], names: Sequence[str]) -> list[int]:
    by_name = {str(c["name"]): int(c["id"]) for c in class_table}  # type: ignore[call-overload]
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"mosaic classes {list(by_name)} lack {missing} needed for outlines")
    return [by_name[n] for n in names]


def export_polygons(
    mosaic: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    min_area_km2: float = 0.0,
    overwrite: bool = False,
) -> Path:
    """Vectorise the class map into per-group outline polygons in a GeoPackage.

    Parameters
    ----------
    mosaic
        Zarr store from :func:`cryonet.infer.predict`.
    out
        Output ``.gpkg`` path; one layer per entry of ``groups``.
    groups
        Layer name -> class names merged into that layer (default: the layers of
        :data:`OUTLINE_GROUPS` whose classes the mosaic's class scheme has, and a ``glacier``
        layer for a scheme with a ``glacier`` class).
    min_area_km2
        Drop polygons smaller than this.
    overwrite
        Replace an existing ``out``.

    Returns
    -------
    pathlib.Path
        ``out``. Every layer has columns ``class_group``, ``area_km2``, ``n_pixels``,
        ``mean_confidence``, ``min_confidence`` and a polygon geometry in the mosaic's CRS
        (possibly empty).

    Notes
    -----
    The class map and the needed probabilities of the whole region are held in memory
    (1 byte per pixel each), which is fine up to a few 10^8 pixels.
    """
    import geopandas as gpd
    import rasterio.features
    from scipy import ndimage
    from shapely.geometry import shape

    from cryonet.infer import open_mosaic

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    ds = open_mosaic(mosaic)
    grid = Grid.from_attrs(ds.attrs["grid"])
    table = ds.attrs["classes"]
    classes = ds["classes"].values
    pixel_km2 = grid.resolution**2 / 1e6
    scale = float(ds.attrs.get("probability_scale", 1 / 255))
    if groups is None:
        have = {str(c["name"]) for c in table}
        groups = {k: v for k, v in OUTLINE_GROUPS.items() if set(v) <= have}
        if "glacier" in have:
            groups = {"glacier": ("glacier",), **groups}
    layers = {}
    for layer, names in groups.items():
        ids = _group_ids(table, names)
        mask = np.isin(classes, ids)
        conf = ds["probabilities"].sel({"class": list(names)}).sum("class").values * scale
        labels, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(2, 1))
        idx = np.arange(1, n + 1)
        counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        mean_conf = np.asarray(ndimage.mean(conf, labels, idx)) if n else np.zeros(0)
        min_conf = np.asarray(ndimage.minimum(conf, labels, idx)) if n else np.zeros(0)
        geoms, values = [], []
        if n:
            for geom, value in rasterio.features.shapes(
                labels.astype(np.int32), mask=mask, connectivity=4, transform=grid.transform
            ):
                geoms.append(shape(geom))
                values.append(int(value))
        vals = np.asarray(values, dtype=np.int64)
        gdf = gpd.GeoDataFrame(
            {
                "class_group": [layer] * len(vals),
                "area_km2": [g.area / 1e6 for g in geoms],
                "n_pixels": counts[vals - 1] if len(vals) else np.zeros(0, np.int64),
                "mean_confidence": mean_conf[vals - 1] if len(vals) else np.zeros(0),
                "min_confidence": min_conf[vals - 1] if len(vals) else np.zeros(0),
            },
            geometry=geoms,
            crs=grid.crs,
        )
        if min_area_km2 > 0:
            gdf = gdf[gdf["n_pixels"] * pixel_km2 >= min_area_km2]
        layers[layer] = gdf.reset_index(drop=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".gpkg-") as tmp:
        part = Path(tmp) / "out.gpkg"
        for layer, gdf in layers.items():
            gdf.to_file(part, layer=layer, driver="GPKG", engine="pyogrio", geometry_type="Polygon")
        os.replace(part, out)
    return out
