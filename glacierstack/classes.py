"""The CryoNet class table: ids, names, display colours, and the label nodata value."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ClassInfo:
    """One segmentation class."""

    id: int
    """Integer value in label rasters and model outputs."""
    name: str
    """Machine name (used in tables, CSV headers and CLI options)."""
    label: str
    """Human-readable name for plots and reports."""
    color: str
    """Hex colour for maps."""


CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo(0, "background", "Background", "#d9d9d9"),
    ClassInfo(1, "clean_ice", "Clean-ice glacier", "#6baed6"),
    ClassInfo(2, "debris", "Debris-covered glacier", "#8c510a"),
    ClassInfo(3, "water", "Water / glacial lake", "#08306b"),
    ClassInfo(4, "vegetation", "Vegetation", "#41ab5d"),
)
"""The five CryoNet classes, in the order of ``shared/CRYONET.md``."""

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
NUM_CLASSES: int = len(CLASSES)
NODATA_LABEL: int = 255
"""Label value for pixels without valid inputs; ignored by losses and metrics."""


def class_table() -> list[dict[str, object]]:
    """Return the class table as plain dicts (for Zarr attrs and checkpoints)."""
    return [asdict(c) for c in CLASSES]


def check_class_table(table: list[dict[str, object]]) -> None:
    """Raise ``ValueError`` unless ``table`` is a class table: ids 0..n-1, distinct names.

    Any class scheme (:mod:`glacierstack.schemes`) is accepted; the five-class default is
    :data:`CLASSES`.
    """
    try:
        ids = [int(c["id"]) for c in table]  # type: ignore[call-overload]
        names = [str(c["name"]) for c in table]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"class table {table!r} lacks ids/names: {e}") from e
    if ids != list(range(len(ids))) or len(set(names)) != len(names) or len(ids) < 2:
        raise ValueError(
            f"class table {names} (ids {ids}) must have >= 2 distinct classes with ids 0..n-1"
        )
