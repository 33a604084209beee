"""Removal, atomic replacement and scratch cleanup: only what is ours, never an input."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import fsspec

from glacierstack.storage.errors import ForeignStoreError, StoreError
from glacierstack.storage.paths import OWNER, StoreKind, StoreURL, _meta
from glacierstack.storage.status import _what, store_info

__all__ = [
    "check_not_input",
    "discard",
    "preflight",
    "publish",
    "remove_owned",
    "remove_scratch",
    "remove_store",
    "replace_folder",
    "scratch_debris",
]


def _inside(inner: str, outer: str) -> bool:
    return (inner.rstrip("/") + "/").startswith(outer.rstrip("/") + "/")


def check_not_input(store: StoreURL, inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse an output that is, or holds, one of the run's inputs (writing it could lose it)."""
    for inp in inputs:
        other = StoreURL.parse(inp)
        if type(other.fs) is type(store.fs) and _inside(other.path, store.path):
            raise StoreError(
                f"output {store} is (or holds) {other}, an input of this run; choose another "
                "output path"
            )


def preflight(
    where: str | os.PathLike[str] | StoreURL,
    kind: StoreKind,
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> StoreURL:
    """Before any work: refuse an output that is an input, a foreign path or another kind."""
    store = StoreURL.parse(where)
    check_not_input(store, inputs)
    info = store_info(store, wait=False)
    if info.state == "foreign" or info.state == "ours" and info.kind != kind:
        raise ForeignStoreError(f"{store} exists and is {_what(info, kind)}; choose another path")
    return store


def remove_store(
    where: str | os.PathLike[str] | StoreURL,
    kind: StoreKind,
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> None:
    """Delete a store of ``kind``; refuse anything else (a foreign folder, another kind, an input).

    A local store is first renamed aside (atomic), so it never reads as a half-deleted store; on
    object stores the claim and the metadata go first, so readers see no store at all.
    """
    store = StoreURL.parse(where)
    check_not_input(store, inputs)
    info = store_info(store, wait=False)
    if info.state == "missing":
        return
    if info.state == "foreign" or info.kind != kind:
        what = _what(info, kind)
        raise ForeignStoreError(
            f"{store} exists and is {what}; refusing to replace it (choose another path)"
        )
    _delete_tree(store)


def _delete_tree(store: StoreURL) -> None:
    if store.is_local:
        trash = Path(store.path).with_name(f".{store.name}.deleting-{uuid.uuid4().hex[:8]}")
        os.replace(store.path, trash)
        store.fs.rm(str(trash), recursive=True)
        return
    for first in (store.join(".zmetadata"), store.join(".zattrs"), _meta(store, OWNER)):
        if store.fs.exists(first):
            store.fs.rm_file(first)
    store.fs.rm(store.path, recursive=True)


def remove_scratch(path: str | os.PathLike[str]) -> None:
    """Delete a scratch folder this package created (``.NAME.partial-PID`` and the like)."""
    store = StoreURL.parse(path)
    if not store.name.startswith("."):
        raise StoreError(f"{store} is not a scratch folder (its name must start with '.')")
    if store.exists():
        store.fs.rm(store.path, recursive=True)


def remove_owned(
    path: str | os.PathLike[str], *, root: str | os.PathLike[str], marker: str
) -> None:
    """Delete ``path`` (a file or folder) that a workflow wrote inside its own folder ``root``.

    Refuses (:class:`ForeignStoreError`) a path that is not strictly inside ``root``, and a
    ``root`` without the workflow's bookkeeping entry ``marker`` (e.g. the demo's ``steps``
    folder): only what the workflow made is ever removed, never a folder it was pointed at.
    A Zarr store among them should go through :func:`remove_store` (which checks its kind).
    """
    target, base = StoreURL.parse(path), StoreURL.parse(root)
    if not _inside(target.path, base.path) or target.path == base.path:
        raise ForeignStoreError(f"{target} is not inside {base}; refusing to remove it")
    if not base.fs.exists(base.join(marker)):
        raise ForeignStoreError(
            f"{base} has no {marker}: not an output folder of this workflow; refusing to "
            f"remove {target}"
        )
    if not target.exists():
        return
    if target.fs.isdir(target.path):
        _delete_tree(target)
    else:
        target.fs.rm_file(target.path)


def publish(tmp: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Move a finished local temporary file onto ``dst`` atomically (``os.replace``).

    ``tmp`` must be on the same file system as ``dst`` (next to it, or in a temporary folder
    inside its folder): readers see the old file or the complete new one, never a partial one.
    """
    os.replace(tmp, dst)


def discard(path: str | os.PathLike[str]) -> None:
    """Delete a file this package wrote (a temporary, scratch or bookkeeping file), if present."""
    target = StoreURL.parse(path)
    if target.is_local:
        Path(target.path).unlink(missing_ok=True)
    elif target.exists():
        target.fs.rm_file(target.path)


def replace_folder(stage: Path, out: Path, *, owned: Callable[[Path], bool], what: str) -> None:
    """Move a finished local ``stage`` folder to ``out``, replacing ``out`` only if ``owned``.

    ``out`` is renamed aside first (atomic), so it is at all times either the old or the new
    folder, never a half-deleted one.
    """
    if out.exists():
        if not owned(out):
            raise ForeignStoreError(f"{out} exists and is not {what}; refusing to replace it")
        trash = out.with_name(f".{out.name}.deleting-{uuid.uuid4().hex[:8]}")
        os.replace(out, trash)
        os.replace(stage, out)
        fsspec.filesystem("file").rm(str(trash), recursive=True)
    else:
        os.replace(stage, out)


def scratch_debris(out: str | os.PathLike[str], tag: str) -> list[Path]:
    """Scratch folders ``.NAME.TAG-PID`` next to a local ``out`` whose process is gone."""
    p = Path(out).expanduser().resolve()
    found = []
    for cand in p.parent.glob(f".{p.name}.{tag}-*"):
        pid = cand.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            found.append(cand)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
