"""From a STAC catalog to a finished Zarr cube: catalog -> stack -> features -> labels -> store.

:func:`build_cube` is the Python API behind ``glacierstack cube``. It stays lazy until the
store writes the cube tile by tile, so memory is bounded by the chunk size, not the region
(the only eager step is the PCA fit, a one-pass Dask reduction over the S2 bands).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np

from glacierstack.grid import Grid
from glacierstack.inputs import ReadConfig
from glacierstack.labels import LabelRules, Outlines, make_labels
from glacierstack.layers import LAYER_GROUPS, S2_BANDS, resolve_layers
from glacierstack.store import write_cube

__all__ = [
    "TRUTH_COLLECTION",
    "build_cube",
    "modalities_for_layers",
    "scheduler_context",
    "truth_outlines",
]

TRUTH_COLLECTION = "synthetic-truth"
"""Collection of the synthetic catalog holding the truth labels and outlines."""

# raw variables each layer group reads (any one of the names is enough for the group)
_GROUP_VARS: dict[str, tuple[str, ...]] = {
    "optical": S2_BANDS,
    "indices": S2_BANDS,
    "pca": S2_BANDS,
    "tasseled_cap": S2_BANDS,
    "texture": S2_BANDS,
    "topography": ("elevation",),
    "thermal": ("lst",),
    "velocity": ("velocity", "vx", "vy"),
    "insar": ("s1", "s1_ref", "coherence", "phase"),
}


def modalities_for_layers(provider: Any, layers: Sequence[str]) -> list[str]:
    """Modality names of a provider config needed to compute ``layers`` (and the labels).

    The S2 modality is always included (the labels' water/vegetation rules use NDWI/NDVI).

    Parameters
    ----------
    provider
        A :class:`glacierstack.modalities.ProviderConfig`.
    layers
        Layer names (already resolved).

    Returns
    -------
    list of str
        Modality names in the provider's declaration order; default modalities are preferred
        over optional ones providing the same variables.

    Raises
    ------
    KeyError
        If the provider has no modality for some requested layers.
    """
    groups = ["optical"] + [g for g, names in LAYER_GROUPS.items() if set(names) & set(layers)]
    chosen: list[str] = []
    missing: list[str] = []
    mods = sorted(provider.modalities, key=lambda m: not m.default)  # stable: defaults first
    for group in dict.fromkeys(groups):
        wanted = set(_GROUP_VARS[group])
        hit = next((m.name for m in mods if wanted & set(m.band_names)), None)
        if hit is None:
            missing += [n for n in LAYER_GROUPS[group] if n in layers] or [group]
        elif hit not in chosen:
            chosen.append(hit)
    if missing:
        raise KeyError(
            f"provider {provider.name!r} has no modality for layers {missing} (modalities: "
            f"{[m.name for m in provider.modalities]}); choose other --layers or pass a "
            "mapping {modality: catalog} to take them from another catalog"
        )
    order = [m.name for m in provider.modalities]
    return sorted(chosen, key=order.index)


def truth_outlines(catalog: Any, grid: Grid) -> tuple[str, str, str] | None:
    """Glacier/debris outline hrefs of a catalog's ``synthetic-truth`` item over ``grid``.

    Returns
    -------
    tuple of str or None
        ``(glacier_href, debris_href, item_id)``, or None if the catalog has no truth collection.

    Raises
    ------
    KeyError
        If the truth item lacks an outline asset.
    """
    if TRUTH_COLLECTION not in catalog.collections():  # static catalogs and APIs alike
        return None
    items = catalog.search(TRUTH_COLLECTION, grid.bbox_lonlat(), raise_empty=False)
    if not items:
        return None
    item = items[0]
    hrefs = []
    for key in ("glacier_outlines", "debris_outlines"):
        if key not in item.assets:
            raise KeyError(
                f"{TRUTH_COLLECTION} item {item.id!r} has no asset {key!r} "
                f"(assets: {sorted(item.assets)})"
            )
        hrefs.append(item.assets[key].get_absolute_href() or item.assets[key].href)
    return hrefs[0], hrefs[1], item.id


@contextlib.contextmanager
def scheduler_context(scheduler: str | None) -> Iterator[Any]:
    """Run the enclosed Dask work on a chosen scheduler.

    Parameters
    ----------
    scheduler
        ``None`` (whatever is active: a ``distributed.Client`` if one exists, else threads),
        ``"threads"``, ``"synchronous"``, ``"local"`` / ``"local:N"`` (start a LocalCluster
        with N single-threaded worker processes, default N = CPU count), or the address of a
        running Dask scheduler (``tcp://host:8786``).

    Yields
    ------
    distributed.Client or None
    """
    if scheduler is None:
        yield None
    elif scheduler in ("threads", "synchronous", "single-threaded"):
        with dask.config.set(scheduler=scheduler):
            yield None
    else:
        from distributed import Client, LocalCluster

        if scheduler == "local" or scheduler.startswith("local:"):
            n = int(scheduler.split(":", 1)[1]) if ":" in scheduler else (os.cpu_count() or 1)
            with (
                LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None) as cl,
                Client(cl) as client,
            ):
                yield client
        else:
            with Client(scheduler) as client:
                yield client


def _describe(outlines: Outlines | None) -> str | None:
    if outlines is None:
        return None
    if isinstance(outlines, str | os.PathLike):
        return str(outlines)
    return f"<{type(outlines).__name__} with {len(outlines)} features>"


def build_cube(
    catalog: Any,
    out: str | os.PathLike[str],
    *,
    bbox: Sequence[float] | None = None,
    bbox_crs: str = "EPSG:4326",
    grid: Grid | None = None,
    datetime: str | None = None,
    layers: str | Sequence[str] | None = None,
    resolution: float = 10.0,
    glacier_outlines: Outlines | None = None,
    debris_outlines: Outlines | None = None,
    label_rules: LabelRules | None = None,
    modalities: Sequence[str] | Mapping[str, Any] | None = None,
    feature_options: Mapping[str, Any] | None = None,
    chunk_size: int = 512,
    overwrite: bool = False,
    progress: bool = True,
    provider: str | None = None,
    read: ReadConfig | None = None,
) -> Path:
    """Build the feature + label cube of a region from a STAC catalog into Zarr.

    Parameters
    ----------
    catalog
        Provider name (``earth-search``...), STAC API URL, path to a static catalog, an opened
        :class:`~glacierstack.catalog.Catalog`, or a mapping ``{modality: source}``.
    out
        Zarr store to write (a local directory).
    bbox, bbox_crs
        Region ``(xmin, ymin, xmax, ymax)`` in ``bbox_crs``; the grid is its UTM zone at
        ``resolution``. Give either ``bbox`` or ``grid``.
    grid
        Explicit target grid (instead of ``bbox``).
    datetime
        Acquisition window (``"2018-10-01/2018-10-31"``, ``"2018-10"``...).
    layers
        Layer and/or group names (default all 30), see :func:`glacierstack.layers.resolve_layers`.
    resolution
        Pixel size in metres when the grid is built from ``bbox``.
    glacier_outlines, debris_outlines
        Outline files or GeoDataFrames (any vector format and CRS). If both are None and the
        catalog has a ``synthetic-truth`` collection, its outline assets are used; otherwise
        the labels hold only background/water/vegetation (a warning says so).
    label_rules
        NDWI/NDVI thresholds and outline options (default
        :class:`~glacierstack.labels.LabelRules()`).
    modalities
        Modality names to load (default: those the layers need), or a mapping
        ``{modality: catalog}``.
    feature_options
        Extra keyword arguments of :func:`glacierstack.features.compute_features`
        (``glcm``, ``coherence_window``, ``edges``, ``flat_aspect``, ``pca``).
    chunk_size
        Spatial chunk (and Zarr tile) size in pixels.
    overwrite
        Replace an existing store. An *incomplete* store of the same build is resumed
        without it.
    progress
        Show progress bars.
    provider
        Provider config (name or YAML path) for the catalog(s), instead of the one detected
        from the URL, the recorded links or the collection ids.
    read
        How the input files are read and checked
        (:class:`~glacierstack.inputs.ReadConfig`: GDAL options and HTTP headers carried to
        every Dask worker, ``allow_missing``, physical range check).

    Returns
    -------
    pathlib.Path
        The finished store (open it with :func:`glacierstack.store.open_cube`).

    Raises
    ------
    glacierstack.catalog.EmptySearchError
        A modality has no scene for the region and dates (names collection, bbox, dates).
    KeyError
        A needed asset or modality is missing.
    ValueError
        Bad bbox/grid, unreadable outlines, or a layer with no valid pixel in the region.
    glacierstack.inputs.InputError
        An input file is unreadable (names the href) or contradicts its STAC metadata.
    """
    from glacierstack.catalog import open_catalog
    from glacierstack.features import compute_features
    from glacierstack.stack import load_modalities

    if (bbox is None) == (grid is None):
        raise ValueError("give exactly one of bbox=... or grid=...")
    if grid is None:
        grid = Grid.from_bbox(bbox, bbox_crs=bbox_crs, resolution=resolution)  # type: ignore[arg-type]
    names = resolve_layers(layers)  # type: ignore[arg-type]
    label_rules = label_rules or LabelRules()

    if isinstance(catalog, Mapping):
        source: Any = catalog
        truth_cat = None
        mods = list(modalities) if modalities is not None else list(catalog)
    else:
        source = open_catalog(catalog, provider)
        truth_cat = source
        if isinstance(modalities, Mapping):
            raise TypeError("a modalities mapping needs catalog to be a mapping too")
        mods = (
            list(modalities)
            if modalities is not None
            else modalities_for_layers(source.provider, names)
        )

    raw = load_modalities(
        source, grid, datetime, mods, chunks=chunk_size, provider=provider, read=read
    )
    feats = compute_features(raw, names, **dict(feature_options or {}))

    # inputs of the labelling rules
    idx = feats if {"NDWI", "NDVI"} <= set(names) else compute_features(raw, ["NDWI", "NDVI"])
    valid = np.isfinite(feats).all("band")

    outline_source: dict[str, Any] = {}
    truth_item: list[str] = []
    if glacier_outlines is None and debris_outlines is None and truth_cat is not None:
        found = truth_outlines(truth_cat, grid)
        if found is not None:
            glacier_outlines, debris_outlines, item_id = found
            truth_item = [item_id]
            outline_source["truth_item"] = item_id
    if glacier_outlines is None:
        warnings.warn(
            "no glacier outlines given (and no synthetic-truth collection in the catalog): "
            "the labels hold only background, water and vegetation",
            stacklevel=2,
        )
    outline_source.update(glacier=_describe(glacier_outlines), debris=_describe(debris_outlines))
    labels = make_labels(
        grid,
        glacier_outlines=glacier_outlines,
        debris_outlines=debris_outlines,
        ndwi=idx.sel(band="NDWI", drop=True),
        ndvi=idx.sel(band="NDVI", drop=True),
        valid=valid,
        rules=label_rules,
        chunks=chunk_size,
    )
    attrs = {
        "catalog": str(source.source) if not isinstance(source, Mapping) else {
            k: str(v) for k, v in source.items()
        },
        "datetime": datetime or "",
        "bbox": list(bbox) if bbox is not None else None,
        "bbox_crs": bbox_crs if bbox is not None else None,
        "modalities": raw.attrs.get("modalities", {}),
        "feature_params": feats.attrs.get("feature_params", ""),
        "label_rules": label_rules.to_attrs(),
        "label_precedence": labels.attrs["precedence"],
        "outlines": outline_source,
        "nodata_rule": "labels are 255 where any feature layer is NaN",
        "read": raw.attrs["read"],
        "missing_inputs": raw.attrs["missing_inputs"],
    }  # fmt: skip
    items = list(raw.attrs.get("stac_items", [])) + truth_item
    # what decides whether an unfinished store may be resumed: the request, not derived values
    request = {
        k: attrs[k] for k in ("catalog", "datetime", "bbox", "bbox_crs", "label_rules", "outlines")
    } | {"layers": list(names), "modalities": mods, "feature_options": repr(feature_options)}
    return write_cube(
        feats,
        labels,
        out,
        grid=grid,
        stac_items=items,
        attrs=attrs,
        resume_key=request,
        chunk_size=chunk_size,
        overwrite=overwrite,
        progress=progress,
    )
