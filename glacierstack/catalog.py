"""Open STAC catalogs (by provider name, API URL or static path), search and choose scenes.

>>> cat = open_catalog("earth-search")                      # doctest: +SKIP
>>> items = cat.search("sentinel-2-c1-l2a", bbox=(86.0, 28.2, 86.1, 28.3),
...                    datetime="2023-10-01/2023-10-31")    # doctest: +SKIP

Static sources are a ``catalog.json``/``collection.json`` (walked recursively), a single item
JSON, or an ItemCollection / list-of-items JSON (as recorded from an API). The provider config
(:mod:`glacierstack.modalities`) that maps assets to bands is picked by name, by matching the
API URL, by the root links of recorded items, or defaults to ``synthetic`` (the config of the
demo catalog and of ``glacierstack stac-from-files`` catalogs).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pystac
import shapely.geometry
from pyproj import Transformer

from glacierstack.modalities import ModalitySpec, ProviderConfig, get_provider, list_providers

__all__ = [
    "Catalog",
    "EmptySearchError",
    "infer_provider",
    "open_catalog",
    "parse_datetime",
    "bbox_to_lonlat",
    "group_acquisitions",
    "select_items",
]


class EmptySearchError(LookupError):
    """A search returned no (usable) items; the message names collection, bbox and dates."""


# ---------------------------------------------------------------------------- datetimes
_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def _parse_one(s: str, end: bool) -> dt.datetime | None:
    s = s.strip()
    if s in ("", ".."):
        return None
    m = _PARTIAL.match(s)
    if m:
        y, mo, d = int(m.group(1)), m.group(2), m.group(3)
        if d is not None:
            start = dt.datetime(y, int(mo), int(d), tzinfo=dt.UTC)
            nxt = start + dt.timedelta(days=1)
        elif mo is not None:
            start = dt.datetime(y, int(mo), 1, tzinfo=dt.UTC)
            nxt = dt.datetime(y + (int(mo) == 12), int(mo) % 12 + 1, 1, tzinfo=dt.UTC)
        else:
            start = dt.datetime(y, 1, 1, tzinfo=dt.UTC)
            nxt = dt.datetime(y + 1, 1, 1, tzinfo=dt.UTC)
        return nxt - dt.timedelta(microseconds=1) if end else start
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(
            f"cannot parse datetime {s!r}; expected YYYY, YYYY-MM, YYYY-MM-DD or ISO 8601"
        ) from e
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def parse_datetime(value: str | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Parse a STAC-style datetime window into UTC ``(start, end)`` (inclusive).

    ``"2018-10"`` means the whole month, ``"2018-10-01/2018-10-31"`` both days inclusive,
    ``"../2019-01-01"`` is open at the start; ``None`` means no constraint.
    """
    if value is None:
        return None, None
    parts = str(value).split("/")
    if len(parts) == 1:
        return _parse_one(parts[0], end=False), _parse_one(parts[0], end=True)
    if len(parts) != 2:
        raise ValueError(f"datetime window {value!r} must be 'start/end' or a single date")
    start, end = _parse_one(parts[0], end=False), _parse_one(parts[1], end=True)
    if start and end and end < start:
        raise ValueError(f"datetime window {value!r} ends before it starts")
    return start, end


def _format_window(start: dt.datetime | None, end: dt.datetime | None) -> str | None:
    if start is None and end is None:
        return None

    def f(t: dt.datetime | None) -> str:
        return ".." if t is None else t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    return f"{f(start)}/{f(end)}"


def pad_window(value: str | None, days: int) -> str | None:
    """Widen a datetime window by ``days`` on both sides (open ends stay open)."""
    start, end = parse_datetime(value)
    if days:
        pad = dt.timedelta(days=days)
        start = start - pad if start else None
        end = end + pad if end else None
    return _format_window(start, end)


# ---------------------------------------------------------------------------- geometry
def bbox_to_lonlat(
    bbox: Sequence[float], bbox_crs: str = "EPSG:4326"
) -> tuple[float, float, float, float]:
    """Reproject ``(xmin, ymin, xmax, ymax)`` from ``bbox_crs`` to lon/lat (densified edges)."""
    if len(bbox) != 4:
        raise ValueError(f"bbox must be (xmin, ymin, xmax, ymax), got {bbox!r}")
    xmin, ymin, xmax, ymax = (float(v) for v in bbox)
    if not (xmax > xmin and ymax > ymin):
        raise ValueError(f"bbox {tuple(bbox)} in {bbox_crs} is empty or inverted")
    tr = Transformer.from_crs(bbox_crs, "EPSG:4326", always_xy=True)
    return tuple(tr.transform_bounds(xmin, ymin, xmax, ymax, densify_pts=21))  # type: ignore[return-value]


def _item_geometry(item: pystac.Item) -> shapely.geometry.base.BaseGeometry:
    if item.geometry:
        return shapely.geometry.shape(item.geometry)
    if item.bbox:
        return shapely.geometry.box(*item.bbox[:2], *item.bbox[-2:])
    raise ValueError(f"item {item.id!r} has neither geometry nor bbox")


def _item_interval(item: pystac.Item) -> tuple[dt.datetime | None, dt.datetime | None]:
    props = item.properties
    start = props.get("start_datetime")
    end = props.get("end_datetime")
    if start or end:
        return (
            _parse_one(start, False) if start else None,
            _parse_one(end, True) if end else None,
        )
    t = item.datetime
    if t is not None and t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t, t


# ---------------------------------------------------------------------------- catalog
@dataclass
class Catalog:
    """A searchable STAC source plus the provider config that maps its assets to bands.

    Use :func:`open_catalog` to build one.
    """

    source: str
    """What was opened (name, URL or path)."""
    provider: ProviderConfig
    client: Any = field(default=None, repr=False)
    """``pystac_client.Client`` for APIs (``None`` for static sources)."""
    items: list[pystac.Item] | None = field(default=None, repr=False)
    """All items of a static source."""

    @property
    def is_static(self) -> bool:
        """True for static catalogs / recorded item files."""
        return self.client is None

    def collections(self) -> list[str]:
        """Return the collection ids available (static: those of the items)."""
        if self.is_static:
            return sorted({it.collection_id or "" for it in self.items or []})
        return sorted(c.id for c in self.client.get_collections())

    def search(
        self,
        collection: str,
        bbox: Sequence[float],
        *,
        bbox_crs: str = "EPSG:4326",
        datetime: str | None = None,
        limit: int | None = None,
        raise_empty: bool = True,
    ) -> list[pystac.Item]:
        """Items of ``collection`` intersecting ``bbox`` within the ``datetime`` window.

        Parameters
        ----------
        collection
            Collection id.
        bbox
            ``(xmin, ymin, xmax, ymax)`` in ``bbox_crs``.
        bbox_crs
            CRS of ``bbox`` (any pyproj-readable CRS).
        datetime
            Window as in :func:`parse_datetime` (``None``: any time).
        limit
            Maximum number of items returned (``None``: all).
        raise_empty
            Raise :class:`EmptySearchError` when nothing matches (default).

        Returns
        -------
        list of pystac.Item
        """
        ll = bbox_to_lonlat(bbox, bbox_crs)
        start, end = parse_datetime(datetime)
        if self.is_static:
            found = self._search_static(collection, ll, start, end)
        else:
            search = self.client.search(
                collections=[collection],
                bbox=ll,
                datetime=_format_window(start, end),
                max_items=limit,
            )
            found = list(search.items())
        if limit is not None:
            found = found[:limit]
        if not found and raise_empty:
            have = f"; collections here: {self.collections()}" if self.is_static else ""
            raise EmptySearchError(
                f"no items in collection {collection!r} of {self.source!r} for bbox "
                f"{tuple(round(v, 6) for v in bbox)} ({bbox_crs}; lon/lat "
                f"{tuple(round(v, 5) for v in ll)}) and datetime {datetime or 'any'!r}{have}"
            )
        return found

    def _search_static(
        self,
        collection: str,
        ll: tuple[float, float, float, float],
        start: dt.datetime | None,
        end: dt.datetime | None,
    ) -> list[pystac.Item]:
        query = shapely.geometry.box(*ll)
        out = []
        for it in self.items or []:
            if it.collection_id != collection:
                continue
            if not _item_geometry(it).intersects(query):
                continue
            t0, t1 = _item_interval(it)
            if start is not None and t1 is not None and t1 < start:
                continue
            if end is not None and t0 is not None and t0 > end:
                continue
            out.append(it)
        return out

    def search_modality(
        self,
        modality: str | ModalitySpec,
        bbox: Sequence[float],
        *,
        bbox_crs: str = "EPSG:4326",
        datetime: str | None = None,
        limit: int | None = None,
    ) -> list[pystac.Item]:
        """Search the collection of a modality, honouring its ``static``/``search_pad_days``."""
        spec = self.provider.modality(modality) if isinstance(modality, str) else modality
        window = None if spec.static else pad_window(datetime, spec.search_pad_days)
        return self.search(spec.collection, bbox, bbox_crs=bbox_crs, datetime=window, limit=limit)


def _detach(d: dict[str, Any]) -> pystac.Item:
    """Item from a recorded dict, without its remote ``root`` link.

    pystac resolves the root link (an HTTP request) whenever a link href is made absolute;
    recorded API items point at the live API, so they are detached to stay offline.
    """
    d = dict(d)
    d["links"] = [ln for ln in d.get("links", []) if ln.get("rel") != "root"]
    return pystac.Item.from_dict(d)


def _read_static(path: Path | str) -> tuple[list[pystac.Item], list[str]]:
    """Items of a static catalog, collection, item or item-collection JSON, and its link hrefs."""
    from glacierstack.stac_io import read_stac, read_text

    d = json.loads(read_text(str(path)))
    feats: list[dict[str, Any]] | None = None
    if isinstance(d, list):
        feats = d
    elif d.get("type") == "FeatureCollection":
        feats = d.get("features", [])
    with warnings.catch_warnings():
        # pystac's storage-extension migration warns about Azure/S3 hrefs it cannot parse.
        warnings.filterwarnings("ignore", message="Could not parse bucket")
        if feats is not None:
            links = [ln.get("href", "") for f in feats[:1] for ln in f.get("links", [])]
            return [_detach(x) for x in feats], links
        typ = d.get("type")
        links = [ln.get("href", "") for ln in d.get("links", [])]
        if typ == "Feature":
            return [_detach(d)], links
        if typ in ("Catalog", "Collection"):
            cat = read_stac(str(path))
            assert isinstance(cat, pystac.Catalog)  # Collection is a Catalog subclass
            return list(cat.get_items(recursive=True)), links
    raise ValueError(f"{path}: not a STAC catalog, collection, item or item collection")


def _detect_provider(link_hrefs: Sequence[str], default: str = "synthetic") -> str:
    """Return the provider whose API URL prefixes one of ``link_hrefs`` (else ``default``)."""
    for name in list_providers():
        cfg = get_provider(name)
        if cfg.url and any(u.startswith(cfg.url.rstrip("/")) for u in link_hrefs):
            return name
    return default


def infer_provider(collections: Iterable[str], source: str = "") -> str:
    """Name of the provider config whose default modalities' collections ``source`` holds most.

    Ties go to the config with the larger share of its default collections present.

    Raises
    ------
    KeyError
        If no config reads any of ``collections`` (one line, naming them and the configs).
    """
    have = set(collections)
    scored = []
    for name in list_providers():
        wanted = {
            get_provider(name).modality(m).collection for m in get_provider(name).default_modalities
        }
        hits = len(wanted & have)
        if hits:
            scored.append((hits, hits / len(wanted), name))
    if not scored:
        raise KeyError(
            f"no provider config reads the collections of {source or 'this catalog'} "
            f"({sorted(have)[:8]}); pass provider=<name or path/to/config.yaml> "
            f"(available: {list_providers()})"
        )
    return max(scored)[2]


def _open_api(
    url: str,
    provider: ProviderConfig,
    modifier: Callable[[Any], Any] | None,
    headers: Mapping[str, str] | None,
) -> Any:
    import pystac_client

    if modifier is None and provider.signing == "planetary_computer":
        try:
            import planetary_computer

            modifier = planetary_computer.sign_inplace
        except ImportError:
            warnings.warn(
                f"provider {provider.name!r} needs signed asset URLs but the optional package "
                "'planetary-computer' is not installed (pip install planetary-computer): "
                "searching works, reading pixels will fail with HTTP 403/409",
                stacklevel=3,
            )
    return pystac_client.Client.open(url, modifier=modifier, headers=dict(headers or {}))


def _as_config(provider: str | Path | ProviderConfig) -> ProviderConfig:
    return provider if isinstance(provider, ProviderConfig) else get_provider(provider)


def _config_listing_url(url: str) -> ProviderConfig | None:
    for name in list_providers():
        cfg = get_provider(name)
        if cfg.url and url.rstrip("/") == cfg.url.rstrip("/"):
            return cfg
    return None


def open_catalog(
    source: str | Path | Catalog,
    provider: str | Path | ProviderConfig | None = None,
    *,
    modifier: Callable[[Any], Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Catalog:
    """Open a STAC source.

    Parameters
    ----------
    source
        A provider name (``earth-search``, ``planetary-computer``, ``asf``, ``itslive``,
        ``synthetic``, or one of your own, see :func:`~glacierstack.modalities.catalog_dirs`),
        any STAC API URL (``http(s)://...``), a path or object-store URL (``s3://...``,
        read with the storage options in force) of a static
        ``catalog.json``/``collection.json``/item JSON/ItemCollection JSON, a directory holding a
        ``catalog.json``, or an already opened :class:`Catalog` (returned unchanged).
    provider
        Provider config (name, path of a YAML file, or a
        :class:`~glacierstack.modalities.ProviderConfig`) to use instead of the detected one. For
        an API URL no config lists, the config is inferred from the API's collection ids.
    modifier
        Called on every item/collection the API returns (pystac-client's hook), e.g. to sign
        asset hrefs; replaces the Planetary Computer signing of that provider.
    headers
        HTTP headers sent with every API request (e.g. ``{"Authorization": "Bearer ..."}``).
        Reading the pixels takes its own headers: ``ReadConfig(http_headers=...)``.

    Returns
    -------
    Catalog

    Raises
    ------
    FileNotFoundError
        For a path that does not exist.
    KeyError
        For an unknown provider name, or an API whose collections no config reads.
    """
    if isinstance(source, Catalog):
        return source
    s = str(source)
    if s.startswith(("http://", "https://")):
        cfg = _as_config(provider) if provider is not None else _config_listing_url(s)
        client = _open_api(s, cfg or _NO_SIGNING, modifier, headers)
        if cfg is None:
            cfg = get_provider(infer_provider((c.id for c in client.get_collections()), s))
        return Catalog(source=s, provider=cfg, client=client)
    if "://" in s:  # a static catalog on object storage (s3://, gs://, az://, memory://)
        url = s if s.endswith(".json") else f"{s.rstrip('/')}/catalog.json"
        items, links = _read_static(url)
        cfg = _as_config(provider or _detect_provider(links))
        if modifier is not None:
            for it in items:
                modifier(it)
        return Catalog(source=url, provider=cfg, items=items)
    path = Path(s).expanduser()
    looks_like_path = path.suffix == ".json" or "/" in s or path.exists()
    if not looks_like_path:
        cfg = _as_config(provider or s)
        if not cfg.url:
            raise ValueError(
                f"provider {cfg.name!r} has no STAC API; open its static catalog by path "
                f"(e.g. open_catalog('path/to/catalog.json', provider={cfg.name!r}))"
            )
        return Catalog(source=s, provider=cfg, client=_open_api(cfg.url, cfg, modifier, headers))
    if path.is_dir():
        path = path / "catalog.json"
    if not path.is_file():
        raise FileNotFoundError(f"STAC source {s!r} is neither a provider name, a URL nor a file")
    items, links = _read_static(path)
    cfg = _as_config(provider or _detect_provider(links))
    if modifier is not None:
        for it in items:
            modifier(it)
    return Catalog(source=str(path), provider=cfg, items=items)


_NO_SIGNING = ProviderConfig(name="(undetermined)", modalities=())


# ---------------------------------------------------------------------------- selection
def _acq_key(item: pystac.Item) -> tuple[str, str, str]:
    t0, _ = _item_interval(item)
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
    union = shapely.unary_union([_item_geometry(it) for it in items])
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
            covered = shapely.unary_union([covered] + [_item_geometry(it) for it in pick[0]])
            if covered.intersection(aoi).area / aoi.area >= min_coverage:
                break
    items = tuple(it for s in chosen for it in s[0])
    return Selection(acquisitions=(items,), coverage=(_coverage(items, aoi),))


def _coverage_gain(items: Sequence[pystac.Item], covered: Any, aoi: Any) -> float:
    geom = shapely.unary_union([_item_geometry(it) for it in items]).intersection(aoi)
    return float(geom.difference(covered).area / aoi.area) if aoi.area > 0 else 0.0


def _neg_date(day: str) -> int:
    return -dt.date.fromisoformat(day).toordinal() if day else 0
