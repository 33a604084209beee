"""GLCM dissimilarity kernel vs scikit-image on every window, and NumPy vs Dask chunkings."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.feature import graycomatrix, graycoprops

from glacierstack.dispatch import apply_kernel
from glacierstack.kernels import GLCM_PROPERTIES, glcm_dissimilarity, glcm_properties, quantize


def _skimage_dissimilarity(q: np.ndarray, window: int, offsets, levels: int, symmetric: bool):
    """Reference: graycomatrix/graycoprops on every full window of a quantised image."""
    r = window // 2
    h, w = q.shape
    out = np.full((h - 2 * r, w - 2 * r), np.nan)
    dists = [float(np.hypot(dy, dx)) for dy, dx in offsets]
    angles = [float(np.arctan2(dy, dx)) for dy, dx in offsets]
    for i in range(h - 2 * r):
        for j in range(w - 2 * r):
            patch = q[i : i + window, j : j + window].astype(np.uint8)
            vals = []
            for d, a in zip(dists, angles, strict=True):
                p = graycomatrix(patch, [d], [a], levels=levels, symmetric=symmetric, normed=True)
                vals.append(graycoprops(p, "dissimilarity")[0, 0])
            out[i, j] = np.mean(vals)
    return out


def _image(shape, seed=0):
    rng = np.random.default_rng(seed)
    # smooth field + noise so that windows hold a spread of grey levels, some out of range
    base = ndimage.gaussian_filter(rng.random(shape), 2) * 3 - 1
    return (base + 0.3 * rng.random(shape)).astype(np.float32)


def test_quantize_matches_documented_formula():
    x = np.concatenate([_image((20, 30)).ravel(), [-5, 0, 1, 0.999999, 5, np.nan]]).reshape(1, -1)
    levels, vmin, vmax = 32, -0.2, 1.3
    ref = np.floor((x.astype(np.float64) - vmin) * (levels / (vmax - vmin)))
    ref = np.clip(ref, 0, levels - 1)
    ref[np.isnan(x)] = -1
    np.testing.assert_array_equal(quantize(x, levels, vmin, vmax), ref.astype(np.int16))


@pytest.mark.parametrize(
    ("window", "levels", "offsets"),
    [
        (7, 32, ((0, 1),)),
        (5, 8, ((1, 0),)),
        (5, 16, ((1, 1),)),
        (7, 16, ((1, -1), (0, 2))),
        (3, 4, ((0, 1), (1, 0), (1, 1), (1, -1))),
        (5, 32, ((2, -1),)),
    ],
)
@pytest.mark.parametrize("symmetric", [False, True])
def test_dissimilarity_exact_vs_skimage_every_window(window, levels, offsets, symmetric):
    img = _image((19, 26), seed=window + levels)
    vmin, vmax = -0.5, 1.5
    off = np.asarray(offsets, dtype=np.int64)
    ours = apply_kernel(
        glcm_dissimilarity,
        img,
        depth=window // 2,
        boundary="nan",
        args=(window, levels, vmin, vmax, off),
    )
    q = quantize(img, levels, vmin, vmax)
    ref = _skimage_dissimilarity(q, window, offsets, levels, symmetric)
    r = window // 2
    np.testing.assert_allclose(ours[r:-r, r:-r], ref, rtol=0, atol=1e-6)
    # with NaN boundary, every window reaching outside the image is missing
    edge = np.ones(ours.shape, bool)
    edge[r:-r, r:-r] = False
    assert np.isnan(ours[edge]).all()


def test_reflect_boundary_equals_skimage_on_mirrored_image():
    img = _image((15, 17), seed=3)
    window, levels = 5, 16
    off = np.array([[0, 1], [1, 1]], np.int64)
    ours = apply_kernel(
        glcm_dissimilarity, img, depth=2, boundary="reflect", args=(window, levels, 0.0, 1.0, off)
    )
    q = quantize(np.pad(img, 2, mode="symmetric"), levels, 0.0, 1.0)
    ref = _skimage_dissimilarity(q, window, [(0, 1), (1, 1)], levels, symmetric=False)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_missing_pixels_blank_exactly_the_windows_containing_them():
    img = _image((40, 50), seed=5)
    img[10, 10] = np.nan
    img[25:28, 30:33] = np.nan
    off = np.array([[0, 1]], np.int64)
    ours = apply_kernel(
        glcm_dissimilarity, img, depth=3, boundary="reflect", args=(7, 32, 0.0, 1.0, off)
    )
    touched = ndimage.maximum_filter(np.isnan(img).astype(np.uint8), size=7, mode="constant") > 0
    np.testing.assert_array_equal(np.isnan(ours), touched)


@pytest.mark.parametrize("boundary", ["nan", "nearest", "reflect"])
@pytest.mark.parametrize("chunks", [(37, 53), (200, 17), (3, 300)])
def test_numpy_and_dask_agree_across_chunk_boundaries(boundary, chunks):
    img = _image((200, 300), seed=7)
    img[50:53, 100:104] = np.nan
    off = np.array([[0, 1], [2, -1]], np.int64)
    args = (7, 32, 0.0, 1.0, off)
    ours = apply_kernel(glcm_dissimilarity, img, depth=3, boundary=boundary, args=args)
    lazy = apply_kernel(
        glcm_dissimilarity, da.from_array(img, chunks=chunks), depth=3, boundary=boundary, args=args
    )
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), ours)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("offsets", [((0, 1),), ((1, -1), (2, 0))])
def test_general_path_all_properties_vs_skimage_every_window(symmetric, offsets):
    img = _image((14, 17), seed=11)
    window, levels = 5, 8
    props = np.arange(len(GLCM_PROPERTIES), dtype=np.int64)
    off = np.asarray(offsets, dtype=np.int64)
    ours = apply_kernel(
        glcm_properties,
        img,
        depth=2,
        boundary="nan",
        args=(window, levels, 0.0, 1.0, off, props, symmetric),
        outputs=GLCM_PROPERTIES,
    )
    q = quantize(img, levels, 0.0, 1.0).astype(np.uint8)
    r = window // 2
    dists = [float(np.hypot(dy, dx)) for dy, dx in offsets]
    angles = [float(np.arctan2(dy, dx)) for dy, dx in offsets]
    for i in range(r, img.shape[0] - r):
        for j in range(r, img.shape[1] - r):
            patch = q[i - r : i + r + 1, j - r : j + r + 1]
            for k, prop in enumerate(GLCM_PROPERTIES):
                ref = np.mean(
                    [
                        graycoprops(
                            graycomatrix(
                                patch, [d], [a], levels=levels, symmetric=symmetric, normed=True
                            ),
                            prop,
                        )[0, 0]
                        for d, a in zip(dists, angles, strict=True)
                    ]
                )
                assert abs(ours[k, i, j] - ref) <= 2e-6 * max(1.0, abs(ref)), (prop, i, j)
    assert np.isnan(ours[:, :r]).all()


def test_general_path_dissimilarity_equals_fast_path_with_nans_and_chunks():
    img = _image((90, 120), seed=12)
    img[30:33, 40:42] = np.nan
    off = np.array([[0, 1], [1, 1]], np.int64)
    fast = apply_kernel(
        glcm_dissimilarity, img, depth=3, boundary="reflect", args=(7, 16, 0.0, 1.0, off)
    )
    general = apply_kernel(
        glcm_properties,
        da.from_array(img, chunks=(37, 53)),
        depth=3,
        boundary="reflect",
        args=(7, 16, 0.0, 1.0, off, np.array([1], np.int64), False),
        outputs=("dissimilarity",),
    ).compute()[0]
    np.testing.assert_allclose(general, fast, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(np.isnan(general), np.isnan(fast))


@settings(max_examples=10, deadline=None)
@given(
    shape=st.tuples(st.integers(8, 40), st.integers(8, 40)),
    chunk=st.tuples(st.integers(1, 20), st.integers(4, 20)),
    window=st.sampled_from([3, 5, 7]),
    boundary=st.sampled_from(["nan", "nearest", "reflect"]),
)
def test_any_chunking_gives_the_numpy_result(shape, chunk, window, boundary):
    """Chunks smaller than the window radius are enlarged by the dispatcher, never mis-stitched."""
    img = _image(shape, seed=shape[0] * 100 + shape[1])
    args = (window, 16, 0.0, 1.0, np.array([[1, -1]], np.int64))
    ours = apply_kernel(glcm_dissimilarity, img, depth=window // 2, boundary=boundary, args=args)
    lazy = apply_kernel(
        glcm_dissimilarity,
        da.from_array(img, chunks=chunk),
        depth=window // 2,
        boundary=boundary,
        args=args,
    )
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), ours)
