"""Every workaround for stackstac 0.5.1 (unmaintained) with current pystac / NumPy.

Each shim states the failure it avoids; ``tests/glacierstack/test_compat_stackstac.py`` first shows
the failure with plain stackstac on the real recorded items, then that the shim avoids it.

1. **proj v2 items -> "Cannot pick a common CRS"** (stackstac #262). pystac >= 1.12 migrates
   ``proj:epsg`` to ``proj:code`` when it reads an item (``Item.from_dict``), and stackstac 0.5.1
   only reads ``proj:epsg``. :func:`item_to_stackstac_dict` copies ``proj:code`` ``"EPSG:n"``
   back into ``proj:epsg`` (item and asset level).
2. **pystac ``Item.to_dict()`` resolves the root link** (network). stackstac converts pystac items
   with ``item.to_dict()``, whose default ``transform_hrefs=True`` fetches the root catalog; for
   items saved from an API (or recorded JSON) that means an HTTP request per item, and offline
   a ``STACError``. We hand stackstac plain dicts made with ``transform_hrefs=False`` and asset
   hrefs made absolute ourselves (relative hrefs of static catalogs must still resolve).
3. **untyped ``fill_value`` rejected** (stackstac #260). stackstac checks
   ``np.can_cast(type(fill_value), dtype)``; under NumPy 2 ``type(np.nan)`` is Python ``float`` ->
   float64, which does not cast safely to float32/complex64. :func:`typed_fill_value` returns a
   scalar of the output dtype.
4. **``rescale=True`` with float32 fails under NumPy 2**: the same
   ``np.can_cast(type(scale), dtype)`` check rejects the Python-float ``raster:bands``
   scale/offset. With ``rescale=True``, :func:`stack` casts scale/offset in the item dicts to
   the output dtype, so stackstac's own rescaling works. The glacierstack loader itself uses
   ``rescale=False`` and applies per-item scale/offset afterwards, with per-provider rules
   (:func:`glacierstack.modalities.resolve_scale_offset`).
5. **pixel-corner coordinates by default**: stackstac labels x/y with the upper-left corner of
   each pixel (``xy_coords="topleft"``); glacierstack grids use pixel centres, so :func:`stack`
   passes ``xy_coords="center"`` (not a bug, an easily missed default).
6. **affine >= 2.4 ``PendingDeprecationWarning``** ("Use `@` matmul instead of `*`") from
   stackstac's ``geom_utils`` on every item: harmless, silenced inside :func:`stack` only.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pystac
import xarray as xr

_EPSG_RE = re.compile(r"^EPSG:(\d+)$", re.IGNORECASE)


def _epsg_from_code(code: Any) -> int | None:
    if isinstance(code, str):
        m = _EPSG_RE.match(code.strip())
        if m:
            return int(m.group(1))
    return None


def _fill_epsg(d: dict[str, Any]) -> None:
    """Shim 1: set ``proj:epsg`` from ``proj:code`` in one properties/asset dict (in place)."""
    if d.get("proj:epsg") is None and "proj:code" in d:
        epsg = _epsg_from_code(d["proj:code"])
        if epsg is not None:
            d["proj:epsg"] = epsg


def item_to_stackstac_dict(item: pystac.Item | Mapping[str, Any]) -> dict[str, Any]:
    """Plain STAC item dict that stackstac 0.5.1 reads correctly (shims 1 and 2).

    Parameters
    ----------
    item
        A :class:`pystac.Item` or an item dict.

    Returns
    -------
    dict
        A deep copy with absolute asset hrefs and ``proj:epsg`` filled from ``proj:code``.
    """
    if isinstance(item, pystac.Item):
        # Shim 2: no root-link resolution (no network); absolute asset hrefs by hand.
        d = item.to_dict(include_self_link=False, transform_hrefs=False)
        for key, asset in item.assets.items():
            href = asset.get_absolute_href()
            if href is not None:
                d["assets"][key]["href"] = href
    else:
        d = copy.deepcopy(dict(item))
    _fill_epsg(d.setdefault("properties", {}))
    for asset in d.get("assets", {}).values():
        _fill_epsg(asset)
    return d


def typed_fill_value(fill_value: Any, dtype: Any) -> np.generic:
    """Shim 3: ``fill_value`` as a NumPy scalar of ``dtype`` (stackstac #260)."""
    return np.dtype(dtype).type(fill_value)


def _cast_scale_offset(d: dict[str, Any], dtype: np.dtype) -> None:
    """Shim 4 (``rescale=True`` path): raster:bands scale/offset as ``dtype`` scalars."""
    for asset in d.get("assets", {}).values():
        for rb in asset.get("raster:bands") or ():
            for key in ("scale", "offset"):
                if key in rb:
                    rb[key] = dtype.type(rb[key])


def stack(
    items: Sequence[pystac.Item | Mapping[str, Any]],
    *,
    assets: Sequence[str],
    epsg: int,
    bounds: tuple[float, float, float, float],
    resolution: float,
    dtype: Any = "float32",
    fill_value: Any = np.nan,
    rescale: bool = False,
    resampling: str = "bilinear",
    chunksize: int | tuple[int, ...] | tuple[tuple[int, ...], ...] = 1024,
    **kwargs: Any,
) -> xr.DataArray:
    """Call :func:`stackstac.stack` with every shim of this module applied.

    Parameters
    ----------
    items
        pystac items or item dicts.
    assets
        Asset keys to stack (becomes the ``band`` dimension).
    epsg, bounds, resolution
        Output grid (``bounds`` are outer edges; no snapping).
    dtype, fill_value
        Output dtype and the value for missing data (typed to ``dtype``).
    rescale
        Apply the items' ``raster:bands`` scale/offset inside stackstac (float dtypes only).
    resampling
        Name of a :class:`rasterio.enums.Resampling` member.
    chunksize
        Spatial chunks passed to stackstac: a size, sizes per dimension, or explicit
        ``(row sizes, column sizes)``.
    **kwargs
        Passed to :func:`stackstac.stack` (e.g. ``gdal_env``, ``errors_as_nodata``).

    Returns
    -------
    xarray.DataArray
        ``(time, band, y, x)``, pixel-centre coordinates, items in the order given.
    """
    import stackstac
    from rasterio.enums import Resampling

    dt = np.dtype(dtype)
    dicts = [item_to_stackstac_dict(it) for it in items]
    if rescale:
        if not np.issubdtype(dt, np.inexact):
            raise ValueError(f"rescale=True needs a float/complex dtype, got {dt}")
        for d in dicts:
            _cast_scale_offset(d, dt)
    with warnings.catch_warnings():
        # stackstac/pandas chatter about timezone-naive datetimes; not actionable here.
        warnings.filterwarnings("ignore", message=".*[Tt]ime ?zone.*")
        warnings.filterwarnings("ignore", message=".*no `type` specified.*")
        warnings.filterwarnings(
            "ignore", message="Use `@` matmul", category=PendingDeprecationWarning
        )
        return stackstac.stack(
            dicts,
            assets=list(assets),
            epsg=int(epsg),
            bounds=tuple(float(b) for b in bounds),
            resolution=float(resolution),
            snap_bounds=False,
            dtype=dt,
            fill_value=typed_fill_value(fill_value, dt),
            rescale=rescale,
            resampling=Resampling[resampling],
            chunksize=chunksize,
            sortby_date=False,
            xy_coords="center",
            **kwargs,
        )
