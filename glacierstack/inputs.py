"""How input rasters are read, and the checks that make unreadable or mis-described inputs loud.

:class:`ReadConfig` is the one typed read setting: GDAL options and HTTP headers for the pixel
reads, what to do with missing files, and the physical range check. It is carried *inside* the
Dask graph (stackstac opens every asset under a per-task ``rasterio.Env`` built from it), so it
reaches every worker of any scheduler without a plugin or an environment variable.

Two checks run on what is actually stored:

* :func:`check_assets` opens the header of every chosen asset before anything is built: an
  unreadable file (HTTP 404/401, a missing path) is an error naming the href, unless
  ``allow_missing`` (then it is masked and listed in the dataset attrs); a file whose dtype
  contradicts its STAC metadata (a float file described as integer DNs with a scale) is an
  error instead of a silent second scaling.
* :func:`check_range` checks, block by block as the pixels are read, that at most
  ``max_out_of_range`` of the valid values of a band lie outside the physical range of its
  layer family (:data:`PHYSICAL_RANGES`); the error names band, file, expected and found range.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pystac
import xarray as xr

from glacierstack.modalities import BandSpec, ModalitySpec, resolve_scale_offset

__all__ = [
    "PHYSICAL_RANGES",
    "InputError",
    "MissingInput",
    "ReadConfig",
    "check_assets",
    "check_range",
    "layer_family",
]

#: Physical range (inclusive) of each layer family, in the units of the raw modality dataset.
#: Wide enough for real extremes (snow reflectance above 1 on sunlit slopes, Death Valley LST,
#: surging glaciers), narrow enough that a value scaled twice or not at all falls outside.
PHYSICAL_RANGES: dict[str, tuple[float, float]] = {
    "reflectance": (-0.2, 2.0),
    "kelvin": (150.0, 380.0),
    "metres": (-500.0, 9000.0),
    "m/yr": (-30000.0, 30000.0),
    "coherence": (0.0, 1.0),
}


class InputError(ValueError):
    """An input file is unreadable or does not match its STAC metadata (message names it)."""


@dataclass(frozen=True)
class MissingInput:
    """An asset that could not be opened and was masked (``allow_missing``)."""

    band: str
    item: str
    href: str
    error: str


@dataclass(frozen=True)
class ReadConfig:
    """How pixels are read; travels with every read task to every Dask worker.

    Build it with :meth:`create` from plain mappings. Header *values* (tokens) are never
    written to attrs or logs; only their names are recorded.
    """

    gdal_env: tuple[tuple[str, str], ...] = ()
    """GDAL configuration options for every open and read (e.g. ``GDAL_HTTP_TIMEOUT``,
    ``AWS_REQUEST_PAYER``, ``GDAL_HTTP_UNSAFESSL``)."""
    http_headers: tuple[tuple[str, str], ...] = ()
    """HTTP headers sent with every pixel read (``GDAL_HTTP_HEADERS``), e.g.
    ``(("Authorization", "Bearer ..."),)``."""
    allow_missing: bool = False
    """Mask assets that cannot be opened (listed in the attrs) instead of failing."""
    check_files: bool = True
    """Open every chosen asset's header before building the graph (:func:`check_assets`).
    Turn off only to build a lazy array from metadata alone (no file access at all)."""
    max_out_of_range: float | None = 0.02
    """Largest share of valid pixels of a block allowed outside the band's physical range
    (:data:`PHYSICAL_RANGES`); ``None`` turns the check off."""

    @classmethod
    def create(
        cls,
        gdal_env: Mapping[str, Any] | None = None,
        http_headers: Mapping[str, str] | None = None,
        *,
        allow_missing: bool = False,
        check_files: bool = True,
        max_out_of_range: float | None = 0.02,
    ) -> ReadConfig:
        """Build a config from plain mappings (values are converted to strings)."""
        return cls(
            gdal_env=tuple(sorted((str(k), _gdal_str(v)) for k, v in (gdal_env or {}).items())),
            http_headers=tuple((str(k), str(v)) for k, v in (http_headers or {}).items()),
            allow_missing=allow_missing,
            check_files=check_files,
            max_out_of_range=max_out_of_range,
        )

    def gdal_options(self) -> dict[str, str]:
        """GDAL config options: :attr:`gdal_env` plus ``GDAL_HTTP_HEADERS`` from the headers."""
        opts = dict(self.gdal_env)
        if self.http_headers:
            opts["GDAL_HTTP_HEADERS"] = "\r\n".join(f"{k}: {v}" for k, v in self.http_headers)
        return opts

    def layered_env(self) -> Any:
        """Return the :class:`stackstac.rio_env.LayeredEnv` stackstac opens and reads under."""
        from stackstac.rio_reader import DEFAULT_GDAL_ENV

        opts = self.gdal_options()
        return DEFAULT_GDAL_ENV.updated(always=opts) if opts else DEFAULT_GDAL_ENV

    def errors_as_nodata(self) -> tuple[Exception, ...]:
        """Read errors that become nodata: none, or any open/read error with ``allow_missing``."""
        from rasterio.errors import RasterioIOError

        return (RasterioIOError(".*"),) if self.allow_missing else ()

    def to_attrs(self) -> dict[str, Any]:
        """Return what was set, for provenance (header names only, never their values)."""
        return {
            "gdal_env": sorted(k for k, _ in self.gdal_env),
            "http_headers": sorted(k for k, _ in self.http_headers),
            "allow_missing": self.allow_missing,
            "max_out_of_range": -1.0 if self.max_out_of_range is None else self.max_out_of_range,
        }


def _gdal_str(v: Any) -> str:
    if isinstance(v, bool):
        return "YES" if v else "NO"
    return str(v)


# ---------------------------------------------------------------------------- headers
_INT = re.compile(r"^u?int\d+$")


def _header(href: str, read: ReadConfig) -> tuple[str, str | None]:
    """``(file dtype, None)`` or ``("", error message)`` for one asset."""
    import rasterio

    try:
        with read.layered_env().open, rasterio.open(href) as src:
            return src.dtypes[0], None
    except Exception as e:  # rasterio raises RasterioIOError and friends
        return "", str(e).splitlines()[0] if str(e) else type(e).__name__


def _dtype_conflict(
    spec: ModalitySpec, band: BandSpec, item: pystac.Item, file_dtype: str
) -> str | None:
    """Why ``file_dtype`` contradicts the asset's STAC metadata (None: consistent)."""
    if np.issubdtype(np.dtype(band.dtype), np.complexfloating):
        return None
    asset = item.assets[band.asset].to_dict()
    enc = resolve_scale_offset(spec, band, item.properties, asset, item_id=item.id)
    rb = (asset.get("raster:bands") or [{}])[0]
    declared = rb.get("data_type")
    scaled = (enc.scale, enc.offset) != (1.0, 0.0)
    file_float = np.issubdtype(np.dtype(file_dtype), np.floating)
    if declared and _INT.match(str(declared)) and file_float:
        return (
            f"STAC raster:bands declares {declared} (scale {enc.scale:g}, offset "
            f"{enc.offset:g}) but the file stores {file_dtype}"
        )
    if declared is None and file_float and scaled:
        return (
            f"the file stores {file_dtype} (physical values?) but scale {enc.scale:g} and "
            f"offset {enc.offset:g} for integer DNs would be applied; declare raster:bands "
            "data_type/scale/offset in the item"
        )
    return None


def check_assets(
    spec: ModalitySpec,
    bands: Sequence[BandSpec],
    items: Sequence[pystac.Item],
    read: ReadConfig,
) -> list[MissingInput]:
    """Open the header of every ``(item, band)`` asset; raise or collect what is wrong.

    Returns
    -------
    list of MissingInput
        Assets that could not be opened (only with ``read.allow_missing``; they read as NaN).

    Raises
    ------
    InputError
        An asset cannot be opened (without ``allow_missing``), or its file dtype contradicts
        its STAC metadata; the message names band, item and href.
    """
    jobs = [(b, it, it.assets[b.asset].get_absolute_href() or "") for it in items for b in bands]
    with ThreadPoolExecutor(max_workers=min(8, max(len(jobs), 1))) as pool:
        headers = list(pool.map(lambda j: _header(j[2], read), jobs))
    missing = []
    for (b, it, href), (dtype, err) in zip(jobs, headers, strict=True):
        where = f"band {b.name!r} (modality {spec.name!r}, item {it.id!r}) file {href!r}"
        if err is not None:
            if not read.allow_missing:
                raise InputError(
                    f"cannot read {where}: {err} (pass allow_missing / --allow-missing to "
                    "mask unreadable inputs instead)"
                )
            missing.append(MissingInput(band=b.name, item=it.id, href=href, error=err))
            continue
        conflict = _dtype_conflict(spec, b, it, dtype)
        if conflict:
            raise InputError(f"{where}: {conflict}; refusing to guess the scaling")
    return missing


# ---------------------------------------------------------------------------- ranges
def layer_family(band: BandSpec) -> str | None:
    """Layer family of a band (key of :data:`PHYSICAL_RANGES`), from its unit and name."""
    if np.issubdtype(np.dtype(band.dtype), np.complexfloating):
        return None
    if band.unit == "1":
        return "coherence" if "coh" in band.name.lower() else "reflectance"
    return {"K": "kelvin", "m": "metres", "m/yr": "m/yr"}.get(band.unit)


def _check_block(
    block: np.ndarray,
    *,
    names: tuple[str, ...],
    hrefs: tuple[tuple[str, ...], ...],
    ranges: tuple[tuple[float, float] | None, ...],
    max_share: float,
    block_info: dict | None = None,
) -> np.ndarray:
    """Raise if a (time, band, y, x) block has too many values outside the band's range."""
    if block_info is None or block.size == 0:  # dask's meta probe
        return block
    (t0, _), (b0, _) = block_info[0]["array-location"][:2]
    for ti in range(block.shape[0]):
        for bi in range(block.shape[1]):
            rng = ranges[b0 + bi]
            if rng is None:
                continue
            v = block[ti, bi]
            v = v[np.isfinite(v)]
            if v.size < 16:
                continue
            lo, hi = rng
            share = float(((v < lo) | (v > hi)).mean())
            if share > max_share:
                raise InputError(
                    f"band {names[b0 + bi]!r} file {hrefs[t0 + ti][b0 + bi]!r}: "
                    f"{share:.0%} of the values read lie outside the physical range "
                    f"[{lo:g}, {hi:g}] (found {float(v.min()):.4g} .. {float(v.max()):.4g}); "
                    "wrong scale/offset or dtype in the STAC metadata?"
                )
    return block


def check_range(
    raw: xr.DataArray,
    bands: Sequence[BandSpec],
    items: Sequence[pystac.Item],
    read: ReadConfig,
) -> xr.DataArray:
    """Lazily check the physical range of a scaled ``(time, band, y, x)`` array, per block."""
    ranges = tuple(PHYSICAL_RANGES.get(fam) if (fam := layer_family(b)) else None for b in bands)
    if read.max_out_of_range is None or not any(ranges) or not hasattr(raw.data, "map_blocks"):
        return raw
    hrefs = tuple(
        tuple(it.assets[b.asset].get_absolute_href() or "" for b in bands) for it in items
    )
    data = raw.data.map_blocks(
        _check_block,
        names=tuple(b.name for b in bands),
        hrefs=hrefs,
        ranges=ranges,
        max_share=float(read.max_out_of_range),
        dtype=raw.dtype,
        meta=np.array((), dtype=raw.dtype),
    )
    return raw.copy(data=data)
