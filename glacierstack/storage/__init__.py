"""One storage layer for every Zarr store glacierstack and cryonet write (cubes, mosaics).

Every store is addressed by a path or an fsspec URL (``memory://``, ``s3://``, ...) and goes
through this package: creation, resume, completion, removal and integrity checks. No other
module deletes, renames or copies files (``tests/reliability/test_storage_boundary.py``).

One step per module; import everything from ``glacierstack.storage``:

- :mod:`~glacierstack.storage.paths`: addresses (:class:`StoreURL`, :func:`is_url`,
  :func:`gdal_path`) and the store's own ``.glacierstack`` folder;
- :mod:`~glacierstack.storage.options`: storage options per protocol (:func:`configure`);
- :mod:`~glacierstack.storage.status`: what is at an address (:func:`store_info`);
- :mod:`~glacierstack.storage.claims`: exclusive creation, resume, ownership, progress markers;
- :mod:`~glacierstack.storage.manifest`: completion, chunk manifest, :func:`verify`;
- :mod:`~glacierstack.storage.removal`: removal and atomic replacement of what is ours;
- :mod:`~glacierstack.storage.guarded`: reads that name the damaged chunk;
- :mod:`~glacierstack.storage.files`: single files and run folders on a path or URL;
- :mod:`~glacierstack.storage.errors`: the exceptions.

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

from glacierstack.storage.claims import (
    Claim,
    check_owner,
    claim,
    mark_created,
    markers,
    read_marker,
    set_marker,
)
from glacierstack.storage.errors import (
    DamagedStoreError,
    ForeignStoreError,
    IncompleteStoreError,
    StoreError,
    StoreExistsError,
    StoreMismatchError,
)
from glacierstack.storage.files import (
    copy_file,
    local_file,
    local_folder,
    open_input,
    output_exists,
    staged_output,
)
from glacierstack.storage.guarded import group_array, guard_dataset, read_guarded
from glacierstack.storage.manifest import (
    CHECKSUM_BATCH_BYTES,
    VerifyReport,
    check_complete,
    complete,
    verify,
)
from glacierstack.storage.options import (
    REMOTE_PROTOCOLS,
    configure,
    configured,
    parse_storage_options,
)
from glacierstack.storage.paths import (
    CREATED,
    MANIFEST,
    META,
    OWNER,
    PROGRESS,
    StoreKind,
    StoreURL,
    gdal_path,
    is_url,
)
from glacierstack.storage.removal import (
    check_not_input,
    discard,
    preflight,
    publish,
    remove_owned,
    remove_scratch,
    remove_store,
    replace_folder,
    scratch_debris,
)
from glacierstack.storage.status import StoreInfo, store_info

__all__ = [
    "CHECKSUM_BATCH_BYTES",
    "CREATED",
    "Claim",
    "DamagedStoreError",
    "ForeignStoreError",
    "IncompleteStoreError",
    "MANIFEST",
    "META",
    "OWNER",
    "PROGRESS",
    "REMOTE_PROTOCOLS",
    "StoreError",
    "StoreExistsError",
    "StoreInfo",
    "StoreKind",
    "StoreMismatchError",
    "StoreURL",
    "VerifyReport",
    "check_complete",
    "check_not_input",
    "check_owner",
    "claim",
    "complete",
    "configure",
    "configured",
    "copy_file",
    "discard",
    "gdal_path",
    "group_array",
    "guard_dataset",
    "is_url",
    "local_file",
    "local_folder",
    "mark_created",
    "markers",
    "open_input",
    "output_exists",
    "parse_storage_options",
    "preflight",
    "publish",
    "read_guarded",
    "read_marker",
    "remove_owned",
    "remove_scratch",
    "remove_store",
    "replace_folder",
    "scratch_debris",
    "set_marker",
    "staged_output",
    "store_info",
    "verify",
]
