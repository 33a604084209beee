"""Normalised-difference kernel vs NumPy, including zero denominators and missing data."""

from __future__ import annotations

import dask.array as da
import numpy as np

from glacierstack.dispatch import apply_kernel
from glacierstack.kernels import normalized_difference


def test_normalized_difference_vs_numpy():
    rng = np.random.default_rng(0)
    a = rng.uniform(-0.05, 1, (50, 60)).astype(np.float32)
    b = rng.uniform(-0.05, 1, (50, 60)).astype(np.float32)
    a[0, :5] = [0.0, 0.2, np.nan, 0.3, -0.1]
    b[0, :5] = [0.0, -0.2, 0.1, np.nan, 0.1]
    with np.errstate(divide="ignore", invalid="ignore"):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        ref = (a64 - b64) / (a64 + b64)
    ref[(a64 + b64) == 0] = np.nan
    ours = apply_kernel(normalized_difference, a, b)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref.astype(np.float32), rtol=1e-6, equal_nan=True)
    assert np.isnan(ours[0, :5]).all()
    lazy = apply_kernel(
        normalized_difference, da.from_array(a, chunks=(7, 13)), da.from_array(b, chunks=(7, 13))
    )
    np.testing.assert_array_equal(lazy.compute(), ours)
