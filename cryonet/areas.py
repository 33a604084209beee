"""Per-glacier area (total, clean ice, debris) and area change between two mapped dates.

Glaciers are attributed by inventory outlines (RGI-like, one polygon per glacier with an id),
as in DL4GAM: each mosaic pixel inside an outline belongs to that glacier; with a buffer of
``buffer_m`` metres, pixels outside every outline but within ``buffer_m`` of one belong to the
*nearest* outline (so neighbouring glaciers never share a pixel and an advancing or
mis-registered margin is still counted). A glacier's mapped area is the number of its pixels
whose class is clean ice or debris, times the pixel area; clean and debris areas likewise.

Uncertainty interval (stated method)
------------------------------------
From the mosaic's (calibrated, possibly ensemble- and TTA-averaged) class probabilities ``p``
of each pixel, with ``p_g`` the summed probability of the group (glacier = clean + debris,
clean, or debris):

* expected *commission* ``C = sum over pixels mapped as the group of (1 - p_g)`` — the area
  mapped as glacier that is, in expectation, not glacier;
* expected *omission* ``O = sum over the other pixels of p_g`` — the area, in expectation,
  missed;
* interval ``[A - C, A + O]`` (times the pixel area).

If the probabilities are calibrated (temperature scaling, :mod:`cryonet.calibration`), ``C``
and ``O`` are the expected false-positive and false-negative areas; members of an ensemble
that disagree lower ``p_g`` at the disputed pixels and so widen the interval. The interval of
the change ``A2 - A1`` is ``[low2 - high1, high2 - low1]`` (the extremes of both intervals).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from glacierstack import storage
from glacierstack.grid import Grid

__all__ = [
    "AREA_GROUPS",
    "AreaOptions",
    "area_change",
    "glacier_areas",
    "labels_as_mosaic",
    "plot_area_change",
]

AREA_GROUPS: Mapping[str, tuple[str, ...]] = {
    "area": ("clean_ice", "debris"),
    "clean": ("clean_ice",),
    "debris": ("debris",),
}
"""Column prefix -> class names whose pixels it counts."""


@dataclass(frozen=True)
class AreaOptions:
    """How glaciers are attributed."""

    id_column: str = "RGIId"
    """Inventory column holding the glacier id."""
    buffer_m: float = 0.0
    """Also count pixels within this distance (m) of an outline (to the nearest outline)."""


def labels_as_mosaic(cube: str | os.PathLike[str]) -> Any:
    """Return a cube's reference labels in the mosaic layout (one-hot probabilities).

    Lets :func:`glacier_areas` / :func:`area_change` measure the *reference* areas of a
    labelled cube (e.g. the synthetic truth) exactly as they measure a prediction.
    """
    import xarray as xr

    from glacierstack.classes import class_table
    from glacierstack.store import open_cube

    ds = open_cube(cube)
    labels = ds["labels"].values
    labels = np.where(np.isfinite(labels), labels, 255).astype(np.uint8)
    table = class_table()
    ids = [int(str(c["id"])) for c in table]
    probs = np.stack([(labels == i) * 255 for i in ids]).astype(np.uint8)
    return xr.Dataset(
        {"classes": (("y", "x"), labels), "probabilities": (("class", "y", "x"), probs)},
        coords={"class": [str(c["name"]) for c in table], "y": ds["y"].values, "x": ds["x"].values},
        attrs={
            "grid": ds.attrs["grid"],
            "classes": table,
            "probability_scale": 1 / 255,
            "nodata": 255,
        },
    )


def _mosaic(source: Any) -> Any:
    from cryonet.infer import open_mosaic

    return source if hasattr(source, "data_vars") else open_mosaic(source)


def _inventory(outlines: Any, crs: Any, id_column: str) -> Any:
    import geopandas as gpd

    gdf = outlines if isinstance(outlines, gpd.GeoDataFrame) else gpd.read_file(outlines)
    where = "the inventory" if isinstance(outlines, gpd.GeoDataFrame) else str(outlines)
    if id_column not in gdf.columns:
        raise ValueError(
            f"{where} has no id column {id_column!r} (columns: {list(gdf.columns)}); "
            "pass id_column (--id-column)"
        )
    if gdf[id_column].duplicated().any():
        dup = gdf.loc[gdf[id_column].duplicated(), id_column].tolist()[:5]
        raise ValueError(f"{where}: glacier ids in {id_column!r} are not unique, e.g. {dup}")
    return gdf.to_crs(crs).reset_index(drop=True)


def glacier_index(inventory: Any, grid: Grid, buffer_m: float = 0.0) -> np.ndarray:
    """Rasterise outlines to an ``int32`` map of 1-based row numbers (0 = no glacier).

    Pixels are inside a polygon if their centre is; with ``buffer_m > 0`` pixels within that
    distance of an outline (and inside none) take the number of the nearest one.
    """
    import rasterio.features
    from scipy import ndimage

    shapes = [(g, i + 1) for i, g in enumerate(inventory.geometry) if g is not None]
    index = rasterio.features.rasterize(
        shapes, out_shape=grid.shape, transform=grid.transform, fill=0, dtype="int32"
    )
    if buffer_m > 0 and (index > 0).any():
        dist, (iy, ix) = ndimage.distance_transform_edt(index == 0, return_indices=True)
        near = (index == 0) & (dist * grid.resolution <= buffer_m)
        index[near] = index[iy[near], ix[near]]
    return index


def _class_ids(table: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[int]:
    by_name = {str(c["name"]): int(c["id"]) for c in table}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"mosaic classes {list(by_name)} lack {missing} needed for areas")
    return [by_name[n] for n in names]


def glacier_areas(
    mosaic: Any,
    outlines: Any,
    options: AreaOptions = AreaOptions(),
) -> Any:
    """Measure the mapped area per inventory glacier, with the interval of the module docs.

    Parameters
    ----------
    mosaic
        Zarr store from :func:`cryonet.infer.predict` (or the opened Dataset).
    outlines
        Inventory outlines: a GeoPackage/shapefile path or a GeoDataFrame (any CRS).
    options
        Id column and buffer.

    Returns
    -------
    pandas.DataFrame
        Indexed by glacier id; columns ``inventory_km2`` (outline area), ``n_pixels``
        (attributed pixels) and for each of ``area`` (clean + debris), ``clean`` and
        ``debris``: ``<g>_km2``, ``<g>_low_km2``, ``<g>_high_km2``.

    Notes
    -----
    The class map, the group probabilities and the id raster of the region are held in
    memory (about 10 bytes per pixel).
    """
    import pandas as pd

    ds = _mosaic(mosaic)
    grid = Grid.from_attrs(ds.attrs["grid"])
    inv = _inventory(outlines, grid.crs, options.id_column)
    index = glacier_index(inv, grid, options.buffer_m).ravel()
    n = len(inv)
    classes = ds["classes"].values.ravel()
    scale = float(ds.attrs.get("probability_scale", 1 / 255))
    px_km2 = grid.resolution**2 / 1e6
    out = {
        "inventory_km2": inv.geometry.area.to_numpy() / 1e6,
        "n_pixels": np.bincount(index, minlength=n + 1)[1:],
    }
    valid = classes != int(ds.attrs.get("nodata", 255))
    for col, names in AREA_GROUPS.items():
        ids = _class_ids(ds.attrs["classes"], names)
        mapped = np.isin(classes, ids)
        p = ds["probabilities"].sel({"class": list(names)}).sum("class").values.ravel() * scale
        p = np.clip(p, 0.0, 1.0)
        area = np.bincount(index, weights=mapped, minlength=n + 1)[1:]
        commission = np.bincount(index, weights=np.where(mapped, 1.0 - p, 0.0), minlength=n + 1)
        omission = np.bincount(index, weights=np.where(~mapped & valid, p, 0.0), minlength=n + 1)
        out[f"{col}_km2"] = area * px_km2
        out[f"{col}_low_km2"] = (area - commission[1:]) * px_km2
        out[f"{col}_high_km2"] = (area + omission[1:]) * px_km2
    df = pd.DataFrame(out, index=pd.Index(inv[options.id_column].astype(str), name="glacier_id"))
    return df


def area_change(
    mosaics: Sequence[Any],
    outlines: Any,
    labels: Sequence[str],
    out: str | os.PathLike[str] | None = None,
    options: AreaOptions = AreaOptions(),
    *,
    overwrite: bool = False,
) -> Any:
    """Per-glacier areas at two dates and their change (CSV + GeoPackage + plot).

    Parameters
    ----------
    mosaics
        Two mosaics of the same grid (earlier date first).
    outlines
        Inventory outlines with ids (see :func:`glacier_areas`).
    labels
        Two date labels (e.g. ``["2018", "2028"]``) used as column suffixes.
    out
        If given, a folder (path or URL) that receives ``areas.csv``, ``areas.gpkg`` (the
        outlines with every column, layer ``glaciers``) and ``area_change.png``.
    options
        Id column and buffer.
    overwrite
        Replace existing files in ``out``.

    Returns
    -------
    pandas.DataFrame
        Columns ``<col>_<label>`` for every column of :func:`glacier_areas`, then
        ``change_km2``, ``change_low_km2``, ``change_high_km2`` and ``change_pct`` (of the
        earlier mapped area) for the total glacier area, and ``clean_change_km2`` /
        ``debris_change_km2``.
    """
    import pandas as pd

    if len(mosaics) != 2 or len(labels) != 2 or labels[0] == labels[1]:
        raise ValueError(f"need two mosaics and two distinct date labels, got {labels}")
    dss = [_mosaic(m) for m in mosaics]
    grids = [Grid.from_attrs(d.attrs["grid"]) for d in dss]
    if grids[0] != grids[1]:
        raise ValueError(
            f"mosaics {mosaics[0]} and {mosaics[1]} are on different grids "
            f"({grids[0]} vs {grids[1]}); map both dates on the same grid"
        )
    a, b = (glacier_areas(d, outlines, options) for d in dss)
    df = pd.concat([a.add_suffix(f"_{labels[0]}"), b.add_suffix(f"_{labels[1]}")], axis=1)
    df = df.drop(columns=[f"inventory_km2_{labels[1]}"]).rename(
        columns={f"inventory_km2_{labels[0]}": "inventory_km2"}
    )
    df["change_km2"] = b["area_km2"] - a["area_km2"]
    df["change_low_km2"] = b["area_low_km2"] - a["area_high_km2"]
    df["change_high_km2"] = b["area_high_km2"] - a["area_low_km2"]
    with np.errstate(divide="ignore", invalid="ignore"):
        df["change_pct"] = 100.0 * df["change_km2"] / a["area_km2"].where(a["area_km2"] > 0)
    df["clean_change_km2"] = b["clean_km2"] - a["clean_km2"]
    df["debris_change_km2"] = b["debris_km2"] - a["debris_km2"]
    if out is not None:  # a URL: written in a local copy of the folder, uploaded at the end
        with storage.local_folder(out) as local:
            _write(df, outlines, dss[0], labels, local, options, overwrite)
    return df


def _write(
    df: Any,
    outlines: Any,
    ds: Any,
    labels: Sequence[str],
    out: Path,
    options: AreaOptions,
    overwrite: bool,
) -> None:
    files = [out / "areas.csv", out / "areas.gpkg", out / "area_change.png"]
    existing = [str(f) for f in files if f.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing} exist; pass overwrite=True (--overwrite) to replace")
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(files[0], float_format="%.6f")
    grid = Grid.from_attrs(ds.attrs["grid"])
    inv = _inventory(outlines, grid.crs, options.id_column)
    gdf = inv[[options.id_column, "geometry"]].merge(
        df.reset_index().rename(columns={"glacier_id": options.id_column}), on=options.id_column
    )
    with tempfile.TemporaryDirectory(dir=out, prefix=".gpkg-") as tmp:
        part = Path(tmp) / "areas.gpkg"
        gdf.to_file(part, layer="glaciers", driver="GPKG", engine="pyogrio")
        storage.publish(part, files[1])
    plot_area_change(df, labels, files[2])


def plot_area_change(
    df: Any, labels: Sequence[str], path: str | os.PathLike[str], top: int = 15
) -> Path:
    """Bar chart of the largest glaciers' areas at both dates, with uncertainty intervals."""
    from cryonet._plot import subplots

    d = df.sort_values(f"area_km2_{labels[0]}", ascending=False).head(top)
    x = np.arange(len(d))
    fig, ax = subplots(figsize=(max(5.0, 0.45 * len(d) + 2), 3.8))
    for k, (lab, off) in enumerate(zip(labels, (-0.2, 0.2), strict=True)):
        v = d[f"area_km2_{lab}"].to_numpy()
        err = np.vstack(
            [v - d[f"area_low_km2_{lab}"].to_numpy(), d[f"area_high_km2_{lab}"].to_numpy() - v]
        )
        ax.bar(x + off, v, 0.4, yerr=np.clip(err, 0, None), capsize=2, label=lab, color=f"C{k}")
    ax.set_xticks(x)
    ax.set_xticklabels(d.index, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("glacier area (km²)")
    ax.set_title("Mapped glacier area per inventory glacier (interval: expected errors)")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
