"""Physical properties of the synthetic region (in-memory arrays, no file round trip)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from glacierstack.synthetic import PRESETS, build_scene, generate_arrays
from glacierstack.synthetic.surfaces import render_surface

SIZE_KM = 2.0


@pytest.fixture(scope="module")
def poiqu():
    return generate_arrays("poiqu", SIZE_KM, seed=0)


@pytest.fixture(scope="module")
def poiqu_other():
    return generate_arrays("poiqu", SIZE_KM, seed=1)


def nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b) / (a + b)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_class_present(preset):
    arr = generate_arrays(preset, SIZE_KM, seed=0)
    counts = np.bincount(arr.labels.ravel(), minlength=5)
    assert counts.size == 5
    assert (counts[1:] >= 50).all(), f"{preset}: class pixel counts {counts.tolist()}"
    assert counts[0] > counts[1:].sum(), "background should dominate"


def test_montblanc_is_greener_with_less_debris():
    mb = generate_arrays("montblanc", SIZE_KM, seed=0).labels
    pq = generate_arrays("poiqu", SIZE_KM, seed=0).labels
    frac = lambda a, c: (a == c).mean()  # noqa: E731
    assert frac(mb, 4) > frac(pq, 4)
    assert frac(mb, 2) / max(frac(mb, 1) + frac(mb, 2), 1e-9) < frac(pq, 2) / (
        frac(pq, 1) + frac(pq, 2)
    )


def test_water_and_vegetation_labels_agree_with_index_rules(poiqu, poiqu_other):
    """Off-glacier, NDWI > 0.17 finds exactly the lakes and NDVI > 0.3 exactly the vegetation."""
    for arr in (poiqu, poiqu_other):
        r = arr.reflectance.astype(np.float64)
        ndwi = nd(r[2], r[7])  # B03, B08 (McFeeters 1996)
        ndvi = nd(r[7], r[3])  # B08, B04
        off = ~np.isin(arr.labels, (1, 2))
        water = arr.labels == 3
        assert water.sum() > 50
        assert ((ndwi > 0.17) == water)[off].mean() > 0.999
        land = off & ~water
        assert ((ndvi > 0.3) == (arr.labels == 4))[land].mean() > 0.999


def test_debris_hard_to_separate_optically_but_separable_with_all_modalities(poiqu, poiqu_other):
    """Random forest, debris vs background, trained on one seed and tested on another."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import balanced_accuracy_score

    def sample(arr, optical_only, rng, n=2000):
        cols = list(arr.reflectance)
        if not optical_only:
            cols += [arr.lst, arr.coherence, arr.velocity, arr.slope]
        x = np.stack([c.ravel() for c in cols], 1)
        y = arr.labels.ravel()
        deb = rng.choice(np.flatnonzero(y == 2), n)
        bg = rng.choice(np.flatnonzero(y == 0), n)
        idx = np.r_[deb, bg]
        return x[idx], (y[idx] == 2).astype(int)

    scores = {}
    for optical_only in (True, False):
        rng = np.random.default_rng(0)
        xa, ya = sample(poiqu, optical_only, rng)
        xb, yb = sample(poiqu_other, optical_only, rng)
        rf = RandomForestClassifier(60, max_depth=8, random_state=0, n_jobs=1).fit(xa, ya)
        scores[optical_only] = balanced_accuracy_score(yb, rf.predict(xb))
    assert scores[True] < 0.8, f"optical bands alone separate debris too well: {scores}"
    assert scores[False] > 0.9, scores
    assert scores[False] - scores[True] > 0.15, scores


def test_physical_ranges_per_class(poiqu):
    lab, a = poiqu.labels, poiqu
    ice, deb, rock = lab == 1, lab == 2, (lab == 0)
    assert a.lst[ice].max() <= 273.15 + 1e-4 and a.lst[ice].min() > 260
    assert 274 < np.median(a.lst[deb]) < 286
    bare = rock & (a.snow_fraction == 0) & (a.elevation < PRESETS["poiqu"].ela)
    assert np.median(a.lst[deb]) < np.median(a.lst[bare])
    assert 0.1 <= np.median(a.coherence[ice]) <= 0.25
    assert 0.2 <= np.median(a.coherence[deb]) <= 0.4
    assert 0.6 <= np.median(a.coherence[rock & (a.slope < 40)]) <= 0.9
    assert 0.05 <= np.median(a.coherence[lab == 3]) <= 0.15
    assert (a.velocity[~np.isin(lab, (1, 2))] == 0).all()
    assert np.median(a.velocity[deb]) < 15 and a.velocity[ice | deb].max() > 2
    # flat lakes (DEM water surface), gentle debris tongues, steeper rock
    assert np.median(a.slope[lab == 3]) < np.median(a.slope[deb]) < np.median(a.slope[rock])


def test_illumination_and_cast_shadow(poiqu):
    p = PRESETS["poiqu"]
    ill = poiqu.illumination
    assert ill.min() >= 0.05 and ill.max() < 1.0 / np.cos(np.radians(p.sun_zenith)) + 0.2
    # some pixels are in cast or self shadow (only diffuse light)
    assert (ill < 0.3).mean() > 0.005


def test_blocks_are_independent_of_the_window():
    """Rendering a sub-window gives exactly the slice of the full render (hash-seeded noise)."""
    scene = build_scene("poiqu", 1.0, seed=2)
    h, w = scene.grid.shape
    full = render_surface(scene, (0, 0, h, w))
    part = render_surface(scene, (24, 36, 48, 60))
    np.testing.assert_array_equal(full.labels[24:72, 36:96], part.labels)
    np.testing.assert_allclose(full.reflectance[:, 24:72, 36:96], part.reflectance, rtol=1e-6)


def test_glacier_termini_below_ela_and_accumulation_above():
    scene = build_scene("poiqu", 4.0, seed=0)
    g = scene.glaciers
    ice = g.glacier > 0
    z = scene.z
    assert ice.any()
    assert z[ice].min() < scene.ela < z[ice].max()
    # ice flows downhill: velocity vectors point down the smoothed surface gradient
    dzdy, dzdx = np.gradient(z, 30.0)
    fast = ice & (np.hypot(g.vx, g.vy) > 5)
    down = -(dzdx * g.vx - dzdy * g.vy)  # (east, north) dot -grad(z)
    assert fast.sum() > 20 and (down[fast] > 0).mean() > 0.9


def test_later_year_same_terrain_retreated_glaciers(poiqu):
    later = generate_arrays("poiqu", SIZE_KM, seed=0, year=2038)
    ice0, ice1 = np.isin(poiqu.labels, (1, 2)), np.isin(later.labels, (1, 2))
    # 20 years at +6 m/yr of ELA: the glaciers shrink; far more ice is lost than gained
    assert ice1.sum() < 0.97 * ice0.sum()
    assert (ice1 & ~ice0).sum() < 0.35 * (ice0 & ~ice1).sum()
    # the loss is at the low end (termini retreat up-valley): the lowest third of the
    # reference ice (by the reference elevation) loses more than the highest third
    z = poiqu.elevation
    lo, hi = np.percentile(z[ice0], [33, 67])
    low, high = z < lo, z >= hi
    assert (ice1 & low).sum() / (ice0 & low).sum() < (ice1 & high).sum() / (ice0 & high).sum()
    # the terrain away from the ice is the reference year's
    far = ~ndimage.binary_dilation(ice0 | ice1, iterations=30)
    same = np.isclose(poiqu.elevation[far], later.elevation[far], atol=0.01)
    assert same.mean() > 0.9  # the rest: proglacial lakes that moved with the termini
    # the reference year is the default
    assert np.array_equal(generate_arrays("poiqu", SIZE_KM, seed=0, year=2018).labels, poiqu.labels)
