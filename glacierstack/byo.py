"""Bring your own rasters: turn local GeoTIFF/COG files into a static STAC catalog.

Files are grouped into items by a regular expression on the file stem with the named groups
``item`` and ``asset``; the default ``^(?P<item>.+)_(?P<asset>[^_]+)$`` makes
``crop_ALA_G0120_0000_vx.tif`` and ``..._vy.tif`` one item ``crop_ALA_G0120_0000`` with assets
``vx`` and ``vy``. Each asset gets the projection (``proj:code``, ``proj:shape``,
``proj:transform``) and raster (``raster:bands``: dtype, nodata, scale/offset, unit) fields
that :mod:`glacierstack.stack` reads, via rio-stac. The result opens with
:func:`glacierstack.catalog.open_catalog` like any other static catalog.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pystac
import rasterio

from glacierstack.catalog import parse_datetime
from glacierstack.stac_fields import PROJ_EXT, RASTER_EXT, raster_data_type

__all__ = ["stac_from_files", "DEFAULT_PATTERN"]

#: Default file-stem pattern: item id, underscore, asset key.
DEFAULT_PATTERN = r"^(?P<item>.+)_(?P<asset>[^_]+)$"


def _asset_fields(path: Path) -> tuple[dict[str, Any], str | None, list[float]]:
    """Projection + raster fields of one single-band file, its EPSG code and lon/lat bbox."""
    import rio_stac

    with rasterio.open(path) as ds:
        if ds.count != 1:
            raise ValueError(
                f"{path}: has {ds.count} bands; stacking needs one band per asset "
                "(split it, e.g. with gdal_translate -b N)"
            )
        if ds.crs is None:
            raise ValueError(f"{path}: has no CRS; cannot place it on a grid")
        epsg = ds.crs.to_epsg()
        is_complex = ds.dtypes[0].startswith("complex")
        item = rio_stac.create_stac_item(
            ds,
            input_datetime=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
            with_proj=True,
            # rio-stac's statistics/histogram fail on complex data: band fields by hand then
            with_raster=not is_complex,
            raster_max_size=256,
        )
        rb = item.assets["asset"].extra_fields.get("raster:bands", [{}])
        band = dict(rb[0]) if rb else {}
        band.pop("histogram", None)
        # rio-stac writes the GDAL defaults scale 1 / offset 0 even when the file declares no
        # encoding; keep only a declared one so the provider config's convention applies.
        band.pop("scale", None)
        band.pop("offset", None)
        band["data_type"] = raster_data_type(ds.dtypes[0])
        if ds.nodata is not None:
            band["nodata"] = ds.nodata
        if ds.scales[0] != 1.0:
            band["scale"] = ds.scales[0]
        if ds.offsets[0] != 0.0:
            band["offset"] = ds.offsets[0]
        if ds.units and ds.units[0]:
            band["unit"] = ds.units[0]
        fields: dict[str, Any] = {
            "proj:shape": [ds.height, ds.width],
            "proj:transform": list(ds.transform)[:6],
            "raster:bands": [band],
        }
        if epsg is not None:
            fields["proj:code"] = f"EPSG:{epsg}"
        else:
            fields["proj:wkt2"] = ds.crs.to_wkt()
    return fields, (f"EPSG:{epsg}" if epsg else None), list(item.bbox or [])


def stac_from_files(
    files: Sequence[str | Path],
    out: str | Path,
    *,
    collection: str,
    datetime: str | None = None,
    pattern: str = DEFAULT_PATTERN,
    copy: bool = False,
    catalog_id: str = "byo",
    description: str = "Local rasters (glacierstack stac-from-files)",
) -> Path:
    r"""Write a static STAC catalog describing local single-band rasters.

    Parameters
    ----------
    files
        GeoTIFF/COG paths (one band each).
    out
        Output folder; ``<out>/catalog.json`` is written (the folder is created).
    collection
        Collection id given to every item (choose the one the provider config expects, e.g.
        ``its-live-velocity``, ``cop-dem-glo-30``, ``sentinel-2-l2a``).
    datetime
        Acquisition date or window (``2018-10-15``, ``2018``, ``2014-01-01/2022-12-31``); a
        window sets ``start_datetime``/``end_datetime`` and ``datetime`` to its start.
        May be omitted when ``pattern`` has a ``date`` group.
    pattern
        Regular expression on the file stem with named groups ``item`` and ``asset``, and
        optionally ``date`` (``YYYYMMDD`` or ``YYYY-MM-DD``, overriding ``datetime`` per item),
        e.g. ``^(?P<item>S1_(?P<date>\d{8}))_(?P<asset>vv)$``.
    copy
        Copy the files next to the items (self-contained catalog) instead of referencing them.
    catalog_id, description
        Root catalog metadata.

    Returns
    -------
    pathlib.Path
        Path of ``catalog.json``.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing/unreadable files, names not matching ``pattern``, duplicate assets, or multi-band
        files; nothing is written then.
    """
    if not files:
        raise ValueError("no files given")
    regex = re.compile(pattern)
    if not {"item", "asset"} <= set(regex.groupindex):
        raise ValueError(
            f"pattern {pattern!r} needs the named groups (?P<item>...) and (?P<asset>...)"
        )
    has_date = "date" in regex.groupindex
    if datetime is None and not has_date:
        raise ValueError("give datetime, or a pattern with a (?P<date>...) group")

    groups: dict[str, dict[str, Path]] = {}
    item_dates: dict[str, str | None] = {}
    for f in files:
        p = Path(f).expanduser().resolve()
        if not p.is_file():
            raise FileNotFoundError(f"raster {f} does not exist")
        m = regex.match(p.stem)
        if not m:
            raise ValueError(f"file stem {p.stem!r} does not match pattern {pattern!r}")
        item_id, asset = m.group("item"), m.group("asset")
        date = m.group("date") if has_date else None
        if date and re.fullmatch(r"\d{8}", date):
            date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
        item_dates[item_id] = date or datetime
        if asset in groups.setdefault(item_id, {}):
            raise ValueError(
                f"item {item_id!r} gets asset {asset!r} twice: {groups[item_id][asset]} and {p}"
            )
        groups[item_id][asset] = p

    # Read every file first: nothing is written if one fails.
    items = []
    for item_id, assets in sorted(groups.items()):
        start, end = parse_datetime(item_dates[item_id])
        if start is None:
            raise ValueError(f"item {item_id!r}: datetime {item_dates[item_id]!r} has no start")
        single_day = end is not None and (end - start) <= dt.timedelta(days=1)
        fields = {}
        crss, bboxes = set(), []
        for key, p in assets.items():
            try:
                fields[key], crs, bbox = _asset_fields(p)
            except rasterio.errors.RasterioIOError as e:
                raise ValueError(f"cannot read raster {p}: {e}") from e
            crss.add(crs)
            bboxes.append(bbox)
        bbox = [
            min(b[0] for b in bboxes),
            min(b[1] for b in bboxes),
            max(b[2] for b in bboxes),
            max(b[3] for b in bboxes),
        ]
        geom = {
            "type": "Polygon",
            "coordinates": [
                [
                    [bbox[0], bbox[1]],
                    [bbox[2], bbox[1]],
                    [bbox[2], bbox[3]],
                    [bbox[0], bbox[3]],
                    [bbox[0], bbox[1]],
                ]
            ],
        }
        props: dict[str, Any] = {}
        if not single_day:
            props["start_datetime"] = start.isoformat()
            if end is not None:
                props["end_datetime"] = end.isoformat()
        if len(crss) == 1 and (code := next(iter(crss))):
            props["proj:code"] = code
        item = pystac.Item(
            id=item_id,
            geometry=geom,
            bbox=bbox,
            datetime=start,
            properties=props,
            collection=collection,
            stac_extensions=[PROJ_EXT, RASTER_EXT],
        )
        for key, p in assets.items():
            item.add_asset(
                key,
                pystac.Asset(
                    href=str(p),
                    media_type=pystac.MediaType.GEOTIFF,
                    roles=["data"],
                    extra_fields=fields[key],
                ),
            )
        items.append(item)

    out_dir = Path(out).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    catalog = pystac.Catalog(id=catalog_id, description=description)
    # items name their collection, so (core STAC) they need a collection link: a real one
    col = pystac.Collection(
        id=collection,
        description=f"{collection} (glacierstack stac-from-files)",
        extent=pystac.Extent.from_items(items),
        license="other",
    )
    for item in items:
        col.add_item(item)
    catalog.add_child(col)
    catalog.normalize_hrefs(str(out_dir))
    if copy:
        for item in items:
            item_dir = Path(str(item.get_self_href())).parent
            item_dir.mkdir(parents=True, exist_ok=True)
            for asset in item.assets.values():
                dst = item_dir / Path(asset.href).name
                shutil.copy2(asset.href, dst)
                asset.href = str(dst)
        catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out_dir / "catalog.json"
