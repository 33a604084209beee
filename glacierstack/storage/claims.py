"""Exclusive creation (claims), resume, ownership checks and progress markers of a store."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from glacierstack.storage.errors import ForeignStoreError, StoreExistsError, StoreMismatchError
from glacierstack.storage.paths import (
    CREATED,
    MANIFEST,
    META,
    OWNER,
    PROGRESS,
    StoreKind,
    StoreURL,
    _meta,
    _put,
)
from glacierstack.storage.removal import check_not_input, remove_store
from glacierstack.storage.status import _OWNER_WAIT_S, StoreInfo, _read_owner, _what, store_info

__all__ = ["Claim", "check_owner", "claim", "mark_created", "markers", "set_marker"]


@dataclass(frozen=True)
class Claim:
    """The outcome of :func:`claim`.

    ``state`` is ``"new"`` (create the metadata, then :func:`mark_created`), ``"resume"`` (the
    store holds an unfinished run with the same signature) or ``"complete"`` (nothing to do).
    """

    store: StoreURL
    run_id: str
    state: Literal["new", "resume", "complete"]


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str, sort_keys=True))


def _diff(old: Any, new: Any) -> str:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return "a different run signature"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} != {new.get(k)!r}" for k in keys)


def claim(
    where: str | os.PathLike[str] | StoreURL,
    kind: StoreKind,
    signature: Mapping[str, Any],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Claim:
    """Claim a store for a run: create it exclusively, or join/resume the same run.

    Parameters
    ----------
    where
        Store path or URL.
    kind
        ``"cube"`` or ``"mosaic"``.
    signature
        JSON-serialisable description of the run; a store is resumed only by the same signature.
    overwrite
        Replace an existing store of the same kind (never a foreign one, never an input).
    inputs
        Paths/URLs the run reads; the output may not be or overlap any of them.

    Raises
    ------
    ForeignStoreError
        Something else is at ``where``.
    StoreExistsError
        A complete store of another run is there and ``overwrite`` is False.
    StoreMismatchError
        An unfinished store of another run is there (or a racing writer won with another run).
    """
    store = StoreURL.parse(where)
    check_not_input(store, inputs)
    sig = _jsonable(dict(signature))
    info = store_info(store)
    if info.state != "missing":
        if overwrite:
            remove_store(store, kind, inputs=inputs)
        else:
            return _join(store, kind, sig, info)
    run_id = uuid.uuid4().hex
    record = {
        "kind": kind,
        "signature": sig,
        "run_id": run_id,
        "claimed": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": os.uname().nodename,
        "pid": os.getpid(),
    }
    store.fs.makedirs(_meta(store), exist_ok=True)
    try:
        with store.fs.open(_meta(store, OWNER), "xb") as f:
            f.write(json.dumps(record, indent=1).encode())
    except FileExistsError:  # another writer won the race: join it or refuse
        return _join(store, kind, sig, store_info(store), raced=True)
    return Claim(store, run_id, "new")


def _join(store: StoreURL, kind: str, sig: Any, info: StoreInfo, raced: bool = False) -> Claim:
    if info.state == "foreign" or info.kind != kind:
        what = _what(info, kind)
        raise ForeignStoreError(f"{store} exists and is {what}; choose another path")
    if info.signature != sig:
        state = "a complete" if info.complete else "an unfinished"
        cls = StoreExistsError if info.complete else StoreMismatchError
        raise cls(
            f"{store} holds {state} {kind} of a different run ({_diff(info.signature, sig)}); "
            "pass --overwrite (overwrite=True) to replace it, or choose another path"
        )
    run_id = (info.owner or {}).get("run_id", "legacy")
    if info.complete:
        return Claim(store, run_id, "complete")
    if not info.created:
        info = _wait_created(store, raced)
        if not info.created:  # an interrupted creation: start over inside the same claim
            _clear_except_claim(store)
            return Claim(store, run_id, "new")
    return Claim(store, run_id, "resume")


def _wait_created(store: StoreURL, raced: bool) -> StoreInfo:
    """Give a creating writer (a race we lost, or one just started) time to finish creating."""
    deadline = time.monotonic() + (_OWNER_WAIT_S if raced else 2.0)
    info = store_info(store)
    while not info.created and time.monotonic() < deadline:
        time.sleep(0.1)
        info = store_info(store)
    return info


def _clear_except_claim(store: StoreURL) -> None:
    for entry in store.fs.ls(store.path, detail=False):
        if entry.rstrip("/").rsplit("/", 1)[-1] != META:
            store.fs.rm(entry, recursive=True)
    for name in (CREATED, MANIFEST, PROGRESS):
        if store.fs.exists(_meta(store, name)):
            store.fs.rm(_meta(store, name), recursive=True)


def mark_created(claim_: Claim) -> None:
    """Record that the store's metadata is fully written (the creation step finished)."""
    _put(claim_.store, _meta(claim_.store, CREATED), b"")


def check_owner(where: str | StoreURL, run_id: str) -> None:
    """Raise :class:`StoreMismatchError` if the store is no longer claimed by ``run_id``."""
    store = StoreURL.parse(where)
    if run_id == "legacy":
        return
    owner = _read_owner(store, wait=True)
    if owner is None or owner.get("run_id") != run_id:
        raise StoreMismatchError(
            f"{store} was replaced by another run while this one was writing; this run stops "
            "without writing to it"
        )


def set_marker(where: str | StoreURL, *parts: str, content: bytes = b"") -> None:
    """Drop a progress marker ``.glacierstack/progress/<parts>`` (empty, or a small record)."""
    store = StoreURL.parse(where)
    _put(store, _meta(store, PROGRESS, *parts), content)


def read_marker(where: str | StoreURL, *parts: str) -> bytes | None:
    """Content of a progress marker (``None`` if it is not set)."""
    store = StoreURL.parse(where)
    try:
        return bytes(store.fs.cat_file(_meta(store, PROGRESS, *parts)))
    except FileNotFoundError:
        return None


def markers(where: str | StoreURL, group: str) -> set[str]:
    """Names of the progress markers set under ``group``."""
    store = StoreURL.parse(where)
    base = _meta(store, PROGRESS, group)
    if not store.fs.exists(base):
        return set()
    return {p.rstrip("/").rsplit("/", 1)[-1] for p in store.fs.ls(base, detail=False)}
