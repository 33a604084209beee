"""Static STAC catalog of a synthetic region (collections and asset keys mirror Earth Search)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pystac
from pyproj import CRS

from glacierstack.grid import Grid
from glacierstack.stac_fields import (
    EO_EXT,
    PROJ_EXT,
    RASTER_EXT,
    extensions_of,
    raster_data_type,
)
from glacierstack.synthetic.sensors import Encoding

COLLECTIONS: dict[str, str] = {
    "sentinel-2-l2a": "Synthetic Sentinel-2 L2A surface reflectance (Earth Search layout)",
    "cop-dem-glo-30": "Synthetic Copernicus DEM GLO-30 (elevation, m)",
    "landsat-c2-l2": "Synthetic Landsat Collection 2 Level-2 surface temperature (ST_B10)",
    "its-live-velocity": "Synthetic ITS_LIVE annual glacier surface velocity (m/yr)",
    "sentinel-1-slc": "Synthetic Sentinel-1 co-registered single-look complex pair (VV)",
    "synthetic-truth": "Exact class raster and inventory-like outlines of the synthetic region",
}
"""Collection id -> description."""


@dataclass(frozen=True)
class AssetSpec:
    """One asset file of an item."""

    key: str
    path: Path
    media_type: str
    title: str
    roles: tuple[str, ...] = ("data",)
    grid: Grid | None = None
    """Native grid of a raster asset (``None`` for vector assets)."""
    encoding: Encoding | None = None
    eo_band: dict[str, Any] | None = None


@dataclass(frozen=True)
class ItemSpec:
    """One STAC item to write."""

    collection: str
    id: str
    datetime: dt.datetime | None
    assets: tuple[AssetSpec, ...]
    properties: dict[str, Any] = field(default_factory=dict)
    footprint: Grid | None = None
    """Grid whose bounds give the item geometry (default: the first raster asset's)."""


COG = pystac.MediaType.COG
GPKG = "application/geopackage+sqlite3"


def _proj(grid: Grid) -> dict[str, Any]:
    epsg = CRS.from_user_input(grid.crs).to_epsg()
    return {
        "proj:code": f"EPSG:{epsg}",
        "proj:shape": list(grid.shape),
        "proj:transform": list(grid.transform)[:6],
        "proj:bbox": list(grid.bounds),
    }


def _raster_band(enc: Encoding, grid: Grid) -> dict[str, Any]:
    band: dict[str, Any] = {
        "data_type": raster_data_type(enc.dtype),
        "spatial_resolution": grid.resolution,
    }
    if enc.nodata is not None:
        band["nodata"] = enc.nodata
    if enc.scale != 1.0 or enc.offset != 0.0:
        band["scale"] = enc.scale
        band["offset"] = enc.offset
    if enc.unit:
        band["unit"] = enc.unit
    return band


def _geometry(grid: Grid) -> tuple[dict[str, Any], list[float]]:
    x0, y0, x1, y1 = grid.bbox_lonlat()
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Polygon", "coordinates": [ring]}, [x0, y0, x1, y1]


def build_item(spec: ItemSpec) -> pystac.Item:
    """Make a :class:`pystac.Item` with projection, raster and eo fields on every asset."""
    foot = spec.footprint or next(a.grid for a in spec.assets if a.grid is not None)
    geom, bbox = _geometry(foot)
    props = dict(spec.properties)
    props.update({k: v for k, v in _proj(foot).items() if k == "proj:code"})
    item = pystac.Item(
        id=spec.id,
        geometry=geom,
        bbox=bbox,
        datetime=spec.datetime,
        properties=props,
        collection=spec.collection,
    )
    exts = {PROJ_EXT, RASTER_EXT}
    for a in spec.assets:
        extra: dict[str, Any] = {}
        if a.grid is not None:
            extra.update(_proj(a.grid))
            extra["gsd"] = a.grid.resolution
        if a.encoding is not None and a.grid is not None:
            extra["raster:bands"] = [_raster_band(a.encoding, a.grid)]
        if a.eo_band is not None:
            extra["eo:bands"] = [a.eo_band]
            exts.add(EO_EXT)
        item.add_asset(
            a.key,
            pystac.Asset(
                # absolute: a relative path would be read as relative to the item JSON
                href=Path(a.path).resolve().as_posix(),
                media_type=a.media_type,
                title=a.title,
                roles=list(a.roles),
                extra_fields=extra,
            ),
        )
    exts |= extensions_of(props)
    item.stac_extensions = sorted(exts)
    return item


def _item_bbox(item: pystac.Item) -> list[float]:
    if item.bbox is None:
        raise ValueError(f"STAC item {item.id}: no bbox (build_item always sets one)")
    return item.bbox


def _item_datetime(item: pystac.Item) -> dt.datetime:
    if item.datetime is None:
        raise ValueError(
            f"STAC item {item.id}: no datetime and no start_datetime/end_datetime properties"
        )
    return item.datetime


def write_catalog(root: Path, catalog_id: str, description: str, items: list[ItemSpec]) -> Path:
    """Write a self-contained static catalog (relative hrefs) under ``root``.

    Asset files must already sit at ``root/<collection>/<item id>/`` (the layout pystac's
    best-practice strategy gives the item JSON files).
    """
    cat = pystac.Catalog(id=catalog_id, description=description)
    by_col: dict[str, list[pystac.Item]] = {}
    for spec in items:
        by_col.setdefault(spec.collection, []).append(build_item(spec))
    for cid, col_items in by_col.items():
        bboxes = [_item_bbox(it) for it in col_items]
        bbox = [
            min(b[0] for b in bboxes),
            min(b[1] for b in bboxes),
            max(b[2] for b in bboxes),
            max(b[3] for b in bboxes),
        ]
        starts, ends = [], []
        for it in col_items:
            start = it.properties.get("start_datetime") or _item_datetime(it).isoformat()
            end = it.properties.get("end_datetime") or _item_datetime(it).isoformat()
            starts.append(dt.datetime.fromisoformat(str(start).replace("Z", "+00:00")))
            ends.append(dt.datetime.fromisoformat(str(end).replace("Z", "+00:00")))
        col = pystac.Collection(
            id=cid,
            description=COLLECTIONS.get(cid, cid),
            extent=pystac.Extent(
                pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[min(starts), max(ends)]])
            ),
            license="CC-BY-4.0",
        )
        for it in col_items:
            col.add_item(it)
        cat.add_child(col)
    # absolute (pystac resolves a relative root against the wrong base) and with a trailing
    # slash: a folder name with a dot must not be taken for a file name
    root = Path(root).resolve()
    cat.normalize_hrefs(root.as_posix().rstrip("/") + "/")
    cat.make_all_asset_hrefs_relative()
    cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"
