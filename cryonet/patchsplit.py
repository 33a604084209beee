"""Patch windows and their ``train`` / ``val`` / ``test`` split (:class:`PatchSplit`).

Patch windows are defined with :mod:`xbatcher` (``BatchSchema`` over the cube's ``y``/``x``
dimensions). The split of the windows (random, as in the paper, or spatially blocked) is a
:class:`PatchSplit`, written as JSON into every run directory so that evaluation and model
comparisons use exactly the same patches.

Split out of :mod:`cryonet.data`, which re-exports these names.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from cryonet.patchsource import CubeSource
from glacierstack import storage
from glacierstack.classes import NODATA_LABEL

__all__ = [
    "PatchSplit",
    "SPLIT_FILE",
    "SplitConfig",
    "make_split",
    "patch_windows",
    "split_json",
    "valid_fraction",
]

SPLIT_FILE = "split.json"


def split_json(where: str | os.PathLike[str]) -> str | Path:
    """Return the ``split.json`` meant by ``where``: that file, or the one in a run directory.

    ``where`` is a local path or a URL (``s3://bucket/runs/a``).
    """
    text = os.fspath(where)
    store = storage.StoreURL.parse(text)
    if not store.fs.isdir(store.path):
        return text if storage.is_url(text) else Path(text)
    if storage.is_url(text):
        return f"{text.rstrip('/')}/{SPLIT_FILE}"
    return Path(text) / SPLIT_FILE


# ----------------------------------------------------------------------------- windows & split
def patch_windows(labels: xr.DataArray, patch_size: int, overlap: int = 0) -> np.ndarray:
    """Patch origins ``(n, 2)`` as ``[y0, x0]``, defined by xbatcher's ``BatchSchema``.

    Windows are ``patch_size`` square with ``overlap`` pixels shared between neighbours;
    like xbatcher, windows that would cross the right/bottom edge are not generated.
    """
    import xbatcher

    if patch_size > min(labels.sizes["y"], labels.sizes["x"]):
        raise ValueError(
            f"patch size {patch_size} is larger than the cube ({labels.sizes['y']} x "
            f"{labels.sizes['x']} pixels)"
        )
    schema = xbatcher.BatchSchema(
        labels,
        input_dims={"y": patch_size, "x": patch_size},
        input_overlap={"y": overlap, "x": overlap},
        concat_input_bins=False,
        preload_batch=False,
    )
    origins = [(sel[0]["y"].start, sel[0]["x"].start) for sel in schema.selectors.values()]
    return np.asarray(origins, dtype=np.int64).reshape(-1, 2)


@dataclass(frozen=True)
class SplitConfig:
    """How patches are cut and split."""

    patch_size: int = 256
    """Patch edge in pixels."""
    overlap: int = 0
    """Pixels shared by neighbouring windows."""
    test_fraction: float = 0.2
    """Fraction of patches held out for the test set (paper: 0.2)."""
    val_fraction: float = 0.1
    """Fraction of all patches taken from the training part for validation / best-checkpoint
    selection (0 = the paper's plain 80/20 split; "best" then means the last epoch)."""
    method: Literal["random", "blocked"] = "random"
    """``random`` patch split (paper) or spatially ``blocked`` split."""
    block_size: int = 1024
    """Edge of the square spatial blocks of the blocked split, in pixels."""
    min_valid_fraction: float = 0.05
    """Windows with fewer labelled (non-255) pixels than this fraction are dropped."""
    seed: int = 0
    """Seed of the split."""


@dataclass(frozen=True)
class PatchSplit:
    """Patch windows and their assignment to ``train`` / ``val`` / ``test``."""

    patch_size: int
    windows: np.ndarray
    """``(n, 2)`` int64 window origins ``[y0, x0]``."""
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    cube_shape: tuple[int, int]
    config: dict[str, Any] = field(default_factory=dict)

    def subset(self, name: str) -> np.ndarray:
        """Window origins of subset ``name`` (``train``, ``val`` or ``test``)."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown subset {name!r}; expected train, val or test")
        return self.windows[getattr(self, name)]

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write the split (atomically) as JSON."""
        doc = {
            "patch_size": self.patch_size,
            "cube_shape": list(self.cube_shape),
            "config": self.config,
            "windows": self.windows.tolist(),
            "train": self.train.tolist(),
            "val": self.val.tolist(),
            "test": self.test.tolist(),
        }
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        storage.publish(tmp, path)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> PatchSplit:
        """Read a split written by :meth:`to_json` (a local path or a URL)."""
        doc = json.loads(storage.local_file(path).read_text())
        return cls(
            patch_size=int(doc["patch_size"]),
            windows=np.asarray(doc["windows"], dtype=np.int64).reshape(-1, 2),
            train=np.asarray(doc["train"], dtype=np.int64),
            val=np.asarray(doc["val"], dtype=np.int64),
            test=np.asarray(doc["test"], dtype=np.int64),
            cube_shape=(int(doc["cube_shape"][0]), int(doc["cube_shape"][1])),
            config=dict(doc.get("config", {})),
        )

    def check_cube(self, source: CubeSource) -> None:
        """Raise ``ValueError`` if the split was made for a cube of another shape."""
        if tuple(self.cube_shape) != tuple(source.shape):
            raise ValueError(
                f"split was made for a {self.cube_shape} cube, but {source.path} is {source.shape}"
            )


def valid_fraction(labels: np.ndarray, windows: np.ndarray, size: int) -> np.ndarray:
    """Fraction of labelled pixels in each ``size`` square window (origins ``(n, 2)``)."""
    valid = (labels != NODATA_LABEL).astype(np.int64)
    ii = np.pad(valid.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    y0, x0 = windows[:, 0], windows[:, 1]
    y1, x1 = y0 + size, x0 + size
    s = ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]
    return s / float(size * size)


def _overlaps_any(a: np.ndarray, b: np.ndarray, size: int) -> np.ndarray:
    """Flag the windows in ``a`` that share a pixel with any window in ``b``."""
    out = np.zeros(len(a), dtype=bool)
    if len(a) == 0 or len(b) == 0:
        return out
    for start in range(0, len(a), 1024):
        blk = a[start : start + 1024, None, :]
        d = np.abs(blk - b[None, :, :])
        out[start : start + 1024] = ((d[..., 0] < size) & (d[..., 1] < size)).any(1)
    return out


def make_split(source: CubeSource, config: SplitConfig = SplitConfig()) -> PatchSplit:
    """Cut the cube into windows and split them into train / val / test.

    ``random`` shuffles the windows with ``config.seed`` and takes the first
    ``test_fraction`` for test, the next ``val_fraction`` for validation. ``blocked`` groups
    windows by the ``block_size`` block holding their centre, shuffles the blocks and assigns
    whole blocks. In both cases train/val windows sharing any pixel with a test window, and
    train windows sharing pixels with a val window, are then dropped, so no pixel is in two
    subsets (this only removes windows when ``overlap > 0`` or blocks cut through windows).
    """
    if not 0 <= config.test_fraction < 1 or not 0 <= config.val_fraction < 1 - config.test_fraction:
        raise ValueError(
            f"need 0 <= test_fraction < 1 and 0 <= val_fraction < 1 - test_fraction, got "
            f"test_fraction={config.test_fraction}, val_fraction={config.val_fraction}"
        )
    size = config.patch_size
    labels = xr.DataArray(source.labels, dims=("y", "x"))
    windows = patch_windows(labels, size, config.overlap)
    keep = valid_fraction(source.labels, windows, size) >= max(config.min_valid_fraction, 1e-12)
    windows = windows[keep]
    n = len(windows)
    if n < 2:
        raise ValueError(
            f"cube {source.path} ({source.shape[0]} x {source.shape[1]} px) yields only {n} "
            f"labelled {size}-px patches; use a smaller patch_size"
        )
    rng = np.random.default_rng(config.seed)
    n_test = max(1, round(config.test_fraction * n)) if config.test_fraction > 0 else 0
    n_val = round(config.val_fraction * n)
    if config.method == "random":
        order = rng.permutation(n)
        test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    elif config.method == "blocked":
        centre = windows + size // 2
        block = centre // config.block_size
        _, block_id = np.unique(block, axis=0, return_inverse=True)
        block_id = block_id.reshape(-1)
        sets: dict[str, list[int]] = {"test": [], "val": [], "train": []}
        for b in rng.permutation(block_id.max() + 1):
            members = np.flatnonzero(block_id == b).tolist()
            if len(sets["test"]) < n_test:
                sets["test"] += members
            elif len(sets["val"]) < n_val:
                sets["val"] += members
            else:
                sets["train"] += members
        test, val, train = (np.asarray(sets[k], dtype=np.int64) for k in ("test", "val", "train"))
    else:
        raise ValueError(f"split method must be 'random' or 'blocked', got {config.method!r}")
    # no pixel in two subsets (only matters with overlapping windows or unaligned blocks)
    val = val[~_overlaps_any(windows[val], windows[test], size)]
    train = train[~_overlaps_any(windows[train], windows[np.concatenate([test, val])], size)]
    if len(train) == 0:
        raise ValueError(f"split of {n} patches left no training patches ({config})")
    return PatchSplit(
        patch_size=size,
        windows=windows,
        train=np.sort(train).astype(np.int64),
        val=np.sort(val).astype(np.int64),
        test=np.sort(test).astype(np.int64),
        cube_shape=source.shape,
        config={**config.__dict__},
    )
