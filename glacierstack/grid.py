"""The target grid every modality is stacked onto.

A :class:`Grid` is a north-up raster grid: a CRS, outer bounds and a square pixel size.
Coordinates follow the xarray/rioxarray convention: ``x``/``y`` are **pixel centres**,
``y`` decreases downwards, and the affine transform maps the upper-left *corner*.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from pyproj import CRS, Transformer


def utm_crs_for(lon: float, lat: float) -> str:
    """Return the WGS 84 / UTM CRS (``"EPSG:326zz"`` or ``"EPSG:327zz"``) containing a point."""
    if not (-180.0 <= lon <= 180.0 and -80.0 <= lat <= 84.0):
        raise ValueError(f"({lon}, {lat}) is outside the UTM domain (lon -180..180, lat -80..84)")
    zone = min(int(math.floor((lon + 180.0) / 6.0)) + 1, 60)
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid.

    Parameters
    ----------
    crs
        CRS as an authority string, e.g. ``"EPSG:32645"``.
    bounds
        Outer edges ``(xmin, ymin, xmax, ymax)`` in ``crs`` units; must be a whole number of
        pixels wide and high.
    resolution
        Pixel size in ``crs`` units (square pixels).
    """

    crs: str
    bounds: tuple[float, float, float, float]
    resolution: float

    def __post_init__(self) -> None:
        xmin, ymin, xmax, ymax = self.bounds
        if not (xmax > xmin and ymax > ymin):
            raise ValueError(f"grid bounds {self.bounds} are empty or inverted")
        if self.resolution <= 0:
            raise ValueError(f"grid resolution must be positive, got {self.resolution}")
        for extent, axis in ((xmax - xmin, "x"), (ymax - ymin, "y")):
            n = extent / self.resolution
            if abs(n - round(n)) > 1e-6:
                raise ValueError(
                    f"grid {axis}-extent {extent} is not a whole number of {self.resolution} pixels"
                )
        object.__setattr__(self, "crs", CRS.from_user_input(self.crs).to_string())
        object.__setattr__(self, "bounds", tuple(float(b) for b in self.bounds))
        object.__setattr__(self, "resolution", float(self.resolution))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_bbox(
        cls,
        bbox: Sequence[float],
        bbox_crs: str = "EPSG:4326",
        resolution: float = 10.0,
        crs: str | None = None,
    ) -> Grid:
        """Build the grid covering a bounding box.

        Parameters
        ----------
        bbox
            ``(xmin, ymin, xmax, ymax)`` in ``bbox_crs`` (lon/lat for the default).
        bbox_crs
            CRS of ``bbox``.
        resolution
            Pixel size of the target grid (metres for UTM).
        crs
            Target CRS; default: the UTM zone of the bbox centre.

        Returns
        -------
        Grid
            A grid in ``crs`` whose bounds cover the reprojected bbox, snapped outwards to
            multiples of ``resolution``.
        """
        if len(bbox) != 4:
            raise ValueError(f"bbox must be (xmin, ymin, xmax, ymax), got {bbox!r}")
        xmin, ymin, xmax, ymax = (float(v) for v in bbox)
        if not (xmax > xmin and ymax > ymin):
            raise ValueError(f"bbox {tuple(bbox)} in {bbox_crs} is empty or inverted")
        if not (math.isfinite(float(resolution)) and float(resolution) > 0):
            raise ValueError(f"resolution must be a positive number of metres, got {resolution}")
        _check_lonlat(bbox, bbox_crs)
        if crs is None:
            to_ll = Transformer.from_crs(bbox_crs, "EPSG:4326", always_xy=True)
            lon, lat = to_ll.transform((xmin + xmax) / 2, (ymin + ymax) / 2)
            crs = utm_crs_for(lon, lat)
        tr = Transformer.from_crs(bbox_crs, crs, always_xy=True)
        x0, y0, x1, y1 = tr.transform_bounds(xmin, ymin, xmax, ymax, densify_pts=21)
        r = float(resolution)
        snapped = (
            math.floor(x0 / r) * r,
            math.floor(y0 / r) * r,
            math.ceil(x1 / r) * r,
            math.ceil(y1 / r) * r,
        )
        return cls(crs=crs, bounds=snapped, resolution=r)

    def check_min_size(self, min_pixels: int, what: str = "region") -> None:
        """Raise ``ValueError`` if the grid is smaller than ``min_pixels`` on either side."""
        h, w = self.shape
        if min(h, w) < min_pixels:
            raise ValueError(
                f"{what} {tuple(round(v, 2) for v in self.bounds)} ({self.crs}) is only {w} x {h} "
                f"pixels at {self.resolution:g} m; at least {min_pixels} x {min_pixels} pixels are "
                "needed (give a larger bbox or a finer resolution)"
            )

    @classmethod
    def from_raster(cls, path: str | Any) -> Grid:
        """Return the exact pixel grid of a raster file (``glacierstack cube --like FILE``).

        Raises
        ------
        ValueError
            If the raster has no CRS, is rotated, or its pixels are not square.
        """
        import rasterio

        with rasterio.open(path) as ds:
            t, crs = ds.transform, ds.crs
            if crs is None:
                raise ValueError(f"{path}: has no CRS; cannot take its grid")
            if t.b != 0 or t.d != 0 or t.e >= 0:
                raise ValueError(f"{path}: grid is rotated or not north-up ({tuple(t)[:6]})")
            if not math.isclose(t.a, -t.e, rel_tol=1e-9):
                raise ValueError(
                    f"{path}: pixels are not square ({t.a} x {-t.e}); a cube grid needs square "
                    "pixels (give --bbox/--resolution instead)"
                )
            b = ds.bounds
            epsg = crs.to_epsg()
            name = f"EPSG:{epsg}" if epsg else crs.to_wkt()
        return cls(crs=name, bounds=(b.left, b.bottom, b.right, b.top), resolution=t.a)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Grid:
        """Rebuild a grid from :meth:`to_attrs` output (e.g. Zarr attrs)."""
        return cls(crs=attrs["crs"], bounds=tuple(attrs["bounds"]), resolution=attrs["resolution"])

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        xmin, ymin, xmax, ymax = self.bounds
        return (round((ymax - ymin) / self.resolution), round((xmax - xmin) / self.resolution))

    @property
    def transform(self) -> Affine:
        """Affine transform of the upper-left pixel corner (GDAL/rasterio convention)."""
        return Affine(self.resolution, 0.0, self.bounds[0], 0.0, -self.resolution, self.bounds[3])

    @property
    def epsg(self) -> int:
        """EPSG code of the CRS (raises if the CRS has none)."""
        code = CRS.from_user_input(self.crs).to_epsg()
        if code is None:
            raise ValueError(f"CRS {self.crs} has no EPSG code")
        return int(code)

    @property
    def x(self) -> np.ndarray:
        """Pixel-centre x coordinates (increasing)."""
        return self.bounds[0] + self.resolution * (np.arange(self.shape[1]) + 0.5)

    @property
    def y(self) -> np.ndarray:
        """Pixel-centre y coordinates (decreasing)."""
        return self.bounds[3] - self.resolution * (np.arange(self.shape[0]) + 0.5)

    @property
    def area_km2(self) -> float:
        """Area covered, in km² (for metre-based CRSs)."""
        h, w = self.shape
        return h * w * self.resolution**2 / 1e6

    # ------------------------------------------------------------------ helpers
    def coords(self) -> dict[str, np.ndarray]:
        """``{"y": ..., "x": ...}`` pixel-centre coordinates for building DataArrays."""
        return {"y": self.y, "x": self.x}

    def to_attrs(self) -> dict[str, Any]:
        """JSON-serialisable description (stored in cube and mosaic attrs)."""
        return {
            "crs": self.crs,
            "bounds": list(self.bounds),
            "resolution": self.resolution,
            "shape": list(self.shape),
            "transform": list(self.transform)[:6],
        }

    def bbox_lonlat(self) -> tuple[float, float, float, float]:
        """Bounds reprojected to EPSG:4326 ``(lon_min, lat_min, lon_max, lat_max)``."""
        tr = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        return tuple(tr.transform_bounds(*self.bounds, densify_pts=21))  # type: ignore[return-value]

    def with_resolution(self, resolution: float) -> Grid:
        """Return the grid with the same CRS, bounds snapped outwards to another pixel size."""
        r = float(resolution)
        xmin, ymin, xmax, ymax = self.bounds
        return Grid(
            self.crs,
            (
                math.floor(xmin / r) * r,
                math.floor(ymin / r) * r,
                math.ceil(xmax / r) * r,
                math.ceil(ymax / r) * r,
            ),
            r,
        )

    def __repr__(self) -> str:
        h, w = self.shape
        return f"Grid({self.crs}, {w}x{h} px @ {self.resolution:g}, bounds={self.bounds})"


def _check_lonlat(bbox: Sequence[float], bbox_crs: str) -> None:
    """Refuse a lon/lat bbox whose numbers cannot be degrees, hinting at ``--bbox-crs``."""
    if not CRS.from_user_input(bbox_crs).is_geographic:
        return
    xmin, ymin, xmax, ymax = (float(v) for v in bbox)
    if max(abs(xmin), abs(xmax)) > 180 or max(abs(ymin), abs(ymax)) > 90:
        raise ValueError(
            f"bbox {tuple(bbox)} is not in degrees of {bbox_crs} (|lon| <= 180, |lat| <= 90); "
            "projected coordinates (e.g. UTM metres) need --bbox-crs (bbox_crs=), e.g. "
            "--bbox-crs EPSG:32645"
        )
