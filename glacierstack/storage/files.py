"""Single files and run folders on a path or URL: staging, upload, download cache, copies."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glacierstack.storage.paths import StoreURL, is_url

__all__ = [
    "copy_file",
    "local_file",
    "local_folder",
    "open_input",
    "output_exists",
    "staged_output",
]


def output_exists(where: str | os.PathLike[str]) -> bool:
    """Whether a file or folder exists at a local path or URL."""
    return StoreURL.parse(where).exists()


@contextlib.contextmanager
def staged_output(where: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield the local path to write ``where`` to; for a URL, upload it when the body succeeds.

    For a URL the body writes into a fresh temporary folder; afterwards every file there whose
    name starts with the output's name is uploaded (sidecars such as ``.aux.xml`` first, the
    output itself last, so its appearance marks a complete upload). Local outputs are written
    in place (their writers are atomic themselves).
    """
    if not is_url(where):
        yield Path(where)
        return
    store = StoreURL.parse(where)
    with tempfile.TemporaryDirectory(prefix="glacierstack-out-") as tmp:
        local = Path(tmp) / store.name
        yield local
        parent = store.path.rsplit("/", 1)[0]
        files = sorted(Path(tmp).glob(f"{store.name}*"), key=lambda p: p.name == store.name)
        for f in files:
            store.fs.put_file(str(f), f"{parent}/{f.name}")


@contextlib.contextmanager
def local_folder(where: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a local folder standing for ``where`` (a run directory on a path or a URL).

    For a URL the folder's current contents are downloaded into a temporary folder first
    (so a run resumes), and everything in it is uploaded on exit, also after an exception (so
    an interrupted run keeps its checkpoints). A local path is yielded as is.
    """
    if not is_url(where):
        yield Path(where)
        return
    store = StoreURL.parse(where)
    with tempfile.TemporaryDirectory(prefix="glacierstack-run-") as tmp:
        local = Path(tmp) / store.name
        local.mkdir()
        if store.exists():
            for remote in store.fs.find(store.path):
                rel = remote[len(store.path) :].lstrip("/")
                (local / rel).parent.mkdir(parents=True, exist_ok=True)
                store.fs.get_file(remote, str(local / rel))
        try:
            yield local
        finally:
            for f in sorted(p for p in local.rglob("*") if p.is_file()):
                store.fs.put_file(str(f), store.join(f.relative_to(local).as_posix()))


def local_file(where: str | os.PathLike[str], cache: str | os.PathLike[str] | None = None) -> Path:
    """Return a local path holding the file at ``where`` (downloaded once for a URL).

    Downloads go to ``cache`` (default: a per-user folder in the temporary directory) under a
    name derived from the URL and the remote file's size and modification tag, so a changed
    remote file is fetched again and an unchanged one only once per machine.
    """
    if not is_url(where):
        return Path(where)
    store = StoreURL.parse(where)
    info = store.fs.info(store.path)
    tag = str(info.get("ETag") or info.get("mtime") or info.get("LastModified") or "")
    key = hashlib.sha256(f"{store.url}|{info.get('size')}|{tag}".encode()).hexdigest()[:16]
    folder = Path(cache or Path(tempfile.gettempdir()) / f"glacierstack-cache-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / f"{key}-{store.name}"
    if not dst.exists():
        part = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}")
        store.fs.get_file(store.path, str(part))
        os.replace(part, dst)
    return dst


def copy_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy one file between local paths and/or URLs (an input into an output folder)."""
    a, b = StoreURL.parse(src), StoreURL.parse(dst)
    if a.is_local and b.is_local:
        a.fs.copy(a.path, b.path)
    elif b.is_local:
        a.fs.get_file(a.path, b.path)
    elif a.is_local:
        b.fs.put_file(a.path, b.path)
    else:
        with a.fs.open(a.path, "rb") as f:
            b.fs.pipe_file(b.path, f.read())


@contextlib.contextmanager
def open_input(where: str | os.PathLike[str]) -> Iterator[Any]:
    """Open a local file or a URL for binary reading (with the storage options in force)."""
    src = StoreURL.parse(where)
    with src.fs.open(src.path, "rb") as f:
        yield f
