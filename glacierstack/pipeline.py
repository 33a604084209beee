"""From a STAC catalog to a finished Zarr cube: catalog -> stack -> features -> labels -> store.

:func:`build_cube` is the Python API behind ``glacierstack cube``. It searches the catalogs
once, fits the PCA on a fixed-size stratified sample, then writes the cube with one task per
output tile (:mod:`glacierstack.tiles`), so memory is bounded by the tile size, not the region,
and a Dask cluster spends its time computing rather than scheduling.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from dask.base import tokenize

from glacierstack import storage
from glacierstack.features import FeatureOptions, PCASample
from glacierstack.grid import Grid
from glacierstack.inputs import ReadConfig
from glacierstack.labels import PRECEDENCE, LabelRules, Outlines, _polygons_in_crs
from glacierstack.layers import LAYER_GROUPS, S2_BANDS, resolve_layers
from glacierstack.provenance import location_ref
from glacierstack.runner import DaskSession, RunnerOptions, ensure_session
from glacierstack.schemes import ClassScheme, burn_outline_classes, get_scheme
from glacierstack.stack import plan_reads, read_plan
from glacierstack.store import write_cube
from glacierstack.tiles import TilePlan, fit_pca_windows, needs_pca, tile_cube

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
        return location_ref(outlines)  # no local path in the cube's metadata
    return f"<{type(outlines).__name__} with {len(outlines)} features>"


def _open_catalog(catalog: Any, provider: Any = None) -> Any:
    """``open_catalog``, with a JSON syntax error naming the catalog file it came from."""
    import json

    from glacierstack.catalog import open_catalog

    try:
        return open_catalog(catalog, provider)
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
    scheme: str | ClassScheme = "cryonet5",
    modalities: Sequence[str] | Mapping[str, Any] | None = None,
    feature_options: FeatureOptions | None = None,
    chunk_size: int = 512,
    overwrite: bool = False,
    progress: bool = True,
    runner: RunnerOptions | DaskSession | None = None,
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
        Layer and/or group names, see :func:`glacierstack.layers.resolve_layers`; default
        (``None``): every layer computable from what the catalog offers (``"all"``: the 30
        layers, an error if one is not computable).
    resolution
        Pixel size in metres when the grid is built from ``bbox``.
    glacier_outlines, debris_outlines
        Outline files or GeoDataFrames (any vector format and CRS). If both are None and the
        catalog has a ``synthetic-truth`` collection, its outline assets are used; otherwise
        the labels hold only background/water/vegetation (a warning says so).
    scheme
        Class scheme name (``cryonet5``, ``glacier``, ``ice-debris``), YAML file or
        :class:`~glacierstack.schemes.ClassScheme`; the water/vegetation rules only run when
        the scheme keeps a rule class (then green, red and NIR are needed).
    label_rules
        NDWI/NDVI thresholds and outline options (default
        :class:`~glacierstack.labels.LabelRules()`).
    modalities
        Modality names to load (default: those the layers need), or a mapping
        ``{modality: catalog}``.
    feature_options
        A :class:`~glacierstack.features.FeatureOptions` (GLCM, coherence window, edges, flat
        aspect, PCA); default ``FeatureOptions()``. Its Dask token is part of the build's
        request: a resumed build must use equal options.
    chunk_size
        Spatial chunk (and Zarr tile) size in pixels.
    overwrite
        Replace an existing store. An *incomplete* store of the same build is resumed
        without it.
    progress
        Show progress bars.
    runner
        Dask scheduler and worker settings (:class:`~glacierstack.runner.RunnerOptions`), or
        an open :class:`~glacierstack.runner.DaskSession`; default: the active
        ``distributed.Client``, else the threaded scheduler.
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
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    options = feature_options or FeatureOptions()
    skipped: dict[str, str] = {}
    if isinstance(catalog, Mapping):
        names = resolve_layers(layers)  # type: ignore[arg-type]
        source: Any = catalog
        truth_cat = None
        mods = list(modalities) if modalities is not None else list(catalog)
    else:
        source = _open_catalog(catalog, provider)
        truth_cat = source
        if isinstance(modalities, Mapping):
            raise TypeError("a modalities mapping needs catalog to be a mapping too")
        names, mods, skipped = plan_layers(source, grid, datetime, layers, modalities)

    reads = plan_reads(source, grid, datetime, mods, provider=provider, read=read)
    raw = _check_layers(reads, grid, names, options, source, bool(scheme.rule_classes))
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
    glacier = _polygons(glacier_outlines, grid, "glacier outlines")
    debris = _polygons(debris_outlines, grid, "debris outlines")
    attrs = {
        "catalog": location_ref(source.source) if not isinstance(source, Mapping) else {
            k: location_ref(v) for k, v in source.items()
        },
        "datetime": datetime or "",
        "bbox": list(bbox) if bbox is not None else None,
        "bbox_crs": bbox_crs if bbox is not None else None,
        "modalities": {k: list(v) for k, v in reads.chosen},
        "label_rules": label_rules.to_attrs(),
        "label_precedence": PRECEDENCE,
        "read": reads.read.to_attrs(),
        "missing_inputs": [m.href for m in reads.missing],
        "outlines": outline_source,
        "nodata_rule": "labels are 255 where any feature layer is NaN",
        "sensor": raw.attrs.get("sensor", ""),
        "skipped_layers": skipped,
        "class_scheme": scheme.to_attrs(),
        "classes": scheme.table(),
    }  # fmt: skip
    items = list(reads.item_ids) + truth_item
    # what decides whether an unfinished store may be resumed: the request, not derived values
    request = {
        k: attrs[k]
        for k in (
            "catalog",
            "datetime",
            "bbox",
            "bbox_crs",
            "label_rules",
            "outlines",
            "class_scheme",
        )
    } | {"layers": list(names), "modalities": mods, "feature_options": tokenize(options)}
    with ensure_session(runner or RunnerOptions(progress=progress)) as session:
        if needs_pca(names, options) and options.pca is None:
            optical = tuple(b for b in S2_BANDS if b in raw.data_vars)
            pca = fit_pca_windows(reads, grid, optical, PCASample(), session)
            options = replace(options, pca=pca)
        sensor = raw.attrs.get("sensor") or None
        plan = TilePlan(reads, grid, names, options, label_rules, int(chunk_size), sensor, scheme)
        feats, labels = tile_cube(plan, glacier, debris)
        labels = burn_outline_classes(labels, grid, scheme)
        attrs["feature_params"] = feats.attrs["feature_params"]
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
            fuse_tiles=True,  # tile_cube's tiles share no input task
        )


def _polygons(outlines: Outlines | None, grid: Grid, what: str) -> np.ndarray:
    """Outline polygons in the grid CRS (empty when none are given)."""
    if outlines is None:
        return np.empty(0, dtype=object)
    return _polygons_in_crs(outlines, grid, what)


def _check_layers(
    reads: Any, grid: Grid, names: tuple[str, ...], options: Any, source: Any, rules: bool = True
) -> Any:
    """Fail before any read if an input variable is missing; return the lazy raw dataset.

    Builds graphs only (nothing is read): the same checks the lazy API makes.
    """
    from glacierstack.features import compute_features
    from glacierstack.layers import PCA_LAYERS

    raw = read_plan(reads, grid)
    missing = sorted({"B03", "B04", "B08"} - set(map(str, raw.data_vars)))
    if missing and rules:
        raise KeyError(
            f"the labels' water/vegetation rules need green, red and NIR (B03, B04, B08); "
            f"catalog {getattr(source, 'source', source)!r} lacks {missing}"
        )
    lazy = [n for n in names if n not in PCA_LAYERS]
    if lazy:
        compute_features(raw, lazy, options)
    return raw
