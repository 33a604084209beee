"""Training labels: glacier/debris outlines and spectral rules rasterised onto a :class:`Grid`.

The five CryoNet classes (:mod:`glacierstack.classes`) are derived as follows, for every pixel
of the target grid:

=========  ===========================  =========================================
priority   class (id)                   rule
=========  ===========================  =========================================
1 (wins)   nodata (255)                 an input is missing (``valid`` is False, or
                                        NDWI/NDVI is NaN where they are used)
2          debris (2)                   centre inside a debris outline (and, by default,
                                        inside a glacier outline)
3          clean_ice (1)                centre inside a glacier outline
4          water (3)                    NDWI > ``water_ndwi`` (default 0.17)
5          vegetation (4)               NDVI > ``vegetation_ndvi`` (default 0.3)
6          background (0)               everything else
=========  ===========================  =========================================

So glacier outlines win over the spectral water/vegetation rules (a supraglacial pond stays
glacier), debris wins over clean ice (clean ice = glacier minus debris), and water wins over
vegetation. Outlines are rasterised with the pixel-centre rule (``all_touched=False``) so
that rasterised areas are unbiased estimates of polygon areas.

Everything is lazy: outlines are clipped per Dask chunk when the graph is built, so each task
only carries the geometry it needs, and the label raster is computed chunk by chunk when it is
written.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import shapely
import xarray as xr
from affine import Affine
from rasterio import features as rio_features

from glacierstack.classes import NODATA_LABEL
from glacierstack.grid import Grid

__all__ = [
    "LabelRules",
    "Outlines",
    "compose_labels",
    "make_labels",
    "rasterize_outlines",
    "read_outlines",
]

Outlines: TypeAlias = str | os.PathLike[str] | gpd.GeoDataFrame | gpd.GeoSeries
"""A path to any vector file pyogrio reads, or an in-memory GeoDataFrame/GeoSeries."""

BACKGROUND, CLEAN_ICE, DEBRIS, WATER, VEGETATION = 0, 1, 2, 3, 4
PRECEDENCE = "nodata > debris > clean_ice > water > vegetation > background"


@dataclass(frozen=True)
class LabelRules:
    """Thresholds and options of the labelling rules.

    Attributes
    ----------
    water_ndwi
        Pixels with NDWI strictly above this are water (unless inside a glacier outline).
    vegetation_ndvi
        Pixels with NDVI strictly above this are vegetation (unless glacier or water).
    debris_within_glacier
        If True (default), only debris outlines *inside glacier outlines* become class
        ``debris``; debris polygons outside any glacier outline are ignored. Set False to trust
        debris outlines on their own.
    all_touched
        Rasterise every pixel an outline touches instead of the pixel-centre rule (biases
        areas upwards; off by default).
    """

    water_ndwi: float = 0.17
    vegetation_ndvi: float = 0.3
    debris_within_glacier: bool = True
    all_touched: bool = False

    def to_attrs(self) -> dict[str, float | bool]:
        """JSON-serialisable description (stored in cube attrs)."""
        return {
            "water_ndwi": self.water_ndwi,
            "vegetation_ndvi": self.vegetation_ndvi,
            "debris_within_glacier": self.debris_within_glacier,
            "all_touched": self.all_touched,
        }


# ----------------------------------------------------------------------------- outlines I/O
def read_outlines(outlines: Outlines, *, what: str = "outlines") -> gpd.GeoDataFrame:
    """Read polygon outlines from any vector format (via pyogrio) or pass a GeoDataFrame through.

    Parameters
    ----------
    outlines
        Path or URL (``https://``, ``s3://``...) of a vector file (Shapefile, GeoPackage,
        GeoJSON, FlatGeobuf, ...) or a GeoDataFrame/GeoSeries. Any CRS, as long as one is set.
    what
        Name used in error messages (e.g. ``"glacier outlines"``).

    Returns
    -------
    geopandas.GeoDataFrame
        Non-empty polygon geometries with a CRS; invalid geometries are repaired with
        :func:`shapely.make_valid`.

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ValueError
        If the file cannot be read, has no CRS, or holds non-polygon geometries.
    """
    if isinstance(outlines, gpd.GeoSeries):
        gdf = gpd.GeoDataFrame(geometry=outlines)
        source = f"{what} (GeoSeries)"
    elif isinstance(outlines, gpd.GeoDataFrame):
        gdf = outlines
        source = f"{what} (GeoDataFrame)"
    else:
        # a URL (http://, https://, s3://...) goes to GDAL as given: Path() would collapse '//'
        is_url = "://" in str(outlines)
        path: str | Path = str(outlines) if is_url else Path(outlines)
        source = f"{what} {'URL' if is_url else 'file'} {str(path)!r}"
        if not is_url and not Path(path).exists():
            raise FileNotFoundError(f"{source} does not exist")
        try:
            gdf = gpd.read_file(path)
        except Exception as exc:  # pyogrio raises DataSourceError and friends
            raise ValueError(
                f"cannot read {source} as a vector dataset (expected e.g. Shapefile, "
                f"GeoPackage, GeoJSON): {exc}"
            ) from exc
    if gdf.crs is None:
        raise ValueError(
            f"{source} has no CRS; set one (e.g. a .prj file, or gdf.set_crs('EPSG:4326'))"
        )
    geoms = gdf.geometry
    keep = ~(geoms.isna() | geoms.is_empty)
    gdf = gdf.loc[keep]
    kinds = set(gdf.geometry.geom_type.unique())
    bad = kinds - {"Polygon", "MultiPolygon", "GeometryCollection"}
    if bad:
        raise ValueError(f"{source} must hold polygons, found geometry types {sorted(bad)}")
    invalid = ~gdf.geometry.is_valid
    if invalid.any():
        gdf = gdf.copy()
        gdf.loc[invalid, gdf.geometry.name] = shapely.make_valid(gdf.geometry[invalid].values)
    return gdf


def _polygons_in_crs(outlines: Outlines, grid: Grid, what: str) -> np.ndarray:
    """Outlines as a shapely array of (multi)polygons in the grid CRS, clipped to the grid."""
    gdf = read_outlines(outlines, what=what).to_crs(grid.crs)
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    if geoms.size:
        # keep only polygonal parts (make_valid may add lines/points to collections)
        geoms = shapely.get_parts(geoms)
        geoms = geoms[np.isin(shapely.get_type_id(geoms), (3, 6))]
    xmin, ymin, xmax, ymax = grid.bounds
    hits = geoms[shapely.intersects(geoms, shapely.box(xmin, ymin, xmax, ymax))]
    if geoms.size and not hits.size:
        warnings.warn(
            f"none of the {geoms.size} {what} polygons intersect the grid {grid!r} "
            f"(lon/lat {tuple(round(v, 4) for v in grid.bbox_lonlat())})",
            stacklevel=3,
        )
    return hits


def _burn(geoms: np.ndarray, shape: tuple[int, int], transform: object, all_touched: bool):
    """Rasterise polygons into a boolean block (NumPy in, NumPy out)."""
    if not len(geoms):
        return np.zeros(shape, dtype=bool)
    out = rio_features.rasterize(
        ((g, 1) for g in geoms),
        out_shape=shape,
        transform=transform,
        fill=0,
        all_touched=all_touched,
        dtype="uint8",
    )
    return out.astype(bool)


def _normalise_chunks(grid: Grid, chunks: int | tuple[int, int] | tuple[tuple[int, ...], ...]):
    """Turn a chunk spec into explicit ``((rows...), (cols...))`` for the grid shape."""
    return da.core.normalize_chunks(
        chunks if not isinstance(chunks, int) else (chunks, chunks), shape=grid.shape
    )


def clip_to_block(
    geoms: np.ndarray, tree: shapely.STRtree, grid: Grid, rows: slice, cols: slice
) -> np.ndarray:
    """Return the polygons touching a block of ``grid``, clipped one pixel beyond it.

    Clipping one pixel beyond the block is exact for the pixel-centre rule and for
    ``all_touched``, so each task carries only the geometry it needs.
    """
    res, x0, y1 = grid.resolution, grid.bounds[0], grid.bounds[3]
    bx0, bx1 = x0 + cols.start * res, x0 + cols.stop * res
    by1, by0 = y1 - rows.start * res, y1 - rows.stop * res
    idx = tree.query(shapely.box(bx0, by0, bx1, by1), predicate="intersects")
    if not idx.size:
        return geoms[:0]
    part = shapely.clip_by_rect(geoms[idx], bx0 - res, by0 - res, bx1 + res, by1 + res)
    return part[~shapely.is_empty(part)]


def rasterize_outlines(
    outlines: Outlines,
    grid: Grid,
    *,
    chunks: int | tuple[int, int] | tuple[tuple[int, ...], ...] = 512,
    all_touched: bool = False,
    what: str = "outlines",
) -> xr.DataArray:
    """Rasterise polygon outlines onto a grid, lazily, chunk by chunk.

    Parameters
    ----------
    outlines
        Vector file path or GeoDataFrame/GeoSeries (any CRS; reprojected to ``grid.crs``).
    grid
        Target grid.
    chunks
        Dask chunking of the result: a square size, ``(rows, cols)``, or explicit block sizes.
    all_touched
        Burn every touched pixel instead of the pixel-centre rule.
    what
        Name used in errors and warnings.

    Returns
    -------
    xarray.DataArray
        Boolean ``(y, x)`` mask on the grid's pixel-centre coordinates, Dask-backed. Each
        chunk's task carries only the polygons intersecting it, clipped to its extent.
    """
    geoms = _polygons_in_crs(outlines, grid, what)
    rows, cols = _normalise_chunks(grid, chunks)
    tree = shapely.STRtree(geoms)
    burn = dask.delayed(_burn, pure=True)
    blocks: list[list[da.Array]] = []
    r0 = 0
    for nr in rows:
        line = []
        c0 = 0
        for nc in cols:
            part = clip_to_block(geoms, tree, grid, slice(r0, r0 + nr), slice(c0, c0 + nc))
            if part.size:
                transform = grid.transform @ Affine.translation(c0, r0)
                block = da.from_delayed(
                    burn(part, (nr, nc), transform, all_touched), (nr, nc), dtype=bool
                )
            else:
                block = da.zeros((nr, nc), dtype=bool, chunks=(nr, nc))
            line.append(block)
            c0 += nc
        blocks.append(line)
        r0 += nr
    data = da.block(blocks) if blocks else da.zeros(grid.shape, dtype=bool)
    return xr.DataArray(data, dims=("y", "x"), coords=grid.coords(), name=what.replace(" ", "_"))


# ----------------------------------------------------------------------------- composition
def compose_labels(
    glacier: np.ndarray,
    debris: np.ndarray,
    ndwi: np.ndarray | None,
    ndvi: np.ndarray | None,
    valid: np.ndarray,
    rules: LabelRules = LabelRules(),
) -> np.ndarray:
    """Combine masks into a label block with the documented precedence (NumPy in, NumPy out).

    Parameters
    ----------
    glacier, debris
        Boolean masks of pixel centres inside glacier / debris outlines.
    ndwi, ndvi
        Index values, or None to skip the water / vegetation rule. NaN never passes a rule.
    valid
        Boolean mask of pixels whose inputs are all present; others get ``NODATA_LABEL``.
    rules
        Thresholds and options.

    Returns
    -------
    numpy.ndarray
        uint8 labels: 0 background, 1 clean ice, 2 debris, 3 water, 4 vegetation, 255 nodata.
    """
    out = np.zeros(np.shape(valid), dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        if ndvi is not None:
            out[ndvi > rules.vegetation_ndvi] = VEGETATION
        if ndwi is not None:
            out[ndwi > rules.water_ndwi] = WATER
    out[glacier] = CLEAN_ICE
    out[(debris & glacier) if rules.debris_within_glacier else debris] = DEBRIS
    out[~valid] = NODATA_LABEL
    return out


def _label_block(glacier, debris, valid, *idx, has_ndwi: bool, has_ndvi: bool, rules: LabelRules):
    """Map :func:`compose_labels` over aligned blocks (a module-level function: cheap to pickle)."""
    it = iter(idx)
    ndwi = next(it) if has_ndwi else None
    ndvi = next(it) if has_ndvi else None
    return compose_labels(glacier, debris, ndwi, ndvi, valid, rules)


def _check_on_grid(arr: xr.DataArray, grid: Grid, name: str) -> None:
    if arr.dims != ("y", "x"):
        raise ValueError(f"{name} must have dims ('y', 'x'), got {arr.dims}")
    if arr.shape != grid.shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected the grid shape {grid.shape}")
    for dim, ref in (("x", grid.x), ("y", grid.y)):
        tol = grid.resolution * 1e-3
        if dim in arr.coords and not np.allclose(arr[dim].values, ref, rtol=0, atol=tol):
            raise ValueError(
                f"{name} {dim} coordinates do not match the grid {grid!r} "
                "(is it on another CRS or pixel alignment?)"
            )


def _as_dask(arr: xr.DataArray | None, chunks: tuple[tuple[int, ...], ...]) -> da.Array | None:
    if arr is None:
        return None
    data = arr.data
    if not isinstance(data, da.Array):
        return da.from_array(np.asarray(data), chunks=chunks)
    return data.rechunk(chunks)


def make_labels(
    grid: Grid,
    *,
    glacier_outlines: Outlines | None = None,
    debris_outlines: Outlines | None = None,
    ndwi: xr.DataArray | None = None,
    ndvi: xr.DataArray | None = None,
    valid: xr.DataArray | None = None,
    rules: LabelRules = LabelRules(),
    chunks: int | tuple[int, int] | tuple[tuple[int, ...], ...] = 512,
) -> xr.DataArray:
    """Build the label raster on a grid from outlines and spectral rules (lazy).

    Parameters
    ----------
    grid
        Target grid.
    glacier_outlines, debris_outlines
        Glacier and debris-cover polygons (file path or GeoDataFrame, any CRS), or None.
    ndwi, ndvi
        ``(y, x)`` index rasters on ``grid`` (NumPy- or Dask-backed), or None to skip the water /
        vegetation rule. NaN pixels become nodata.
    valid
        Optional boolean ``(y, x)`` mask on ``grid``: False where inputs are missing (e.g. any
        feature layer NaN); those pixels become :data:`~glacierstack.classes.NODATA_LABEL`.
    rules
        Thresholds and options; see :class:`LabelRules` and the module docstring for precedence.
    chunks
        Dask chunking of the result.

    Returns
    -------
    xarray.DataArray
        uint8 ``(y, x)`` labels named ``labels``, Dask-backed, with the rules in ``attrs``.

    Raises
    ------
    ValueError
        If an index or mask raster is not on ``grid``, or an outline file is unusable.
    """
    blocks = _normalise_chunks(grid, chunks)
    for arr, name in ((ndwi, "ndwi"), (ndvi, "ndvi"), (valid, "valid")):
        if arr is not None:
            _check_on_grid(arr, grid, name)

    def mask(outlines: Outlines | None, what: str) -> da.Array:
        if outlines is None:
            return da.zeros(grid.shape, dtype=bool, chunks=blocks)
        return rasterize_outlines(
            outlines, grid, chunks=blocks, all_touched=rules.all_touched, what=what
        ).data

    glacier = mask(glacier_outlines, "glacier outlines")
    debris = mask(debris_outlines, "debris outlines")
    ok = _as_dask(valid, blocks)
    if ok is None:
        ok = da.ones(grid.shape, dtype=bool, chunks=blocks)
    else:
        ok = ok.astype(bool)
    d_ndwi, d_ndvi = _as_dask(ndwi, blocks), _as_dask(ndvi, blocks)
    for idx in (d_ndwi, d_ndvi):
        if idx is not None:
            ok = ok & da.isfinite(idx)

    extra = [a for a in (d_ndwi, d_ndvi) if a is not None]
    data = da.map_blocks(
        _label_block,
        glacier,
        debris,
        ok,
        *extra,
        has_ndwi=d_ndwi is not None,
        has_ndvi=d_ndvi is not None,
        rules=rules,
        dtype=np.uint8,
        token="labels",
    )
    attrs = {
        "long_name": "CryoNet class label",
        "nodata": NODATA_LABEL,
        "label_rules": rules.to_attrs(),
        "precedence": PRECEDENCE,
    }
    return xr.DataArray(data, dims=("y", "x"), coords=grid.coords(), name="labels", attrs=attrs)
