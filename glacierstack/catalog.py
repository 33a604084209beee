"""Open STAC catalogs (by provider name, API URL or static path), search and choose scenes.

>>> cat = open_catalog("earth-search")                      # doctest: +SKIP
>>> items = cat.search("sentinel-2-c1-l2a", bbox=(86.0, 28.2, 86.1, 28.3),
...                    datetime="2023-10-01/2023-10-31")    # doctest: +SKIP

Static sources are a ``catalog.json``/``collection.json`` (walked recursively), a single item
JSON, or an ItemCollection / list-of-items JSON (as recorded from an API). The provider config
(:mod:`glacierstack.modalities`) that maps assets to bands is picked by name, by matching the
API URL, by the root links of recorded items, or defaults to ``synthetic`` (the config of the
demo catalog and of ``glacierstack stac-from-files`` catalogs).

One step per module, every public name importable from here: this module opens sources
(:class:`Catalog`, :func:`open_catalog`); :mod:`glacierstack.catalog_items` parses datetime
windows and item footprints; :mod:`glacierstack.catalog_select` chooses the acquisitions
(:func:`select_items`).
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pystac
import shapely.geometry

from glacierstack.catalog_items import (
    EmptySearchError,
    bbox_to_lonlat,
    format_window,
    item_geometry,
    item_interval,
    pad_window,
    parse_datetime,
)
from glacierstack.catalog_select import Selection, group_acquisitions, select_items
from glacierstack.modalities import ModalitySpec, ProviderConfig, get_provider, list_providers

__all__ = [
    "Catalog",
    "EmptySearchError",
    "Selection",
    "infer_provider",
    "open_catalog",
    "pad_window",
    "parse_datetime",
    "bbox_to_lonlat",
    "group_acquisitions",
    "select_items",
]


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
                datetime=format_window(start, end),
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
            if not item_geometry(it).intersects(query):
                continue
            t0, t1 = item_interval(it)
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
