"""Modality and provider specifications: provider asset keys -> canonical band names.

A *provider config* (one YAML file in ``glacierstack/catalogs/`` or a folder of
``$GLACIERSTACK_CATALOGS``) maps each *modality* (``s2``, ``dem``,
``lst``, ``velocity``, ``insar``, ...) to a STAC collection of that provider and, for every
canonical band of the modality, the asset key, native resolution, resampling method, output
dtype, scale/offset and nodata. The values are taken from the providers' real STAC metadata
(``raster:bands``, ``eo:bands``); see ``docs/catalogs.md``.

Scale and offset are resolved **per item** by :func:`resolve_scale_offset`, because providers
disagree on how the Sentinel-2 processing-baseline 04.00 offset (-1000 DN) is exposed:

``raster_bands``
    Use the item's ``raster:bands`` ``scale``/``offset`` (fallback: the YAML values). Correct
    for Earth Search ``sentinel-2-c1-l2a``, Landsat C2 L2 and the synthetic catalog.
``s2_processing_baseline``
    Items carry no ``raster:bands`` (Planetary Computer): offset = -0.1 if
    ``s2:processing_baseline >= "04.00"`` else 0.
``earthsearch_boa_flag``
    Earth Search legacy ``sentinel-2-l2a``: if ``earthsearch:boa_offset_applied`` is true the
    offset was already removed from the DNs (offset 0, whatever ``raster:bands`` says);
    otherwise the processing-baseline rule applies. Never both corrections.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

Resampling = Literal["nearest", "bilinear", "cubic", "average"]
ScaleRule = Literal["raster_bands", "s2_processing_baseline", "earthsearch_boa_flag"]
Selection = Literal["best", "pair"]

#: Reflectance offset of Sentinel-2 L2A processing baseline >= 04.00 (BOA_ADD_OFFSET -1000 DN).
S2_BASELINE_OFFSET = -0.1

#: Folder of the provider YAML files shipped inside the package (``glacierstack/catalogs``).
CATALOG_DIR = Path(str(importlib.resources.files("glacierstack") / "catalogs"))


def catalog_dirs() -> list[Path]:
    """Folders searched for provider YAMLs, first match of a name wins.

    The folders listed in ``$GLACIERSTACK_CATALOGS`` (``os.pathsep``-separated; read at each
    call, so it can be set after import), then the packaged :data:`CATALOG_DIR`.
    """
    env = os.environ.get("GLACIERSTACK_CATALOGS", "")
    extra = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [*extra, CATALOG_DIR]


@dataclass(frozen=True)
class BandSpec:
    """One canonical band of a modality and how to read it from a provider asset."""

    name: str
    """Canonical band name in the raw modality dataset (``B04``, ``elevation``, ``lst``...)."""
    asset: str
    """Provider asset key holding the band (``red``, ``B04``, ``lwir11``...)."""
    resolution: float
    """Native pixel size in metres (informational; stacking always targets the grid)."""
    resampling: Resampling = "bilinear"
    """Resampling onto the grid: bilinear for continuous layers, nearest for classes/complex."""
    dtype: str = "float32"
    """Output dtype (``float32``; ``complex64`` for SLC phase data)."""
    scale: float = 1.0
    """Fallback scale (physical = DN * scale + offset) when the item has no ``raster:bands``."""
    offset: float = 0.0
    """Fallback offset, see :attr:`scale`."""
    nodata: float | None = None
    """Fallback nodata value of the stored DNs (masked to NaN)."""
    unit: str = ""
    """Physical unit after scaling (``1`` for reflectance, ``m``, ``K``, ``m/yr``...)."""

    def __post_init__(self) -> None:
        if self.resampling not in get_args(Resampling):
            raise ValueError(
                f"band {self.name!r}: resampling {self.resampling!r} is not one of "
                f"{get_args(Resampling)}"
            )
        if self.resolution <= 0:
            raise ValueError(f"band {self.name!r}: resolution must be positive")


@dataclass(frozen=True)
class ModalitySpec:
    """A modality of one provider: a STAC collection and its canonical bands."""

    name: str
    """Modality name (``s2``, ``dem``, ``lst``, ``velocity``, ``insar``, ``coherence``...)."""
    collection: str
    """Provider collection id."""
    bands: tuple[BandSpec, ...]
    """All canonical bands the modality can provide."""
    band_options: tuple[tuple[str, ...], ...] = ()
    """Alternative band sets (e.g. ``(("velocity",), ("vx", "vy"))``): the first set whose
    assets every selected item has is loaded. Empty: all :attr:`bands`."""
    select: Selection = "best"
    """``best``: the best acquisition (adjacent scenes of one day are mosaicked);
    ``pair``: two acquisitions, returned as ``<band>_ref`` / ``<band>_sec``."""
    sort_by: str | None = "eo:cloud_cover"
    """Item property to minimise when choosing acquisitions (``None``: newest first)."""
    static: bool = False
    """Ignore the datetime window (DEMs, multi-year velocity mosaics)."""
    search_pad_days: int = 0
    """Widen the datetime window by this many days on each side for this modality."""
    scale_rule: ScaleRule = "raster_bands"
    """How per-item scale/offset are resolved, see the module docstring."""
    default: bool = True
    """Loaded by :func:`glacierstack.stack.load_modalities` when no modalities are named."""
    sensor: str | None = None
    """Optical sensor band map (:data:`glacierstack.sensors.SENSORS`) for sensor-specific
    layers (tasseled cap); ``auto``: from each item's ``glacierstack:sensor`` or ``platform``
    property. ``None`` for non-optical modalities."""
    partial: bool = False
    """Load whichever of :attr:`bands` the items provide (a subset of an optical sensor's bands)
    instead of requiring all of them."""
    id_pattern: str | None = None
    """Regular expression item ids must match (``re.search``), for collections holding several
    products per place, e.g. ``_fall_vv_COH12$`` in the global coherence dataset."""
    description: str = ""

    def __post_init__(self) -> None:
        if self.select not in get_args(Selection):
            raise ValueError(
                f"modality {self.name!r}: select {self.select!r} not in {get_args(Selection)}"
            )
        if self.scale_rule not in get_args(ScaleRule):
            raise ValueError(
                f"modality {self.name!r}: scale_rule {self.scale_rule!r} "
                f"not in {get_args(ScaleRule)}"
            )
        if self.id_pattern is not None:
            try:
                re.compile(self.id_pattern)
            except re.error as e:
                raise ValueError(
                    f"modality {self.name!r}: bad id_pattern {self.id_pattern!r}"
                ) from e
        names = [b.name for b in self.bands]
        if len(set(names)) != len(names):
            raise ValueError(f"modality {self.name!r}: duplicate band names in {names}")
        for option in self.band_options:
            unknown = set(option) - set(names)
            if unknown:
                raise ValueError(
                    f"modality {self.name!r}: band_options name unknown bands {sorted(unknown)}"
                )

    def band(self, name: str) -> BandSpec:
        """Return the :class:`BandSpec` called ``name``."""
        for b in self.bands:
            if b.name == name:
                return b
        raise KeyError(f"modality {self.name!r} has no band {name!r}; bands: {self.band_names}")

    @property
    def band_names(self) -> list[str]:
        """Canonical band names in declaration order."""
        return [b.name for b in self.bands]

    @property
    def assets(self) -> list[str]:
        """Provider asset keys of all bands."""
        return [b.asset for b in self.bands]

    def candidate_band_sets(self) -> list[tuple[BandSpec, ...]]:
        """Band sets to try, in order of preference."""
        if not self.band_options:
            return [self.bands]
        return [tuple(self.band(n) for n in option) for option in self.band_options]


@dataclass(frozen=True)
class ProviderConfig:
    """A STAC provider (or local catalog family) and its modalities."""

    name: str
    """Short name used to open the catalog (``earth-search``, ``planetary-computer``...)."""
    modalities: tuple[ModalitySpec, ...]
    title: str = ""
    url: str | None = None
    """STAC API root (``None`` for static catalogs only)."""
    signing: str | None = None
    """``planetary_computer`` if asset hrefs must be signed before reading."""
    requires: str = ""
    """What reading needs (network, credentials), for humans."""
    description: str = ""
    path: Path | None = field(default=None, compare=False)
    """YAML file the config was read from."""

    def modality(self, name: str) -> ModalitySpec:
        """Return the modality called ``name``."""
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(
            f"provider {self.name!r} has no modality {name!r}; available: {self.modality_names}"
        )

    @property
    def modality_names(self) -> list[str]:
        """Names of all modalities."""
        return [m.name for m in self.modalities]

    @property
    def default_modalities(self) -> list[str]:
        """Modalities loaded when none are named."""
        return [m.name for m in self.modalities if m.default]

    def modality_for_collection(self, collection: str) -> list[ModalitySpec]:
        """All modalities read from ``collection``."""
        return [m for m in self.modalities if m.collection == collection]


# ---------------------------------------------------------------------------- YAML parsing
_BAND_KEYS = {f for f in BandSpec.__dataclass_fields__}
_MOD_KEYS = {f for f in ModalitySpec.__dataclass_fields__} | {"band_defaults"}
_PROVIDER_KEYS = {f for f in ProviderConfig.__dataclass_fields__} - {"path"}


def _check_keys(d: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(d) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def _parse_modality(name: str, d: Mapping[str, Any], where: str) -> ModalitySpec:
    _check_keys(d, _MOD_KEYS - {"name"}, f"{where} modality {name!r}")
    if "collection" not in d or "bands" not in d:
        raise ValueError(f"{where} modality {name!r}: needs 'collection' and 'bands'")
    defaults = dict(d.get("band_defaults") or {})
    bands = []
    for bd in d["bands"]:
        merged = {**defaults, **bd}
        _check_keys(merged, _BAND_KEYS, f"{where} modality {name!r} band {bd.get('name')!r}")
        bands.append(BandSpec(**merged))
    kw = {k: v for k, v in d.items() if k not in ("bands", "band_defaults")}
    kw["band_options"] = tuple(tuple(o) for o in kw.get("band_options") or ())
    return ModalitySpec(name=name, bands=tuple(bands), **kw)


def provider_from_dict(d: Mapping[str, Any], path: Path | None = None) -> ProviderConfig:
    """Build a :class:`ProviderConfig` from a parsed YAML mapping."""
    where = str(path) if path else "provider config"
    _check_keys(d, _PROVIDER_KEYS, where)
    if "name" not in d or "modalities" not in d:
        raise ValueError(f"{where}: needs 'name' and 'modalities'")
    mods = tuple(_parse_modality(n, md, where) for n, md in d["modalities"].items())
    kw = {k: v for k, v in d.items() if k != "modalities"}
    return ProviderConfig(modalities=mods, path=path, **kw)


def load_provider(path: str | Path) -> ProviderConfig:
    """Read one provider YAML file (``yaml.safe_load``; cached until the file changes)."""
    p = Path(path).resolve()
    return _load_provider_cached(p, p.stat().st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _load_provider_cached(p: Path, mtime_ns: int) -> ProviderConfig:
    with p.open() as f:
        d = yaml.safe_load(f)
    if not isinstance(d, dict):
        raise ValueError(f"{p}: expected a YAML mapping, got {type(d).__name__}")
    return provider_from_dict(d, path=p)


def _dirs(directory: str | Path | None) -> list[Path]:
    return catalog_dirs() if directory is None else [Path(directory)]


def list_providers(directory: str | Path | None = None) -> list[str]:
    """Names of the provider configs in ``directory`` (default: :func:`catalog_dirs`)."""
    names: set[str] = set()
    for d in _dirs(directory):
        names |= {load_provider(p).name for p in d.glob("*.yaml")}
    return sorted(names)


def get_provider(name: str | Path, directory: str | Path | None = None) -> ProviderConfig:
    """Return the provider config called ``name``.

    Parameters
    ----------
    name
        A config name (file ``<name>.yaml`` or a ``name:`` field in a folder of
        :func:`catalog_dirs`), or the path of a YAML file (``my-api.yaml``).
    directory
        Search only this folder instead of :func:`catalog_dirs`.

    Raises
    ------
    KeyError
        If no config has that name; the message lists the folders and the names found.
    """
    s = str(name)
    if s.endswith((".yaml", ".yml")) and Path(s).expanduser().is_file():
        return load_provider(Path(s).expanduser())
    dirs = _dirs(directory)
    for d in dirs:
        direct = d / f"{s}.yaml"
        if direct.is_file():
            return load_provider(direct)
    for d in dirs:
        for p in sorted(d.glob("*.yaml")):
            cfg = load_provider(p)
            if cfg.name == s:
                return cfg
    where = ", ".join(str(d) for d in dirs)
    raise KeyError(
        f"no provider config named {s!r} in {where}; available: {list_providers(directory)} "
        "(or give the path of a provider YAML file)"
    )


# ---------------------------------------------------------------------------- scale/offset
def _baseline(item_props: Mapping[str, Any]) -> tuple[int, ...] | None:
    pb = item_props.get("s2:processing_baseline")
    if pb is None:
        return None
    try:
        return tuple(int(p) for p in str(pb).split("."))
    except ValueError as e:
        raise ValueError(f"unparseable s2:processing_baseline {pb!r}") from e


def _raster_band(asset: Mapping[str, Any]) -> Mapping[str, Any]:
    rb = asset.get("raster:bands")
    if rb:
        return rb[0]
    bands = asset.get("bands")  # STAC 1.1 common `bands`
    if bands and isinstance(bands, list) and isinstance(bands[0], dict):
        return {k.removeprefix("raster:"): v for k, v in bands[0].items()}
    return {}


@dataclass(frozen=True)
class Encoding:
    """How the stored values of one asset of one item map to physical values."""

    scale: float
    offset: float
    nodata: float | None


def resolve_scale_offset(
    modality: ModalitySpec,
    band: BandSpec,
    properties: Mapping[str, Any],
    asset: Mapping[str, Any],
    item_id: str = "?",
) -> Encoding:
    """Resolve scale, offset and nodata of ``band`` for one item.

    Parameters
    ----------
    modality, band
        The specs (fallback values and the modality's ``scale_rule``).
    properties
        The item's ``properties``.
    asset
        The item's asset dict (``raster:bands`` is read from it).
    item_id
        For error messages.

    Returns
    -------
    Encoding
        ``physical = stored * scale + offset``; ``nodata`` is the stored value to mask.
    """
    rb = _raster_band(asset)
    if "glacierstack:encoding" in properties:
        # stac-from-files wrote the encoding it resolved (file > user > sensor > as stored):
        # take it exactly, never this provider config's defaults.
        scale, offset = float(rb.get("scale", 1.0)), float(rb.get("offset", 0.0))
        nd = rb.get("nodata")
        if not (math.isfinite(scale) and math.isfinite(offset)):
            raise ValueError(f"item {item_id!r} band {band.name!r}: non-finite scale/offset")
        return Encoding(scale=scale, offset=offset, nodata=None if nd is None else float(nd))
    scale = float(rb.get("scale", band.scale))
    offset = float(rb.get("offset", band.offset))
    nodata = rb.get("nodata", band.nodata)
    nodata = None if nodata is None else float(nodata)
    rule = modality.scale_rule
    if rule == "raster_bands":
        pass
    elif rule in ("s2_processing_baseline", "earthsearch_boa_flag"):
        flag = properties.get("earthsearch:boa_offset_applied")
        if rule == "earthsearch_boa_flag" and flag is True:
            offset = 0.0
        else:
            pb = _baseline(properties)
            if pb is None:
                raise ValueError(
                    f"item {item_id!r} ({modality.collection}): no s2:processing_baseline, "
                    f"cannot decide the baseline-04.00 offset for band {band.name!r}"
                )
            offset = S2_BASELINE_OFFSET if pb >= (4, 0) else 0.0
    if not (math.isfinite(scale) and math.isfinite(offset)):
        raise ValueError(f"item {item_id!r} band {band.name!r}: non-finite scale/offset")
    return Encoding(scale=scale, offset=offset, nodata=nodata)


def choose_band_set(
    modality: ModalitySpec, assets_per_item: Sequence[set[str]]
) -> tuple[BandSpec, ...]:
    """First band set of ``modality`` whose assets at least one item provides in full.

    Items lacking the chosen set (e.g. Landsat L2SR items without ``lwir11``) are dropped later
    by :func:`glacierstack.catalog.select_items`.

    Raises
    ------
    KeyError
        If no item has any complete band set; the message lists what was looked for.
    """
    for bands in modality.candidate_band_sets():
        needed = {b.asset for b in bands}
        if any(needed <= set(a) for a in assets_per_item):
            return bands
    if modality.partial and assets_per_item:
        # the item offering most of the bands decides the subset
        best = max(assets_per_item, key=lambda a: len({b.asset for b in modality.bands} & a))
        subset = tuple(b for b in modality.bands if b.asset in best)
        if subset:
            return subset
    have = sorted(set().union(*assets_per_item)) if assets_per_item else []
    wanted = [[b.asset for b in bs] for bs in modality.candidate_band_sets()]
    raise KeyError(
        f"modality {modality.name!r} (collection {modality.collection!r}): no item has the "
        f"assets {wanted} (any one set); assets found: {have}"
    )
