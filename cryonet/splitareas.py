"""Spatial train/val/test splits from areas: vector files with a ``split`` column, or halves.

A window (patch) belongs to a subset when it lies entirely inside that subset's area; windows
crossing an area edge are dropped, so no pixel is in two subsets. The result is an ordinary
``split.json`` (:class:`cryonet.data.PatchSplit`) for ``cryonet train --split-file``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from cryonet.areaeval import area_mask
from cryonet.patchsplit import PatchSplit, patch_windows, valid_fraction
from glacierstack.grid import Grid

__all__ = ["split_from_areas"]

SUBSETS = ("train", "val", "test")


def split_from_areas(
    cube: str | Path,
    areas: dict[str, str],
    patch_size: int,
    *,
    overlap: int = 0,
    min_valid_fraction: float = 0.05,
) -> PatchSplit:
    """Split the cube's windows by area.

    Parameters
    ----------
    cube
        Zarr cube.
    areas
        ``{subset: area}`` for ``train`` (required), ``val`` and ``test``; an area is a half
        (``west``...), ``bbox:...`` or ``FILE[:VALUE]`` (see :mod:`cryonet.areaeval`). A file
        given for ``"all"`` supplies every subset through its ``split`` column.
    patch_size
        Window edge in pixels.
    overlap
        Pixels shared by neighbouring windows (more, overlapping training patches from a
        small area; windows of different subsets never share a pixel, their areas being
        disjoint).
    min_valid_fraction
        Windows with fewer labelled pixels are dropped.
    """
    from glacierstack.store import open_cube

    ds = open_cube(cube)
    grid = Grid.from_attrs(ds.attrs["grid"])
    labels = np.asarray(ds["labels"].values)
    if "all" in areas:
        areas = {s: f"{areas['all']}:{s}" for s in SUBSETS}
    if "train" not in areas:
        raise ValueError(f"areas {areas} name no train area")
    windows = patch_windows(xr.DataArray(labels, dims=("y", "x")), patch_size, overlap)
    windows = windows[valid_fraction(labels, windows, patch_size) >= min_valid_fraction]
    subsets: dict[str, np.ndarray] = {}
    for name in SUBSETS:
        if name not in areas:
            subsets[name] = np.zeros(0, np.int64)
            continue
        try:
            inside = area_mask(areas[name], grid).astype(np.int64)
        except ValueError as e:
            if "no polygons" in str(e) and name != "train":
                subsets[name] = np.zeros(0, np.int64)
                continue
            raise
        ii = np.pad(inside.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        y0, x0 = windows[:, 0], windows[:, 1]
        y1, x1 = y0 + patch_size, x0 + patch_size
        full = (ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]) == patch_size * patch_size
        subsets[name] = np.flatnonzero(full).astype(np.int64)
    taken: set[int] = set()
    for name in ("test", "val", "train"):  # an index in two areas goes to the first
        subsets[name] = np.array([i for i in subsets[name] if i not in taken], np.int64)
        taken |= set(subsets[name].tolist())
    if len(subsets["train"]) == 0:
        raise ValueError(
            f"no {patch_size}-px window lies fully inside the train area {areas['train']!r} "
            f"of {cube}; use a smaller patch size"
        )
    return PatchSplit(
        patch_size=patch_size,
        windows=windows,
        train=subsets["train"],
        val=subsets["val"],
        test=subsets["test"],
        cube_shape=(int(labels.shape[0]), int(labels.shape[1])),
        config={"method": "areas", "areas": dict(areas), "patch_size": patch_size,
                "overlap": overlap, "min_valid_fraction": min_valid_fraction},
    )  # fmt: skip
