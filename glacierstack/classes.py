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


def _describe_table(table: list[dict[str, object]]) -> str:
    return "[" + ", ".join(f"{c.get('id', i)} {c.get('name')}" for i, c in enumerate(table)) + "]"


def check_same_classes(
    model_table: list[dict[str, object]],
    data_table: list[dict[str, object]],
    model_name: str,
    data_name: str,
) -> None:
    """Raise ``ValueError`` showing both tables unless ids and names agree, in order.

    Used before a model is scored against, or fine-tuned on, a cube's labels: a 3-class model
    scored on 5-class labels, or swapped class names, would give meaningless numbers.
    """
    pairs = [(int(str(c.get("id", i))), str(c.get("name"))) for i, c in enumerate(model_table)]
    other = [(int(str(c.get("id", i))), str(c.get("name"))) for i, c in enumerate(data_table)]
    if pairs != other:
        raise ValueError(
            f"class tables differ: {model_name} has {len(pairs)} classes "
            f"{_describe_table(model_table)} but {data_name} has {len(other)} classes "
            f"{_describe_table(data_table)}; the model can only be evaluated on (or fine-tuned "
            "to) labels with the same classes"
        )
