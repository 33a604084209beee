"""Exceptions of the storage layer: what a path holds that cannot be used."""

from __future__ import annotations

__all__ = [
    "DamagedStoreError",
    "ForeignStoreError",
    "IncompleteStoreError",
    "StoreError",
    "StoreExistsError",
    "StoreMismatchError",
]


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
