"""Static STAC catalogs on object storage: pystac reads through :mod:`glacierstack.storage`.

pystac's own reader knows local files and ``http(s)://``; a catalog written to ``s3://``,
``gs://`` or ``az://`` (``stac-from-files --out s3://...``) is read here through fsspec, with
the storage options in force (``--storage-option``, :func:`glacierstack.storage.configure`).
"""

from __future__ import annotations

from typing import Any

import pystac
from pystac.stac_io import DefaultStacIO

from glacierstack import storage

__all__ = ["FsspecStacIO", "is_object_url", "read_stac", "read_text"]


def is_object_url(href: str) -> bool:
    """Return whether ``href`` is a URL pystac cannot read itself (not a path, not HTTP)."""
    return storage.is_url(href) and not href.startswith(("http://", "https://"))


def read_text(href: str) -> str:
    """Return the text of a JSON file at a local path or any fsspec URL."""
    with storage.open_input(href) as f:
        return bytes(f.read()).decode("utf-8")


class FsspecStacIO(DefaultStacIO):
    """pystac I/O that reads object-store hrefs (``s3://``...) through fsspec."""

    def read_text_from_href(self, href: str) -> str:
        """Read ``href``: object stores through fsspec, the rest as pystac does."""
        if is_object_url(href):
            return read_text(href)
        return str(super().read_text_from_href(href))


def read_stac(href: str) -> Any:
    """Open a catalog/collection/item JSON at ``href`` with :class:`FsspecStacIO`."""
    return pystac.read_file(href, stac_io=FsspecStacIO())
