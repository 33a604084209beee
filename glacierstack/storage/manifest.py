"""Completion: the chunk manifest, the complete flag, and the checks against it."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from glacierstack.storage.claims import Claim, check_owner
from glacierstack.storage.errors import DamagedStoreError, ForeignStoreError, IncompleteStoreError
from glacierstack.storage.paths import (
    _ZARR_META,
    MANIFEST,
    META,
    PROGRESS,
    StoreKind,
    StoreURL,
    _meta,
    _put,
    _read_json,
)
from glacierstack.storage.removal import _inside
from glacierstack.storage.status import StoreInfo, _what, store_info

__all__ = ["CHECKSUM_BATCH_BYTES", "VerifyReport", "check_complete", "complete", "verify"]


def _chunk_files(store: StoreURL) -> dict[str, int]:
    """Every data file of the store (relative key -> size), Zarr metadata and our folder aside."""
    found = store.fs.find(store.path, detail=True, withdirs=False)
    out = {}
    prefix = store.path.rstrip("/") + "/"
    for full, info in found.items():
        key = full[len(prefix) :] if full.startswith(prefix) else full
        if key.startswith(META + "/") or key.rsplit("/", 1)[-1] in _ZARR_META:
            continue
        out[key] = int(info.get("size") or 0)
    return out


CHECKSUM_BATCH_BYTES = 64 * 2**20
"""Most chunk-file bytes read at once for the manifest checksums (a larger file alone)."""


def _batches(sizes: Mapping[str, int], max_bytes: int, max_files: int) -> Iterator[list[str]]:
    """Keys in order, grouped so a group holds <= ``max_files`` files and <= ``max_bytes``."""
    part: list[str] = []
    total = 0
    for key in sorted(sizes):
        if part and (total + sizes[key] > max_bytes or len(part) >= max_files):
            yield part
            part, total = [], 0
        part.append(key)
        total += sizes[key]
    if part:
        yield part


def _checksums(store: StoreURL, sizes: Mapping[str, int], batch: int = 256) -> dict[str, str]:
    """BLAKE2b-128 of each chunk file (``sizes``: key -> size in bytes, from a listing).

    Files are read in batches (concurrent on object stores) of at most ``batch`` files and
    :data:`CHECKSUM_BATCH_BYTES` bytes, so memory does not grow with the store: reading up to
    256 files at once held a 50 km cube's 2.1 GB of chunks in memory.
    """
    out: dict[str, str] = {}
    for part in _batches(sizes, CHECKSUM_BATCH_BYTES, batch):
        out.update(_hash_files(store, part))  # one batch's bytes alive at a time
    return out


def _hash_files(store: StoreURL, keys: list[str]) -> dict[str, str]:
    blobs = store.fs.cat([store.join(key) for key in keys], on_error="return")
    out = {}
    for key in keys:
        blob = blobs.get(store.join(key))
        if isinstance(blob, bytes):
            out[key] = hashlib.blake2b(blob, digest_size=16).hexdigest()
    return out


def complete(
    claim_: Claim, attrs: Mapping[str, Any] | None = None, *, drop: Sequence[str] = ()
) -> None:
    """Finish a store: manifest, then ``complete: true`` (+ ``attrs``), consolidation, cleanup.

    ``drop`` names Zarr groups of run bookkeeping (done markers) that are left out of the
    manifest and deleted once the store is complete. Refuses (:class:`StoreMismatchError`) if
    another run took the store over meanwhile.
    """
    import zarr

    store = claim_.store
    check_owner(store, claim_.run_id)
    sizes = {k: v for k, v in _chunk_files(store).items() if not any(_inside(k, d) for d in drop)}
    sums = _checksums(store, sizes)
    manifest = {
        "format": 1,
        "algorithm": "blake2b-128",
        "chunks": {k: [sizes[k], sums[k]] for k in sorted(sums)},
    }
    _put(store, _meta(store, MANIFEST), json.dumps(manifest).encode())
    group = zarr.open_group(store.url, mode="r+", zarr_format=2)
    group.attrs.update({**dict(attrs or {}), "complete": True})
    for name in drop:
        if name in group:
            del group[name]
    with warnings.catch_warnings():  # our folder is not a Zarr node, on purpose
        warnings.filterwarnings("ignore", message=".*not recognized as a component")
        zarr.consolidate_metadata(store.url, zarr_format=2)
    if store.fs.exists(_meta(store, PROGRESS)):
        store.fs.rm(_meta(store, PROGRESS), recursive=True)


def check_complete(where: str | os.PathLike[str] | StoreURL, kind: StoreKind) -> StoreURL:
    """Raise unless ``where`` holds a complete store of ``kind`` with every listed chunk present.

    Costs one listing of the store (sizes included), no chunk is read.
    """
    store = StoreURL.parse(where)
    info = store_info(store, wait=False)
    if info.state == "missing" and not store.exists():
        raise FileNotFoundError(f"no {kind} at {store}")
    if info.state != "ours" or info.kind != kind:  # an empty folder is not a store either
        what = _what(info if info.state == "ours" else StoreInfo("foreign"), kind)
        raise ForeignStoreError(f"{store} is {what}")
    if not info.complete:
        raise IncompleteStoreError(
            f"{kind} {store} is incomplete (its run was interrupted or failed); rerun the same "
            "command to resume it, or use --overwrite to start over"
        )
    manifest = _read_json(store, _meta(store, MANIFEST))
    if manifest is None:
        return store  # written before manifests existed
    have = _chunk_files(store)
    bad = [k for k, (size, _) in manifest["chunks"].items() if have.get(k) != size]
    if bad:
        raise DamagedStoreError(
            f"{kind} {store} is damaged: {len(bad)} chunk(s) missing or truncated "
            f"(e.g. {', '.join(sorted(bad)[:3])}); rebuild it (--overwrite)"
        )
    return store


@dataclass(frozen=True)
class VerifyReport:
    """Result of :func:`verify`: chunks checked and the problems found (empty when intact)."""

    store: str
    checked: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        """True when every chunk is present with its recorded checksum."""
        return not self.problems


def verify(where: str | os.PathLike[str] | StoreURL) -> VerifyReport:
    """Recompute every chunk checksum of a complete store against its manifest."""
    store = StoreURL.parse(where)
    info = store_info(store, wait=False)
    if info.state != "ours":
        raise ForeignStoreError(f"{store} is not a glacierstack cube or mosaic")
    if not info.complete:
        return VerifyReport(store.url, 0, [f"{store} is incomplete (never finished)"])
    manifest = _read_json(store, _meta(store, MANIFEST))
    if manifest is None:
        return VerifyReport(store.url, 0, [f"{store} has no chunk manifest (written before 0.2)"])
    want = manifest["chunks"]
    sums = _checksums(store, {k: int(v[0]) for k, v in want.items()})
    problems = []
    for key, (_size, digest) in sorted(want.items()):
        if key not in sums:
            problems.append(f"{key}: missing")
        elif sums[key] != digest:
            problems.append(f"{key}: checksum differs (damaged)")
    return VerifyReport(store.url, len(want), problems)
