"""PCA fitted with Dask reductions vs numpy.linalg.eigh and scikit-learn on the same pixels."""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr
from sklearn.decomposition import PCA

from glacierstack.features import FeatureOptions, compute_features, fit_pca
from glacierstack.layers import S2_BANDS


def _raw(h=90, w=130, seed=0, chunks=(37, 53)):
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((3, h, w)) * np.array([3.0, 1.5, 0.7])[:, None, None]
    mix = rng.standard_normal((12, 3))
    x = np.tensordot(mix, latent, axes=1) * 0.02 + 0.3 + 0.005 * rng.standard_normal((12, h, w))
    x = x.astype(np.float32)
    x[2, 10:14, 20:25] = np.nan  # a hole in one band only
    x[:, 50:60, 100:] = np.nan  # a chunk-crossing nodata area in all bands
    data = {b: (("y", "x"), da.from_array(x[k], chunks=chunks)) for k, b in enumerate(S2_BANDS)}
    return xr.Dataset(data, coords={"y": np.arange(h)[::-1] * 10.0, "x": np.arange(w) * 10.0}), x


def _valid_matrix(x):
    flat = x.reshape(12, -1).astype(np.float64)
    ok = np.isfinite(flat).all(axis=0)
    return flat[:, ok].T, ok


def test_fit_matches_eigh_of_numpy_covariance():
    raw, x = _raw()
    fit = fit_pca(raw)
    xv, _ = _valid_matrix(x)
    assert fit.n_samples == len(xv)
    np.testing.assert_allclose(fit.mean, xv.mean(axis=0), rtol=1e-12)
    evals, evecs = np.linalg.eigh(np.cov(xv, rowvar=False))
    evals, evecs = evals[::-1][:3], evecs[:, ::-1][:, :3].T
    evecs *= np.sign(evecs[np.arange(3), np.abs(evecs).argmax(axis=1)])[:, None]  # documented sign
    np.testing.assert_allclose(fit.explained_variance, evals, rtol=1e-9)
    np.testing.assert_allclose(fit.components, evecs, atol=1e-9)
    assert fit.total_variance > fit.explained_variance.sum()


def test_fit_and_scores_match_sklearn_including_sign():
    raw, x = _raw(seed=1)
    fit = fit_pca(raw)
    xv, ok = _valid_matrix(x)
    skl = PCA(n_components=3).fit(xv)
    np.testing.assert_allclose(fit.components, skl.components_, atol=1e-8)
    np.testing.assert_allclose(fit.explained_variance, skl.explained_variance_, rtol=1e-8)
    cube = compute_features(raw, "pca")
    assert isinstance(cube.data, da.Array) and cube.chunks[1:] == raw.B01.chunks
    scores = cube.values.reshape(3, -1)
    np.testing.assert_allclose(scores[:, ok].T, skl.transform(xv), rtol=1e-4, atol=1e-5)
    assert np.isnan(scores[:, ~ok]).all()


def test_chunking_does_not_change_the_fit():
    a = fit_pca(_raw(chunks=(37, 53))[0])
    b = fit_pca(_raw(chunks=(90, 130))[0])
    np.testing.assert_allclose(a.components, b.components, atol=1e-10)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12)


def test_precomputed_fit_is_reused_for_another_region():
    raw_a, _ = _raw(seed=2)
    raw_b, xb = _raw(seed=3)
    fit = fit_pca(raw_a)
    cube = compute_features(raw_b, ["PC1"], FeatureOptions(pca=fit)).compute()
    ref = np.tensordot(fit.components[0], xb.astype(np.float64) - fit.mean[:, None, None], axes=1)
    np.testing.assert_allclose(cube.sel(band="PC1"), ref, rtol=1e-4, atol=1e-5, equal_nan=True)
