"""Stack every modality onto one :class:`~glacierstack.grid.Grid` as lazy Dask arrays.

:func:`load_modalities` returns the *raw modality dataset* of ``docs/developer/contracts.md``:
an ``xr.Dataset`` on the grid (dims ``y, x``, pixel-centre coords, ``spatial_ref``), physical
units, nodata -> NaN, lazy Dask; attrs ``grid``, ``stac_items``, ``datetime``.

Reading and warping is done by a :class:`RasterLoader`; the default is :class:`StackstacLoader`
(stackstac 0.5.1 behind the shims of :mod:`glacierstack._compat`). A loader only returns raw
values with nodata masked; scale/offset (per item, per provider rule), mosaicking and band
naming happen here, so another loader (odc-stac) only has to implement one method.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

import numpy as np
import pystac
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from glacierstack.catalog import Catalog, Selection, open_catalog, select_items
from glacierstack.grid import Grid
from glacierstack.inputs import MissingInput, ReadConfig, check_assets, check_range
from glacierstack.modalities import BandSpec, ModalitySpec, choose_band_set, resolve_scale_offset

__all__ = [
    "OdcStacLoader",
    "RasterLoader",
    "StackstacLoader",
    "AcquisitionRead",
    "ReadPlan",
    "load_modalities",
    "load_modality",
    "plan_reads",
    "read_plan",
]


Chunks: TypeAlias = int | tuple[tuple[int, ...], tuple[int, ...]]
"""Spatial Dask chunks: a square size, or explicit ``(row sizes, column sizes)``."""


@runtime_checkable
class RasterLoader(Protocol):
    """Reads STAC assets onto a grid.

    Implementations must return a lazy ``xr.DataArray`` with dims ``(time, band, y, x)``:
    one ``time`` entry per item **in the order given** (with an ``id`` coordinate holding the
    item ids), ``band`` = the asset keys, ``y``/``x`` = ``grid.y``/``grid.x``, values in the
    stored units (no scale/offset) as ``dtype`` with the file's nodata replaced by NaN.
    """

    def load(
        self,
        items: Sequence[pystac.Item],
        assets: Sequence[str],
        grid: Grid,
        *,
        resampling: str,
        dtype: str,
        chunks: Chunks,
    ) -> xr.DataArray:
        """Load ``assets`` of ``items`` onto ``grid``."""
        ...


@dataclass(frozen=True)
class StackstacLoader:
    """:class:`RasterLoader` backed by stackstac (GDAL ``WarpedVRT`` per asset and chunk)."""

    read: ReadConfig = ReadConfig()
    """GDAL options, HTTP headers and missing-file policy; carried inside every read task."""

    def load(
        self,
        items: Sequence[pystac.Item],
        assets: Sequence[str],
        grid: Grid,
        *,
        resampling: str,
        dtype: str,
        chunks: Chunks,
    ) -> xr.DataArray:
        """Load ``assets`` of ``items`` onto ``grid`` (see :class:`RasterLoader`)."""
        from glacierstack import _compat

        arr = _compat.stack(
            items,
            assets=assets,
            epsg=grid.epsg,
            bounds=grid.bounds,
            resolution=grid.resolution,
            dtype=dtype,
            fill_value=np.nan,
            rescale=False,
            resampling=resampling,
            chunksize=chunks,
            gdal_env=self.read.layered_env(),
            errors_as_nodata=self.read.errors_as_nodata(),
        )
        if arr.sizes["time"] != len(items):
            # stackstac drops items entirely outside the bounds; callers pass only
            # intersecting items, so this signals inconsistent item geometry.
            missing = sorted({it.id for it in items} - set(np.asarray(arr["id"].values).tolist()))
            raise ValueError(f"stackstac dropped items {missing} that do not overlap {grid}")
        return _on_grid(arr, grid)


@dataclass(frozen=True)
class OdcStacLoader:
    """:class:`RasterLoader` backed by odc-stac (optional; shows the interface is swappable).

    odc-stac warps with its own chunked reader; nodata is taken from ``raster:bands`` and
    becomes NaN for float output. Complex data is not supported by odc-stac's reader.
    """

    def load(
        self,
        items: Sequence[pystac.Item],
        assets: Sequence[str],
        grid: Grid,
        *,
        resampling: str,
        dtype: str,
        chunks: Chunks,
    ) -> xr.DataArray:
        """Load ``assets`` of ``items`` onto ``grid`` (see :class:`RasterLoader`)."""
        import odc.stac
        from odc.geo.geobox import GeoBox

        if np.issubdtype(np.dtype(dtype), np.complexfloating):
            raise NotImplementedError(
                "OdcStacLoader cannot read complex rasters; use StackstacLoader"
            )
        geobox = GeoBox(grid.shape, grid.transform, grid.crs)
        # odc-stac takes one chunk size per dimension: explicit (row sizes, column sizes) are
        # read with the largest and rechunked to the exact sizes below
        if isinstance(chunks, int):
            odc_chunks: dict[str, int | Literal["auto"]] = {"x": chunks, "y": chunks}
        else:
            odc_chunks = {"y": max(chunks[0]), "x": max(chunks[1])}
        per_item = []
        for it in items:  # one call per item keeps the order and the item <-> time mapping exact
            ds = odc.stac.load(
                [it],
                bands=list(assets),
                geobox=geobox,
                resampling=resampling,
                dtype=dtype,
                chunks=odc_chunks,
            )
            da = ds[list(assets)].to_dataarray("band").isel(time=0, drop=True)
            per_item.append(da.drop_vars("spatial_ref", errors="ignore"))
        arr = xr.concat(per_item, dim="time").transpose("time", "band", "y", "x")
        arr = arr.assign_coords(id=("time", [it.id for it in items]))
        if not isinstance(chunks, int):
            arr = arr.chunk({"y": chunks[0], "x": chunks[1]})
        return _on_grid(arr, grid)


def _on_grid(arr: xr.DataArray, grid: Grid) -> xr.DataArray:
    """Check that ``arr`` lies on ``grid`` and give it the grid's exact coordinates."""
    h, w = grid.shape
    if (arr.sizes["y"], arr.sizes["x"]) != (h, w):
        raise ValueError(f"loader returned shape {arr.sizes['y'], arr.sizes['x']}, grid is {h, w}")
    tol = 1e-6 * grid.resolution
    if not (
        np.allclose(arr["x"].values, grid.x, atol=tol, rtol=0)
        and np.allclose(arr["y"].values, grid.y, atol=tol, rtol=0)
    ):
        raise ValueError(f"loader coordinates are not the pixel centres of {grid}")
    return arr.assign_coords(x=grid.x, y=grid.y)


# ---------------------------------------------------------------------------- helpers
def _mosaic(arr: xr.DataArray) -> xr.DataArray:
    """First valid (non-NaN) value along ``time`` (items are ordered best first).

    :func:`stackstac.mosaic` with ``reverse=True`` (first on top): one Dask reduction that
    stops reading lower layers of a chunk once it is complete.
    """
    import stackstac

    if arr.sizes["time"] == 1:
        return arr.isel(time=0, drop=True)
    out = stackstac.mosaic(arr, dim="time", reverse=True, nodata=np.nan)
    return out.drop_vars([c for c in out.coords if "time" in out[c].dims], errors="ignore")


def _encoding_arrays(
    spec: ModalitySpec, bands: Sequence[BandSpec], items: Sequence[pystac.Item]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-(item, band) scale, offset and nodata (NaN: none) arrays."""
    shape = (len(items), len(bands))
    scale, offset, nodata = np.ones(shape), np.zeros(shape), np.full(shape, np.nan)
    for i, it in enumerate(items):
        for j, b in enumerate(bands):
            enc = resolve_scale_offset(
                spec, b, it.properties, it.assets[b.asset].to_dict(), item_id=it.id
            )
            scale[i, j], offset[i, j] = enc.scale, enc.offset
            nodata[i, j] = np.nan if enc.nodata is None else enc.nodata
    return scale, offset, nodata


def _load_acquisition(
    loader: RasterLoader,
    spec: ModalitySpec,
    bands: Sequence[BandSpec],
    items: Sequence[pystac.Item],
    grid: Grid,
    chunks: Chunks,
    read: ReadConfig,
    missing: Sequence[MissingInput] = (),
) -> dict[str, xr.DataArray]:
    """Load one acquisition (items of one day, mosaicked) -> ``{band name: (y, x)}``.

    Values are checked against their physical range as they are read (:func:`check_range`);
    ``missing`` (assets masked under ``allow_missing``) is listed in the bands' attrs.
    """
    scale, offset, nodata = _encoding_arrays(spec, bands, items)
    ids = {it.id for it in items}
    out: dict[str, xr.DataArray] = {}
    # One loader call per (resampling, dtype) group of bands.
    groups: dict[tuple[str, str], list[int]] = {}
    for j, b in enumerate(bands):
        groups.setdefault((b.resampling, b.dtype), []).append(j)
    for (resampling, dtype), idx in groups.items():
        raw = loader.load(
            items,
            [bands[j].asset for j in idx],
            grid,
            resampling=resampling,
            dtype=dtype,
            chunks=chunks,
        )
        is_complex = np.issubdtype(np.dtype(dtype), np.complexfloating)
        coords = {"time": raw["time"], "band": raw["band"]}
        sc = xr.DataArray(scale[:, idx].astype(dtype), dims=("time", "band"), coords=coords)
        of = xr.DataArray(offset[:, idx].astype(dtype), dims=("time", "band"), coords=coords)
        nd = xr.DataArray(nodata[:, idx], dims=("time", "band"), coords=coords)
        if not is_complex:
            # Belt and braces: mask the declared nodata even if the file lacks the tag.
            raw = raw.where((raw != nd.astype(dtype)) | nd.isnull())
            raw = raw * sc + of
            raw = check_range(raw, [bands[j] for j in idx], items, read)
        mosaic = _mosaic(raw)
        for k, j in enumerate(idx):
            b = bands[j]
            da = mosaic.isel(band=k, drop=True).astype(dtype)
            da = da.drop_vars([c for c in da.coords if c not in ("y", "x")])
            da.attrs = {
                "units": b.unit,
                "collection": spec.collection,
                "asset": b.asset,
                "resampling": b.resampling,
                "native_resolution": b.resolution,
                "scale": sorted({float(v) for v in scale[:, j]}),
                "offset": sorted({float(v) for v in offset[:, j]}),
                "stac_items": [it.id for it in items],
                "missing_inputs": [m.href for m in missing if m.band == b.name and m.item in ids],
            }
            out[b.name] = da
    return out


@dataclass(frozen=True)
class AcquisitionRead:
    """One acquisition to read onto a grid: what :func:`plan_reads` found for a modality.

    Attributes
    ----------
    spec
        The modality.
    bands
        The band set chosen for these items.
    items
        Items of one acquisition, best first (mosaic order).
    suffix
        Appended to the band names (``"_ref"``/``"_sec"`` for an InSAR pair, else ``""``).
    """

    spec: ModalitySpec
    bands: tuple[BandSpec, ...]
    items: tuple[pystac.Item, ...]
    suffix: str = ""


@dataclass(frozen=True)
class ReadPlan:
    """Everything needed to read the raw modality dataset on any window of a grid.

    Built once by :func:`plan_reads` (the catalog searches); :func:`read_plan` turns it into
    the lazy raw dataset of a grid or of any sub-grid (a tile plus its halo), so the same reads
    serve the lazy cube and the per-tile tasks of the store writer.
    """

    acquisitions: tuple[AcquisitionRead, ...]
    item_ids: tuple[str, ...]
    chosen: tuple[tuple[str, tuple[str, ...]], ...]
    datetime: str | None
    loader: Any = None
    read: ReadConfig = ReadConfig()
    """How the files are read and checked (travels with the plan to every tile task)."""
    missing: tuple[MissingInput, ...] = ()
    """Assets that could not be opened and are masked (``read.allow_missing``)."""


def _plan_modality(
    catalog: Catalog, spec: ModalitySpec, grid: Grid, datetime: str | None
) -> tuple[list[AcquisitionRead], Selection]:
    aoi = grid.bbox_lonlat()
    found = catalog.search_modality(spec, aoi, datetime=datetime)
    bands = tuple(choose_band_set(spec, [set(it.assets) for it in found]))
    sel = select_items(found, spec, aoi, required_assets=[b.asset for b in bands])
    if spec.select == "pair":
        return [
            AcquisitionRead(spec, bands, tuple(acq), f"_{suffix}")
            for suffix, acq in zip(("ref", "sec"), sel.acquisitions, strict=True)
        ], sel
    return [AcquisitionRead(spec, bands, tuple(sel.acquisitions[0]))], sel


def item_sensor(spec: ModalitySpec, item: pystac.Item) -> str:
    """Sensor band map of an optical item (``auto``: its ``glacierstack:sensor``/``platform``)."""
    from glacierstack.sensors import sensor_for_platform

    if spec.sensor != "auto":
        return str(spec.sensor)
    props = item.properties
    if props.get("glacierstack:sensor"):
        return str(props["glacierstack:sensor"])
    return sensor_for_platform(props.get("platform"), "optical")


def _check_acquisitions(acqs: Sequence[AcquisitionRead], read: ReadConfig) -> list[MissingInput]:
    """Open every asset header of ``acqs`` (``read.check_files``); see :func:`check_assets`."""
    if not read.check_files:
        return []
    return [m for acq in acqs for m in check_assets(acq.spec, acq.bands, acq.items, read)]


def _read_acquisition(
    acq: AcquisitionRead,
    grid: Grid,
    loader: RasterLoader,
    chunks: Chunks,
    read: ReadConfig,
    missing: Sequence[MissingInput] = (),
) -> dict[str, xr.DataArray]:
    out = _load_acquisition(loader, acq.spec, acq.bands, acq.items, grid, chunks, read, missing)
    if acq.spec.sensor is not None:
        sensor = item_sensor(acq.spec, acq.items[0])
        for da in out.values():
            da.attrs["sensor"] = sensor
    if not acq.suffix:
        return out
    for da in out.values():
        da.attrs["datetime"] = str(acq.items[0].datetime)
    return {f"{name}{acq.suffix}": da for name, da in out.items()}


def load_modality(
    catalog: Catalog,
    spec: ModalitySpec,
    grid: Grid,
    datetime: str | None,
    *,
    loader: RasterLoader | None = None,
    chunks: int = 1024,
    read: ReadConfig | None = None,
) -> tuple[dict[str, xr.DataArray], Selection]:
    """Search, select and stack one modality onto ``grid``.

    ``read`` (default :class:`~glacierstack.inputs.ReadConfig`) sets how files are read and
    checked; the default loader reads with it.

    Returns
    -------
    (dict, Selection)
        ``{canonical band name: lazy (y, x) DataArray}`` and the chosen items.
    """
    read = read or ReadConfig()
    acqs, sel = _plan_modality(catalog, spec, grid, datetime)
    missing = _check_acquisitions(acqs, read)
    out: dict[str, xr.DataArray] = {}
    for acq in acqs:
        out.update(
            _read_acquisition(
                acq, grid, loader or StackstacLoader(read=read), chunks, read, missing
            )
        )
    return out, sel


def plan_reads(
    catalog: str | Catalog | Mapping[str, str | Catalog],
    grid: Grid,
    datetime: str | None,
    modalities: Sequence[str] | None = None,
    *,
    loader: RasterLoader | None = None,
    provider: str | None = None,
    read: ReadConfig | None = None,
) -> ReadPlan:
    """Search the catalog(s) for every modality once; see :func:`load_modalities`.

    With ``read.check_files`` (default) every chosen asset's header is opened here, once.

    Returns
    -------
    ReadPlan
        The chosen items and band sets, readable on ``grid`` or any window of it.
    """
    if isinstance(catalog, Mapping):
        sources = {m: open_catalog(src, provider) for m, src in catalog.items()}
        names = list(modalities) if modalities is not None else list(sources)
        no_catalog = [m for m in names if m not in sources]
        if no_catalog:
            raise KeyError(
                f"modalities {no_catalog} have no catalog in the mapping {list(sources)}"
            )
    else:
        cat = open_catalog(catalog, provider)
        names = list(modalities) if modalities is not None else cat.provider.default_modalities
        sources = {m: cat for m in names}
    acqs: list[AcquisitionRead] = []
    item_ids: list[str] = []
    chosen: dict[str, tuple[str, ...]] = {}
    for name in names:
        cat_m = sources[name]
        found, sel = _plan_modality(cat_m, cat_m.provider.modality(name), grid, datetime)
        acqs += found
        item_ids += [i for i in sel.item_ids if i not in item_ids]
        chosen[name] = tuple(sel.item_ids)
    read = read or ReadConfig()
    missing = _check_acquisitions(acqs, read)
    if missing:
        warnings.warn(
            f"masked {len(missing)} unreadable inputs (allow_missing): "
            f"{[m.href for m in missing[:3]]}",
            stacklevel=2,
        )
    return ReadPlan(
        tuple(acqs),
        tuple(item_ids),
        tuple(chosen.items()),
        datetime,
        loader,
        read=read,
        missing=tuple(missing),
    )


def read_plan(plan: ReadPlan, grid: Grid, *, chunks: Chunks = 1024) -> xr.Dataset:
    """Build the lazy raw modality dataset of ``plan`` on ``grid``.

    ``chunks`` may give explicit ``(row sizes, column sizes)``: a tile task reads its window
    as one chunk of the whole region's reads, so its pixels equal the lazy cube's exactly
    (GDAL resamples a window of one warped grid, not a separately warped small grid).

    Raises
    ------
    ValueError
        If two modalities provide the same band.
    """
    loader = plan.loader or StackstacLoader(read=plan.read)
    data: dict[str, xr.DataArray] = {}
    for acq in plan.acquisitions:
        arrays = _read_acquisition(acq, grid, loader, chunks, plan.read, plan.missing)
        clash = set(arrays) & set(data)
        if clash:
            raise ValueError(
                f"modality {acq.spec.name!r} provides bands {sorted(clash)} already loaded"
            )
        data.update(arrays)
    ds = xr.Dataset(data, coords=grid.coords())
    ds = ds.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    ds.attrs = {
        "grid": grid.to_attrs(),
        "stac_items": list(plan.item_ids),
        "datetime": plan.datetime or "",
        "modalities": {k: list(v) for k, v in plan.chosen},
        "read": plan.read.to_attrs(),
        "missing_inputs": [m.href for m in plan.missing],
    }
    sensors = [str(v.attrs["sensor"]) for v in data.values() if "sensor" in v.attrs]
    if sensors:
        ds.attrs["sensor"] = sensors[0]
    return ds


def load_modalities(
    catalog: str | Catalog | Mapping[str, str | Catalog],
    grid: Grid,
    datetime: str | None,
    modalities: Sequence[str] | None = None,
    *,
    loader: RasterLoader | None = None,
    chunks: int = 1024,
    provider: str | None = None,
    read: ReadConfig | None = None,
) -> xr.Dataset:
    """Load the raw modality dataset on ``grid`` (lazy).

    Parameters
    ----------
    catalog
        Where to search: a provider name, STAC API URL, static catalog path or an opened
        :class:`~glacierstack.catalog.Catalog` (see :func:`~glacierstack.catalog.open_catalog`);
        or a mapping ``{modality: source}`` to take modalities from different catalogs
        (e.g. S2 from Earth Search, velocity from a local ITS_LIVE catalog).
    grid
        Target grid; every band is resampled onto it once, here.
    datetime
        Window for the time-dependent modalities (``"2018-10-01/2018-10-31"``, ``"2018-10"``...).
        Static modalities (DEM, velocity mosaics) ignore it.
    modalities
        Modality names (``s2``, ``dem``, ``lst``, ``velocity``, ``insar``...); default: the
        provider's default modalities (the keys of a mapping ``catalog``).
    loader
        A :class:`RasterLoader` (default :class:`StackstacLoader`).
    chunks
        Spatial Dask chunk size in pixels.
    provider
        Provider config name or YAML path, overriding detection (applies to every source).
    read
        How pixels are read and checked (:class:`~glacierstack.inputs.ReadConfig`: GDAL
        options and HTTP headers carried to every Dask worker, ``allow_missing``, the
        physical range check). Default: ``ReadConfig()``.

    Returns
    -------
    xarray.Dataset
        Variables ``B01..B12`` (reflectance), ``elevation`` (m), ``lst`` (K), ``velocity`` or
        ``vx``/``vy`` (m/yr), ``s1_ref``/``s1_sec`` (complex64), float32 with NaN for nodata;
        attrs ``grid``, ``stac_items``, ``datetime``, ``modalities``, ``read`` and
        ``missing_inputs`` (hrefs masked under ``allow_missing``).

    Raises
    ------
    EmptySearchError
        If a modality has no item (message names collection, bbox and dates).
    KeyError
        For an unknown modality or missing assets.
    InputError
        For an unreadable file (without ``allow_missing``) or one that contradicts its STAC
        metadata; the message names band and href. Values outside the band's physical
        range raise it when the pixels are computed.
    """
    plan = plan_reads(
        catalog, grid, datetime, modalities, loader=loader, provider=provider, read=read
    )
    return read_plan(plan, grid, chunks=chunks)
