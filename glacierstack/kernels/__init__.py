"""Numba kernels on plain NumPy arrays (no xarray, no dask).

Every windowed kernel follows one convention so that :func:`glacierstack.dispatch.apply_kernel`
can apply it to NumPy arrays and to Dask chunks alike:

* its first argument(s) are 2-D arrays **already padded** by the window radius ``(ry, rx)``
  on each side (by ``numpy.pad`` for NumPy input, by ``dask.array.overlap`` for Dask chunks);
* it returns only the valid interior, i.e. shape ``(H - 2*ry, W - 2*rx)`` for one output, or
  ``(k, H - 2*ry, W - 2*rx)`` for ``k`` outputs;
* non-finite input pixels are treated as missing, and an output pixel whose window touches a
  missing pixel is NaN.

Elementwise kernels (radius 0) take and return arrays of one shape.
"""

from glacierstack.kernels.glcm import (
    GLCM_PROPERTIES,
    glcm_dissimilarity,
    glcm_properties,
    quantize,
)
from glacierstack.kernels.insar import boxcar_coherence
from glacierstack.kernels.spectral import normalized_difference
from glacierstack.kernels.terrain import horn_slope_aspect

__all__ = [
    "GLCM_PROPERTIES",
    "boxcar_coherence",
    "glcm_dissimilarity",
    "glcm_properties",
    "horn_slope_aspect",
    "normalized_difference",
    "quantize",
]
