"""How outputs name their inputs in metadata: never by an absolute local path.

Stores and exports record where they came from (catalog, cube, checkpoint, mosaic). A local
path would leak the user's directory layout into files that get shared, and would be wrong on
any other machine, so local inputs are recorded by their name only; URLs of object storage or
HTTP (``s3://bucket/cube.zarr``) are recorded as given, without credentials or query strings.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from urllib.parse import urlsplit

__all__ = ["location_ref"]


def location_ref(location: str | os.PathLike[str]) -> str:
    """Return the portable reference of a path or URL recorded in output metadata.

    Examples
    --------
    >>> location_ref("/home/me/runs/poiqu/cube.zarr/")
    'cube.zarr'
    >>> location_ref("s3://bucket/runs/cube.zarr?versionId=1")
    's3://bucket/runs/cube.zarr'
    """
    text = os.fspath(location)
    parts = urlsplit(text)
    if parts.scheme and parts.scheme != "file" and len(parts.scheme) > 1:  # not C:\...
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}{parts.path}"
    path = parts.path if parts.scheme == "file" else text
    return PurePosixPath(path.replace("\\", "/").rstrip("/")).name
