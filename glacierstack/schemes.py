"""Class schemes: which classes a cube's labels hold, and how they group.

The labels are first built with the five CryoNet classes of :mod:`glacierstack.labels`
(outlines + NDWI/NDVI rules); a scheme then maps them onto its own classes. Rule classes
(``water``, ``vegetation``) are opt-in per scheme: a scheme without them never runs the
spectral rules, so bright snow and ice can never become "lakes". Rule classes have a minimum
mapping unit (connected patches smaller than it become background).

Named schemes (:data:`SCHEMES`):

``cryonet5``
    The paper's five classes (background, clean ice, debris, water, vegetation); groups
    ``glacier = clean_ice + debris``.
``glacier``
    Glacier (any outline, clean or debris-covered) / background.
``ice-debris``
    Background, clean ice, debris-covered ice; groups ``glacier = clean_ice + debris``.

A user-defined scheme is a YAML file (``yaml.safe_load``)::

    name: my-scheme
    classes: [background, clean_ice, debris, water]   # names of the five base classes
    groups: {glacier: [clean_ice, debris]}
    min_mapping_unit: 9                                # pixels, for rule classes

Any base class left out is merged into ``background``. A class can also come from its own
outline file (any vector format and CRS; paths relative to the YAML file), burnt over the base
classes on valid pixels::

    classes: [background, glacier, {name: rock_glacier, outlines: rock_glaciers.gpkg}]
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from glacierstack.classes import CLASSES, NODATA_LABEL, ClassInfo

__all__ = [
    "RULE_CLASSES",
    "SCHEMES",
    "ClassScheme",
    "burn_outline_classes",
    "map_labels",
    "get_scheme",
    "remove_small_patches",
    "scheme_from_attrs",
]

RULE_CLASSES: tuple[str, ...] = ("water", "vegetation")
"""Base classes that come from spectral rules rather than outlines."""

_BASE = {c.name: c for c in CLASSES}


@dataclass(frozen=True)
class ClassScheme:
    """A set of output classes built from the five base classes."""

    name: str
    classes: tuple[ClassInfo, ...]
    """Output classes; ids are 0..n-1 in this order; class 0 is the background."""
    sources: Mapping[str, tuple[str, ...]]
    """Output class name -> base class names it takes."""
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Reporting groups: name -> output class names (e.g. glacier = clean_ice + debris)."""
    min_mapping_unit: int = 0
    """Rule-class patches (8-connected) smaller than this many pixels become background."""
    outlines: Mapping[str, str] = field(default_factory=dict)
    """Output class name -> outline file of a class taken from its own polygons (burnt over
    the base classes, in class order, on valid pixels)."""

    def __post_init__(self) -> None:
        names = [c.name for c in self.classes]
        if [c.id for c in self.classes] != list(range(len(names))) or len(names) < 2:
            raise ValueError(f"scheme {self.name!r}: needs >= 2 classes with ids 0..n-1")
        used = [b for src in self.sources.values() for b in src]
        if len(set(used)) != len(used) or not set(used) <= set(_BASE):
            raise ValueError(f"scheme {self.name!r}: base classes {used} repeat or are unknown")
        for g, members in self.groups.items():
            if not set(members) <= set(names):
                raise ValueError(f"scheme {self.name!r}: group {g!r} names unknown classes")

    @property
    def rule_classes(self) -> tuple[str, ...]:
        """Base rule classes this scheme keeps (the spectral rules run only if non-empty)."""
        return tuple(b for src in self.sources.values() for b in src if b in RULE_CLASSES)

    def lookup(self) -> np.ndarray:
        """uint8 table: base label value -> scheme label value (255 stays 255)."""
        table = np.zeros(256, np.uint8)
        table[NODATA_LABEL] = NODATA_LABEL
        for c in self.classes:
            for b in self.sources.get(c.name, ()):
                table[_BASE[b].id] = c.id
        return table

    def to_attrs(self) -> dict[str, Any]:
        """Plain-dict form for Zarr attrs and checkpoints."""
        return {
            "name": self.name,
            "sources": {k: list(v) for k, v in self.sources.items()},
            "groups": {k: list(v) for k, v in self.groups.items()},
            "min_mapping_unit": self.min_mapping_unit,
            "outlines": dict(self.outlines),
        }

    def table(self) -> list[dict[str, object]]:
        """Return the class table (as :func:`glacierstack.classes.class_table`)."""
        return [
            {"id": c.id, "name": c.name, "label": c.label, "color": c.color} for c in self.classes
        ]


def _scheme(
    name: str,
    classes: Sequence[str],
    groups: Mapping[str, Sequence[str]] | None = None,
    mmu: int = 0,
    merged: Mapping[str, ClassInfo] | None = None,
) -> ClassScheme:
    """Build a scheme from base class names; the rest merges into the first (background)."""
    merged = dict(merged or {})
    infos: list[ClassInfo] = []
    sources: dict[str, tuple[str, ...]] = {}
    for i, n in enumerate(classes):
        base = merged.get(n) or _BASE.get(n)
        if base is None:
            raise ValueError(f"scheme {name!r}: unknown class {n!r}; base classes: {list(_BASE)}")
        infos.append(ClassInfo(i, n, base.label, base.color))
        sources[n] = (n,) if n in _BASE else ()
    for n in merged:
        sources[n] = tuple(b for b in _BASE if b in _MERGES.get(n, ()))
    rest = tuple(b for b in _BASE if not any(b in s for s in sources.values()))
    sources[classes[0]] = tuple(sources[classes[0]]) + tuple(
        b for b in rest if b not in RULE_CLASSES or b in classes
    )
    return ClassScheme(
        name,
        tuple(infos),
        sources,
        {k: tuple(v) for k, v in (groups or {}).items()},
        mmu,
    )


_MERGES = {"glacier": ("clean_ice", "debris")}
_PALETTE = ("#fdae61", "#abd9e9", "#d7191c", "#2c7bb6", "#ffffbf", "#1a9641")
_GLACIER = ClassInfo(1, "glacier", "Glacier (clean or debris-covered)", "#4292c6")

SCHEMES: dict[str, ClassScheme] = {
    "cryonet5": _scheme(
        "cryonet5", [c.name for c in CLASSES], {"glacier": ("clean_ice", "debris")}
    ),
    "glacier": _scheme("glacier", ["background", "glacier"], merged={"glacier": _GLACIER}),
    "ice-debris": _scheme(
        "ice-debris", ["background", "clean_ice", "debris"], {"glacier": ("clean_ice", "debris")}
    ),
}
"""Named class schemes."""


def get_scheme(name_or_path: str | Path) -> ClassScheme:
    """Return a named scheme, or one read from a YAML file (see the module docstring)."""
    key = str(name_or_path)
    if key in SCHEMES:
        return SCHEMES[key]
    p = Path(key)
    if not p.is_file():
        raise KeyError(f"unknown class scheme {key!r}; named: {sorted(SCHEMES)}, or a YAML file")
    import yaml

    d = yaml.safe_load(p.read_text())
    if not isinstance(d, dict) or "classes" not in d:
        raise ValueError(f"{p}: a class scheme needs 'classes' (and optionally name, groups)")
    classes, outlines, extra = [], {}, {}
    for i, c in enumerate(d["classes"]):
        if isinstance(c, dict):
            name = str(c["name"])
            if "outlines" not in c:
                raise ValueError(f"{p}: class {name!r} is a mapping but has no 'outlines' file")
            f = Path(str(c["outlines"]))
            outlines[name] = str(f if f.is_absolute() else (p.parent / f).resolve())
            color = str(c.get("color", _PALETTE[i % len(_PALETTE)]))
            extra[name] = ClassInfo(i, name, str(c.get("label", name)), color)
        else:
            classes.append(str(c))
            continue
        classes.append(name)
    merged = ({"glacier": _GLACIER} if "glacier" in classes else {}) | extra
    scheme = _scheme(
        str(d.get("name", p.stem)),
        classes,
        d.get("groups") or {},
        int(d.get("min_mapping_unit", 0)),
        merged,
    )
    return replace(scheme, outlines=outlines)


def scheme_from_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Return the scheme record of cube attrs (``{}`` for cubes made before schemes)."""
    rec = attrs.get("class_scheme", {})
    if isinstance(rec, str):
        rec = json.loads(rec)
    return dict(rec or {})


def remove_small_patches(labels: np.ndarray, classes: Sequence[int], min_pixels: int) -> np.ndarray:
    """Set 8-connected patches of ``classes`` smaller than ``min_pixels`` to 0 (background)."""
    from scipy import ndimage

    out = labels.copy()
    if min_pixels <= 1:
        return out
    for c in classes:
        lab, n = ndimage.label(labels == c, structure=np.ones((3, 3), bool))
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel())
        small = sizes < min_pixels
        small[0] = False
        out[small[lab]] = 0
    return out


def map_labels(labels: np.ndarray, scheme: ClassScheme) -> np.ndarray:
    """Map a five-class label block onto ``scheme``, then apply its minimum mapping unit.

    The minimum mapping unit is applied per block (a tile of the cube): a patch cut by a tile
    edge counts per side.
    """
    out = scheme.lookup()[labels]
    rule_ids = [c.id for c in scheme.classes if set(scheme.sources[c.name]) & set(RULE_CLASSES)]
    if scheme.min_mapping_unit > 1 and rule_ids:
        out = remove_small_patches(out, rule_ids, scheme.min_mapping_unit)
    return out


def burn_outline_classes(labels: Any, grid: Any, scheme: ClassScheme) -> Any:
    """Burn the scheme's outline-file classes into a lazy label raster (block by block).

    Polygons are read once (any vector format and CRS) and rasterised per Dask block where
    the label is valid (not 255); later classes win where outlines overlap.
    """
    if not scheme.outlines:
        return labels
    from affine import Affine
    from rasterio.features import rasterize

    from glacierstack.labels import _polygons_in_crs

    ids = {c.name: c.id for c in scheme.classes}
    layers = [
        (ids[n], list(_polygons_in_crs(f, grid, f"outlines of class {n!r}")))
        for n, f in scheme.outlines.items()
    ]

    def block(b: np.ndarray, block_info: Any = None) -> np.ndarray:
        (r0, _), (c0, _) = block_info[0]["array-location"]
        t = grid.transform @ Affine.translation(c0, r0)
        out = b.copy()
        for cid, geoms in layers:
            if geoms:
                m = rasterize([(g, 1) for g in geoms], out_shape=b.shape, transform=t,
                              dtype="uint8").astype(bool)  # fmt: skip
                out[m & (b != NODATA_LABEL)] = cid
        return out

    out = labels.copy(data=labels.data.map_blocks(block, dtype=np.uint8))
    out.attrs = dict(labels.attrs)
    return out
