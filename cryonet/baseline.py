"""A baseline to beat: a per-pixel random forest on the same cube, split and classes.

Training pixels are the labelled pixels of the split's ``train`` windows (or of a train area),
with the cube's layers as features (NaN pixels skipped); the forest then maps every valid
pixel of the cube into a class GeoTIFF on the cube's grid, which ``cryonet score`` scores
beside the CNN. Uses scikit-learn's ``RandomForestClassifier`` (balanced class weights).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from glacierstack import storage
from glacierstack.classes import NODATA_LABEL
from glacierstack.grid import Grid

__all__ = ["BaselineConfig", "train_baseline"]


@dataclass(frozen=True)
class BaselineConfig:
    """Random-forest settings."""

    n_estimators: int = 100
    max_depth: int | None = 20
    max_samples: int = 200_000
    """At most this many training pixels (a random sample)."""
    seed: int = 0
    n_jobs: int = 1


def _train_mask(shape: tuple[int, int], split_file: str | Path | None, area: str | None,
                grid: Grid) -> np.ndarray:  # fmt: skip
    mask = np.zeros(shape, bool)
    if split_file is not None:
        from cryonet.data import PatchSplit

        sp = PatchSplit.from_json(split_file)
        if tuple(sp.cube_shape) != tuple(shape):
            raise ValueError(f"{split_file} was made for a {sp.cube_shape} cube, not {shape}")
        for y0, x0 in sp.subset("train"):
            mask[y0 : y0 + sp.patch_size, x0 : x0 + sp.patch_size] = True
        return mask
    if area is None:
        raise ValueError("give a split file or a train area")
    from cryonet.areaeval import area_mask

    return area_mask(area, grid)


def train_baseline(
    cube: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    split_file: str | Path | None = None,
    train_area: str | None = None,
    config: BaselineConfig = BaselineConfig(),
) -> Path | str:
    """Train the forest on the train pixels and write its class map ``out`` (GeoTIFF).

    ``cube``, ``out`` and ``split_file`` may be URLs (``s3://...``).

    Returns
    -------
    pathlib.Path or str
        The class GeoTIFF (uint8, 255 = no valid input), on the cube's grid (its URL for a URL
        ``out``).
    """
    import rasterio
    from sklearn.ensemble import RandomForestClassifier

    from glacierstack.store import open_cube

    ds = open_cube(cube)
    grid = Grid.from_attrs(ds.attrs["grid"])
    feats = np.asarray(ds["features"].values, dtype=np.float32)  # (band, y, x)
    labels = np.asarray(ds["labels"].values)
    valid = np.isfinite(feats).all(0)
    train = _train_mask(labels.shape, split_file, train_area, grid)
    sel = train & valid & (labels != NODATA_LABEL)
    if sel.sum() < 2:
        raise ValueError(f"{cube}: only {int(sel.sum())} labelled train pixels")
    x, y = feats[:, sel].T, labels[sel]
    rng = np.random.default_rng(config.seed)
    if len(y) > config.max_samples:
        keep = rng.choice(len(y), config.max_samples, replace=False)
        x, y = x[keep], y[keep]
    rf = RandomForestClassifier(
        n_estimators=config.n_estimators, max_depth=config.max_depth, n_jobs=config.n_jobs,
        class_weight="balanced", random_state=config.seed,
    )  # fmt: skip
    rf.fit(x, y)
    pred = np.full(labels.shape, NODATA_LABEL, np.uint8)
    pred[valid] = rf.predict(feats[:, valid].T).astype(np.uint8)
    profile: dict[str, Any] = dict(
        driver="GTiff", width=grid.shape[1], height=grid.shape[0], count=1, dtype="uint8",
        crs=grid.crs, transform=grid.transform, nodata=NODATA_LABEL, compress="deflate",
    )  # fmt: skip
    with storage.staged_output(out) as local:  # a URL: written locally, then uploaded
        local.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(local, "w", **profile) as dst:
            dst.write(pred, 1)
            dst.update_tags(model="RandomForestClassifier", n_estimators=config.n_estimators,
                            max_depth=str(config.max_depth), train_pixels=int(len(y)),
                            bands=",".join(map(str, ds.band.values)))  # fmt: skip
    return str(out) if storage.is_url(out) else Path(out)
