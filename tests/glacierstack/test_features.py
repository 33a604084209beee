"""compute_features: registry, cube contract, indices, tasseled cap, passthroughs, errors."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from glacierstack.dispatch import apply_kernel
from glacierstack.features import FEATURES, FeatureOptions, GLCMParams, compute_features
from glacierstack.grid import Grid
from glacierstack.kernels import boxcar_coherence, glcm_dissimilarity
from glacierstack.layers import ALL_LAYERS, S2_BANDS

GRID = Grid("EPSG:32645", (500_000.0, 3_100_000.0, 501_500.0, 3_101_200.0), 10.0)  # 120 x 150
CHUNKS = (37, 53)

# Shi & Xu (2019) Table (13 bands incl. B10), typed here independently of the package.
TC_BANDS_13 = [
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B10",
    "B11",
    "B12",
]
TC_13 = np.array([
    [0.2381, 0.2569, 0.2934, 0.3020, 0.3099, 0.3740, 0.4180,
     0.3580, 0.3834, 0.0103, 0.0020, 0.0896, 0.0780],
    [-0.2266, -0.2818, -0.3020, -0.4283, -0.2959, 0.1602, 0.3127,
     0.3138, 0.4261, 0.1454, -0.0017, -0.1341, -0.2538],
    [0.1825, 0.1763, 0.1615, 0.0486, 0.0170, 0.0223, 0.0219,
     -0.0755, -0.0910, -0.1369, 0.0003, -0.7701, -0.5293],
])  # fmt: skip


def _lazy(a: np.ndarray) -> xr.DataArray:
    return xr.DataArray(da.from_array(a, chunks=CHUNKS), dims=("y", "x"), coords=GRID.coords())


def make_raw(seed: int = 0, *, insar: str = "pair", velocity: str = "components") -> xr.Dataset:
    """A small raw modality dataset in physical units, with some NaN holes."""
    rng = np.random.default_rng(seed)
    h, w = GRID.shape
    latent = rng.random((3, h, w))
    mix = rng.random((12, 3))
    v = {}
    for k, b in enumerate(S2_BANDS):
        refl = (
            0.05
            + 0.3 * np.tensordot(mix[k], latent, axes=1) / mix[k].sum()
            + 0.02 * rng.random((h, w))
        )
        v[b] = refl.astype(np.float32)
    v["B04"][5, 7] = v["B08"][5, 7] = 0.0  # NDVI denominator exactly 0
    v["B03"][60:62, 80:83] = np.nan  # missing optical pixels
    yy, xx = np.mgrid[0:h, 0:w]
    v["elevation"] = (3000 + 2.0 * xx + 0.5 * yy + 5 * rng.random((h, w))).astype(np.float32)
    v["lst"] = (265 + 5 * rng.random((h, w))).astype(np.float32)
    if velocity == "components":
        v["vx"] = (rng.random((h, w)) * 50 - 25).astype(np.float32)
        v["vy"] = (rng.random((h, w)) * 50 - 25).astype(np.float32)
    else:
        v["velocity"] = (rng.random((h, w)) * 30).astype(np.float32)
    if insar == "pair":
        s1 = (rng.standard_normal((h, w)) + 1j * rng.standard_normal((h, w))).astype(np.complex64)
        noise = rng.standard_normal((h, w)) + 1j * rng.standard_normal((h, w))
        v["s1_ref"] = s1
        v["s1_sec"] = (0.8 * s1 + 0.6 * noise).astype(np.complex64)
    else:
        v["coherence"] = rng.random((h, w)).astype(np.float32)
        v["phase"] = rng.uniform(-np.pi, np.pi, (h, w)).astype(np.float32)
    attrs = {"grid": GRID.to_attrs(), "stac_items": ["item-a", "item-b"], "datetime": "2018-10-15"}
    return xr.Dataset({k: _lazy(a) for k, a in v.items()}, attrs=attrs)


def test_registry_covers_all_layers():
    assert set(FEATURES) == set(ALL_LAYERS) and len(FEATURES) == 30


def test_full_cube_contract():
    raw = make_raw()
    cube = compute_features(raw)
    assert cube.dims == ("band", "y", "x")
    assert cube.dtype == np.float32
    assert isinstance(cube.data, da.Array)  # lazy
    assert list(cube.band.values) == list(ALL_LAYERS)
    assert cube.shape == (30, *GRID.shape)
    np.testing.assert_array_equal(cube.x.values, GRID.x)
    assert cube.attrs["grid"] == GRID.to_attrs() and cube.attrs["stac_items"] == [
        "item-a",
        "item-b",
    ]
    params = json.loads(cube.attrs["feature_params"])
    assert params["glcm"]["window"] == 7 and "Shi & Xu 2019" in params["tasseled_cap"]
    assert len(params["pca"]["components"]) == 3
    values = cube.compute()
    # NaN only where documented: missing B03 pixels (and windows around them), NDVI 0/0
    finite = np.isfinite(values)
    assert finite.sel(band="B01").all() and finite.sel(band="elevation").all()
    assert not finite.sel(band="NDSI").values[60:62, 80:83].any()
    assert not bool(finite.sel(band="NDVI")[5, 7]) and bool(finite.sel(band="NDVI")[5, 8])
    assert finite.sel(band="coherence").all()  # reflect edges: no NaN rim


def test_subset_is_returned_in_canonical_order():
    raw = make_raw()
    cube = compute_features(raw, ["tc_wetness", "B08", "slope", "NDVI"])
    assert list(cube.band.values) == ["B08", "NDVI", "slope", "tc_wetness"]
    cube = compute_features(raw, "insar,lst")
    assert list(cube.band.values) == ["lst", "coherence", "phase"]


def test_indices_vs_numpy():
    raw = make_raw()
    cube = compute_features(raw, "indices").compute()
    b = {k: raw[k].values.astype(np.float64) for k in ("B03", "B04", "B08", "B11")}
    pairs = {
        "NDVI": ("B08", "B04"),
        "NDSI": ("B03", "B11"),
        "NDWI": ("B03", "B08"),
        "NDGI": ("B03", "B04"),
    }
    for name, (p, q) in pairs.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            ref = (b[p] - b[q]) / (b[p] + b[q])
        ref[(b[p] + b[q]) == 0] = np.nan
        np.testing.assert_allclose(
            cube.sel(band=name), ref, rtol=1e-6, equal_nan=True, err_msg=name
        )


def test_tasseled_cap_vs_hand_computed_dot_products():
    raw = make_raw()
    cube = compute_features(raw, "tasseled_cap").compute()
    keep = [i for i, b in enumerate(TC_BANDS_13) if b != "B10"]
    x = np.stack([raw[b].values.astype(np.float64) for b in S2_BANDS])  # (12, y, x)
    ref = np.tensordot(TC_13[:, keep], x, axes=1)
    for k, name in enumerate(["tc_brightness", "tc_greenness", "tc_wetness"]):
        np.testing.assert_allclose(
            cube.sel(band=name), ref[k], rtol=1e-5, atol=1e-6, equal_nan=True
        )
    # one pixel by hand: brightness = sum of coefficient * reflectance
    px = {b: float(raw[b].values[3, 4]) for b in S2_BANDS}
    hand = sum(c * px[b] for b, c in zip(TC_BANDS_13, TC_13[0], strict=True) if b != "B10")
    assert abs(float(cube.sel(band="tc_brightness")[3, 4]) - hand) < 1e-6


def test_passthroughs_and_velocity():
    raw = make_raw()
    cube = compute_features(raw, ["elevation", "lst", "velocity"]).compute()
    np.testing.assert_array_equal(cube.sel(band="elevation"), raw.elevation.values)
    np.testing.assert_array_equal(cube.sel(band="lst"), raw.lst.values)
    np.testing.assert_allclose(
        cube.sel(band="velocity"), np.hypot(raw.vx.values, raw.vy.values), rtol=1e-6
    )
    raw2 = make_raw(velocity="speed", insar="product")
    cube2 = compute_features(raw2, ["velocity", "coherence", "phase"]).compute()
    for name in ("velocity", "coherence", "phase"):
        np.testing.assert_array_equal(cube2.sel(band=name), raw2[name].values)


def test_windowed_layers_match_the_kernels_on_numpy():
    raw = make_raw()
    p = GLCMParams(
        source="B08", window=5, levels=16, value_range=(0.0, 0.5), offsets=((0, 1), (1, 0))
    )
    cube = compute_features(
        raw,
        ["glcm_dissimilarity", "coherence", "phase"],
        FeatureOptions(glcm=p, coherence_window=(3, 5)),
    )
    cube = cube.compute()
    glcm = apply_kernel(
        glcm_dissimilarity,
        raw.B08.values,
        depth=2,
        boundary="reflect",
        args=(5, 16, 0.0, 0.5, np.array([[0, 1], [1, 0]])),
    )
    np.testing.assert_array_equal(cube.sel(band="glcm_dissimilarity"), glcm)
    ins = apply_kernel(
        boxcar_coherence,
        raw.s1_ref.values,
        raw.s1_sec.values,
        depth=(1, 2),
        boundary="reflect",
        args=(3, 5),
    )
    np.testing.assert_array_equal(cube.sel(band="coherence"), ins[0])
    np.testing.assert_array_equal(cube.sel(band="phase"), ins[1])


def test_slope_aspect_of_a_plane_in_metres():
    raw = make_raw()
    h, w = GRID.shape
    yy, xx = np.mgrid[0:h, 0:w]
    # z rises 0.3 m per metre eastwards, 0.1 m per metre northwards (rows go south)
    raw["elevation"] = _lazy((0.3 * 10 * xx - 0.1 * 10 * yy).astype(np.float64))
    cube = compute_features(raw, "topography", FeatureOptions(edges="nan")).compute()
    inner = (slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(
        cube.sel(band="slope")[inner], np.degrees(np.arctan(np.hypot(0.3, 0.1))), atol=1e-4
    )
    np.testing.assert_allclose(
        cube.sel(band="aspect")[inner], np.degrees(np.arctan2(-0.3, -0.1)) % 360, atol=1e-4
    )
    assert np.isnan(cube.sel(band="slope")[0]).all()


def test_errors_name_what_is_missing():
    raw = make_raw().drop_vars(["vx"])
    with pytest.raises(KeyError, match="velocity.*'vx' and 'vy'"):
        compute_features(raw, ["velocity"])
    raw = make_raw(insar="product").drop_vars(["phase"])
    with pytest.raises(KeyError, match="phase"):
        compute_features(raw, ["phase"])
    with pytest.raises(ValueError, match="unknown layer"):
        compute_features(make_raw(), ["NDXI"])
    geo = make_raw()
    geo.attrs["grid"] = {**geo.attrs["grid"], "crs": "EPSG:4326"}
    with pytest.raises(ValueError, match="metres"):
        compute_features(geo, ["slope"])
    with pytest.raises(ValueError, match="window"):
        GLCMParams(window=6)
    with pytest.raises(ValueError, match="offset"):
        GLCMParams(window=3, offsets=((0, 3),))


def test_glcm_texture_public_function_vs_kernels():
    from glacierstack.features import glcm_texture
    from glacierstack.kernels import GLCM_PROPERTIES, glcm_properties

    raw = make_raw()
    p = GLCMParams(window=5, levels=8, offsets=((0, 1),))
    fast = glcm_texture(raw.B08, params=p)
    assert fast.dims == ("property", "y", "x") and isinstance(fast.data, da.Array)
    both = glcm_texture(raw.B08, ("dissimilarity", "entropy"), p, symmetric=True).compute()
    np.testing.assert_allclose(
        both.sel(property="dissimilarity"), fast.sel(property="dissimilarity"), atol=1e-6
    )
    ref = apply_kernel(
        glcm_properties,
        raw.B08.values,
        depth=2,
        boundary="reflect",
        args=(
            5,
            8,
            0.0,
            1.0,
            np.array([[0, 1]]),
            np.array([GLCM_PROPERTIES.index("entropy")]),
            True,
        ),
    )
    np.testing.assert_array_equal(both.sel(property="entropy"), ref[0])
    with pytest.raises(ValueError, match="unknown GLCM properties"):
        glcm_texture(raw.B08, ("sharpness",))
