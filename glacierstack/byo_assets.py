"""The asset fields of one raster file for :func:`glacierstack.byo.stac_from_files`.

Band keys (``--bands``, band descriptions or the file-name pattern), the encoding of the
values (declared scale/offset > given > the sensor's > as stored) and the projection and raster
fields rio-stac reads from the file. Split out of :mod:`glacierstack.byo`, which re-exports
:class:`EncodingOptions`.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio

from glacierstack import storage
from glacierstack.stac_fields import eo_common_name, raster_data_type

__all__ = ["EncodingOptions", "band_count", "raster_source", "read_file_assets"]


@dataclass(frozen=True)
class EncodingOptions:
    """How stored values become physical ones when a file declares no scale/offset.

    A file's own declared scale/offset always wins; otherwise ``scale``/``offset`` given here;
    otherwise the sensor's product encoding; otherwise the values are used as stored (and a
    warning says so for integer data). Another provider's convention is never borrowed.
    """

    sensor: str | None = None
    """Sensor band map (:data:`glacierstack.sensors.SENSORS`) naming the bands by common name."""
    scale: float | None = None
    offset: float | None = None
    nodata: float | None = None


def _declared(path: Path | str, ds: Any) -> list[dict[str, float]]:
    """Per band: the scale/offset the file itself declares (also a declared 1 or 0)."""
    out: list[dict[str, float]] = [{} for _ in range(ds.count)]
    for i in range(ds.count):
        if ds.scales[i] != 1.0:
            out[i]["scale"] = float(ds.scales[i])
        if ds.offsets[i] != 0.0:
            out[i]["offset"] = float(ds.offsets[i])
    if ds.driver != "GTiff":
        return out
    try:  # GDAL keeps an explicitly declared 0 offset / 1 scale in the GDAL_METADATA tag
        import tifffile

        with storage.open_input(path) as fh, tifffile.TiffFile(fh) as tif:
            page = tif.pages[0]
            if not isinstance(page, tifffile.TiffPage):  # a TiffFrame has no tags of its own
                return out
            tag = page.tags.get(42112)
            xml = str(tag.value) if tag is not None else ""
    except Exception:  # not readable by tifffile: only non-default values count
        return out
    for m in re.finditer(
        r'<Item name="(SCALE|OFFSET)" sample="(\d+)" role="(?:scale|offset)">([^<]+)</Item>', xml
    ):
        i = int(m.group(2))
        if i < ds.count:
            out[i][m.group(1).lower()] = float(m.group(3))
    return out


def _band_keys(
    path: Path | str, ds: Any, asset: str, bands: Mapping[str, Sequence[str]]
) -> list[str]:
    """Asset key of each band of a file: ``--bands``, else band descriptions, else the pattern."""
    given = bands.get(asset) or bands.get("")
    if ds.count == 1 and not bands.get(asset):
        return [asset]
    if given is not None and len(given) == ds.count:
        return list(given)
    if given is not None and asset in bands:
        raise ValueError(f"{path}: has {ds.count} bands but --bands names {len(given)}: {given}")
    descr = [d.strip() if d else "" for d in ds.descriptions]
    if all(descr) and len(set(descr)) == len(descr):
        return descr
    raise ValueError(
        f"{path}: has {ds.count} bands without distinct descriptions ({list(ds.descriptions)}); "
        f"name them, e.g. --bands {','.join(['red', 'green', 'blue', 'nir'][: ds.count])}"
    )


def read_file_assets(
    path: Path | str, asset: str, bands: Mapping[str, Sequence[str]], enc: EncodingOptions
) -> tuple[dict[str, dict[str, Any]], dict[str, str], str | None, list[float]]:
    """Assets (key -> fields incl. ``_band``) of one file, their encoding source, EPSG, bbox."""
    import rio_stac

    from glacierstack.sensors import get_sensor

    sensor = get_sensor(enc.sensor) if enc.sensor else None
    with rasterio.open(path) as ds:
        if ds.crs is None:
            raise ValueError(f"{path}: has no CRS; cannot place it on a grid")
        epsg = ds.crs.to_epsg()
        is_complex = ds.dtypes[0].startswith("complex")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NodataShadowWarning)
            item = rio_stac.create_stac_item(
                ds,
                input_datetime=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
                with_proj=True,
                # rio-stac's statistics/histogram fail on complex data: band fields by hand then
                with_raster=not is_complex,
                raster_max_size=256,
            )
        rbs = item.assets["asset"].extra_fields.get("raster:bands") or [{}] * ds.count
        keys = _band_keys(path, ds, asset, bands)
        declared = _declared(path, ds)
        assets: dict[str, dict[str, Any]] = {}
        sources: dict[str, str] = {}
        for i, key in enumerate(keys):
            common = sensor.common_name(key) if sensor else None
            if sensor is not None and common is None:
                raise ValueError(
                    f"{path} band {i + 1} {key!r}: not a band of sensor {sensor.name!r} "
                    f"(known: {sorted(sensor.bands) or 'common names'})"
                )
            out_key = common or key
            band = {
                k: v for k, v in dict(rbs[i]).items() if k not in ("histogram", "scale", "offset")
            }
            band["data_type"] = raster_data_type(ds.dtypes[i])
            nodata = ds.nodatavals[i]
            if nodata is None:
                nodata = (
                    enc.nodata if enc.nodata is not None else (sensor.nodata if sensor else None)
                )
            band["nodata"] = nodata
            if nodata is None:
                band.pop("nodata")
            band["scale"], band["offset"], sources[out_key] = _encoding(
                declared[i], enc, sensor, f"{path} band {i + 1} ({key})", ds.dtypes[i]
            )
            if ds.units and ds.units[i]:
                band["unit"] = ds.units[i]
            fields: dict[str, Any] = {
                "proj:shape": [ds.height, ds.width],
                "proj:transform": list(ds.transform)[:6],
                "raster:bands": [band],
                "_band": i + 1,
                "_count": ds.count,
                "_dtype": ds.dtypes[i],
            }
            if common:
                fields["eo:bands"] = [{"name": key, "common_name": eo_common_name(common)}]
            if epsg is not None:
                fields["proj:code"] = f"EPSG:{epsg}"
            else:
                fields["proj:wkt2"] = ds.crs.to_wkt()
            if out_key in assets:
                raise ValueError(f"{path}: two bands map to asset {out_key!r}")
            assets[out_key] = fields
    return assets, sources, (f"EPSG:{epsg}" if epsg else None), list(item.bbox or [])


def _encoding(
    declared: Mapping[str, float], enc: EncodingOptions, sensor: Any, where: str, dtype: str
) -> tuple[float, float, str]:
    """``(scale, offset, source)``: declared > user > sensor > as stored."""
    if declared:
        return declared.get("scale", 1.0), declared.get("offset", 0.0), "file"
    if enc.scale is not None or enc.offset is not None:
        scale = 1.0 if enc.scale is None else enc.scale
        return scale, 0.0 if enc.offset is None else enc.offset, "user"
    if sensor is not None and sensor.scale is not None:
        return sensor.scale, sensor.offset or 0.0, f"sensor:{sensor.name}"
    if dtype.startswith(("uint", "int")):
        warnings.warn(
            f"{where}: integer data with no declared scale/offset and none given "
            "(--scale/--offset or --sensor): values are used as stored",
            stacklevel=4,
        )
    return 1.0, 0.0, "none"


def raster_source(f: str | Path) -> Path | str:
    """Return a local file as an absolute path (it must exist), a URL as given (GDAL reads it)."""
    if storage.is_url(f):
        return str(f)
    p = Path(f).expanduser().resolve()
    if not p.is_file():
        raise FileNotFoundError(f"raster {f} does not exist")
    return p


def band_count(path: Path | str) -> int:
    """Return the number of bands of a raster (ValueError naming it if GDAL cannot read it)."""
    try:
        with rasterio.open(path) as ds:
            return int(ds.count)
    except rasterio.errors.RasterioIOError as e:
        raise ValueError(f"cannot read raster {path}: {e}") from e
