"""One storage layer for every Zarr store glacierstack and cryonet write (cubes, mosaics).

Every store is addressed by a path or an fsspec URL (``memory://``, ``s3://``, ...) and goes
through this module: creation, resume, completion, removal and integrity checks. No other
module touches ``os``/``shutil`` for stores.

Life of a store (see ``docs/guarantees.md``)
--------------------------------------------
1. :func:`claim` creates ``<store>/.glacierstack/owner.json`` *exclusively* (``O_EXCL`` on local
   disks, ``mode="xb"`` on fsspec file systems): it records the store kind, the run signature
   and a fresh run id. Of two writers racing for a new store exactly one wins; the other reads
   the winner's signature and resumes (same run) or refuses (different run).
2. The winner writes the Zarr metadata and then :func:`mark_created`. A claim without that flag
   is an interrupted creation; the next run with the same signature repairs it (clears every
   file but the claim and creates the metadata again).
3. Writers call :func:`check_owner` around each chunk they write: a store taken over by another
   run (``--overwrite``) is never written, and its chunk is never marked done, by the old run.
4. :func:`complete` records a manifest (every chunk file, size and BLAKE2b checksum), then sets
   the ``complete`` attr and consolidates the metadata: a store never reads as complete before
   all of its chunks are on disk and listed.
5. :func:`check_complete` (called by ``open_cube``/``open_mosaic``) checks that every listed
   chunk is present with its size (one listing, no data read); :func:`verify` also recomputes the
   checksums (``glacierstack verify PATH``).
6. :func:`remove_store` replaces only a store of the expected kind, never an input of the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import fsspec
import numpy as np

if TYPE_CHECKING:
    import zarr

__all__ = [
    "Claim",
    "DamagedStoreError",
    "ForeignStoreError",
    "group_array",
    "IncompleteStoreError",
    "StoreError",
    "StoreInfo",
    "StoreMismatchError",
    "StoreURL",
    "VerifyReport",
    "check_complete",
    "check_owner",
    "claim",
    "complete",
    "configure",
    "configured",
    "copy_file",
    "gdal_path",
    "guard_dataset",
    "is_url",
    "local_file",
    "local_folder",
    "open_input",
    "output_exists",
    "mark_created",
    "parse_storage_options",
    "read_guarded",
    "remove_store",
    "staged_output",
    "store_info",
    "verify",
]

META = ".glacierstack"
"""Folder inside every store for the files that are not Zarr nodes."""
OWNER, CREATED, MANIFEST, PROGRESS = "owner.json", "created", "manifest.json", "progress"
_ZARR_META = {".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json"}
_OWNER_WAIT_S = 10.0

StoreKind = Literal["cube", "mosaic"]


class StoreError(ValueError):
    """A path holds something that cannot be used as the requested store."""


class ForeignStoreError(StoreError, FileExistsError):
    """The path exists and is not a store of the expected kind (never replaced)."""


class StoreExistsError(StoreError, FileExistsError):
    """The path holds a complete store and overwriting was not asked for."""


class StoreMismatchError(StoreError):
    """The store was started by a different run (other model, cube, grid, chunking...)."""


class IncompleteStoreError(StoreError):
    """The store was never finished; rerun the same command to resume it."""


class DamagedStoreError(StoreError):
    """A complete store lost or corrupted a chunk since it was finished."""


# ----------------------------------------------------------------------------- addresses
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


# ----------------------------------------------------------------------------- status
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


# ----------------------------------------------------------------------------- removal
def _what(info: StoreInfo, kind: str) -> str:
    if info.state == "foreign":
        return f"not a glacierstack {kind}"
    return f"a glacierstack {info.kind}, not a {kind}"


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


# ----------------------------------------------------------------------------- claims
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


# ----------------------------------------------------------------------------- progress markers
def set_marker(where: str | StoreURL, *parts: str) -> None:
    """Drop an empty progress marker ``.glacierstack/progress/<parts>``."""
    store = StoreURL.parse(where)
    _put(store, _meta(store, PROGRESS, *parts), b"")


def markers(where: str | StoreURL, group: str) -> set[str]:
    """Names of the progress markers set under ``group``."""
    store = StoreURL.parse(where)
    base = _meta(store, PROGRESS, group)
    if not store.fs.exists(base):
        return set()
    return {p.rstrip("/").rsplit("/", 1)[-1] for p in store.fs.ls(base, detail=False)}


# ----------------------------------------------------------------------------- completion
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


# ----------------------------------------------------------------------------- guarded reads
def _chunk_key(name: str, key: tuple[Any, ...], chunks: tuple[int, ...]) -> str:
    idx = [
        str((k.start or 0) // c if isinstance(k, slice) else int(k) // c)
        for k, c in zip(key, chunks, strict=False)
    ]
    return f"{name}/{'.'.join(idx)}"


def _damaged(store: str, name: str, chunk: str, exc: BaseException) -> DamagedStoreError:
    return DamagedStoreError(
        f"store {store}: variable {name!r} chunk {chunk} cannot be read ({type(exc).__name__}: "
        f"{exc}); run 'glacierstack verify {store}' and rebuild the store"
    )


def read_guarded(array: Any, region: tuple[Any, ...], store: str, name: str) -> np.ndarray:
    """``array[region]`` for a Zarr array; an undecodable chunk raises :class:`DamagedStoreError`.

    On a failure every chunk of the region is read on its own to name the damaged one.
    """
    try:
        return np.asarray(array[region])
    except Exception as exc:  # noqa: BLE001 - codec errors have no common base class
        bad = _find_bad_chunk(array, region) or "(unknown)"
        raise _damaged(store, name, f"{name}/{bad}", exc) from exc


def _find_bad_chunk(array: Any, region: tuple[Any, ...]) -> str | None:
    import itertools

    ranges = []
    for d, (n, c) in enumerate(zip(array.shape, array.chunks, strict=True)):
        sl = region[d] if d < len(region) and isinstance(region[d], slice) else slice(None)
        start, stop, _ = sl.indices(n)
        ranges.append(range(start // c, max(start // c + 1, -(-stop // c))))
    for idx in itertools.product(*ranges):
        sel = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, array.chunks, strict=True))
        try:
            array[sel]
        except Exception:  # noqa: BLE001
            return ".".join(map(str, idx))
    return None


class _Guarded:
    """Array-like over one Zarr array whose reads name the chunk that fails to decode."""

    def __init__(self, array: Any, store: str, name: str) -> None:
        self.array, self.store, self.name = array, store, name
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, key: tuple[Any, ...]) -> np.ndarray:
        try:
            return np.asarray(self.array[key])
        except Exception as exc:  # noqa: BLE001
            chunk = _chunk_key(self.name, key, self.array.chunks)
            raise _damaged(self.store, self.name, chunk, exc) from exc


def group_array(group: zarr.Group, name: str, where: str) -> zarr.Array:
    """Return the array ``name`` of ``group``; raise if it is missing or a sub-group."""
    import zarr

    node = group[name]
    if not isinstance(node, zarr.Array):
        raise DamagedStoreError(f"{where}: {name!r} is a Zarr group, expected an array")
    return node


def guard_dataset(ds: Any, store: StoreURL | str, names: Iterable[str]) -> Any:
    """Return ``ds`` with ``names`` re-backed by Dask arrays whose chunk reads are guarded.

    Dask chunks equal the Zarr chunks, so a damaged chunk fails alone, with its name.
    """
    import dask.array as da
    import zarr
    from dask.base import tokenize

    url = str(store)
    group = zarr.open_group(url, mode="r", zarr_format=2)
    for name in names:
        arr = group_array(group, name, url)
        data = da.from_array(
            _Guarded(arr, url, name),
            chunks=arr.chunks,
            name=f"{name}-{tokenize(url, name, uuid.uuid4().hex)}",
            lock=False,
            asarray=False,
            meta=np.empty((0,) * arr.ndim, dtype=arr.dtype),
        )
        ds[name] = ds[name].copy(data=data)
    return ds


# ----------------------------------------------------------------------------- storage options
REMOTE_PROTOCOLS = ("s3", "gs", "gcs", "az", "abfs", "abfss")
"""Protocols an unprefixed ``--storage-option`` applies to (object stores)."""


def parse_storage_options(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Parse ``[PROTOCOL:]KEY=VALUE`` strings (``--storage-option``) into ``{protocol: opts}``.

    ``KEY`` may be dotted to nest (``client_kwargs.region_name=eu-west-1``); ``VALUE`` is
    decoded as JSON when it parses (``anon=true``, ``config_kwargs={"retries": ...}``), else
    kept as a string. Without a ``PROTOCOL:`` prefix the option is for every object store
    (:data:`REMOTE_PROTOCOLS`, key ``"*"``).

    Examples
    --------
    >>> parse_storage_options(["endpoint_url=http://127.0.0.1:9000", "gs:token=anon"])
    {'*': {'endpoint_url': 'http://127.0.0.1:9000'}, 'gs': {'token': 'anon'}}
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"storage option {item!r}: expected [PROTOCOL:]KEY=VALUE")
        proto, colon, key = key.strip().rpartition(":")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        *parents, leaf = key.split(".")
        node = out.setdefault(proto if colon else "*", {})
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _deep_update(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            _deep_update(into[k], v)
        else:
            into[k] = json.loads(json.dumps(v)) if isinstance(v, Mapping) else v


def configure(options: Mapping[str, Mapping[str, Any]]) -> None:
    """Use fsspec storage options for every store, export and checkpoint of a protocol.

    The options become fsspec's configuration for the protocol (``fsspec.config.conf``), so
    every file system this process opens for it (zarr, xarray, our storage calls) gets them,
    and :mod:`glacierstack.runner` sends them to every Dask worker it starts or joins
    (:func:`configured`). On a cluster whose workers have their own credentials (IAM role,
    workload identity, ``FSSPEC_S3_*``/``AWS_*`` environment variables) nothing needs to be
    set here.

    Parameters
    ----------
    options
        ``{protocol: {option: value}}`` as from :func:`parse_storage_options`; protocol
        ``"*"`` means every object store of :data:`REMOTE_PROTOCOLS`.
    """
    for proto, opts in options.items():
        for p in REMOTE_PROTOCOLS if proto == "*" else (proto,):
            _deep_update(fsspec.config.conf.setdefault(p, {}), opts)


def configured() -> dict[str, dict[str, Any]]:
    """Return a copy of the storage options in force (what Dask workers are given)."""
    return json.loads(json.dumps(fsspec.config.conf, default=str))


# ----------------------------------------------------------------------------- files and folders
def is_url(where: str | os.PathLike[str]) -> bool:
    """Return whether ``where`` is an fsspec URL (``s3://...``) rather than a local path."""
    return "://" in os.fspath(where)


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
