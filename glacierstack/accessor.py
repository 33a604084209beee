"""A compact summary of lazy cubes and modality stacks, and the ``.gs`` xarray accessor.

xarray's own repr lists variables and chunk sizes but not what matters on a cluster: the grid
and CRS every layer sits on, the band list in order, how many chunks and Dask tasks a
``.compute()`` would run, and whether a store finished writing. :func:`summary` collects that
without computing anything; ``obj.gs`` (registered on Datasets and DataArrays when
:mod:`glacierstack` loads any of its xarray-based functions, or on ``import glacierstack.accessor``)
shows the same summary in a notebook.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import xarray as xr

from glacierstack.grid import Grid

__all__ = ["CubeSummary", "GlacierstackAccessor", "summary"]


@dataclass(frozen=True)
class CubeSummary:
    """What :func:`summary` reports about a cube, a feature array or a modality stack."""

    kind: str
    """``"Dataset"`` or ``"DataArray"``."""
    bands: tuple[str, ...]
    """Band names in order (``band`` coordinate, or the data variables of a modality stack)."""
    grid: Grid | None
    """The grid (from the ``grid`` attribute, else from the ``x``/``y`` coordinates)."""
    crs: str | None
    """CRS of the grid (``grid`` attribute, else rioxarray's ``spatial_ref``)."""
    shape: tuple[int, int]
    """``(height, width)`` in pixels."""
    chunks: dict[str, tuple[int, ...]]
    """Distinct chunk sizes per dimension (Dask-backed variables only)."""
    n_chunks: int
    """Number of Dask chunks over all variables."""
    n_tasks: int
    """Size of the Dask graph behind the object (tasks a ``.compute()`` would run)."""
    nbytes: int
    """Uncompressed size in bytes."""
    complete: bool | None
    """The ``complete`` flag of a Zarr cube (``None`` when the object is not a store)."""
    stac_items: tuple[str, ...]
    """STAC item ids recorded in the attributes."""

    @property
    def lazy(self) -> bool:
        """True when at least one variable is Dask-backed."""
        return self.n_chunks > 0

    def _rows(self) -> list[tuple[str, str]]:
        h, w = self.shape
        rows = [("bands", f"{len(self.bands)}: {_ellipsize(self.bands)}")]
        if self.grid is not None:
            b = ", ".join(f"{v:.0f}" for v in self.grid.bounds)
            rows.append(("grid", f"{w} x {h} px @ {self.grid.resolution:g} m, bounds ({b})"))
        else:
            rows.append(("grid", f"{w} x {h} px"))
        rows.append(("crs", self.crs or "unknown"))
        if self.lazy:
            chunks = ", ".join(
                f"{d}: {_ellipsize(tuple(map(str, c)))}" for d, c in self.chunks.items()
            )
            rows.append(("chunks", f"{self.n_chunks} ({chunks})"))
            rows.append(("dask graph", f"{self.n_tasks:,} tasks"))
        else:
            rows.append(("chunks", "in memory (no Dask)"))
        rows.append(("size", _human_bytes(self.nbytes)))
        if self.complete is not None:
            rows.append(("store", "complete" if self.complete else "INCOMPLETE"))
        if self.stac_items:
            rows.append(("stac items", f"{len(self.stac_items)}: {_ellipsize(self.stac_items, 3)}"))
        return rows

    def __str__(self) -> str:
        rows = self._rows()
        width = max(len(k) for k, _ in rows)
        return "\n".join(
            [f"<glacierstack {self.kind}>"] + [f"  {k:<{width}}  {v}" for k, v in rows]
        )

    __repr__ = __str__

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self._rows()
        )
        return f"<b>glacierstack {self.kind}</b><table>{cells}</table>"


def _ellipsize(items: tuple[str, ...], keep: int = 4) -> str:
    if len(items) <= 2 * keep:
        return " ".join(items)
    return " ".join(items[:keep]) + " ... " + " ".join(items[-keep:])


def _human_bytes(n: int) -> str:
    if n <= 0:
        return "0 B"
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    i = min(int(math.log(n, 1024)), len(units) - 1)
    return f"{n / 1024**i:.1f} {units[i]}" if i else f"{n} B"


def _grid(obj: xr.Dataset | xr.DataArray) -> Grid | None:
    attrs = obj.attrs.get("grid")
    if isinstance(attrs, dict):
        try:
            return Grid.from_attrs(attrs)
        except (KeyError, TypeError, ValueError):
            pass
    if "x" in obj.coords and "y" in obj.coords and obj.sizes.get("x", 0) > 1:
        crs = _rio_crs(obj)
        if crs is None:
            return None
        x, y = obj["x"].values, obj["y"].values
        res = float(abs(x[1] - x[0]))
        bounds = (
            float(x.min()) - res / 2,
            float(y.min()) - res / 2,
            float(x.max()) + res / 2,
            float(y.max()) + res / 2,
        )
        try:
            return Grid(crs=crs, bounds=bounds, resolution=res)
        except (TypeError, ValueError):
            return None
    return None


def _rio_crs(obj: xr.Dataset | xr.DataArray) -> str | None:
    try:
        import rioxarray  # noqa: F401  (registers .rio)

        crs = obj.rio.crs
    except Exception:  # no spatial_ref, or rioxarray cannot parse it
        return None
    return None if crs is None else crs.to_string()


def _bands(obj: xr.Dataset | xr.DataArray) -> tuple[str, ...]:
    if "band" in obj.coords:
        return tuple(str(b) for b in obj["band"].values)
    if isinstance(obj, xr.Dataset):
        return tuple(str(v) for v in obj.data_vars if {"y", "x"} <= set(obj[v].dims))
    return (str(obj.name),) if obj.name is not None else ()


def summary(obj: xr.Dataset | xr.DataArray) -> CubeSummary:
    """Summarise a cube, feature array or modality stack without computing it.

    Parameters
    ----------
    obj
        What :func:`glacierstack.open_cube`, :func:`glacierstack.compute_features` or
        :func:`glacierstack.load_modalities` return (any xarray object with ``y``/``x`` dims).

    Returns
    -------
    CubeSummary
        Band list, grid, CRS, chunking, number of chunks and Dask tasks, size, store state.
        Its repr (text and HTML) is meant for notebooks.
    """
    if not isinstance(obj, xr.Dataset | xr.DataArray):
        raise TypeError(f"summary() takes an xarray Dataset or DataArray, got {type(obj).__name__}")
    ds = obj.to_dataset(name=obj.name or "data") if isinstance(obj, xr.DataArray) else obj
    graph: dict[Any, Any] = {}
    n_chunks = 0
    chunks: dict[str, set[int]] = {}
    for var in ds.data_vars.values():
        data = var.data
        if hasattr(data, "__dask_graph__"):
            graph.update(dict(data.__dask_graph__()))
            n_chunks += math.prod(len(c) for c in data.chunks)
            for dim, sizes in zip(var.dims, data.chunks, strict=True):
                chunks.setdefault(str(dim), set()).update(sizes)
    grid = _grid(obj)
    crs = grid.crs if grid is not None else _rio_crs(obj)
    complete = obj.attrs.get("complete")
    items = obj.attrs.get("stac_items") or ()
    if isinstance(items, dict):  # {modality: [ids]}
        items = [i for ids in items.values() for i in ids]
    return CubeSummary(
        kind=type(obj).__name__,
        bands=_bands(obj),
        grid=grid,
        crs=crs,
        shape=(int(obj.sizes.get("y", 0)), int(obj.sizes.get("x", 0))),
        chunks={d: tuple(sorted(s, reverse=True)) for d, s in chunks.items()},
        n_chunks=n_chunks,
        n_tasks=len(graph),
        nbytes=int(obj.nbytes),
        complete=None if complete is None else bool(complete),
        stac_items=tuple(str(i) for i in items),
    )


@xr.register_dataset_accessor("gs")
@xr.register_dataarray_accessor("gs")
class GlacierstackAccessor:
    """``obj.gs``: glacierstack helpers on xarray objects (delegates to module functions)."""

    def __init__(self, obj: xr.Dataset | xr.DataArray) -> None:
        self._obj = obj

    def summary(self) -> CubeSummary:
        """Return :func:`summary` of the object."""
        return summary(self._obj)

    @property
    def grid(self) -> Grid | None:
        """The :class:`~glacierstack.grid.Grid` of the object, if it can be determined."""
        return _grid(self._obj)

    def __repr__(self) -> str:
        return str(summary(self._obj))

    def _repr_html_(self) -> str:
        return summary(self._obj)._repr_html_()
