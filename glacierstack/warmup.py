"""Set up a process that runs tasks: GDAL env, torch threads, warm Numba kernels.

:class:`WorkerSettings` (a Dask worker plugin, registered by :mod:`glacierstack.runner`) and
the ``processes`` pool initializer both call :func:`apply_settings`.

The kernels are ``@njit(cache=True)``: the first call in a fresh process loads the machine code
from the on-disk cache (or compiles and stores it). :func:`warm_kernels` makes that first call
on a tiny raw dataset with every layer, so the signatures the feature code uses are ready
before any task runs; the runner calls it on every worker start (a worker plugin).
:func:`compile_count` lets benchmarks and tests check that tasks then compile nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "WorkerSettings",
    "apply_settings",
    "compile_count",
    "kernel_dispatchers",
    "relax_malloc_trim",
    "warm_kernels",
]

_WARM_SHAPE = (12, 12)


def kernel_dispatchers() -> dict[str, object]:
    """Return the module-level Numba dispatchers of :mod:`glacierstack.kernels` by name."""
    import glacierstack.kernels as k

    out: dict[str, object] = {}
    for mod in (k.glcm, k.insar, k.spectral, k.terrain):
        for name, obj in vars(mod).items():
            if hasattr(obj, "stats") and hasattr(obj, "py_func"):
                out[f"{mod.__name__}.{name}"] = obj
    return out


def compile_count() -> int:
    """Compilations of glacierstack kernels in this process so far (Numba cache misses)."""
    total = 0
    for disp in kernel_dispatchers().values():
        total += sum(disp.stats.cache_misses.values())  # type: ignore[attr-defined]
    return int(total)


def _tiny_raw() -> xr.Dataset:
    from glacierstack.layers import S2_BANDS

    h, w = _WARM_SHAPE
    rng = np.random.default_rng(0)
    y = 1000.0 - 10.0 * np.arange(h) - 5.0
    x = 10.0 * np.arange(w) + 5.0
    data = {b: (("y", "x"), rng.uniform(0, 1, (h, w)).astype(np.float32)) for b in S2_BANDS}
    for name in ("elevation", "lst", "velocity"):
        data[name] = (("y", "x"), rng.uniform(0, 100, (h, w)).astype(np.float32))
    for name in ("s1_ref", "s1_sec"):
        z = rng.normal(size=(h, w)) + 1j * rng.normal(size=(h, w))
        data[name] = (("y", "x"), z.astype(np.complex64))
    grid = {"crs": "EPSG:32645", "transform": [10.0, 0.0, 0.0, 0.0, -10.0, 1000.0]}
    return xr.Dataset(data, coords={"y": y, "x": x}, attrs={"grid": grid})


def warm_kernels() -> int:
    """Compute every layer once on a tiny NumPy dataset; return the compile count after it."""
    from glacierstack.features import compute_features

    compute_features(_tiny_raw(), None).values  # noqa: B018  (NumPy path: runs every kernel)
    return compile_count()


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt() parameters
_TRIM_BYTES, _MMAP_BYTES = 128 * 2**20, 32 * 2**20  # 32 MiB: glibc's own dynamic-threshold cap


def relax_malloc_trim() -> bool:
    """Undo the eager memory trimming a Dask nanny sets up, which makes numeric code page-fault.

    A Dask nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting that
    threshold also freezes glibc's mmap threshold at 128 KiB, so every array buffer larger than
    that is a fresh ``mmap`` (zero-filled page faults) and every free an ``munmap``:
    ``cryonet predict`` ran 2.3x slower in a LocalCluster worker than on the threaded
    scheduler (benchmarks/RESULTS.md). This restores the heap for allocations up to 32 MiB and
    keeps up to 128 MiB of free heap before trimming. It acts only where that variable is set
    and the C library is glibc, so it applies to workers of any cluster (a plugin runs it).

    Returns
    -------
    bool
        True when the thresholds were changed.

    Examples
    --------
    >>> relax_malloc_trim() in (True, False)
    True
    """
    if not os.environ.get("MALLOC_TRIM_THRESHOLD_") or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another C library: leave it alone
        return False
    ok = libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES) and libc.mallopt(
        _M_MMAP_THRESHOLD, _MMAP_BYTES
    )
    return bool(ok)


def apply_settings(
    torch_threads: int | None,
    gdal_env: Sequence[tuple[str, str]],
    warm: bool = True,
    storage_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Apply worker settings in this process (environment, malloc, torch, storage, kernels)."""
    os.environ.update(dict(gdal_env))
    relax_malloc_trim()
    if storage_options:
        from glacierstack.storage import configure

        configure(storage_options)
    if torch_threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(torch_threads)
        torch = sys.modules.get("torch")  # glacierstack never imports torch itself
        if torch is not None:
            torch.set_num_threads(int(torch_threads))
    if warm:
        warm_kernels()


try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - distributed is a dependency
    _WorkerPlugin = object  # type: ignore[assignment,misc]


class WorkerSettings(_WorkerPlugin):  # type: ignore[misc,valid-type]
    """Worker plugin: GDAL env, torch threads and warm Numba kernels on every worker start.

    Parameters
    ----------
    torch_threads
        torch intra-op threads (``None``: unchanged).
    gdal_env
        ``(name, value)`` GDAL configuration options exported as environment variables.
    warm_kernels
        Load the glacierstack Numba kernels (from the on-disk cache) before any task runs.
    storage_options
        fsspec storage options per protocol (:func:`glacierstack.storage.configure`), so that
        workers reach the same object stores with the same credentials as the client.
    """

    name = "glacierstack-worker-settings"

    def __init__(
        self,
        torch_threads: int | None = None,
        gdal_env: Sequence[tuple[str, str]] = (),
        warm_kernels: bool = True,
        storage_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.torch_threads = torch_threads
        self.gdal_env = tuple(gdal_env)
        self.warm_kernels = warm_kernels
        self.storage_options = dict(storage_options or {})

    def setup(self, worker: Any) -> None:
        """Apply the settings in the worker process (runs once per worker start)."""
        apply_settings(self.torch_threads, self.gdal_env, self.warm_kernels, self.storage_options)
