"""Guarded reads: an undecodable chunk is an error naming store, variable and chunk."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import zarr

from glacierstack.storage.errors import DamagedStoreError
from glacierstack.storage.paths import StoreURL

__all__ = ["group_array", "guard_dataset", "read_guarded"]


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
