"""glacierstack: multi-modal satellite feature cubes for glacier mapping (no torch here)."""

from __future__ import annotations

from glacierstack.classes import CLASSES, NODATA_LABEL, NUM_CLASSES
from glacierstack.grid import Grid
from glacierstack.layers import ALL_LAYERS, LAYER_GROUPS, resolve_layers

__version__ = "0.1.0"

__all__ = [
    "ALL_LAYERS",
    "CLASSES",
    "LAYER_GROUPS",
    "NODATA_LABEL",
    "NUM_CLASSES",
    "Grid",
    "__version__",
    "resolve_layers",
]
