"""What a STAC search matches: datetime windows, item footprints and times, empty searches.

Split out of :mod:`glacierstack.catalog`, which re-exports the public names.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

import pystac
import shapely.geometry
from pyproj import Transformer

__all__ = [
    "EmptySearchError",
    "bbox_to_lonlat",
    "format_window",
    "item_geometry",
    "item_interval",
    "pad_window",
    "parse_datetime",
]


class EmptySearchError(LookupError):
    """A search returned no (usable) items; the message names collection, bbox and dates."""


# ---------------------------------------------------------------------------- datetimes
_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def _parse_one(s: str, end: bool) -> dt.datetime | None:
    s = s.strip()
    if s in ("", ".."):
        return None
    m = _PARTIAL.match(s)
    if m:
        y, mo, d = int(m.group(1)), m.group(2), m.group(3)
        if d is not None:
            start = dt.datetime(y, int(mo), int(d), tzinfo=dt.UTC)
            nxt = start + dt.timedelta(days=1)
        elif mo is not None:
            start = dt.datetime(y, int(mo), 1, tzinfo=dt.UTC)
            nxt = dt.datetime(y + (int(mo) == 12), int(mo) % 12 + 1, 1, tzinfo=dt.UTC)
        else:
            start = dt.datetime(y, 1, 1, tzinfo=dt.UTC)
            nxt = dt.datetime(y + 1, 1, 1, tzinfo=dt.UTC)
        return nxt - dt.timedelta(microseconds=1) if end else start
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(
            f"cannot parse datetime {s!r}; expected YYYY, YYYY-MM, YYYY-MM-DD or ISO 8601"
        ) from e
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def parse_datetime(value: str | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Parse a STAC-style datetime window into UTC ``(start, end)`` (inclusive).

    ``"2018-10"`` means the whole month, ``"2018-10-01/2018-10-31"`` both days inclusive,
    ``"../2019-01-01"`` is open at the start; ``None`` means no constraint.
    """
    if value is None:
        return None, None
    parts = str(value).split("/")
    if len(parts) == 1:
        return _parse_one(parts[0], end=False), _parse_one(parts[0], end=True)
    if len(parts) != 2:
        raise ValueError(f"datetime window {value!r} must be 'start/end' or a single date")
    start, end = _parse_one(parts[0], end=False), _parse_one(parts[1], end=True)
    if start and end and end < start:
        raise ValueError(f"datetime window {value!r} ends before it starts")
    return start, end


def format_window(start: dt.datetime | None, end: dt.datetime | None) -> str | None:
    """Format ``(start, end)`` as a STAC API datetime window (``None`` when both are open)."""
    if start is None and end is None:
        return None

    def f(t: dt.datetime | None) -> str:
        return ".." if t is None else t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    return f"{f(start)}/{f(end)}"


def pad_window(value: str | None, days: int) -> str | None:
    """Widen a datetime window by ``days`` on both sides (open ends stay open)."""
    start, end = parse_datetime(value)
    if days:
        pad = dt.timedelta(days=days)
        start = start - pad if start else None
        end = end + pad if end else None
    return format_window(start, end)


# ---------------------------------------------------------------------------- geometry
def bbox_to_lonlat(
    bbox: Sequence[float], bbox_crs: str = "EPSG:4326"
) -> tuple[float, float, float, float]:
    """Reproject ``(xmin, ymin, xmax, ymax)`` from ``bbox_crs`` to lon/lat (densified edges)."""
    if len(bbox) != 4:
        raise ValueError(f"bbox must be (xmin, ymin, xmax, ymax), got {bbox!r}")
    xmin, ymin, xmax, ymax = (float(v) for v in bbox)
    if not (xmax > xmin and ymax > ymin):
        raise ValueError(f"bbox {tuple(bbox)} in {bbox_crs} is empty or inverted")
    tr = Transformer.from_crs(bbox_crs, "EPSG:4326", always_xy=True)
    return tuple(tr.transform_bounds(xmin, ymin, xmax, ymax, densify_pts=21))  # type: ignore[return-value]


def item_geometry(item: pystac.Item) -> shapely.geometry.base.BaseGeometry:
    """Footprint of an item (lon/lat): its geometry, else its bbox."""
    if item.geometry:
        return shapely.geometry.shape(item.geometry)
    if item.bbox:
        return shapely.geometry.box(*item.bbox[:2], *item.bbox[-2:])
    raise ValueError(f"item {item.id!r} has neither geometry nor bbox")


def item_interval(item: pystac.Item) -> tuple[dt.datetime | None, dt.datetime | None]:
    """UTC ``(start, end)`` of an item: its ``start/end_datetime``, else its ``datetime`` twice."""
    props = item.properties
    start = props.get("start_datetime")
    end = props.get("end_datetime")
    if start or end:
        return (
            _parse_one(start, False) if start else None,
            _parse_one(end, True) if end else None,
        )
    t = item.datetime
    if t is not None and t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t, t
