"""End to end: synthetic poiqu catalog -> `glacierstack cube` -> Zarr cube (layout, labels vs truth,
stats, provenance), resume after an interruption, and clear errors for bad inputs."""

from __future__ import annotations

import json
import shutil

import dask
import geopandas as gpd
import numpy as np
import pystac
import pytest
import rasterio
import shapely
from dask.callbacks import Callback
from typer.testing import CliRunner

import glacierstack
from glacierstack.catalog import EmptySearchError
from glacierstack.cli import app
from glacierstack.grid import Grid
from glacierstack.layers import ALL_LAYERS
from glacierstack.modalities import get_provider
from glacierstack.pipeline import build_cube, modalities_for_layers
from glacierstack.store import IncompleteCubeError, cube_status, open_cube

CHUNK = 48  # 96 x 96 px region -> 2 x 2 tiles


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    from glacierstack.synthetic import generate_region

    out = tmp_path_factory.mktemp("poiqu") / "poiqu"
    return generate_region("poiqu", out, size_km=1, seed=0, progress=False)


@pytest.fixture(scope="module")
def cli_cube(region, tmp_path_factory):
    out = tmp_path_factory.mktemp("cube") / "cube.zarr"
    bbox = ",".join(str(v) for v in region.grid.bounds)
    res = CliRunner().invoke(
        app,
        ["cube", "--catalog", str(region.catalog_path), "--bbox", bbox,
         "--bbox-crs", region.grid.crs, "--datetime", region.datetime, "--out", str(out),
         "--chunk-size", str(CHUNK), "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return out


def _truth(region) -> np.ndarray:
    with rasterio.open(region.truth_labels) as src:
        return src.read(1)


def test_cli_cube_layout_and_provenance(cli_cube, region):
    ds = open_cube(cli_cube)
    assert list(ds.band.values) == list(ALL_LAYERS)
    assert ds.features.shape == (30, *region.grid.shape)
    assert ds.features.data.chunksize == (30, CHUNK, CHUNK)
    assert Grid.from_attrs(ds.attrs["grid"]) == region.grid
    assert ds.rio.crs.to_string() == region.grid.crs
    # provenance: every recorded item id exists in the catalog, S2 and truth included
    cat = pystac.Catalog.from_file(str(region.catalog_path))
    ids = {it.id: it.collection_id for it in cat.get_items(recursive=True)}
    assert set(ds.attrs["stac_items"]) <= set(ids)
    used = {ids[i] for i in ds.attrs["stac_items"]}
    assert {"sentinel-2-l2a", "cop-dem-glo-30", "synthetic-truth"} <= used
    assert ds.attrs["software"]["glacierstack"] == glacierstack.__version__
    assert ds.attrs["datetime"] == region.datetime
    assert ds.attrs["outlines"]["glacier"].endswith("glacier_outlines.gpkg")


def test_cli_cube_values_stats_and_labels(cli_cube, region):
    ds = open_cube(cli_cube)
    feats = ds.features.values
    labels = ds.labels.values
    # B03 is native 10 m on the same grid: it must equal the decoded COG exactly
    s2 = next(region.catalog_path.parent.glob("sentinel-2-l2a/*/B03.tif"))
    with rasterio.open(s2) as src:
        dn = src.read(1).astype("f8")
    ref = np.where(dn == 0, np.nan, dn * 1e-4 - 0.1)
    np.testing.assert_allclose(feats[ALL_LAYERS.index("B03")], ref, atol=1e-6)
    # statistics: NumPy over finite pixels, float64
    x = feats.astype("f8")
    # (PC means are ~1e-10 of a spread ~0.3: there the bound is the spread's rounding, 1e-13)
    std = np.nanstd(x, axis=(1, 2))
    np.testing.assert_allclose(ds.band_mean.values, np.nanmean(x, axis=(1, 2)), rtol=1e-9,
                               atol=1e-12 * std.min())  # fmt: skip
    np.testing.assert_allclose(ds.band_std.values, std, rtol=1e-7)
    # nodata labels exactly where a feature layer is missing
    missing = ~np.isfinite(feats).all(axis=0)
    np.testing.assert_array_equal(labels == 255, missing)
    assert missing.mean() < 0.5
    # glacier pixels are exactly the pixel centres inside the outlines (shapely reference)
    ok = ~missing
    xx, yy = np.meshgrid(region.grid.x, region.grid.y)
    outline = gpd.read_file(region.glacier_outlines).to_crs(region.grid.crs).union_all()
    inside = shapely.contains_xy(outline, xx, yy)
    differ = (np.isin(labels, (1, 2)) != inside) & ok
    # the outlines are buffered by half a pixel, so some edges run through pixel centres: only
    # such exact ties (centre on the boundary, up to reprojection round-off) may differ
    dist = shapely.distance(outline.boundary, shapely.points(xx[differ], yy[differ]))
    assert (dist < 0.05).all(), dist.max()
    # labels vs the generator's exact truth raster on valid pixels. The RGI-like outlines are
    # deliberately generalised (buffered, simplified, older advanced terminus), so glacier
    # labels cover the true glacier but extend beyond it; debris outlines are near exact.
    truth = _truth(region)
    assert np.mean(labels[ok] == truth[ok]) > 0.9
    ice_l, ice_t = np.isin(labels, (1, 2)) & ok, np.isin(truth, (1, 2)) & ok
    assert ice_t.sum() > 50
    assert (ice_l & ice_t).sum() / ice_t.sum() > 0.95
    deb_l, deb_t = (labels == 2) & ok, (truth == 2) & ok
    assert (deb_l & deb_t).sum() / (deb_l | deb_t).sum() > 0.85
    counts = np.bincount(labels.ravel(), minlength=256)
    assert ds.attrs["class_counts"]["clean_ice"] == counts[1]


WRITES = ("write_tile", "compute_and_write")  # one write task per tile (fused or not)


class _StopAfter(Callback):
    """Raise KeyboardInterrupt (a simulated Ctrl-C) after n tile writes have finished."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.done = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        name = key[0] if isinstance(key, tuple) else key
        if str(name).startswith(WRITES):
            self.done += 1
            if self.done >= self.n:
                raise KeyboardInterrupt


class _CountWrites(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        name = key[0] if isinstance(key, tuple) else key
        self.n += str(name).startswith(WRITES)


def test_resume_after_interruption_gives_the_same_cube(cli_cube, region, tmp_path):
    out = tmp_path / "resumed.zarr"
    kw = dict(grid=region.grid, datetime=region.datetime, chunk_size=CHUNK, progress=False)
    with dask.config.set(scheduler="synchronous"), _StopAfter(3):
        with pytest.raises(KeyboardInterrupt):
            build_cube(region.catalog_path, out, **kw)
    assert cube_status(out) == "incomplete"
    with pytest.raises(IncompleteCubeError):
        open_cube(out)
    with _CountWrites() as counter:
        build_cube(region.catalog_path, out, **kw)
    assert counter.n == 4 - 3  # 4 tiles (features + labels each), 3 were already written
    a, b = open_cube(out), open_cube(cli_cube)
    np.testing.assert_array_equal(a.features.values, b.features.values)
    np.testing.assert_array_equal(a.labels.values, b.labels.values)
    np.testing.assert_allclose(a.band_mean.values, b.band_mean.values, rtol=1e-12)


def test_region_beyond_the_data_is_masked(region, tmp_path):
    xmin, ymin, xmax, ymax = region.grid.bounds
    grid = Grid(region.grid.crs, (xmin, ymin, xmax + 320, ymax), 10)  # 32 px east of the data
    out = build_cube(region.catalog_path, tmp_path / "wide.zarr", grid=grid,
                     datetime=region.datetime, layers=["optical", "indices", "topography"],
                     chunk_size=64, progress=False)  # fmt: skip
    ds = open_cube(out)
    assert list(ds.band.values)[:12] == list(ALL_LAYERS[:12]) and ds.sizes["band"] == 19
    feats, labels = ds.features.values, ds.labels.values
    assert np.isnan(feats[:, :, -30:]).all(axis=0).all()  # no data there at all
    assert (labels[:, -30:] == 255).all()
    np.testing.assert_array_equal(labels == 255, ~np.isfinite(feats).all(axis=0))
    assert np.isfinite(ds.band_mean.values).all()


def test_bad_inputs_give_clear_errors(region, tmp_path):
    cat = region.catalog_path
    kw = dict(grid=region.grid, chunk_size=64, progress=False)
    with pytest.raises(EmptySearchError, match=r"sentinel-2-l2a.*2001-01"):
        build_cube(cat, tmp_path / "a.zarr", datetime="2001-01-01/2001-01-31", **kw)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_cube(tmp_path / "nowhere" / "catalog.json", tmp_path / "b.zarr", **kw)
    junk = tmp_path / "junk.gpkg"
    junk.write_bytes(b"not a geopackage")
    with pytest.raises(ValueError, match="junk.gpkg"):
        build_cube(cat, tmp_path / "c.zarr", datetime=region.datetime, layers="optical",
                   glacier_outlines=junk, **kw)  # fmt: skip
    with pytest.raises(ValueError, match="exactly one of bbox"):
        build_cube(cat, tmp_path / "d.zarr", datetime=region.datetime)
    # a catalog whose S2 item lost its 'nir' asset
    broken = tmp_path / "broken"
    shutil.copytree(cat.parent, broken)
    item_json = next(broken.glob("sentinel-2-l2a/*/*.json"))
    d = json.loads(item_json.read_text())
    del d["assets"]["nir"]
    item_json.write_text(json.dumps(d))
    with pytest.raises(KeyError, match="B08"):  # NIR: the labels' water rule needs it
        build_cube(broken / "catalog.json", tmp_path / "e.zarr", datetime=region.datetime, **kw)
    for name in ("a", "b", "c", "d", "e"):
        assert cube_status(tmp_path / f"{name}.zarr") in ("missing", "incomplete")


def test_cli_reports_errors_without_traceback(region, tmp_path):
    res = CliRunner().invoke(
        app,
        ["cube", "--catalog", str(region.catalog_path), "--bbox", "86.9,27.9,86.91,27.91",
         "--datetime", region.datetime, "--out", str(tmp_path / "x.zarr"), "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 1
    assert "error:" in res.output and "no items" in res.output


def test_modalities_for_layers_uses_provider_configs():
    synth = get_provider("synthetic")
    assert modalities_for_layers(synth, ALL_LAYERS) == ["s2", "dem", "lst", "velocity", "insar"]
    assert modalities_for_layers(synth, ("B02", "slope")) == ["s2", "dem"]
    es = get_provider("earth-search")
    with pytest.raises(KeyError, match="velocity"):
        modalities_for_layers(es, ("velocity",))
