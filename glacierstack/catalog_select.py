"""Choose the acquisition(s) of a modality among search results (:func:`select_items`).

Split out of :mod:`glacierstack.catalog`, which re-exports the public names.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pystac
import shapely.geometry

from glacierstack.catalog_items import EmptySearchError, item_geometry, item_interval
from glacierstack.modalities import ModalitySpec

__all__ = ["Selection", "group_acquisitions", "select_items"]


def _acq_key(item: pystac.Item) -> tuple[str, str, str]:
    t0, _ = item_interval(item)
    day = t0.strftime("%Y-%m-%d") if t0 else ""
    return (item.collection_id or "", str(item.properties.get("platform", "")), day)


def group_acquisitions(items: Sequence[pystac.Item]) -> list[list[pystac.Item]]:
    """Group items of one collection, platform and UTC day: adjacent scenes to mosaic.

    Groups are returned in chronological order; within a group items keep their input order.
    """
    groups: dict[tuple[str, str, str], list[pystac.Item]] = {}
    for it in items:
        groups.setdefault(_acq_key(it), []).append(it)
    return [groups[k] for k in sorted(groups, key=lambda k: (k[2], k[0], k[1]))]


def _coverage(items: Sequence[pystac.Item], aoi: shapely.geometry.base.BaseGeometry) -> float:
    union = shapely.unary_union([item_geometry(it) for it in items])
    return float(union.intersection(aoi).area / aoi.area) if aoi.area > 0 else 0.0


def _score(items: Sequence[pystac.Item], sort_by: str | None) -> float:
    if sort_by is None:
        return 0.0
    vals = [float(v) for it in items if (v := it.properties.get(sort_by)) is not None]
    return sum(vals) / len(vals) if vals else float("inf")


@dataclass(frozen=True)
class Selection:
    """Items chosen for a modality: one list per acquisition to load (1 for best, 2 for a pair)."""

    acquisitions: tuple[tuple[pystac.Item, ...], ...]
    coverage: tuple[float, ...]

    @property
    def item_ids(self) -> list[str]:
        """Ids of all chosen items."""
        return [it.id for acq in self.acquisitions for it in acq]


def select_items(
    items: Sequence[pystac.Item],
    spec: ModalitySpec,
    aoi_lonlat: Sequence[float],
    *,
    required_assets: Iterable[str] = (),
    min_coverage: float = 0.99,
) -> Selection:
    """Choose the acquisition(s) to load for a modality.

    Items lacking any of ``required_assets`` (e.g. Landsat L2SR items have no ``lwir11``) or
    whose id does not match ``spec.id_pattern`` are dropped first. The rest are grouped by
    :func:`group_acquisitions`; a group's score is the mean of ``spec.sort_by`` (lower is
    better). For ``select == "best"`` the best-scored group (then the latest) covering at
    least ``min_coverage`` of the AOI is chosen; if none covers it, groups are added greedily
    (largest new area, best score among near ties) and mosaicked as one acquisition. For
    ``select == "pair"`` the two covering acquisitions closest in time are returned, earlier
    first.

    Parameters
    ----------
    items
        Search results.
    spec
        The modality.
    aoi_lonlat
        Area of interest ``(lon_min, lat_min, lon_max, lat_max)``.
    required_assets
        Asset keys every chosen item must have.
    min_coverage
        Fraction of the AOI a group must cover to count as complete.

    Returns
    -------
    Selection
    """
    req = set(required_assets)
    usable = [it for it in items if req <= set(it.assets)]
    if spec.id_pattern is not None:
        usable = [it for it in usable if re.search(spec.id_pattern, it.id)]
    if not usable:
        ids = [it.id for it in items][:5]
        pattern = f" and an id matching {spec.id_pattern!r}" if spec.id_pattern else ""
        raise EmptySearchError(
            f"modality {spec.name!r} (collection {spec.collection!r}): none of the {len(items)} "
            f"items found ({ids}...) has all assets {sorted(req)}{pattern}"
        )
    aoi = shapely.geometry.box(*aoi_lonlat)
    groups = group_acquisitions(usable)
    scored = []
    for g in groups:
        g_sorted = sorted(g, key=lambda it: _score([it], spec.sort_by))
        cov = _coverage(g_sorted, aoi)
        scored.append((g_sorted, cov, _score(g_sorted, spec.sort_by), _acq_key(g_sorted[0])[2]))
    if spec.select == "pair":
        if len(scored) < 2:
            raise EmptySearchError(
                f"modality {spec.name!r} (collection {spec.collection!r}) needs two acquisitions "
                f"for an interferometric pair, found {len(scored)}: {[it.id for it in usable]}"
            )
        full = [s for s in scored if s[1] >= min_coverage] or scored
        full.sort(key=lambda s: s[3])
        if len(full) < 2:
            full = sorted(scored, key=lambda s: s[3])
        gaps = [
            (dt.date.fromisoformat(b[3]) - dt.date.fromisoformat(a[3]), i)
            for i, (a, b) in enumerate(zip(full, full[1:], strict=False))
        ]
        _, i = min(gaps)
        chosen = [full[i], full[i + 1]]
    else:
        return _select_best(scored, aoi, min_coverage)
    return Selection(
        acquisitions=tuple(tuple(s[0]) for s in chosen),
        coverage=tuple(s[1] for s in chosen),
    )


def _select_best(scored: list, aoi: Any, min_coverage: float) -> Selection:
    """One acquisition if one covers the AOI, else a greedy mosaic of several.

    Scenes west and east of each other often come from different days (adjacent Landsat paths
    are 7-9 days apart); they are then mosaicked as one acquisition, best group first.
    """
    ranked = sorted(scored, key=lambda s: (s[2], _neg_date(s[3])))
    complete = [s for s in ranked if s[1] >= min_coverage]
    if complete:
        chosen = [complete[0]]
    else:
        chosen, covered = [], shapely.geometry.Polygon()
        remaining = list(ranked)
        while remaining:
            gains = [_coverage_gain(s[0], covered, aoi) for s in remaining]
            best_gain = max(gains)
            if best_gain < 0.01:
                break
            # the best-scored group among those adding (nearly) the most area
            pick = next(s for s, g in zip(remaining, gains, strict=True) if g >= 0.9 * best_gain)
            chosen.append(pick)
            remaining.remove(pick)
            covered = shapely.unary_union([covered] + [item_geometry(it) for it in pick[0]])
            if covered.intersection(aoi).area / aoi.area >= min_coverage:
                break
    items = tuple(it for s in chosen for it in s[0])
    return Selection(acquisitions=(items,), coverage=(_coverage(items, aoi),))


def _coverage_gain(items: Sequence[pystac.Item], covered: Any, aoi: Any) -> float:
    geom = shapely.unary_union([item_geometry(it) for it in items]).intersection(aoi)
    return float(geom.difference(covered).area / aoi.area) if aoi.area > 0 else 0.0


def _neg_date(day: str) -> int:
    return -dt.date.fromisoformat(day).toordinal() if day else 0
