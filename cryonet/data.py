"""Training patches from a glacierstack Zarr cube, as a PyTorch ``Dataset``.

Patch windows are defined with :mod:`xbatcher` (``BatchSchema`` over the cube's ``y``/``x``
dimensions); the pixels are then read directly, one contiguous slice per patch, either from an
in-memory copy of the cube (small cubes: the default when the features fit in
``memory_limit``) or from the Zarr arrays through a small per-worker cache of decoded chunk
blocks (large cubes). xbatcher's own per-sample ``isel`` path is far slower (see
``benchmarks/bench_loader.py``).

The split of the windows into ``train`` / ``val`` / ``test`` (random, as in the paper, or
spatially blocked) is a :class:`PatchSplit`, written as JSON into every run directory so that
evaluation and model comparisons use exactly the same patches.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr

from cryonet.bands import band_index
from glacierstack.classes import NODATA_LABEL, NUM_CLASSES

__all__ = [
    "CubeSource",
    "PatchDataset",
    "PatchSampler",
    "PatchSplit",
    "SplitConfig",
    "batch_loader",
    "class_counts",
    "class_weights",
    "make_split",
    "open_cube",
    "patch_windows",
]

SPLIT_FILE = "split.json"


# ----------------------------------------------------------------------------- cube access
def open_cube(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a glacierstack Zarr cube lazily (NumPy-backed), refusing incomplete stores.

    Thin wrapper of :func:`glacierstack.store.open_cube` with ``chunks=None``.
    """
    from glacierstack.store import open_cube as _open

    return _open(path, chunks=None)


class CubeSource:
    """Fast patch reads from a cube: in memory or from Zarr through a chunk-block cache.

    Parameters
    ----------
    path
        Zarr cube path (contract layout of ``docs/developer/contracts.md``).
    cache
        ``"memory"`` loads features and labels once (shared with forked DataLoader workers);
        ``"zarr"`` reads chunk blocks on demand, keeping ``chunk_cache`` decoded blocks per
        process; ``"auto"`` picks ``"memory"`` when the features take at most
        ``memory_limit`` bytes.
    memory_limit
        Size threshold for ``cache="auto"``.
    chunk_cache
        Number of decoded chunk blocks kept per process in ``"zarr"`` mode.
    bands
        The bands to read, by name and in this order (a model's input bands); ``None``: all of
        the cube's, in its order. This is the one band rule of cryonet: the cube must hold a
        model's bands, its order and extra bands do not matter (as for ``cryonet predict``).
    stats
        ``(mean, std)`` per selected band to normalise with instead of the cube's own (e.g. a
        checkpoint's statistics); see :func:`normalisation`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        cache: Literal["auto", "memory", "zarr"] = "auto",
        memory_limit: int = 4 * 2**30,
        chunk_cache: int = 8,
        *,
        bands: Sequence[str] | None = None,
        stats: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        # a URL (s3://...) stays a string: Path() would fold its '//'
        self.path: Path | str = str(path) if "://" in str(path) else Path(path)
        ds = open_cube(self.path)
        for var in ("features", "labels", "band_mean", "band_std"):
            if var not in ds:
                raise ValueError(f"Zarr cube {self.path} has no variable {var!r}")
        feats = ds["features"]
        if feats.dims != ("band", "y", "x") or ds["labels"].dims != ("y", "x"):
            raise ValueError(
                f"Zarr cube {self.path}: expected features (band, y, x) and labels (y, x), got "
                f"{feats.dims} and {ds['labels'].dims}"
            )
        cube_bands = [str(b) for b in ds["band"].values]
        index = band_index(bands, cube_bands, f"cube {self.path}") if bands is not None else None
        self._index: list[int] | None = index if index != list(range(len(cube_bands))) else None
        """Cube channels read, in order (``None``: all, in the cube's order)."""
        self.bands: tuple[str, ...] = tuple(bands) if bands is not None else tuple(cube_bands)
        mean = np.asarray(ds["band_mean"].values, dtype=np.float32)
        std = np.asarray(ds["band_std"].values, dtype=np.float32)
        if stats is not None:
            mean, std = (np.asarray(v, dtype=np.float32).reshape(-1) for v in stats)
            if mean.shape != (len(self.bands),) or std.shape != (len(self.bands),):
                raise ValueError(
                    f"stats for cube {self.path} have {mean.size}/{std.size} values; expected "
                    f"{len(self.bands)} (bands {list(self.bands)})"
                )
        elif self._index is not None:
            mean, std = mean[self._index], std[self._index]
        self.mean, self.std = mean, std
        self.classes: list[dict[str, Any]] = list(ds.attrs.get("classes", []))
        self.attrs = dict(ds.attrs)
        self.shape: tuple[int, int] = (int(ds.sizes["y"]), int(ds.sizes["x"]))
        enc = feats.encoding.get("chunks") or feats.encoding.get("preferred_chunks")
        if isinstance(enc, dict):
            enc = (enc.get("band"), enc.get("y"), enc.get("x"))
        self.chunks: tuple[int, int] = (
            (int(enc[1]), int(enc[2])) if enc and enc[1] and enc[2] else (512, 512)
        )
        nbytes = len(self.bands) * self.shape[0] * self.shape[1] * 4
        self.mode: Literal["memory", "zarr"] = (
            ("memory" if nbytes <= memory_limit else "zarr") if cache == "auto" else cache
        )
        if self.mode not in ("memory", "zarr"):
            raise ValueError(f"cache must be 'auto', 'memory' or 'zarr', got {cache!r}")
        self.chunk_cache = chunk_cache
        self._blocks: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._zarr: Any = None
        ds.close()
        import zarr

        group = zarr.open_group(str(self.path), mode="r")
        # raw uint8 (xarray would decode the 255 fill value to NaN floats)
        self.labels = np.asarray(group["labels"][:], dtype=np.uint8)  # type: ignore[index]
        """All labels (uint8, small) are always held in memory."""
        self.features: np.ndarray | None = None
        if self.mode == "memory":
            arr = self._features_zarr()
            sel = arr[...] if self._index is None else arr.get_orthogonal_selection(self._index)
            self.features = np.asarray(sel, dtype=np.float32)

    # pickling for DataLoader workers with the "spawn" start method: drop open handles
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_zarr"] = None
        state["_blocks"] = OrderedDict()
        return state

    @property
    def n_bands(self) -> int:
        """Number of feature bands."""
        return len(self.bands)

    def _features_zarr(self) -> Any:
        if self._zarr is None:
            import zarr

            arr = zarr.open_group(str(self.path), mode="r")["features"]
            for key in ("scale_factor", "add_offset"):
                if key in arr.attrs:
                    raise ValueError(
                        f"Zarr cube {self.path}: packed features ({key}) are not supported; "
                        "use cache='memory'"
                    )
            self._zarr = arr
        return self._zarr

    def _block(self, by: int, bx: int) -> np.ndarray:
        key = (by, bx)
        if key in self._blocks:
            self._blocks.move_to_end(key)
            return self._blocks[key]
        cy, cx = self.chunks
        arr = self._features_zarr()
        rows, cols = slice(by * cy, (by + 1) * cy), slice(bx * cx, (bx + 1) * cx)
        chans = slice(None) if self._index is None else self._index
        data = np.asarray(arr.get_orthogonal_selection((chans, rows, cols)), np.float32)
        self._blocks[key] = data
        if len(self._blocks) > self.chunk_cache:
            self._blocks.popitem(last=False)
        return data

    def read_features(self, y0: int, x0: int, size: int) -> np.ndarray:
        """Return the raw (unnormalised) features ``(band, size, size)`` at ``(y0, x0)``."""
        if self.features is not None:
            return self.features[:, y0 : y0 + size, x0 : x0 + size]
        cy, cx = self.chunks
        out = np.empty((self.n_bands, size, size), np.float32)
        for by in range(y0 // cy, (y0 + size - 1) // cy + 1):
            for bx in range(x0 // cx, (x0 + size - 1) // cx + 1):
                blk = self._block(by, bx)
                ya, yb = max(y0, by * cy), min(y0 + size, (by + 1) * cy)
                xa, xb = max(x0, bx * cx), min(x0 + size, (bx + 1) * cx)
                out[:, ya - y0 : yb - y0, xa - x0 : xb - x0] = blk[
                    :, ya - by * cy : yb - by * cy, xa - bx * cx : xb - bx * cx
                ]
        return out

    def read_labels(self, y0: int, x0: int, size: int) -> np.ndarray:
        """Return the labels ``(size, size)`` at ``(y0, x0)``."""
        return self.labels[y0 : y0 + size, x0 : x0 + size]


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
        os.replace(tmp, path)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> PatchSplit:
        """Read a split written by :meth:`to_json`."""
        doc = json.loads(Path(path).read_text())
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


def _valid_fraction(labels: np.ndarray, windows: np.ndarray, size: int) -> np.ndarray:
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
    keep = _valid_fraction(source.labels, windows, size) >= max(config.min_valid_fraction, 1e-12)
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


# ----------------------------------------------------------------------------- class weights
def class_counts(
    source: CubeSource, windows: np.ndarray, size: int, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """Pixel count per class over the given windows (255 ignored; overlaps counted twice)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for y0, x0 in windows:
        lab = source.read_labels(int(y0), int(x0), size)
        counts += np.bincount(lab.reshape(-1), minlength=256)[:num_classes]
    return counts


def class_weights(
    counts: np.ndarray, method: Literal["inverse", "sqrt_inverse", "median", "none"] = "inverse"
) -> np.ndarray:
    """Loss weights from class pixel counts.

    ``inverse``: ``total / (K_present * count)`` (scikit-learn's "balanced"); ``sqrt_inverse``:
    its square root; ``median``: median-frequency balancing (Eigen & Fergus 2015,
    ``median(freq) / freq``); ``none``: ones. Classes without training pixels get weight 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    w = np.zeros_like(counts)
    if method == "none":
        w[:] = 1.0
        return w.astype(np.float32)
    if not present.any():
        raise ValueError("no labelled training pixels: cannot compute class weights")
    freq = counts[present] / counts[present].sum()
    if method == "inverse":
        w[present] = 1.0 / (present.sum() * freq)
    elif method == "sqrt_inverse":
        w[present] = np.sqrt(1.0 / (present.sum() * freq))
    elif method == "median":
        w[present] = np.median(freq) / freq
    else:
        raise ValueError(
            f"class weighting must be inverse, sqrt_inverse, median or none, got {method!r}"
        )
    return w.astype(np.float32)


# ----------------------------------------------------------------------------- dataset
def _augment(x: np.ndarray, y: np.ndarray, code: int) -> tuple[np.ndarray, np.ndarray]:
    """Apply one of the 8 dihedral transforms (``code`` 0..7: rot90 ``code % 4``, then flip)."""
    k, flip = code % 4, code >= 4
    if k:
        x, y = np.rot90(x, k, axes=(-2, -1)), np.rot90(y, k, axes=(-2, -1))
    if flip:
        x, y = x[..., ::-1], y[..., ::-1]
    return x, y


class PatchDataset(torch.utils.data.Dataset):
    """Normalised ``(features, labels)`` patches at fixed windows of a cube.

    Items are ``(x, y)`` with ``x`` float32 ``(band, P, P)`` normalised as
    ``(v - band_mean) / band_std`` (missing values -> 0, i.e. the band mean) and ``y`` int64
    ``(P, P)`` with 255 = ignore. The index may be an ``int`` or ``(int, aug)`` with ``aug`` in
    0..7 selecting a flip/rot90 (what :class:`PatchSampler` yields when augmenting), so the
    augmentation is a pure function of the sampler's seed and epoch, independent of the
    number of workers. A ``list`` of such indices returns a whole batch ``(B, band, P, P)``,
    ``(B, P, P)`` filled in place (see :func:`batch_loader`).
    """

    def __init__(self, source: CubeSource, windows: np.ndarray, patch_size: int) -> None:
        self.source = source
        self.windows = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
        self.patch_size = patch_size
        std = np.where(source.std > 0, source.std, 1.0).astype(np.float32)
        self._scale = (1.0 / std)[:, None, None]
        self._offset = (-source.mean / std).astype(np.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.windows)

    def _fill(self, item: int | tuple[int, int], x: np.ndarray, y: np.ndarray) -> None:
        """Write one normalised (and augmented) patch into ``x`` / ``y`` with one copy."""
        idx, code = (item, 0) if isinstance(item, int | np.integer) else item
        y0, x0 = (int(v) for v in self.windows[idx])
        raw = self.source.read_features(y0, x0, self.patch_size)
        lab = self.source.read_labels(y0, x0, self.patch_size)
        if code:  # views only; the normalisation below does the single copy
            raw, lab = _augment(raw, lab, int(code))
        np.multiply(raw, self._scale, out=x)
        np.add(x, self._offset, out=x)
        bad = ~np.isfinite(x)
        if bad.any():
            x[bad] = 0.0
        y[...] = lab

    def __getitem__(
        self, item: int | tuple[int, int] | list[int | tuple[int, int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batched = isinstance(item, list)
        items: list[int | tuple[int, int]] = item if isinstance(item, list) else [item]
        p, c = self.patch_size, self.source.n_bands
        x = np.empty((len(items), c, p, p), np.float32)
        y = np.empty((len(items), p, p), np.int64)
        for k, it in enumerate(items):
            self._fill(it, x[k], y[k])
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        return (xt, yt) if batched else (xt[0], yt[0])


def batch_loader(
    dataset: PatchDataset,
    sampler: torch.utils.data.Sampler,
    batch_size: int,
    *,
    num_workers: int = 0,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """DataLoader that assembles each batch inside the dataset (one copy per patch).

    The sampler's items are grouped by a ``BatchSampler`` and ``dataset[list]`` fills one
    preallocated ``(B, C, P, P)`` array, instead of per-sample tensors that the default
    collate would copy again with ``torch.stack``. Batches equal those of a plain
    ``DataLoader(dataset, batch_size, sampler=sampler)``.
    """
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        sampler=torch.utils.data.BatchSampler(sampler, batch_size, drop_last),
        num_workers=num_workers,
        generator=generator,
        pin_memory=pin_memory,
        persistent_workers=False,
    )


class PatchSampler(torch.utils.data.Sampler):
    """Deterministic, resumable, distributed-aware sampler over patch indices.

    The order of epoch ``e`` depends only on ``(seed, e)``: a permutation (or, with
    ``shuffle=False``, ``0..n-1``), then this rank's share ``perm[rank::world_size]``
    (training: truncated so all ranks see the same number). :meth:`set_start` skips the first
    samples of the epoch, for resuming mid-epoch. With ``augment=True`` items are
    ``(index, code)`` with a random dihedral transform code drawn from the same generator.
    """

    def __init__(
        self,
        n: int,
        *,
        shuffle: bool = True,
        augment: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        equal_shards: bool = True,
    ) -> None:
        self.n, self.shuffle, self.augment, self.seed = n, shuffle, augment, seed
        self.rank, self.world_size, self.equal_shards = rank, world_size, equal_shards
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (changes order and augmentation)."""
        self.epoch = epoch
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of this rank's order in the current epoch."""
        self.start = start

    def _order(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        codes = rng.integers(0, 8, self.n) if self.augment else np.zeros(self.n, np.int64)
        per = self.n // self.world_size if self.equal_shards else None
        order = order[self.rank :: self.world_size][:per]
        codes = codes[self.rank :: self.world_size][:per]
        return order, codes

    def __iter__(self) -> Iterator[Any]:
        order, codes = self._order()
        for i, c in zip(order[self.start :], codes[self.start :], strict=True):
            yield (int(i), int(c)) if self.augment else int(i)

    def __len__(self) -> int:
        return max(0, len(self._order()[0]) - self.start)
