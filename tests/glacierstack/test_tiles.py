"""Big tasks: the per-tile cube equals the lazy xarray cube, stays under the tasks-per-tile bound,
and threads, processes and a LocalCluster write bit-identical cubes."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from dask.callbacks import Callback

from glacierstack.catalog import open_catalog
from glacierstack.features import PCASample, compute_features, fit_pca
from glacierstack.labels import make_labels
from glacierstack.layers import ALL_LAYERS
from glacierstack.pipeline import build_cube, modalities_for_layers
from glacierstack.runner import RunnerOptions
from glacierstack.stack import load_modalities
from glacierstack.store import open_cube

CHUNK = 48  # 96 x 96 px region -> 2 x 2 tiles
MAX_TASKS_PER_TILE = 3  # the bound is 50; 1.5 here (1 task per tile + the PCA sample)


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    from glacierstack.synthetic import generate_region

    out = tmp_path_factory.mktemp("poiqu") / "poiqu"
    return generate_region("poiqu", out, size_km=1, seed=0, progress=False)


class _GraphSize(Callback):
    """Tasks of every graph the build computes from the calling thread (not the small graphs
    a tile task computes inside itself, which run in pool threads)."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks = 0
        self.main = threading.get_ident()

    def _start(self, dsk):
        if threading.get_ident() == self.main:
            self.tasks += len(dsk)


@pytest.fixture(scope="module")
def threaded(region, tmp_path_factory):
    out = tmp_path_factory.mktemp("threads") / "cube.zarr"
    runner = RunnerOptions("threads", threads=2, progress=False)
    with _GraphSize() as size:
        build_cube(region.catalog_path, out, grid=region.grid, datetime=region.datetime,
                   chunk_size=CHUNK, runner=runner)  # fmt: skip
    return out, size.tasks


def test_tile_cube_equals_the_lazy_cube(region, threaded):
    ds = open_cube(threaded[0])
    cat = open_catalog(region.catalog_path)
    mods = modalities_for_layers(cat.provider, ALL_LAYERS)
    raw = load_modalities(cat, region.grid, region.datetime, mods, chunks=CHUNK)
    lazy = compute_features(raw)  # notebook API: lazy Dask, its own (sampled) PCA fit
    np.testing.assert_array_equal(ds.features.values, lazy.values)
    pca = json.loads(ds.attrs["feature_params"])["pca"]
    assert pca == json.loads(lazy.attrs["feature_params"])["pca"]
    assert pca["sample"].startswith("stratified")
    labels = make_labels(
        region.grid,
        glacier_outlines=region.glacier_outlines,
        debris_outlines=region.debris_outlines,
        ndwi=lazy.sel(band="NDWI", drop=True),
        ndvi=lazy.sel(band="NDVI", drop=True),
        valid=np.isfinite(lazy).all("band"),
        chunks=CHUNK,
    )
    np.testing.assert_array_equal(ds.labels.values, labels.values)
    assert (ds.labels.values == 1).any() and (ds.labels.values == 255).sum() < ds.labels.size


def test_tasks_per_output_tile_stay_bounded(threaded):
    tiles = 2 * 2
    assert 0 < threaded[1] / tiles <= MAX_TASKS_PER_TILE, threaded[1]


def test_sampled_pca_is_flat_in_area_and_close_to_the_full_fit():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(12, 1, 1)) * rng.uniform(0.2, 1, (12, 256, 256))
    import xarray as xr

    from glacierstack.layers import S2_BANDS

    data = xr.DataArray(base, dims=("band", "y", "x"), coords={"band": list(S2_BANDS)})
    sample = PCASample(cells=4, window=16)
    assert len(sample.windows((256, 256))) == 16
    assert sum((ys.stop - ys.start) * (xs.stop - xs.start)
               for ys, xs in sample.windows((4096, 4096))) == 16 * 16 * 16  # fmt: skip
    small = PCASample(cells=8, window=32).windows((40, 70))  # smaller than 8 cells: all pixels
    assert sum((ys.stop - ys.start) * (xs.stop - xs.start) for ys, xs in small) == 40 * 70
    full, part = fit_pca(data), fit_pca(data, sample=sample)
    assert part.n_samples == 16 * 16 * 16
    assert abs(float(full.components[0] @ part.components[0])) > 0.99


@pytest.mark.distributed
@pytest.mark.parametrize("scheduler", ["local:2", "processes"])
def test_schedulers_write_bit_identical_cubes(region, threaded, tmp_path, scheduler):
    out = tmp_path / "cube.zarr"
    runner = RunnerOptions(scheduler, threads=None if scheduler == "local:2" else 2, progress=False)
    build_cube(region.catalog_path, out, grid=region.grid, datetime=region.datetime,
               chunk_size=CHUNK, runner=runner)  # fmt: skip
    a, b = open_cube(out), open_cube(threaded[0])
    np.testing.assert_array_equal(a.features.values, b.features.values)
    np.testing.assert_array_equal(a.labels.values, b.labels.values)
    np.testing.assert_array_equal(a.band_mean.values, b.band_mean.values)
