"""Bring your own rasters: turn local GeoTIFF/COG files into a static STAC catalog.

Files are grouped into items by a regular expression on the file stem with the named groups
``item`` and ``asset``; the default ``^(?P<item>.+)_(?P<asset>[^_]+)$`` makes
``crop_ALA_G0120_0000_vx.tif`` and ``..._vy.tif`` one item ``crop_ALA_G0120_0000`` with assets
``vx`` and ``vy``. Each asset gets the projection (``proj:code``, ``proj:shape``,
``proj:transform``) and raster (``raster:bands``: dtype, nodata, scale/offset, unit) fields
that :mod:`glacierstack.stack` reads, via rio-stac. The result opens with
:func:`glacierstack.catalog.open_catalog` like any other static catalog.

Files and the output folder may be URLs (``s3://``, ``gs://``, ``az://``, ``https://``): files
are read by GDAL (with GDAL's own ``AWS_*``/``GS_*`` settings), the catalog is written through
:mod:`glacierstack.storage` (staged locally, then uploaded with the storage options in force).

Steps: this module groups files into items and builds them; :mod:`glacierstack.byo_assets`
reads the asset fields of one file (band keys, encoding); :mod:`glacierstack.byo_write` writes
the catalog.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pystac
import rasterio

from glacierstack.byo_assets import EncodingOptions, band_count, raster_source, read_file_assets
from glacierstack.byo_write import file_name, write_catalog
from glacierstack.catalog import parse_datetime
from glacierstack.stac_fields import EO_EXT, PROJ_EXT, RASTER_EXT

__all__ = ["DEFAULT_PATTERN", "EncodingOptions", "parse_bands", "stac_from_files"]

#: Default file-stem pattern: item id, underscore, asset key.
DEFAULT_PATTERN = r"^(?P<item>.+)_(?P<asset>[^_]+)$"


def parse_bands(values: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Parse ``--bands`` values into ``{asset: names}``.

    ``red,green,blue`` applies to every multi-band file (key ``""``); ``rgb=red,green,blue``
    to the files whose pattern asset is ``rgb``.
    """
    out: dict[str, tuple[str, ...]] = {}
    for v in values:
        key, _, names = v.rpartition("=")
        parts = tuple(n.strip() for n in names.split(",") if n.strip())
        if not parts:
            raise ValueError(f"--bands {v!r}: expected names like red,green,blue")
        out[key.strip()] = parts
    return out


def stac_from_files(
    files: Sequence[str | Path],
    out: str | Path,
    *,
    collection: str | None = None,
    datetime: str | None = None,
    pattern: str = DEFAULT_PATTERN,
    copy: bool = False,
    bands: Mapping[str, Sequence[str]] | None = None,
    encoding: EncodingOptions | None = None,
    catalog_id: str = "byo",
    description: str = "Local rasters (glacierstack stac-from-files)",
) -> Path | str:
    r"""Write a static STAC catalog describing rasters (one asset per band).

    Parameters
    ----------
    files
        GeoTIFF/COG paths or URLs (``s3://``, ``https://``...; read by GDAL, which takes its
        own settings, e.g. ``AWS_*``, from the environment); a multi-band file gives one asset
        per band (read through a one-band VRT next to the item, the equivalent of
        ``gdal_translate -b N``).
    out
        Output folder or URL; ``<out>/catalog.json`` is written (a local folder is created; a
        URL is written through :mod:`glacierstack.storage` with the storage options in force).
    collection
        Collection id given to every item (choose the one the provider config expects, e.g.
        ``its-live-velocity``, ``cop-dem-glo-30``, ``sentinel-2-l2a``). Default: the sensor's
        (``optical`` for any optical sensor) when ``encoding.sensor`` is given.
    datetime
        Acquisition date or window (``2018-10-15``, ``2018``, ``2014-01-01/2022-12-31``); a
        window sets ``start_datetime``/``end_datetime`` and ``datetime`` to its start.
        May be omitted when ``pattern`` has a ``date`` group.
    pattern
        Regular expression on the file stem with named groups ``item`` and ``asset``, and
        optionally ``date`` (``YYYYMMDD`` or ``YYYY-MM-DD``, overriding ``datetime`` per item),
        e.g. ``^(?P<item>S1_(?P<date>\d{8}))_(?P<asset>vv)$``. For a multi-band file the
        ``asset`` group only selects its ``bands`` entry.
    copy
        Copy the files next to the items (self-contained catalog) instead of referencing them.
    bands
        Band names of multi-band files: ``{"": names}`` for every multi-band file, or
        ``{asset: names}`` per file (see :func:`parse_bands`). Default: the files' band
        descriptions.
    encoding
        Sensor band map and the scale/offset/nodata used when a file declares none (see
        :class:`EncodingOptions`). With a sensor, asset keys are common names
        (``blue``, ``nir``...), as Earth Search names them.
    catalog_id, description
        Root catalog metadata.

    Returns
    -------
    pathlib.Path or str
        Path of ``catalog.json`` (its URL for a URL ``out``).

    Raises
    ------
    FileNotFoundError, ValueError
        Missing/unreadable files, names not matching ``pattern``, duplicate assets, or
        multi-band files without band names; nothing is written then.
    """
    from glacierstack.sensors import get_sensor

    enc = encoding or EncodingOptions()
    if collection is None:
        if enc.sensor is None:
            raise ValueError("give collection, or a sensor (its collection is used)")
        collection = get_sensor(enc.sensor).collection
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

    groups: dict[str, dict[str, Path | str]] = {}
    item_dates: dict[str, str | None] = {}
    for f in files:
        p = raster_source(f)
        stem = PurePosixPath(file_name(p)).stem
        m = regex.match(stem)
        if m:
            item_id, asset = m.group("item"), m.group("asset")
        elif pattern == DEFAULT_PATTERN and band_count(p) > 1:
            item_id, asset = stem, ""  # one multi-band file is one item
        else:
            raise ValueError(f"file stem {stem!r} does not match pattern {pattern!r}")
        date = m.group("date") if has_date and m else None
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
    hrefs: dict[tuple[str, str], Path | str] = {}
    for item_id, file_assets in sorted(groups.items()):
        start, end = parse_datetime(item_dates[item_id])
        if start is None:
            raise ValueError(f"item {item_id!r}: datetime {item_dates[item_id]!r} has no start")
        single_day = end is not None and (end - start) <= dt.timedelta(days=1)
        fields: dict[str, dict[str, Any]] = {}
        sources: dict[str, str] = {}
        crss, bboxes = set(), []
        for key, p in file_assets.items():
            try:
                got, src, crs, bbox = read_file_assets(p, key, bands or {}, enc)
            except rasterio.errors.RasterioIOError as e:
                raise ValueError(f"cannot read raster {p}: {e}") from e
            clash = set(got) & set(fields)
            if clash:
                raise ValueError(f"item {item_id!r} gets assets {sorted(clash)} twice ({p})")
            fields.update(got)
            sources.update(src)
            hrefs.update({(item_id, k): p for k in got})
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
        props: dict[str, Any] = {"glacierstack:encoding": sources}
        if enc.sensor:
            props["glacierstack:sensor"] = enc.sensor
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
            stac_extensions=[PROJ_EXT, RASTER_EXT]
            + ([EO_EXT] if any("eo:bands" in f for f in fields.values()) else []),
        )
        for key, key_fields in fields.items():
            extra = {k: v for k, v in key_fields.items() if not k.startswith("_")}
            item.add_asset(
                key,
                pystac.Asset(
                    href=str(hrefs[(item_id, key)]),
                    media_type=pystac.MediaType.GEOTIFF,
                    roles=["data"],
                    extra_fields=extra,
                ),
            )
        items.append((item, fields))

    return write_catalog(
        items, collection, out, copy=copy, catalog_id=catalog_id, description=description
    )
