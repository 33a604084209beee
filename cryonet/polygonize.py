"""Outline polygons of a class group, block by block, with memory bounded by the block size.

The class map is read one square block at a time. In each block the group's pixels are labelled
into 4-connected components (``scipy.ndimage.label``), each component becomes one polygon
(``rasterio.features.shapes``, holes included) and its pixel count, confidence sum and minimum
are kept. A component that crosses a block border is one component in each block; the labels on
the two sides of every border are paired (4-neighbours that are both in the group) and merged with
a union-find, and the pieces of a merged component are dissolved into one polygon
(``shapely.union_all``; the pieces are pixel-aligned and share whole edges, so the union is
exact). The result equals polygonising the whole map at once (tested with blocks that cut through
polygons and holes), but only one block of the map, its confidence and its labels are in memory,
plus the polygons and one row and one column of labels per block row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["GroupPolygons", "polygonize_group"]


@dataclass
class GroupPolygons:
    """The group's polygons (map CRS) and, per polygon, its pixel count and confidence."""

    geometries: list[Any] = field(default_factory=list)
    n_pixels: list[int] = field(default_factory=list)
    mean_confidence: list[float] = field(default_factory=list)
    min_confidence: list[float] = field(default_factory=list)


class _Components:
    """Global component ids (1-based) with their pieces, statistics and a union-find."""

    def __init__(self) -> None:
        self.parent: list[int] = [0]
        self.pieces: list[list[Any]] = [[]]
        self.count: list[int] = [0]
        self.total: list[float] = [0.0]
        self.minimum: list[float] = [np.inf]

    def add(self, count: np.ndarray, total: np.ndarray, minimum: np.ndarray) -> int:
        """Register one block's components; return the offset of their global ids."""
        offset = len(self.parent) - 1
        n = len(count)
        self.parent.extend(range(offset + 1, offset + n + 1))
        self.pieces.extend([] for _ in range(n))
        self.count.extend(int(c) for c in count)
        self.total.extend(float(t) for t in total)
        self.minimum.extend(float(m) for m in minimum)
        return offset

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def join(self, a: np.ndarray, b: np.ndarray) -> None:
        """Merge the components paired across a block border (0 = not in the group)."""
        both = (a > 0) & (b > 0)
        for x, y in {(int(p), int(q)) for p, q in zip(a[both], b[both], strict=True)}:
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)

    def result(self) -> GroupPolygons:
        """Dissolve the pieces of every merged component; ordered by first appearance."""
        import shapely

        roots: dict[int, list[int]] = {}
        for k in range(1, len(self.parent)):
            roots.setdefault(self.find(k), []).append(k)
        out = GroupPolygons()
        for members in roots.values():
            pieces = [p for k in members for p in self.pieces[k]]
            geom = pieces[0] if len(pieces) == 1 else shapely.union_all(pieces)
            n = sum(self.count[k] for k in members)
            out.geometries.append(geom)
            out.n_pixels.append(n)
            out.mean_confidence.append(sum(self.total[k] for k in members) / n)
            out.min_confidence.append(min(self.minimum[k] for k in members))
        return out


def _global(edge: np.ndarray, offset: int) -> np.ndarray:
    """Block labels of one row or column as global ids (0 stays 0: not in the group)."""
    return np.where(edge > 0, edge.astype(np.int64) + offset, 0)


def polygonize_group(
    classes: Any,
    probabilities: Any,
    ids: Sequence[int],
    names: Sequence[str],
    scale: float,
    transform: Any,
    block: int,
) -> GroupPolygons:
    """Polygons of the pixels whose class is in ``ids``, block by block.

    Parameters
    ----------
    classes
        Lazy ``(y, x)`` uint8 class map (``DataArray``).
    probabilities
        Lazy ``(class, y, x)`` uint8 probabilities with a ``class`` coordinate of names.
    ids, names
        The group's class ids and names.
    scale
        Probability per uint8 step.
    transform
        The map's affine transform.
    block
        Side of the blocks read at a time, in pixels.
    """
    import rasterio.features
    from affine import Affine
    from scipy import ndimage
    from shapely.geometry import shape

    h, w = classes.shape
    comps = _Components()
    above: np.ndarray | None = None  # global labels of the last row of the previous block row
    for y0 in range(0, h, block):
        left: np.ndarray | None = None  # global labels of the last column of the previous block
        row_bottom = []
        for x0 in range(0, w, block):
            win = {"y": slice(y0, y0 + block), "x": slice(x0, x0 + block)}
            mask = np.isin(classes.isel(win).values, ids)
            conf = np.zeros(mask.shape, np.float32)
            for name in names:
                conf += probabilities.isel(win).sel({"class": name}).values
            conf *= np.float32(scale)
            labels, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(2, 1))
            idx = np.arange(1, n + 1)
            count = np.bincount(labels.ravel(), minlength=n + 1)[1:]
            total = np.bincount(labels.ravel(), weights=conf.ravel(), minlength=n + 1)[1:]
            minimum = np.asarray(ndimage.minimum(conf, labels, idx)) if n else np.zeros(0)
            offset = comps.add(count, total, minimum)
            if n:
                t = transform @ Affine.translation(x0, y0)
                for geom, value in rasterio.features.shapes(
                    labels, mask=mask, connectivity=4, transform=t
                ):
                    comps.pieces[offset + int(value)].append(shape(geom))
            if left is not None:
                comps.join(left, _global(labels[:, 0], offset))
            if above is not None:
                comps.join(above[x0 : x0 + labels.shape[1]], _global(labels[0], offset))
            left = _global(labels[:, -1], offset)
            row_bottom.append(_global(labels[-1], offset))
        above = np.concatenate(row_bottom)
    return comps.result()
