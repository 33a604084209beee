"""Export a prediction mosaic: class-map Cloud-Optimized GeoTIFF and outline polygons.

Both read the Zarr store written by :func:`cryonet.infer.predict` (opened with
:func:`cryonet.infer.open_mosaic`, which refuses unfinished stores).

Polygons are one GeoPackage with one layer per *outline group*:

========  ===========================  =============================================
layer     classes                      meaning
========  ===========================  =============================================
glacier   clean_ice + debris           whole glacier area (RGI-style outline)
debris    debris                       debris-covered parts
water     water                        glacial lakes and other open water
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
from typing import Any

import numpy as np

from cryonet.polygonize import polygonize_group
from glacierstack import storage
from glacierstack.grid import Grid
from glacierstack.provenance import location_ref

__all__ = ["OUTLINE_GROUPS", "export_cog", "export_polygons"]

DEFAULT_BLOCK = 2048  # px per side of the blocks export_polygons reads at a time

OUTLINE_GROUPS: Mapping[str, tuple[str, ...]] = {
    "glacier": ("clean_ice", "debris"),
    "debris": ("debris",),
    "water": ("water",),
}
"""Layer name -> class names merged into it (a one-class layer is named after its class)."""


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
    """Write the class map as a Cloud-Optimized GeoTIFF (uint8, nodata 255, class legend).

    The map is copied window by window (one Zarr chunk at a time) into a tiled temporary
    GeoTIFF, which GDAL's ``COG`` driver then turns into the final file (overviews by nearest
    neighbour when the map is larger than one tile); the result only appears at ``out`` once
    complete. The legend is a colour table (inside the TIFF) plus GDAL category names and a
    thematic raster attribute table (``value``, ``class``, ``label``, ``red/green/blue/alpha``)
    that GDAL keeps in the ``<out>.aux.xml`` sidecar written next to it (GeoTIFF has no tag
    for them; GDAL, rasterio-based tools and QGIS read the sidecar automatically). The
    ``source`` tag names the mosaic store, not its local path.

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
    if storage.output_exists(out) and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    with storage.staged_output(out) as local:
        _write_cog(mosaic, local, compress, blocksize)
    return out if storage.is_url(out) else Path(out)  # type: ignore[return-value]


def _write_cog(mosaic: str | os.PathLike[str], out: Path, compress: str, blocksize: int) -> None:
    """Write the export of :func:`export_cog` to a local path (atomically)."""
    import rasterio
    import rasterio.shutil
    from rasterio.windows import Window

    from cryonet.infer import open_mosaic

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
            dst.update_tags(source=location_ref(mosaic))
        vrt = _with_legend(tmp_tif, table)
        part = Path(tmp) / "out.tif"
        rasterio.shutil.copy(
            vrt,
            part,
            driver="COG",
            COMPRESS=compress,
            BLOCKSIZE=blocksize,
            OVERVIEW_RESAMPLING="NEAREST",
            BIGTIFF="IF_SAFER",
        )
        aux = part.with_name(part.name + ".aux.xml")
        if aux.exists():  # the sidecar first: the .tif appearing is the completion signal
            storage.publish(aux, out.with_name(out.name + ".aux.xml"))
        storage.publish(part, out)


def _with_legend(tif: Path, table: Sequence[Mapping[str, Any]]) -> Path:
    """Write a VRT of ``tif`` whose band carries category names and a thematic attribute table.

    GDAL's COG driver copies both from the VRT (into the PAM ``.aux.xml`` of its output).
    """
    import xml.etree.ElementTree as ET

    import rasterio.shutil

    vrt = tif.with_suffix(".vrt")
    rasterio.shutil.copy(tif, vrt, driver="VRT")
    root = ET.parse(vrt).getroot()
    band = root.find("VRTRasterBand")
    if band is None:  # pragma: no cover - GDAL wrote this one-band VRT just above
        raise ValueError(f"{vrt}: GDAL wrote no VRTRasterBand")
    by_id = {int(c["id"]): c for c in table}
    cats = ET.SubElement(band, "CategoryNames")
    for i in range(max(by_id) + 1):
        ET.SubElement(cats, "Category").text = str(by_id[i]["name"]) if i in by_id else ""
    rat = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
    # GDAL field types 0 int, 2 string; usages 5 MinMax, 2 Name, 0 Generic, 6-9 Red..Alpha
    fields = [("value", 0, 5), ("class", 2, 2), ("label", 2, 0),
              ("red", 0, 6), ("green", 0, 7), ("blue", 0, 8), ("alpha", 0, 9)]  # fmt: skip
    for i, (name, typ, usage) in enumerate(fields):
        f = ET.SubElement(rat, "FieldDefn", index=str(i))
        for tag, val in (("Name", name), ("Type", typ), ("Usage", usage)):
            ET.SubElement(f, tag).text = str(val)
    for row, (cid, c) in enumerate(sorted(by_id.items())):
        rgba = _hex_to_rgba(str(c["color"])) if "color" in c else (0, 0, 0, 0)
        r = ET.SubElement(rat, "Row", index=str(row))
        for val in (cid, c["name"], c.get("label", c["name"]), *rgba):
            ET.SubElement(r, "F").text = str(val)
    ET.ElementTree(root).write(vrt)
    return vrt


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
    block_size: int | None = None,
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
    block_size
        Side of the blocks of the map read at a time (default: about 2048 px, whole mosaic
        chunks). Memory grows with ``block_size**2`` (about 12 bytes per pixel), not with the
        region; the polygons do not depend on it (:mod:`cryonet.polygonize`).

    Returns
    -------
    pathlib.Path
        ``out``. Every layer has columns ``class_group``, ``area_km2``, ``n_pixels``,
        ``mean_confidence``, ``min_confidence`` and a polygon geometry in the mosaic's CRS
        (possibly empty).

    Notes
    -----
    Components that cross block borders are merged and their pieces dissolved, so a polygon
    is the same whichever the block size. Besides one block, the polygons of the region and
    one row of component labels per block row are held in memory.
    """
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if storage.output_exists(out) and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    with storage.staged_output(out) as local:
        _write_polygons(mosaic, local, groups, min_area_km2, block_size)
    return out if storage.is_url(out) else Path(out)  # type: ignore[return-value]


def _default_block(ds: Any) -> int:
    """About 2048 px, a whole number of the mosaic's chunks (each chunk read once)."""
    chunks = ds["classes"].chunks
    cs = int(chunks[0][0]) if chunks else DEFAULT_BLOCK
    return cs * max(1, round(DEFAULT_BLOCK / cs))


def _write_polygons(
    mosaic: str | os.PathLike[str],
    out: Path,
    groups: Mapping[str, Sequence[str]] | None,
    min_area_km2: float,
    block_size: int | None,
) -> None:
    """Write the export of :func:`export_polygons` to a local path (atomically)."""
    import geopandas as gpd

    from cryonet.infer import open_mosaic

    ds = open_mosaic(mosaic)
    grid = Grid.from_attrs(ds.attrs["grid"])
    table = ds.attrs["classes"]
    pixel_km2 = grid.resolution**2 / 1e6
    scale = float(ds.attrs.get("probability_scale", 1 / 255))
    if groups is None:
        have = {str(c["name"]) for c in table}
        groups = {k: v for k, v in OUTLINE_GROUPS.items() if set(v) <= have}
        if "glacier" in have:
            groups = {"glacier": ("glacier",), **groups}
    side = block_size or _default_block(ds)
    layers = {}
    for layer, names in groups.items():
        ids = _group_ids(table, names)
        found = polygonize_group(
            ds["classes"], ds["probabilities"], ids, names, scale, grid.transform, side
        )
        gdf = gpd.GeoDataFrame(
            {
                "class_group": [layer] * len(found.geometries),
                "area_km2": [g.area / 1e6 for g in found.geometries],
                "n_pixels": np.asarray(found.n_pixels, np.int64),
                "mean_confidence": np.asarray(found.mean_confidence, np.float64),
                "min_confidence": np.asarray(found.min_confidence, np.float64),
            },
            geometry=found.geometries,
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
        storage.publish(part, out)
