"""The write step of ``stac-from-files``: save the items as a self-contained static catalog.

The output folder is a local path or a URL; a URL is staged in a local folder and uploaded
through :mod:`glacierstack.storage`. Copied files (``--copy``) are fetched from wherever they
are; multi-band files get a one-band VRT per band next to the item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pystac
import rasterio

from glacierstack import storage

__all__ = ["file_name", "write_catalog"]


def _band_vrt(
    src: Path | str, fields: Mapping[str, Any], dst: Path, dtype: str, *, relative: bool
) -> None:
    """Write a one-band VRT selecting band ``_band`` of ``src`` (gdal_translate -b).

    ``relative``: ``src`` sits next to the VRT (a copied file) and is named relative to it, so
    the catalog folder can move (or be uploaded); otherwise by its absolute GDAL name.
    """
    import html

    with rasterio.open(src) as ds:
        h, w, crs = ds.height, ds.width, ds.crs.to_wkt()
        gt = ds.transform.to_gdal()
    gdal_type = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16",
                 "uint32": "UInt32", "int32": "Int32", "float32": "Float32",
                 "float64": "Float64"}.get(dtype, "Float32")  # fmt: skip
    nodata = fields["raster:bands"][0].get("nodata")
    nd = "" if nodata is None else f"<NoDataValue>{nodata}</NoDataValue>"
    name = file_name(src) if relative else storage.gdal_path(src)
    dst.write_text(
        f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">'
        f"<SRS>{html.escape(crs)}</SRS><GeoTransform>{', '.join(map(repr, gt))}</GeoTransform>"
        f'<VRTRasterBand dataType="{gdal_type}" band="1">{nd}<SimpleSource>'
        f'<SourceFilename relativeToVRT="{int(relative)}">{html.escape(name)}</SourceFilename>'
        f"<SourceBand>{fields['_band']}</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>\n"
    )


def file_name(src: Path | str) -> str:
    """Return the file name of a path or URL (query string aside)."""
    return PurePosixPath(str(src).split("?", 1)[0]).name


def write_catalog(
    items: Sequence[tuple[pystac.Item, Mapping[str, Mapping[str, Any]]]],
    collection: str,
    out: str | Path,
    *,
    copy: bool,
    catalog_id: str,
    description: str,
) -> Path | str:
    """Save the catalog under ``out`` (a URL: staged in a local folder, then uploaded)."""
    url = str(out) if storage.is_url(out) else Path(out).expanduser().resolve()
    catalog = pystac.Catalog(id=catalog_id, description=description)
    # items name their collection, so (core STAC) they need a collection link: a real one
    col = pystac.Collection(
        id=collection,
        description=f"{collection} (glacierstack stac-from-files)",
        extent=pystac.Extent.from_items([item for item, _ in items]),
        license="other",
    )
    for item, _ in items:
        col.add_item(item)
    catalog.add_child(col)
    with storage.local_folder(url) as out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        catalog.normalize_hrefs(str(out_dir))
        for item, fields in items:
            item_dir = Path(str(item.get_self_href())).parent
            item_dir.mkdir(parents=True, exist_ok=True)
            for key, asset in item.assets.items():
                raster: Path | str = asset.href
                if copy:
                    dst = item_dir / file_name(raster)
                    if not dst.exists():
                        storage.copy_file(raster, dst)
                    raster = dst
                asset.href = str(raster)
                if fields[key]["_count"] > 1:
                    vrt = item_dir / f"{PurePosixPath(file_name(raster)).stem}_{key}.vrt"
                    _band_vrt(raster, fields[key], vrt, fields[key]["_dtype"], relative=copy)
                    asset.href = f"./{vrt.name}"  # ours, next to the item: relative
                    asset.media_type = "application/x-gdal-vrt"
        if copy:
            catalog.make_all_asset_hrefs_relative()
        catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return f"{url}/catalog.json" if isinstance(url, str) else url / "catalog.json"
