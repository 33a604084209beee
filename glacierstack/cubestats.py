"""Normalisation statistics of a cube, computed by the tile tasks as they write it.

Each tile task computes, for the block it writes, per band the count of finite values, their
mean and the sum of squared deviations from that mean (``m2``, two passes over the block in
memory), and the histogram of its labels: a :class:`TileStats`. The store writer merges the
tiles' statistics in row-major tile order with the pairwise update of Chan, Golub & LeVeque
(1979), which is numerically stable (e.g. elevation in metres) and needs no second pass over
the written store. Because the merge order is fixed, the result does not depend on the
scheduler or on the order in which tiles finish.

A tile's statistics are also stored in its progress marker (JSON; Python's float ``repr``
round-trips exactly), so a resumed build merges exactly the numbers an uninterrupted one does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["TileStats", "merge_all"]

HIST_BINS = 256  # uint8 labels


@dataclass(frozen=True)
class TileStats:
    """Per-band moments of one block's finite values, and its label histogram.

    Attributes
    ----------
    count
        int64 ``(band,)``: finite values per band.
    mean
        float64 ``(band,)``: their mean (0 where ``count`` is 0).
    m2
        float64 ``(band,)``: sum of squared deviations from ``mean``.
    hist
        int64 ``(256,)``: pixels per label value.

    Examples
    --------
    >>> a = TileStats.of(np.array([[[1.0, 2.0]]]), np.array([[0, 1]], np.uint8))
    >>> b = TileStats.of(np.array([[[3.0, np.nan]]]), np.array([[1, 255]], np.uint8))
    >>> s = merge_all([a, b])
    >>> s.count.tolist(), s.mean.tolist(), (s.m2 / s.count).tolist(), s.hist[[0, 1, 255]].tolist()
    ([3], [2.0], [0.6666666666666666], [1, 2, 1])
    """

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    hist: np.ndarray

    @classmethod
    def of(cls, features: np.ndarray, labels: np.ndarray) -> TileStats:
        """Statistics of a ``(band, y, x)`` feature block and its ``(y, x)`` uint8 labels.

        One band at a time in float64, so the extra memory is about one band of the block.
        """
        k = features.shape[0]
        count, mean, m2 = np.zeros(k, np.int64), np.zeros(k), np.zeros(k)
        for b in range(k):
            v = features[b]
            x = v[np.isfinite(v)].astype(np.float64)
            if x.size:
                count[b], mean[b] = x.size, x.sum() / x.size
                m2[b] = np.square(x - mean[b]).sum()
        hist = np.bincount(np.asarray(labels, np.uint8).ravel(), minlength=HIST_BINS)
        return cls(count, mean, m2, hist.astype(np.int64))

    def merge(self, other: TileStats) -> TileStats:
        """Combine with ``other``: the statistics of both blocks (Chan et al. pairwise update)."""
        n = self.count + other.count
        safe = np.maximum(n, 1)
        delta = other.mean - self.mean
        mean = np.where(n > 0, self.mean + delta * (other.count / safe), 0.0)
        m2 = self.m2 + other.m2 + np.square(delta) * (self.count * other.count / safe)
        return TileStats(n, mean, m2, self.hist + other.hist)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per band (0 where there is no value)."""
        return np.sqrt(self.m2 / np.maximum(self.count, 1))

    def to_bytes(self) -> bytes:
        """Exact JSON record (for a progress marker)."""
        return json.dumps({
            "count": self.count.tolist(),
            "mean": self.mean.tolist(),
            "m2": self.m2.tolist(),
            "hist": self.hist.tolist(),
        }).encode()  # fmt: skip

    @classmethod
    def from_bytes(cls, raw: bytes) -> TileStats | None:
        """Read :meth:`to_bytes`; ``None`` for an empty or foreign record."""
        try:
            d = json.loads(raw)
            return cls(
                np.asarray(d["count"], np.int64),
                np.asarray(d["mean"], np.float64),
                np.asarray(d["m2"], np.float64),
                np.asarray(d["hist"], np.int64),
            )
        except (ValueError, KeyError, TypeError):
            return None


def merge_all(stats: Iterable[TileStats]) -> TileStats:
    """Merge tile statistics in the given order (row-major tiles: a fixed, reproducible result)."""
    it = iter(stats)
    try:
        total = next(it)
    except StopIteration:
        raise ValueError("no tile statistics to merge") from None
    for s in it:
        total = total.merge(s)
    return total
