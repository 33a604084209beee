"""Canonical names of the 30 CryoNet input layers, in their recorded order.

The feature registry (:mod:`glacierstack.features`) maps each name to the function that
computes it; this module holds only names and groups so that every part of the toolkit
(cube, checkpoints, importance plots) agrees on spelling and order.
"""

from __future__ import annotations

S2_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
)  # fmt: skip
INDEX_LAYERS: tuple[str, ...] = ("NDVI", "NDSI", "NDWI", "NDGI")
TOPO_LAYERS: tuple[str, ...] = ("elevation", "slope", "aspect")
THERMAL_LAYERS: tuple[str, ...] = ("lst",)
TEXTURE_LAYERS: tuple[str, ...] = ("glcm_dissimilarity",)
VELOCITY_LAYERS: tuple[str, ...] = ("velocity",)
INSAR_LAYERS: tuple[str, ...] = ("coherence", "phase")
PCA_LAYERS: tuple[str, ...] = ("PC1", "PC2", "PC3")
TASSELED_CAP_LAYERS: tuple[str, ...] = ("tc_brightness", "tc_greenness", "tc_wetness")

LAYER_GROUPS: dict[str, tuple[str, ...]] = {
    "optical": S2_BANDS,
    "indices": INDEX_LAYERS,
    "topography": TOPO_LAYERS,
    "thermal": THERMAL_LAYERS,
    "texture": TEXTURE_LAYERS,
    "velocity": VELOCITY_LAYERS,
    "insar": INSAR_LAYERS,
    "pca": PCA_LAYERS,
    "tasseled_cap": TASSELED_CAP_LAYERS,
}

ALL_LAYERS: tuple[str, ...] = tuple(name for group in LAYER_GROUPS.values() for name in group)
"""All 30 layers in canonical order."""

assert len(ALL_LAYERS) == 30


def resolve_layers(layers: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Expand a layer selection into layer names, keeping canonical order.

    Parameters
    ----------
    layers
        ``None`` or ``"all"`` for all 30 layers; otherwise names of layers and/or groups
        (e.g. ``["optical", "coherence", "lst"]``), or one comma-separated string.

    Returns
    -------
    tuple of str
        The selected layer names in canonical order, without duplicates.

    Raises
    ------
    ValueError
        If a name is neither a layer nor a group.
    """
    if layers is None or layers == "all":
        return ALL_LAYERS
    if isinstance(layers, str):
        layers = [s.strip() for s in layers.split(",") if s.strip()]
    wanted: set[str] = set()
    for name in layers:
        if name in LAYER_GROUPS:
            wanted.update(LAYER_GROUPS[name])
        elif name in ALL_LAYERS:
            wanted.add(name)
        else:
            raise ValueError(
                f"unknown layer or group {name!r}; expected one of {list(ALL_LAYERS)} "
                f"or groups {list(LAYER_GROUPS)}"
            )
    return tuple(n for n in ALL_LAYERS if n in wanted)
