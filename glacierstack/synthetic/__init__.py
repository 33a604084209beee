"""Synthetic multi-modal glacier regions served as a static STAC catalog.

A deterministic (seeded) generator of a glaciated mountain region that looks, to the rest of
the pipeline, like real provider data: Sentinel-2 L2A, Copernicus DEM, Landsat surface
temperature, ITS_LIVE velocity and a Sentinel-1 SLC pair, plus the exact class raster and
inventory-like outlines. See ``docs/synthetic.md`` for the physical rules.
"""

from __future__ import annotations

from glacierstack.synthetic.generate import (
    SyntheticArrays,
    SyntheticRegion,
    generate_arrays,
    generate_region,
    search_window,
)
from glacierstack.synthetic.presets import PRESETS, RegionPreset, get_preset
from glacierstack.synthetic.scene import Scene, build_scene

__all__ = [
    "PRESETS",
    "RegionPreset",
    "Scene",
    "SyntheticArrays",
    "SyntheticRegion",
    "build_scene",
    "generate_arrays",
    "generate_region",
    "get_preset",
    "search_window",
]
