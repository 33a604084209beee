"""Training batches: :class:`PatchDataset`, :class:`PatchSampler`, :func:`batch_loader`, weights.

Split out of :mod:`cryonet.data`, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import torch

from cryonet.patchsource import CubeSource
from glacierstack.classes import NUM_CLASSES

__all__ = ["PatchDataset", "PatchSampler", "batch_loader", "class_counts", "class_weights"]


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
    With ``repeats=R`` an epoch is ``R`` passes over the patches, each its own permutation
    (and transform codes), so small training sets give longer epochs.
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
        repeats: int = 1,
    ) -> None:
        if repeats < 1:
            raise ValueError(f"PatchSampler repeats must be >= 1, got {repeats}")
        self.n, self.shuffle, self.augment, self.seed = n, shuffle, augment, seed
        self.repeats = repeats
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
        passes = [
            rng.permutation(self.n) if self.shuffle else np.arange(self.n)
            for _ in range(self.repeats)
        ]
        order = np.concatenate(passes) if passes else np.arange(0)
        total = self.n * self.repeats
        codes = rng.integers(0, 8, total) if self.augment else np.zeros(total, np.int64)
        per = total // self.world_size if self.equal_shards else None
        order = order[self.rank :: self.world_size][:per]
        codes = codes[self.rank :: self.world_size][:per]
        return order, codes

    def __iter__(self) -> Iterator[Any]:
        order, codes = self._order()
        for i, c in zip(order[self.start :], codes[self.start :], strict=True):
            yield (int(i), int(c)) if self.augment else int(i)

    def __len__(self) -> int:
        return max(0, len(self._order()[0]) - self.start)
