"""Patch reads from a glacierstack Zarr cube: :func:`open_cube` and :class:`CubeSource`.

The pixels are read directly, one contiguous slice per patch, either from an in-memory copy of
the cube (small cubes: the default when the features fit in ``memory_limit``) or from the Zarr
arrays through a small per-worker cache of decoded chunk blocks (large cubes). xbatcher's own
per-sample ``isel`` path is far slower (see ``benchmarks/bench_loader.py``).

Split out of :mod:`cryonet.data`, which re-exports these names.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from cryonet.bands import band_index

__all__ = ["CubeSource", "open_cube"]


# ----------------------------------------------------------------------------- cube access
def open_cube(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a glacierstack Zarr cube lazily (NumPy-backed), refusing incomplete stores.

    Thin wrapper of :func:`glacierstack.store.open_cube` with ``chunks=None``.
    """
    from glacierstack.store import open_cube as _open

    return _open(path, chunks=None)


class CubeSource:
    """Fast patch reads from a cube: in memory or from Zarr through a chunk-block cache.

    Parameters
    ----------
    path
        Zarr cube path (contract layout of ``docs/developer/contracts.md``).
    cache
        ``"memory"`` loads features and labels once (shared with forked DataLoader workers);
        ``"zarr"`` reads chunk blocks on demand, keeping ``chunk_cache`` decoded blocks per
        process; ``"auto"`` picks ``"memory"`` when the features take at most
        ``memory_limit`` bytes.
    memory_limit
        Size threshold for ``cache="auto"``.
    chunk_cache
        Number of decoded chunk blocks kept per process in ``"zarr"`` mode.
    bands
        The bands to read, by name and in this order (a model's input bands); ``None``: all of
        the cube's, in its order. This is the one band rule of cryonet: the cube must hold a
        model's bands, its order and extra bands do not matter (as for ``cryonet predict``).
    stats
        ``(mean, std)`` per selected band to normalise with instead of the cube's own (e.g. a
        checkpoint's statistics); see :func:`normalisation`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        cache: Literal["auto", "memory", "zarr"] = "auto",
        memory_limit: int = 4 * 2**30,
        chunk_cache: int = 8,
        *,
        bands: Sequence[str] | None = None,
        stats: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        # a URL (s3://...) stays a string: Path() would fold its '//'
        self.path: Path | str = str(path) if "://" in str(path) else Path(path)
        ds = open_cube(self.path)
        for var in ("features", "labels", "band_mean", "band_std"):
            if var not in ds:
                raise ValueError(f"Zarr cube {self.path} has no variable {var!r}")
        feats = ds["features"]
        if feats.dims != ("band", "y", "x") or ds["labels"].dims != ("y", "x"):
            raise ValueError(
                f"Zarr cube {self.path}: expected features (band, y, x) and labels (y, x), got "
                f"{feats.dims} and {ds['labels'].dims}"
            )
        cube_bands = [str(b) for b in ds["band"].values]
        index = band_index(bands, cube_bands, f"cube {self.path}") if bands is not None else None
        self._index: list[int] | None = index if index != list(range(len(cube_bands))) else None
        """Cube channels read, in order (``None``: all, in the cube's order)."""
        self.bands: tuple[str, ...] = tuple(bands) if bands is not None else tuple(cube_bands)
        mean = np.asarray(ds["band_mean"].values, dtype=np.float32)
        std = np.asarray(ds["band_std"].values, dtype=np.float32)
        if stats is not None:
            mean, std = (np.asarray(v, dtype=np.float32).reshape(-1) for v in stats)
            if mean.shape != (len(self.bands),) or std.shape != (len(self.bands),):
                raise ValueError(
                    f"stats for cube {self.path} have {mean.size}/{std.size} values; expected "
                    f"{len(self.bands)} (bands {list(self.bands)})"
                )
        elif self._index is not None:
            mean, std = mean[self._index], std[self._index]
        self.mean, self.std = mean, std
        self.classes: list[dict[str, Any]] = list(ds.attrs.get("classes", []))
        self.attrs = dict(ds.attrs)
        self.shape: tuple[int, int] = (int(ds.sizes["y"]), int(ds.sizes["x"]))
        enc = feats.encoding.get("chunks") or feats.encoding.get("preferred_chunks")
        if isinstance(enc, dict):
            enc = (enc.get("band"), enc.get("y"), enc.get("x"))
        self.chunks: tuple[int, int] = (
            (int(enc[1]), int(enc[2])) if enc and enc[1] and enc[2] else (512, 512)
        )
        nbytes = len(self.bands) * self.shape[0] * self.shape[1] * 4
        self.mode: Literal["memory", "zarr"] = (
            ("memory" if nbytes <= memory_limit else "zarr") if cache == "auto" else cache
        )
        if self.mode not in ("memory", "zarr"):
            raise ValueError(f"cache must be 'auto', 'memory' or 'zarr', got {cache!r}")
        self.chunk_cache = chunk_cache
        self._blocks: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._zarr: Any = None
        ds.close()
        import zarr

        group = zarr.open_group(str(self.path), mode="r")
        # raw uint8 (xarray would decode the 255 fill value to NaN floats)
        self.labels = np.asarray(group["labels"][:], dtype=np.uint8)  # type: ignore[index]
        """All labels (uint8, small) are always held in memory."""
        self.features: np.ndarray | None = None
        if self.mode == "memory":
            arr = self._features_zarr()
            sel = arr[...] if self._index is None else arr.get_orthogonal_selection(self._index)
            self.features = np.asarray(sel, dtype=np.float32)

    # pickling for DataLoader workers with the "spawn" start method: drop open handles
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_zarr"] = None
        state["_blocks"] = OrderedDict()
        return state

    @property
    def n_bands(self) -> int:
        """Number of feature bands."""
        return len(self.bands)

    def _features_zarr(self) -> Any:
        if self._zarr is None:
            import zarr

            arr = zarr.open_group(str(self.path), mode="r")["features"]
            for key in ("scale_factor", "add_offset"):
                if key in arr.attrs:
                    raise ValueError(
                        f"Zarr cube {self.path}: packed features ({key}) are not supported; "
                        "use cache='memory'"
                    )
            self._zarr = arr
        return self._zarr

    def _block(self, by: int, bx: int) -> np.ndarray:
        key = (by, bx)
        if key in self._blocks:
            self._blocks.move_to_end(key)
            return self._blocks[key]
        cy, cx = self.chunks
        arr = self._features_zarr()
        rows, cols = slice(by * cy, (by + 1) * cy), slice(bx * cx, (bx + 1) * cx)
        chans = slice(None) if self._index is None else self._index
        data = np.asarray(arr.get_orthogonal_selection((chans, rows, cols)), np.float32)
        self._blocks[key] = data
        if len(self._blocks) > self.chunk_cache:
            self._blocks.popitem(last=False)
        return data

    def read_features(self, y0: int, x0: int, size: int) -> np.ndarray:
        """Return the raw (unnormalised) features ``(band, size, size)`` at ``(y0, x0)``."""
        if self.features is not None:
            return self.features[:, y0 : y0 + size, x0 : x0 + size]
        cy, cx = self.chunks
        out = np.empty((self.n_bands, size, size), np.float32)
        for by in range(y0 // cy, (y0 + size - 1) // cy + 1):
            for bx in range(x0 // cx, (x0 + size - 1) // cx + 1):
                blk = self._block(by, bx)
                ya, yb = max(y0, by * cy), min(y0 + size, (by + 1) * cy)
                xa, xb = max(x0, bx * cx), min(x0 + size, (bx + 1) * cx)
                out[:, ya - y0 : yb - y0, xa - x0 : xb - x0] = blk[
                    :, ya - by * cy : yb - by * cy, xa - bx * cx : xb - bx * cx
                ]
        return out

    def read_labels(self, y0: int, x0: int, size: int) -> np.ndarray:
        """Return the labels ``(size, size)`` at ``(y0, x0)``."""
        return self.labels[y0 : y0 + size, x0 : x0 + size]
