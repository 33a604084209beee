"""Which layers a catalog can give: a layer is computable iff its inputs exist.

:func:`catalog_bands` finds, per modality of the catalog's provider config, the canonical bands
its items offer (a static catalog's items, a search over a region, or, for an API without a
region, the provider config); :func:`choose_modalities` keeps one modality per variable
(default modalities first); :func:`layer_status` says, per layer of
:data:`glacierstack.layers.ALL_LAYERS`, whether it can be computed from those variables and why
not. ``glacierstack layers --catalog X`` prints it; ``glacierstack cube`` without ``--layers``
builds every computable layer.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from glacierstack.layers import ALL_LAYERS, S2_BANDS
from glacierstack.modalities import ModalitySpec, choose_band_set

__all__ = [
    "INDEX_INPUTS",
    "LayerStatus",
    "catalog_bands",
    "choose_modalities",
    "computable_layers",
    "layer_status",
]

#: Normalised-difference indices: layer -> (a, b) for (a - b) / (a + b).
INDEX_INPUTS: dict[str, tuple[str, str]] = {
    "NDVI": ("B08", "B04"),
    "NDSI": ("B03", "B11"),
    "NDWI": ("B03", "B08"),
    "NDGI": ("B03", "B04"),
}


@dataclass(frozen=True)
class LayerStatus:
    """Whether one layer is computable from a set of raw variables."""

    name: str
    computable: bool
    inputs: tuple[str, ...]
    """Raw variables it is computed from (when computable) or needs (when not)."""
    reason: str = ""
    """Why not, when not computable."""


def _alternatives(name: str, sensor: str | None, glcm_source: str) -> list[tuple[str, ...]]:
    """Return the sets of raw variables any one of which is enough for layer ``name``."""
    if name in S2_BANDS:
        return [(name,)]
    if name in INDEX_INPUTS:
        return [INDEX_INPUTS[name]]
    if name in ("elevation", "slope", "aspect"):
        return [("elevation",)]
    if name == "lst":
        return [("lst",)]
    if name == "glcm_dissimilarity":
        return [(glcm_source,)] if glcm_source in S2_BANDS else [()]
    if name == "velocity":
        return [("velocity",), ("vx", "vy")]
    if name in ("coherence", "phase"):
        return [("s1_ref", "s1_sec"), (name,)]
    if name.startswith("tc_"):
        from glacierstack.features import tasseled_cap_inputs

        return [tasseled_cap_inputs(sensor)]
    return []


def layer_status(
    variables: Collection[str], sensor: str | None = None, glcm_source: str = "B08"
) -> list[LayerStatus]:
    """Say per layer (all 30) whether it is computable, from what, or why not.

    Parameters
    ----------
    variables
        Raw variable names available (``B02``, ``elevation``, ``s1_ref``...).
    sensor
        Optical sensor band map name (decides the tasseled-cap coefficients).
    glcm_source
        Layer the GLCM texture is computed on.
    """
    have = set(variables)
    optical = tuple(b for b in S2_BANDS if b in have)
    out = []
    for name in ALL_LAYERS:
        if name.startswith("PC"):
            k = int(name[2:])
            ok = len(optical) >= max(3, k)
            why = "" if ok else f"PCA needs >= 3 optical bands, found {len(optical)}"
            out.append(LayerStatus(name, ok, optical, why))
            continue
        if name.startswith("tc_") and not sensor:
            out.append(LayerStatus(name, False, (), "no optical sensor in the catalog"))
            continue
        alts = _alternatives(name, sensor, glcm_source)
        hit = next((a for a in alts if a and set(a) <= have), None)
        if hit is not None:
            out.append(LayerStatus(name, True, hit))
            continue
        need = alts[0] if alts else ()
        if name.startswith("tc_") and not need:
            why = f"no published tasseled-cap coefficients for sensor {sensor!r}"
        else:
            opts = " or ".join("+".join(a) for a in alts if a)
            missing = sorted(set(need) - have)
            why = f"needs {opts}; missing {missing}"
        out.append(LayerStatus(name, False, tuple(need), why))
    return out


def computable_layers(
    variables: Collection[str], sensor: str | None = None, glcm_source: str = "B08"
) -> tuple[str, ...]:
    """Names of the layers computable from ``variables``, in canonical order."""
    return tuple(s.name for s in layer_status(variables, sensor, glcm_source) if s.computable)


def _raw_names(spec: ModalitySpec, bands: Sequence[Any]) -> tuple[str, ...]:
    names = [b.name for b in bands]
    if spec.select == "pair":
        return tuple(f"{n}_{s}" for n in names for s in ("ref", "sec"))
    return tuple(names)


def catalog_bands(
    catalog: Any,
    bbox: Sequence[float] | None = None,
    *,
    bbox_crs: str = "EPSG:4326",
    datetime: str | None = None,
    modalities: Sequence[str] | None = None,
) -> dict[str, tuple[tuple[str, ...], str | None]]:
    """Raw variables each modality of a catalog offers, and its sensor.

    Parameters
    ----------
    catalog
        An opened :class:`glacierstack.catalog.Catalog`.
    bbox, bbox_crs, datetime
        Region and window to search (static catalogs: optional; APIs: without a region the
        provider config's default modalities are assumed complete).
    modalities
        Only these modalities (default: all of the provider config).

    Returns
    -------
    dict
        ``{modality: (raw variable names, sensor or None)}`` for modalities with items.

    Raises
    ------
    glacierstack.catalog.EmptySearchError
        If no optical modality has items but one's collection exists (wrong region/window).
    """
    from glacierstack.catalog import EmptySearchError
    from glacierstack.stack import item_sensor

    specs = [catalog.provider.modality(m) for m in modalities] if modalities else None
    specs = specs or list(catalog.provider.modalities)
    out: dict[str, tuple[tuple[str, ...], str | None]] = {}
    empty_optical: EmptySearchError | None = None
    for spec in specs:
        if bbox is not None:
            try:
                items = catalog.search_modality(spec, bbox, bbox_crs=bbox_crs, datetime=datetime)
            except EmptySearchError as e:
                in_catalog = not catalog.is_static or spec.collection in catalog.collections()
                if spec.sensor is not None and in_catalog and empty_optical is None:
                    empty_optical = e
                continue
        elif catalog.is_static:
            items = [it for it in catalog.items or [] if it.collection_id == spec.collection]
        else:
            if modalities or spec.default:
                sensor = spec.sensor if spec.sensor != "auto" else None
                out[spec.name] = (_raw_names(spec, spec.bands), sensor)
            continue
        if spec.id_pattern is not None:
            import re

            items = [it for it in items if re.search(spec.id_pattern, it.id)]
        if not items:
            continue
        try:
            bands = choose_band_set(spec, [set(it.assets) for it in items])
        except KeyError:
            continue
        sensor = item_sensor(spec, items[0]) if spec.sensor is not None else None
        out[spec.name] = (_raw_names(spec, bands), sensor)
    if empty_optical is not None and not any(sensor for _, sensor in out.values()):
        raise empty_optical  # the optical collection is there, but not for this region/window
    return out


def choose_modalities(
    found: Mapping[str, tuple[tuple[str, ...], str | None]], provider: Any
) -> list[str]:
    """One modality per raw variable: default modalities first, then optional ones adding more.

    Two optical modalities (Sentinel-2 and Landsat) are never mixed: the first one wins.
    """
    order = sorted(provider.modalities, key=lambda m: not m.default)
    chosen: list[str] = []
    have: set[str] = set()
    optical = False
    for spec in order:
        if spec.name not in found:
            continue
        names, sensor = found[spec.name]
        if sensor is not None and optical:
            continue
        if not set(names) - have:
            continue
        chosen.append(spec.name)
        have |= set(names)
        optical = optical or sensor is not None
    declared = [m.name for m in provider.modalities]
    return sorted(chosen, key=declared.index)
