"""What is at a store address: missing, foreign, or a store of ours (kind, completeness)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Literal

from glacierstack.storage.errors import StoreError
from glacierstack.storage.paths import CREATED, META, OWNER, StoreURL, _meta, _root_attrs

__all__ = ["StoreInfo", "store_info"]


_OWNER_WAIT_S = 10.0


@dataclass(frozen=True)
class StoreInfo:
    """What is at a store address (see :func:`store_info`)."""

    state: Literal["missing", "foreign", "ours"]
    kind: str | None = None
    complete: bool = False
    created: bool = False
    owner: dict[str, Any] | None = None
    signature: Any = None


def _read_owner(store: StoreURL, wait: bool) -> dict[str, Any] | None:
    """Read the claim record, waiting for one that another process is still writing."""
    deadline = time.monotonic() + (_OWNER_WAIT_S if wait else 0.0)
    while True:
        try:
            raw = store.fs.cat_file(_meta(store, OWNER))
        except FileNotFoundError:
            return None
        try:
            return dict(json.loads(raw))
        except ValueError:
            if time.monotonic() > deadline:
                raise StoreError(
                    f"{store}: claim file {META}/{OWNER} is unreadable; remove the store or use "
                    "--overwrite"
                ) from None
            time.sleep(0.05)


def store_info(where: str | os.PathLike[str] | StoreURL, *, wait: bool = True) -> StoreInfo:
    """Describe what is at ``where``: missing, foreign (not ours), or a store of ours.

    Stores written before the claim file existed are recognised by their attrs (``_build`` for
    cubes, ``run`` for mosaics).
    """
    store = StoreURL.parse(where)
    if not store.exists():
        return StoreInfo("missing")
    owner = _read_owner(store, wait)
    attrs = _root_attrs(store)
    done = bool(attrs and attrs.get("complete") is True)
    if owner is not None:
        created = bool(store.fs.exists(_meta(store, CREATED)))
        return StoreInfo("ours", owner.get("kind"), done, created, owner, owner.get("signature"))
    if attrs is not None and ("_build" in attrs or "complete" in attrs and "bands" in attrs):
        sig = (attrs.get("_build") or {}).get("fingerprint")
        return StoreInfo("ours", "cube", done, True, None, sig)
    if attrs is not None and "run" in attrs:
        return StoreInfo("ours", "mosaic", done, True, None, attrs["run"])
    if attrs is None and _only_claim_folder(store):
        # empty, or a claim being made right now (or one that died before writing its file):
        # nothing to lose, and the exclusive claim file decides who owns it
        return StoreInfo("missing")
    return StoreInfo("foreign")


def _only_claim_folder(store: StoreURL) -> bool:
    try:
        entries = store.fs.ls(store.path, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return False
    if not store.fs.isdir(store.path):
        return False
    return {e.rstrip("/").rsplit("/", 1)[-1] for e in entries} <= {META}


def _what(info: StoreInfo, kind: str) -> str:
    if info.state == "foreign":
        return f"not a glacierstack {kind}"
    return f"a glacierstack {info.kind}, not a {kind}"
