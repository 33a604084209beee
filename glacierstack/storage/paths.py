"""Store addresses: local paths and fsspec URLs, the store's metadata folder, GDAL names."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import fsspec

__all__ = [
    "CREATED",
    "MANIFEST",
    "META",
    "OWNER",
    "PROGRESS",
    "StoreKind",
    "StoreURL",
    "gdal_path",
    "is_url",
]


META = ".glacierstack"
"""Folder inside every store for the files that are not Zarr nodes."""


OWNER, CREATED, MANIFEST, PROGRESS = "owner.json", "created", "manifest.json", "progress"


_ZARR_META = {".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json"}


StoreKind = Literal["cube", "mosaic"]


@dataclass(frozen=True)
class StoreURL:
    """A store address: a local path or an fsspec URL, with its file system.

    Parameters
    ----------
    url
        What readers (``xarray.open_zarr``, ``zarr``) are given: an absolute local path or a URL.
    fs
        The fsspec file system.
    path
        The store root inside ``fs``.
    """

    url: str
    fs: Any = field(repr=False, compare=False)
    path: str

    @classmethod
    def parse(
        cls,
        where: str | os.PathLike[str] | StoreURL,
        storage_options: Mapping[str, Any] = MappingProxyType({}),
    ) -> StoreURL:
        """Build from a path, a URL or an existing :class:`StoreURL`."""
        if isinstance(where, StoreURL):
            return where
        text = os.fspath(where)
        if "://" not in text:
            local = str(Path(text).expanduser().resolve())
            return cls(local, fsspec.filesystem("file"), local)
        fs, path = fsspec.core.url_to_fs(text, **dict(storage_options))
        return cls(text.rstrip("/"), fs, path.rstrip("/"))

    @property
    def name(self) -> str:
        """Last component of the path."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def is_local(self) -> bool:
        """True for a local directory."""
        return "://" not in self.url

    def join(self, *parts: str) -> str:
        """File-system path of ``parts`` inside the store."""
        return "/".join([self.path, *parts])

    def exists(self) -> bool:
        """Whether anything exists at the address."""
        return bool(self.fs.exists(self.path))

    def __str__(self) -> str:
        return self.url


def _meta(store: StoreURL, *parts: str) -> str:
    return store.join(META, *parts)


def _put(store: StoreURL, path: str, data: bytes) -> None:
    """Write a small file (parent folders are created on local disks)."""
    if store.is_local:
        store.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    store.fs.pipe_file(path, data)


def _read_json(store: StoreURL, path: str) -> Any:
    try:
        return json.loads(store.fs.cat_file(path))
    except FileNotFoundError:
        return None


def _root_attrs(store: StoreURL) -> dict[str, Any] | None:
    """Root attrs as readers see them (consolidated copy first), or None if not a Zarr group."""
    if not store.fs.exists(store.join(".zgroup")):
        return None
    zmeta = _read_json(store, store.join(".zmetadata"))
    if zmeta is not None:
        return dict(zmeta["metadata"].get(".zattrs", {}))
    return dict(_read_json(store, store.join(".zattrs")) or {})


def is_url(where: str | os.PathLike[str]) -> bool:
    """Return whether ``where`` is an fsspec URL (``s3://...``) rather than a local path."""
    return "://" in os.fspath(where)


_VSI = {"s3": "/vsis3/", "gs": "/vsigs/", "gcs": "/vsigs/", "az": "/vsiaz/", "abfs": "/vsiaz/"}


def gdal_path(where: str | os.PathLike[str]) -> str:
    """Return the name GDAL itself opens ``where`` by (in a VRT, say): ``/vsis3/`` for ``s3://``.

    rasterio translates ``s3://`` URLs on its own, GDAL does not; local paths and GDAL's own
    ``/vsi...`` names are returned unchanged.

    Examples
    --------
    >>> gdal_path("s3://bucket/scene.tif"), gdal_path("https://host/a.tif")
    ('/vsis3/bucket/scene.tif', '/vsicurl/https://host/a.tif')
    """
    text = os.fspath(where)
    proto, sep, rest = text.partition("://")
    if not sep:
        return text
    if proto in ("http", "https"):
        return f"/vsicurl/{text}"
    if proto in _VSI:
        return _VSI[proto] + rest
    raise ValueError(f"{text}: GDAL cannot open {proto}:// URLs (use s3, gs, az or https)")
