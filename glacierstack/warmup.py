"""Warm the Numba kernels in a process, and count compilations (no compile inside tasks).

The kernels are ``@njit(cache=True)``: the first call in a fresh process loads the machine code
from the on-disk cache (or compiles and stores it). :func:`warm_kernels` makes that first call
on a tiny raw dataset with every layer, so the signatures the feature code uses are ready
before any task runs; the runner calls it on every worker start (a worker plugin).
:func:`compile_count` lets benchmarks and tests check that tasks then compile nothing.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["compile_count", "kernel_dispatchers", "warm_kernels"]

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
