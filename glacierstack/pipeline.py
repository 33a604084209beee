"""From a STAC catalog to a finished Zarr cube: catalog -> stack -> features -> labels -> store.

:func:`build_cube` is the Python API behind ``glacierstack cube``. It stays lazy until the
store writes the cube tile by tile, so memory is bounded by the chunk size, not the region
(the only eager step is the PCA fit, a one-pass Dask reduction over the S2 bands).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from glacierstack import storage
from glacierstack.grid import Grid
from glacierstack.labels import LabelRules, Outlines, make_labels
from glacierstack.layers import LAYER_GROUPS, S2_BANDS, resolve_layers
from glacierstack.runner import RunnerOptions, dask_session
from glacierstack.store import write_cube

__all__ = [
    "TRUTH_COLLECTION",
    "build_cube",
    "modalities_for_layers",
    "plan_layers",
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
    if not catalog.is_static or TRUTH_COLLECTION not in catalog.collections():
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


def plan_layers(
    catalog: Any,
    grid: Grid,
    datetime: str | None,
    layers: str | Sequence[str] | None,
    modalities: Sequence[str] | None,
) -> tuple[tuple[str, ...], list[str], dict[str, str]]:
    """Layers to compute, modalities to load, and the layers left out with the reason.

    ``layers=None`` means every layer computable from what the catalog offers over ``grid``;
    named layers must all be computable (the error says why one is not).
    """
    from glacierstack.availability import catalog_bands, choose_modalities, layer_status

    found = catalog_bands(
        catalog, grid.bbox_lonlat(), datetime=datetime, modalities=list(modalities or []) or None
    )
    chosen = list(modalities) if modalities else choose_modalities(found, catalog.provider)
    variables = {v for m in chosen if m in found for v in found[m][0]}
    sensor = next((found[m][1] for m in chosen if m in found and found[m][1]), None)
    status = {s.name: s for s in layer_status(variables, sensor)}
    if layers is None:
        names = tuple(n for n, s in status.items() if s.computable)
        if not names:
            raise ValueError(
                f"no layer is computable from catalog {catalog.source!r} over {grid} "
                f"(modalities found: {sorted(found)})"
            )
    else:
        names = resolve_layers(layers)  # type: ignore[arg-type]
        bad = {n: status[n].reason for n in names if not status[n].computable}
        if bad:
            raise ValueError(
                f"layers not computable from catalog {catalog.source!r} "
                f"(modalities {chosen}): {bad}; see `glacierstack layers --catalog ...`"
            )
        needed = {v for n in names for v in status[n].inputs}
        needed |= {"B03", "B04", "B08"} & variables  # the labels' water/vegetation rules
        chosen = [m for m in chosen if m not in found or set(found[m][0]) & needed]
    skipped = {n: s.reason for n, s in status.items() if n not in names and not s.computable}
    return names, chosen, skipped


def _describe(outlines: Outlines | None) -> str | None:
    if outlines is None:
        return None
    if isinstance(outlines, str | os.PathLike):
        return str(outlines)
    return f"<{type(outlines).__name__} with {len(outlines)} features>"


def _open_catalog(catalog: Any) -> Any:
    """``open_catalog``, with a JSON syntax error naming the catalog file it came from."""
    import json

    from glacierstack.catalog import open_catalog

    try:
        return open_catalog(catalog)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"catalog {catalog} (or a file it links to) is not valid JSON: {err.msg} at line "
            f"{err.lineno} column {err.colno}"
        ) from err


MIN_REGION_PIXELS = 8
"""Smallest region side (pixels): the neighbourhood layers (terrain, texture) need windows."""


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
    runner: RunnerOptions | None = None,
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
        Layer and/or group names, see :func:`glacierstack.layers.resolve_layers`; default
        (``None``): every layer computable from what the catalog offers (``"all"``: the 30
        layers, an error if one is not computable).
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
    runner
        Dask scheduler and worker settings (:class:`~glacierstack.runner.RunnerOptions`);
        default: the active ``distributed.Client``, else the threaded scheduler.

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
    """
    from glacierstack.features import compute_features
    from glacierstack.stack import load_modalities

    if (bbox is None) == (grid is None):
        raise ValueError("give exactly one of bbox=... or grid=...")
    if chunk_size < 16:
        raise ValueError(f"chunk_size must be >= 16 pixels, got {chunk_size}")
    if not resolution > 0:
        raise ValueError(f"resolution must be a positive number of metres, got {resolution}")
    inputs = [
        str(p)
        for p in (catalog, glacier_outlines, debris_outlines)
        if isinstance(p, str | os.PathLike) and Path(p).exists()
    ]
    storage.preflight(out, "cube", inputs=inputs)  # before any work: never an input, never foreign
    if grid is None:
        grid = Grid.from_bbox(bbox, bbox_crs=bbox_crs, resolution=resolution)  # type: ignore[arg-type]
    grid.check_min_size(MIN_REGION_PIXELS)
    label_rules = label_rules or LabelRules()
    skipped: dict[str, str] = {}
    if isinstance(catalog, Mapping):
        names = resolve_layers(layers)  # type: ignore[arg-type]
        source: Any = catalog
        truth_cat = None
        mods = list(modalities) if modalities is not None else list(catalog)
    else:
        source = _open_catalog(catalog)
        truth_cat = source
        if isinstance(modalities, Mapping):
            raise TypeError("a modalities mapping needs catalog to be a mapping too")
        names, mods, skipped = plan_layers(source, grid, datetime, layers, modalities)

    with dask_session(runner or RunnerOptions(progress=progress)) as session:
        raw = load_modalities(source, grid, datetime, mods, chunks=chunk_size)
        feats = compute_features(raw, names, **dict(feature_options or {}))

        # inputs of the labelling rules
        missing = sorted({"B03", "B04", "B08"} - set(map(str, raw.data_vars)))
        if missing:
            raise KeyError(
                f"the labels' water/vegetation rules need green, red and NIR (B03, B04, B08); "
                f"catalog {getattr(source, 'source', source)!r} lacks {missing}"
            )
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
        outline_source.update(
            glacier=_describe(glacier_outlines), debris=_describe(debris_outlines)
        )
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
            "sensor": raw.attrs.get("sensor", ""),
            "skipped_layers": skipped,
        }  # fmt: skip
        items = list(raw.attrs.get("stac_items", [])) + truth_item
        # what decides whether an unfinished store may be resumed: the request, not derived values
        request = {
            k: attrs[k]
            for k in ("catalog", "datetime", "bbox", "bbox_crs", "label_rules", "outlines")
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
            runner=session,
            inputs=inputs,
        )
