"""Apply a NumPy kernel to NumPy, Dask or xarray inputs: the one backend adapter.

Kernels in :mod:`glacierstack.kernels` see only padded NumPy arrays and return their valid
interior (see that package's docstring). :func:`apply_kernel` supplies the padding:

* NumPy input: :func:`numpy.pad` by the window radius with the ``boundary`` rule;
* Dask input: :func:`dask.array.overlap.overlap` with the same depth and rule, then
  :func:`dask.array.map_blocks`; each chunk's result is exactly the interior of its padded
  block, so results are identical across chunk boundaries and equal to the NumPy result;
* :class:`xarray.DataArray` input: the underlying array goes through one of the above and the
  result is rebuilt with the input's dims, coords and attrs (plus a leading ``output``
  dimension for kernels with several outputs).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

Boundary = Literal["nan", "nearest", "reflect"]
"""Edge rule: ``"nan"`` (missing outside the array, so edge windows give NaN), ``"nearest"``
(repeat the edge pixel) or ``"reflect"`` (mirror including the edge pixel: ``numpy.pad``
mode ``"symmetric"``, Dask boundary ``"reflect"``)."""

_NP_PAD: dict[str, dict[str, Any]] = {
    "nan": {"mode": "constant", "constant_values": np.nan},
    "nearest": {"mode": "edge"},
    "reflect": {"mode": "symmetric"},
}
_DASK_BOUNDARY: dict[str, Any] = {"nan": np.nan, "nearest": "nearest", "reflect": "reflect"}


def _depth2(depth: int | tuple[int, int]) -> tuple[int, int]:
    dy, dx = (depth, depth) if isinstance(depth, int) else depth
    if dy < 0 or dx < 0:
        raise ValueError(f"kernel depth must be >= 0, got {depth!r}")
    return int(dy), int(dx)


@overload
def apply_kernel(
    kernel: Callable[..., np.ndarray],
    *inputs: xr.DataArray,
    depth: int | tuple[int, int] = ...,
    boundary: Boundary = ...,
    args: Sequence[Any] = ...,
    outputs: Sequence[str] | None = ...,
    dtype: np.dtype | type = ...,
    name: str | None = ...,
    attrs: dict[str, Any] | None = ...,
) -> xr.DataArray: ...
@overload
def apply_kernel(
    kernel: Callable[..., np.ndarray],
    *inputs: da.Array,
    depth: int | tuple[int, int] = ...,
    boundary: Boundary = ...,
    args: Sequence[Any] = ...,
    outputs: Sequence[str] | None = ...,
    dtype: np.dtype | type = ...,
    name: str | None = ...,
    attrs: dict[str, Any] | None = ...,
) -> da.Array: ...
@overload
def apply_kernel(
    kernel: Callable[..., np.ndarray],
    *inputs: np.ndarray,
    depth: int | tuple[int, int] = ...,
    boundary: Boundary = ...,
    args: Sequence[Any] = ...,
    outputs: Sequence[str] | None = ...,
    dtype: np.dtype | type = ...,
    name: str | None = ...,
    attrs: dict[str, Any] | None = ...,
) -> np.ndarray: ...
def apply_kernel(
    kernel: Callable[..., np.ndarray],
    *inputs: np.ndarray | da.Array | xr.DataArray,
    depth: int | tuple[int, int] = 0,
    boundary: Boundary = "nan",
    args: Sequence[Any] = (),
    outputs: Sequence[str] | None = None,
    dtype: np.dtype | type = np.float32,
    name: str | None = None,
    attrs: dict[str, Any] | None = None,
) -> np.ndarray | da.Array | xr.DataArray:
    """Apply a padded-input NumPy kernel to 2-D NumPy, Dask or xarray arrays.

    Parameters
    ----------
    kernel
        ``kernel(*padded_inputs, *args) -> array``; returns the valid interior with shape
        ``(H, W)`` (one output) or ``(len(outputs), H, W)``.
    *inputs
        One or more 2-D arrays of one shape, all NumPy, all Dask, or all DataArrays
        (DataArrays may wrap either). Dask inputs are rechunked to the first one's chunks.
    depth
        Window radius ``r`` or ``(ry, rx)``: the padding on each side (0 for elementwise).
    boundary
        Edge rule, see :data:`Boundary`.
    args
        Extra positional arguments passed to the kernel after the arrays.
    outputs
        Names of the outputs for multi-output kernels (``None`` for a single 2-D output).
    dtype
        Output dtype.
    name
        Name of the resulting DataArray (DataArray input only).
    attrs
        Attributes merged over the first input's attrs (DataArray input only).

    Returns
    -------
    numpy.ndarray, dask.array.Array or xarray.DataArray
        Same kind as the input. DataArray results keep dims/coords/attrs of the first input;
        multi-output results get a leading ``output`` dimension with coordinate ``outputs``.
    """
    kname = getattr(kernel, "__name__", type(kernel).__name__)
    if not inputs:
        raise ValueError(f"apply_kernel({kname}) needs an input")
    if boundary not in _NP_PAD:
        raise ValueError(f"boundary must be one of {sorted(_NP_PAD)}, got {boundary!r}")
    ry, rx = _depth2(depth)
    opts = _Opts(kernel, (ry, rx), boundary, tuple(args), outputs, np.dtype(dtype))

    if any(isinstance(a, xr.DataArray) for a in inputs):
        arrays = [a for a in inputs if isinstance(a, xr.DataArray)]
        if len(arrays) != len(inputs):
            raise TypeError(f"apply_kernel({kname}): mix of DataArray and non-DataArray inputs")
        return _apply_dataarray(arrays, opts, name, attrs)
    plain = [a for a in inputs if not isinstance(a, xr.DataArray)]
    return _apply_array(plain, opts)


@dataclass(frozen=True)
class _Opts:
    kernel: Callable[..., np.ndarray]
    depth: tuple[int, int]
    boundary: str
    args: tuple[Any, ...]
    outputs: Sequence[str] | None
    dtype: np.dtype

    @property
    def name(self) -> str:
        return str(getattr(self.kernel, "__name__", type(self.kernel).__name__))


def _apply_dataarray(
    inputs: Sequence[xr.DataArray], o: _Opts, name: str | None, attrs: dict[str, Any] | None
) -> xr.DataArray:
    first = inputs[0]
    for other in inputs[1:]:
        if other.dims != first.dims or other.shape != first.shape:
            raise ValueError(
                f"apply_kernel({o.name}): input {other.name!r} has dims/shape "
                f"{other.dims}{other.shape}, expected {first.dims}{first.shape} "
                f"like {first.name!r}"
            )
    data = _apply_array([a.data for a in inputs], o)
    coords = {k: v for k, v in first.coords.items() if set(v.dims) <= set(first.dims)}
    dims: tuple[Hashable, ...] = first.dims
    if o.outputs is not None:
        dims = ("output", *dims)
        coords["output"] = xr.DataArray(list(o.outputs), dims="output")
    return xr.DataArray(
        data, dims=dims, coords=coords, name=name, attrs={**first.attrs, **(attrs or {})}
    )


def _apply_array(inputs: Sequence[np.ndarray | da.Array], o: _Opts) -> np.ndarray | da.Array:
    for a in inputs:
        if a.ndim != 2:
            raise ValueError(f"apply_kernel({o.name}) expects 2-D arrays, got {a.shape}")
        if a.shape != inputs[0].shape:
            raise ValueError(f"apply_kernel({o.name}): shapes differ: {[x.shape for x in inputs]}")
    lazy = [a for a in inputs if isinstance(a, da.Array)]
    if lazy:
        if len(lazy) != len(inputs):
            raise TypeError(f"apply_kernel({o.name}): mix of NumPy and Dask inputs")
        return _apply_dask(lazy, o)
    ry, rx = o.depth
    padded = [_pad_numpy(np.asarray(a), ry, rx, o.boundary) for a in inputs]
    return np.asarray(o.kernel(*padded, *o.args), dtype=o.dtype)


def _pad_numpy(a: np.ndarray, ry: int, rx: int, boundary: str) -> np.ndarray:
    if ry == 0 and rx == 0:
        return np.ascontiguousarray(a)
    if boundary == "nan" and not np.issubdtype(a.dtype, np.inexact):
        a = a.astype(np.float32)
    return np.pad(a, ((ry, ry), (rx, rx)), **_NP_PAD[boundary])


def _apply_dask(inputs: Sequence[da.Array], o: _Opts) -> da.Array:
    ry, rx = o.depth
    if ry or rx:
        # overlap() needs every chunk at least as large as the depth; rechunk up front so
        # that all inputs share the (possibly enlarged) chunks.
        chunks = tuple(
            da.overlap.ensure_minimum_chunksize(max(r, 1), c)
            for r, c in zip(o.depth, inputs[0].chunks, strict=True)
        )
    else:
        chunks = inputs[0].chunks
    aligned = [a if a.chunks == chunks else a.rechunk(chunks) for a in inputs]
    if ry or rx:
        bnd = _DASK_BOUNDARY[o.boundary]
        padded = [
            da.overlap.overlap(
                a if o.boundary != "nan" or np.issubdtype(a.dtype, np.inexact) else a.astype("f4"),
                depth={0: ry, 1: rx},
                boundary={0: bnd, 1: bnd},
            )
            for a in aligned
        ]
    else:
        padded = aligned
    block = functools.partial(_run_block, kernel_ref(o.kernel), o.args, o.dtype)
    dtype = o.dtype
    qualname = f"{getattr(o.kernel, '__module__', '')}.{o.name}"
    token = f"{o.name}-{tokenize(qualname, *padded, o.args, str(dtype), o.outputs)}"
    out_chunks: tuple[tuple[int, ...], ...] = chunks
    new_axis = None
    if o.outputs is not None:
        out_chunks = ((len(o.outputs),), *chunks)
        new_axis = [0]
    return da.map_blocks(
        block,
        *padded,
        chunks=out_chunks,
        new_axis=new_axis,
        dtype=dtype,
        meta=np.empty((0,) * len(out_chunks), dtype),
        name=token,
    )


@dataclass(frozen=True)
class KernelRef:
    """A module-level kernel named by import path: pickles as two strings.

    Shipping a Numba dispatcher by value makes every Dask worker rebuild a cache-less copy
    and compile it again; by reference, a worker imports the module's own dispatcher, whose
    machine code comes from the on-disk cache (warmed at worker start by the runner).
    """

    module: str
    name: str

    def resolve(self) -> Callable[..., np.ndarray]:
        """Import the kernel."""
        obj: Callable[..., np.ndarray] = getattr(importlib.import_module(self.module), self.name)
        return obj


def kernel_ref(kernel: Callable[..., np.ndarray]) -> KernelRef | Callable[..., np.ndarray]:
    """``KernelRef`` for an importable module-level kernel, else the kernel itself."""
    module = getattr(kernel, "__module__", None)
    name = getattr(kernel, "__qualname__", getattr(kernel, "__name__", None))
    if module and name and "<" not in name and "." not in name:
        try:
            if getattr(importlib.import_module(module), name) is kernel:
                return KernelRef(module, name)
        except (ImportError, AttributeError):
            pass
    return kernel


def _run_block(
    kernel: KernelRef | Callable[..., np.ndarray],
    args: tuple[Any, ...],
    dtype: np.dtype,
    *blocks: np.ndarray,
) -> np.ndarray:
    """Apply a kernel to padded blocks (module level: tasks reference it by import path)."""
    fn = kernel.resolve() if isinstance(kernel, KernelRef) else kernel
    return np.asarray(fn(*(np.ascontiguousarray(b) for b in blocks), *args), dtype=dtype)
