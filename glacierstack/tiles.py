"""Big tasks: one Dask task per output tile reads, computes every layer and the labels.

On the distributed scheduler each task costs milliseconds of scheduler and worker overhead,
so a graph of hundreds of small elementwise tasks per tile (per-band scale/offset, mosaic,
PCA terms, overlaps) spends more time scheduling than computing. The store writer therefore
computes the cube from a :class:`TilePlan`: each tile task reads the tile plus a halo of
:func:`~glacierstack.features.feature_halo` pixels for every modality (the same reads as
:func:`~glacierstack.stack.load_modalities`, on a sub-grid), runs the same feature code on
NumPy (:func:`~glacierstack.features.compute_features`; the dispatcher gives NumPy = Dask
results), crops the halo and composes the labels
(:func:`~glacierstack.labels.compose_labels`). The lazy xarray API stays for notebooks.

Where the halo reaches past the region edge the window is clipped, so the NumPy path pads
exactly as the lazy path's ``map_overlap`` does at the array edge.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import dask
import dask.array as da
import numpy as np
import shapely
import xarray as xr
from affine import Affine
from dask.base import tokenize

from glacierstack.cubewrite import axis_chunks
from glacierstack.features import (
    FeatureOptions,
    PCAFit,
    PCASample,
    _block_moments,
    _stack_bands,
    compute_features,
    feature_halo,
    feature_params,
    pca_from_moments,
)
from glacierstack.grid import Grid
from glacierstack.labels import LabelRules, _burn, clip_to_block, compose_labels
from glacierstack.layers import PCA_LAYERS
from glacierstack.schemes import ClassScheme, map_labels
from glacierstack.stack import ReadPlan, read_plan

__all__ = ["TilePlan", "compute_tile", "fit_pca_windows", "needs_pca", "read_window", "tile_cube"]


@dataclass(frozen=True)
class TilePlan:
    """What every tile task needs (a copy in each task).

    Not a shared graph key: the scheduler would place every tile on the worker holding it.

    Attributes
    ----------
    reads
        The catalog search results (:func:`~glacierstack.stack.plan_reads`).
    grid
        The cube's grid.
    layers
        Layer names, canonical order.
    options
        Feature options; ``options.pca`` must be set when a PCA layer is requested.
    rules
        Labelling rules.
    chunk_size
        Output tile side in pixels.
    sensor
        Optical sensor of the reads (``raw.attrs["sensor"]``), for the provenance attrs.
    """

    reads: ReadPlan
    grid: Grid
    layers: tuple[str, ...]
    options: FeatureOptions
    rules: LabelRules
    chunk_size: int
    sensor: str | None = None
    scheme: ClassScheme | None = None
    """Class scheme the labels are mapped onto (``None``: the five CryoNet classes)."""

    @property
    def halo(self) -> int:
        """Context pixels read around each tile."""
        return feature_halo(self.options)

    def chunks(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Row and column tile sizes."""
        h, w = self.grid.shape  # the store writer's tiles: one task each
        return axis_chunks(h, self.chunk_size), axis_chunks(w, self.chunk_size)


def needs_pca(layers: tuple[str, ...], options: FeatureOptions) -> bool:
    """Whether ``layers`` need a PCA fit (a PC layer, or a texture computed on one)."""
    return bool(set(layers) & set(PCA_LAYERS)) or options.glcm.source in PCA_LAYERS


def read_window(reads: ReadPlan, grid: Grid, rows: slice, cols: slice) -> xr.Dataset:
    """Read one window of the raw modality dataset of ``grid`` into memory (NumPy-backed).

    The window is one chunk of the region's reads, so only it is read, and its pixels are
    those of :func:`~glacierstack.stack.load_modalities` on the whole grid.
    """
    h, w = grid.shape
    chunks = (_split(rows, h), _split(cols, w))
    raw = read_plan(reads, grid, chunks=chunks).isel(y=rows, x=cols)
    return raw.compute(scheduler="sync")


def _split(s: slice, n: int) -> tuple[int, ...]:
    """Chunk sizes along an axis of length ``n`` with ``s`` as one chunk."""
    return tuple(k for k in (s.start, s.stop - s.start, n - s.stop) if k > 0)


def _row_moments(
    reads: ReadPlan, grid: Grid, rows: slice, cols: list[slice], bands: tuple[str, ...]
) -> list[Any]:
    """Moments of the sample windows of one row of cells (one read graph, each window a chunk)."""
    h, w = grid.shape
    edges = sorted({0, w, *(c.start for c in cols), *(c.stop for c in cols)})
    chunks = (_split(rows, h), tuple(b - a for a, b in zip(edges[:-1], edges[1:], strict=True)))
    raw = read_plan(reads, grid, chunks=chunks).isel(y=rows)
    windows = [_stack_bands(raw.isel(x=c), bands) for c in cols]
    values = dask.compute(*[win.data for win in windows], scheduler="sync")
    return [_block_moments(np.asarray(v)) for v in values]


def fit_pca_windows(
    reads: ReadPlan, grid: Grid, bands: tuple[str, ...], sample: PCASample, session: Any
) -> PCAFit:
    """Fit the PCA of the optical ``bands`` on a stratified sample, one read task per row.

    Reads at most ``sample.cells² · sample.window²`` pixels, so its cost and memory do not
    grow with the region. Gives the fit :func:`~glacierstack.features.fit_pca` computes with
    the same ``sample`` on the lazy raw dataset (same windows, same merge order).
    """
    optical = tuple(a for a in reads.acquisitions if {b.name for b in a.bands} & set(bands))
    only = replace(reads, acquisitions=optical)
    rows: dict[tuple[int, int], list[slice]] = {}
    for ys, xs in sample.windows(grid.shape):  # row-major: rows of cells, in order
        rows.setdefault((ys.start, ys.stop), []).append(xs)
    task = dask.delayed(_row_moments, pure=True)
    parts = [task(only, grid, slice(*r), cols, bands) for r, cols in rows.items()]
    moments = [m for row in session.compute(*parts) for m in row]
    return pca_from_moments(moments, bands, 3, sample.describe())


def compute_tile(
    plan: TilePlan, rows: slice, cols: slice, glacier: np.ndarray, debris: np.ndarray
) -> np.ndarray:
    """Every layer and the labels of one tile (runs inside one task).

    Parameters
    ----------
    plan
        The build plan.
    rows, cols
        The tile's pixel slices on ``plan.grid``.
    glacier, debris
        Outline polygons touching the tile (grid CRS, clipped by
        :func:`~glacierstack.labels.clip_to_block`).

    Returns
    -------
    numpy.ndarray
        float32 ``(n_layers + 1, h, w)``: the layers, then the labels (0..255).
    """
    h, w = plan.grid.shape
    r = plan.halo
    wy = slice(max(rows.start - r, 0), min(rows.stop + r, h))
    wx = slice(max(cols.start - r, 0), min(cols.stop + r, w))
    raw = read_window(plan.reads, plan.grid, wy, wx)
    feats = compute_features(raw, plan.layers, plan.options)
    crop = (slice(rows.start - wy.start, rows.stop - wy.start),
            slice(cols.start - wx.start, cols.stop - wx.start))  # fmt: skip
    values = np.asarray(feats.values[(slice(None), *crop)], dtype=np.float32)
    names = list(plan.layers)
    if plan.scheme is not None and not plan.scheme.rule_classes:
        ndwi = ndvi = np.zeros(values.shape[1:], np.float32)  # no rule class: rules never fire
    elif {"NDWI", "NDVI"} <= set(names):
        ndwi, ndvi = values[names.index("NDWI")], values[names.index("NDVI")]
    else:
        idx = compute_features(raw, ["NDWI", "NDVI"]).values[(slice(None), *crop)]
        ndwi, ndvi = idx[0], idx[1]
    valid = np.isfinite(values).all(axis=0) & np.isfinite(ndwi) & np.isfinite(ndvi)
    shape = values.shape[1:]
    transform = plan.grid.transform @ Affine.translation(cols.start, rows.start)
    touched = plan.rules.all_touched
    labels = compose_labels(
        _burn(glacier, shape, transform, touched),
        _burn(debris, shape, transform, touched),
        ndwi,
        ndvi,
        valid,
        plan.rules,
    )
    if plan.scheme is not None:
        labels = map_labels(labels, plan.scheme)
    return np.concatenate([values, labels[None].astype(np.float32)])


def tile_cube(
    plan: TilePlan, glacier: np.ndarray, debris: np.ndarray
) -> tuple[xr.DataArray, xr.DataArray]:
    """Lazy ``(features, labels)`` whose every tile is one task (for :func:`write_cube`).

    Parameters
    ----------
    plan
        The build plan (``options.pca`` set if a PCA layer is requested).
    glacier, debris
        Outline polygons in the grid CRS (shapely arrays, possibly empty).

    Returns
    -------
    (xarray.DataArray, xarray.DataArray)
        float32 ``(band, y, x)`` features and uint8 ``(y, x)`` labels, chunked by tile.
    """
    if needs_pca(plan.layers, plan.options) and plan.options.pca is None:
        raise ValueError("TilePlan.options.pca must be set: fit it first (fit_pca_windows)")
    rows, cols = plan.chunks()
    token = tokenize(plan, [g.wkb for g in glacier], [g.wkb for g in debris])
    name = f"cube-tile-{token}"
    gtree, dtree = shapely.STRtree(glacier), shapely.STRtree(debris)
    dsk: dict[Any, Any] = {}
    r0 = 0
    for i, nr in enumerate(rows):
        c0 = 0
        for j, nc in enumerate(cols):
            ys, xs = slice(r0, r0 + nr), slice(c0, c0 + nc)
            g = clip_to_block(glacier, gtree, plan.grid, ys, xs)
            d = clip_to_block(debris, dtree, plan.grid, ys, xs)
            dsk[(name, 0, i, j)] = (compute_tile, plan, ys, xs, g, d)
            c0 += nc
        r0 += nr
    nb = len(plan.layers)
    arr = da.Array(dsk, name, chunks=((nb + 1,), rows, cols), dtype=np.float32)
    coords = plan.grid.coords()
    pca = plan.options.pca if needs_pca(plan.layers, plan.options) else None
    attrs = {
        "grid": plan.grid.to_attrs(),
        "stac_items": list(plan.reads.item_ids),
        "datetime": plan.reads.datetime or "",
        "bands": list(plan.layers),
        "feature_params": feature_params(plan.options, pca, plan.sensor),
    }
    feats = xr.DataArray(
        arr[:nb],
        dims=("band", "y", "x"),
        coords={"band": list(plan.layers), **coords},
        name="features",
        attrs=attrs,
    )
    labels = xr.DataArray(arr[nb].astype(np.uint8), dims=("y", "x"), coords=coords, name="labels")
    return feats, labels
