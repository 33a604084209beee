"""Synthetic region on disk: STAC catalog, encodings, determinism, atomic writes, CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from typer.testing import CliRunner

from glacierstack.stac_fields import raster_data_type
from glacierstack.synthetic import PRESETS, generate_arrays, generate_region
from glacierstack.synthetic.spectra import S2_BANDS

SIZE_KM = 2.0
COLLECTIONS = {
    "sentinel-2-l2a",
    "cop-dem-glo-30",
    "landsat-c2-l2",
    "its-live-velocity",
    "sentinel-1-slc",
    "synthetic-truth",
}
S2_KEYS = [
    "coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3",
    "nir", "nir08", "nir09", "swir16", "swir22",
]  # fmt: skip


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "poiqu"
    return generate_region("poiqu", out, size_km=SIZE_KM, seed=0, progress=False)


@pytest.fixture(scope="module")
def items(region):
    cat = pystac.Catalog.from_file(str(region.catalog_path))
    out: dict[str, list[pystac.Item]] = {}
    for it in cat.get_items(recursive=True):
        out.setdefault(it.collection_id, []).append(it)
    return out


def read_physical(item: pystac.Item, key: str) -> np.ndarray:
    """Decode an asset with the scale/offset/nodata read back from its raster:bands."""
    asset = item.assets[key]
    rb = asset.extra_fields["raster:bands"][0]
    with rasterio.open(asset.get_absolute_href()) as ds:
        raw = ds.read(1)
    assert raster_data_type(raw.dtype) == rb["data_type"], (key, raw.dtype, rb["data_type"])
    if raw.dtype.kind == "c":
        return raw
    out = raw.astype(np.float64) * rb.get("scale", 1.0) + rb.get("offset", 0.0)
    if "nodata" in rb:
        out[raw == rb["nodata"]] = np.nan
    return out


def test_catalog_lists_all_collections(region, items):
    cat = pystac.Catalog.from_file(str(region.catalog_path))
    assert {c.id for c in cat.get_children()} == COLLECTIONS
    assert set(items) == COLLECTIONS
    assert len(items["sentinel-2-l2a"]) == 1
    assert len(items["landsat-c2-l2"]) == 2
    assert len(items["sentinel-1-slc"]) == 2
    assert sorted(items["sentinel-2-l2a"][0].assets) == sorted(S2_KEYS)
    assert sorted(items["its-live-velocity"][0].assets) == ["v", "vx", "vy"]
    assert set(items["synthetic-truth"][0].assets) == {
        "labels", "glacier_outlines", "debris_outlines"
    }  # fmt: skip
    # self-contained: every href is relative
    for its in items.values():
        for it in its:
            d = it.to_dict(include_self_link=False, transform_hrefs=False)
            for a in d["assets"].values():
                assert not a["href"].startswith("/"), a["href"]


def test_projection_metadata_matches_files(items, region):
    for its in items.values():
        for it in its:
            # check the JSON itself (pystac migrates projection fields on load)
            raw = json.loads(Path(it.get_self_href()).read_text())
            assert raw["properties"]["proj:code"] == region.grid.crs
            assert "proj:epsg" not in raw["properties"]  # not in projection v2.0.0
            for key, asset in it.assets.items():
                if asset.media_type == "application/geopackage+sqlite3":
                    continue
                f = raw["assets"][key]
                assert "proj:epsg" not in f
                assert asset.extra_fields["proj:code"] == f["proj:code"]
                with rasterio.open(asset.get_absolute_href()) as ds:
                    assert list(ds.shape) == f["proj:shape"], key
                    assert list(ds.transform)[:6] == pytest.approx(f["proj:transform"]), key
                    assert f"EPSG:{ds.crs.to_epsg()}" == f["proj:code"]
                    assert ds.profile["tiled"], f"{key} is not tiled"
                    assert raster_data_type(ds.dtypes[0]) == f["raster:bands"][0]["data_type"]


def test_native_resolutions_and_encodings(items, region):
    s2 = items["sentinel-2-l2a"][0]
    assert s2.properties["s2:processing_baseline"] == "05.00"
    assert "eo:cloud_cover" in s2.properties
    for band, key in zip(S2_BANDS, S2_KEYS, strict=True):
        a = s2.assets[key]
        assert a.extra_fields["eo:bands"][0]["name"] == band.name
        rb = a.extra_fields["raster:bands"][0]
        assert (rb["data_type"], rb["nodata"], rb["scale"], rb["offset"]) == (
            "uint16", 0, 0.0001, -0.1
        )  # fmt: skip
        assert a.extra_fields["proj:transform"][0] == band.resolution
    assert items["cop-dem-glo-30"][0].assets["data"].extra_fields["proj:transform"][0] == 30
    lw = items["landsat-c2-l2"][0].assets["lwir11"].extra_fields
    assert lw["raster:bands"][0]["scale"] == 0.00341802
    assert lw["raster:bands"][0]["offset"] == 149.0
    assert lw["raster:bands"][0]["unit"] == "kelvin"
    assert items["its-live-velocity"][0].assets["v"].extra_fields["proj:transform"][0] == 120
    assert (
        items["sentinel-1-slc"][0].assets["vv"].extra_fields["raster:bands"][0]["data_type"]
        == "cfloat32"
    )


def test_dates(items, region):
    start, end = (dt.date.fromisoformat(d) for d in region.datetime.split("/"))
    s1 = sorted(it.datetime for it in items["sentinel-1-slc"])
    assert (s1[1] - s1[0]) == dt.timedelta(days=24)
    for col in ("sentinel-2-l2a", "sentinel-1-slc", "landsat-c2-l2"):
        for it in items[col]:
            assert start <= it.datetime.date() <= end, (col, it.datetime)
    assert items["sentinel-2-l2a"][0].datetime.date() == PRESETS["poiqu"].date


def test_landsat_scenes_overlap_and_cover_region(items, region):
    grids = []
    for it in items["landsat-c2-l2"]:
        f = it.assets["lwir11"].extra_fields
        x0 = f["proj:transform"][2]
        grids.append((x0, x0 + f["proj:shape"][1] * 30.0))
    (a0, a1), (b0, b1) = sorted(grids)
    xmin, _, xmax, _ = region.grid.bounds
    assert a0 == xmin and b1 == xmax
    assert b0 < a1, "the two Landsat scenes must overlap"


def test_decoded_value_ranges(items, region):
    p = PRESETS["poiqu"]
    truth = read_physical(items["synthetic-truth"][0], "labels")
    assert set(np.unique(truth)) <= {0, 1, 2, 3, 4}
    s2 = items["sentinel-2-l2a"][0]
    for key in S2_KEYS:
        r = read_physical(s2, key)
        assert np.isfinite(r).all()
        assert -0.1 <= np.nanmin(r) and np.nanmax(r) < 2.0, key
    green = read_physical(s2, "green")
    # bright snow/ice versus dark lakes, in reflectance units
    assert np.median(green[truth == 1]) > 0.3
    assert np.median(green[truth == 3]) < 0.2
    dem = read_physical(items["cop-dem-glo-30"][0], "data")
    assert p.z_min - 500 < np.nanmin(dem) and np.nanmax(dem) < p.z_max + 500
    for it in items["landsat-c2-l2"]:
        t = read_physical(it, "lwir11")
        assert 255 < np.nanmin(t) and np.nanmax(t) < 310, "LST in kelvin"
    vel = items["its-live-velocity"][0]
    v, vx, vy = (read_physical(vel, k) for k in ("v", "vx", "vy"))
    ok = np.isfinite(v)
    np.testing.assert_allclose(v[ok], np.hypot(vx[ok], vy[ok]), rtol=1e-5, atol=1e-3)
    assert np.nanmax(v) < 300
    for it in items["sentinel-1-slc"]:
        s = read_physical(it, "vv")
        assert s.dtype == np.complex64 and np.isfinite(s).all()


def test_lst_debris_over_ice_cooler_than_stable_ground(items):
    """At 30 m: pure debris cells are cooler than pure rock cells (and ice coldest)."""
    truth = read_physical(items["synthetic-truth"][0], "labels").astype(int)
    h, w = truth.shape
    blocks = truth.reshape(h // 3, 3, w // 3, 3).transpose(0, 2, 1, 3).reshape(h // 3, w // 3, 9)
    pure = (blocks == blocks[..., :1]).sum(-1) >= 8
    cls30 = np.where(pure, blocks[..., 0], -1)
    # the western scene starts at the region's west edge: same 30 m cells
    west = min(items["landsat-c2-l2"], key=lambda i: i.assets["lwir11"].extra_fields[
        "proj:transform"][2])  # fmt: skip
    t = read_physical(west, "lwir11")
    c = cls30[:, : t.shape[1]]
    assert np.median(t[c == 1]) < np.median(t[c == 2]) < np.median(t[c == 0])


def test_slc_pair_coherence(items):
    """A boxcar coherence estimate of the pair is high on stable ground, low on ice/water."""
    from scipy.ndimage import binary_erosion, uniform_filter

    truth = read_physical(items["synthetic-truth"][0], "labels")
    s1, s2 = (read_physical(it, "vv") for it in sorted(items["sentinel-1-slc"],
                                                         key=lambda i: i.datetime))  # fmt: skip
    n = 5
    ifg = s1 * np.conj(s2)
    num = np.hypot(uniform_filter(ifg.real, n), uniform_filter(ifg.imag, n))
    den = np.sqrt(uniform_filter(np.abs(s1) ** 2, n) * uniform_filter(np.abs(s2) ** 2, n))
    coh = num / den
    # Rayleigh amplitudes: |s|^2 is exponential, so std/mean of intensity ~ 1 on a sample
    inten = np.abs(s1[truth == 0]) ** 2

    def core(*cls: int) -> np.ndarray:  # pixels whose whole window is of these classes
        return binary_erosion(np.isin(truth, cls), np.ones((n, n), bool))

    rock = np.median(coh[core(0)])
    ice = core(1, 2)
    assert rock > 0.6
    assert ice.sum() > 20 and np.median(coh[ice]) < min(0.5, rock - 0.25)
    assert core(3).sum() > 20 and np.median(coh[core(3)]) < 0.4
    assert inten.size > 100 and np.std(inten) / np.mean(inten) > 0.8


def test_same_seed_same_bytes_different_seed_differs(region, tmp_path):
    again = generate_region("poiqu", tmp_path / "again", size_km=SIZE_KM, seed=0, progress=False)
    other = generate_region("poiqu", tmp_path / "other", size_km=SIZE_KM, seed=1, progress=False)

    def digests(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.suffix in (".tif", ".json")
        }

    a = digests(region.catalog_path.parent)
    b = digests(again.catalog_path.parent)
    assert a == b and len(a) > 20
    c = digests(other.catalog_path.parent)
    s2a = [k for k in a if k.endswith("B04.tif")][0]
    s2c = [k for k in c if k.endswith("B04.tif")][0]
    assert a[s2a] != c[s2c]
    assert not np.array_equal(
        generate_arrays("poiqu", 1.0, seed=0).labels, generate_arrays("poiqu", 1.0, seed=1).labels
    )


def test_arrays_match_written_products(region, items):
    arr = generate_arrays("poiqu", SIZE_KM, seed=0)
    assert arr.grid == region.grid
    truth = read_physical(items["synthetic-truth"][0], "labels")
    np.testing.assert_array_equal(arr.labels, truth)
    green = read_physical(items["sentinel-2-l2a"][0], "green")
    np.testing.assert_allclose(arr.reflectance[2], green, atol=0.6e-4)


def test_refuses_to_overwrite_and_leaves_nothing_half_written(region, tmp_path, monkeypatch):
    with pytest.raises(FileExistsError, match="exists"):
        generate_region("poiqu", region.catalog_path.parent, size_km=SIZE_KM, progress=False)
    import glacierstack.synthetic.generate as gen

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gen, "write_catalog", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        gen.generate_region("poiqu", tmp_path / "x", size_km=0.6, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="unknown synthetic region preset"):
        generate_region("everest", tmp_path / "y", size_km=0.6, progress=False)
    with pytest.raises(ValueError, match="10 m"):
        generate_region("poiqu", tmp_path / "z", size_km=0.6, resolution=20.0, progress=False)


def test_cli(tmp_path):
    from glacierstack.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["synth", "--help"])
    assert res.exit_code == 0 and "--preset" in res.output and "--size-km" in res.output
    out = tmp_path / "mb"
    res = runner.invoke(
        app,
        ["synth", "--preset", "montblanc", "--size-km", "0.6", "--seed", "3", "--out", str(out),
         "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    cat = pystac.Catalog.from_file(str(out / "catalog.json"))
    assert {c.id for c in cat.get_children()} == COLLECTIONS
    res = runner.invoke(app, ["synth", "--size-km", "0.6", "--out", str(out), "--no-progress"])
    assert res.exit_code == 2


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_outlines_rasterise_back_close_to_truth(region, items):
    import geopandas as gpd
    from rasterio.features import rasterize

    truth = read_physical(items["synthetic-truth"][0], "labels")
    g = region.grid
    results = {}
    for path, classes in ((region.glacier_outlines, (1, 2)), (region.debris_outlines, (2,))):
        gdf = gpd.read_file(path)
        assert gdf.crs.to_epsg() == 4326
        assert len(gdf) >= 1 and gdf.geometry.is_valid.all()
        shapes = gdf.to_crs(g.crs).geometry
        raster = rasterize(shapes, out_shape=g.shape, transform=g.transform).astype(bool)
        results[path.stem] = _iou(raster, np.isin(truth, classes))
    assert results["glacier_outlines"] > 0.8, results
    assert results["debris_outlines"] > 0.8, results
    # an inventory is generalised and a little out of date: not a copy of the truth
    assert results["glacier_outlines"] < 0.995, results


def test_cli_relative_out_writes_catalog_inside_out(tmp_path, monkeypatch):
    from glacierstack.cli import app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(
        app, ["synth", "--size-km", "0.6", "--out", "data/poiqu", "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "data" / "poiqu" / "catalog.json").is_file()
    assert not (tmp_path / "data" / "catalog.json").exists()
    cat = pystac.Catalog.from_file(str(tmp_path / "data" / "poiqu" / "catalog.json"))
    assert {c.id for c in cat.get_children()} == COLLECTIONS


def _assert_assets_inside(root: Path) -> int:
    """Every asset href of the catalog under ``root`` is relative and resolves to a file there."""
    cat = pystac.Catalog.from_file(str(root / "catalog.json"))
    n = 0
    for item in cat.get_items(recursive=True):
        raw = json.loads(Path(item.get_self_href()).read_text())
        for key, asset in raw["assets"].items():
            assert ".partial" not in asset["href"], (item.id, key, asset["href"])
            assert not Path(asset["href"]).is_absolute(), (item.id, key, asset["href"])
            path = Path(item.assets[key].get_absolute_href())
            assert path.is_file() and root.resolve() in path.resolve().parents, path
            n += 1
    return n


def test_relative_out_hrefs_resolve_inside_out(tmp_path, monkeypatch):
    """Quickstart bug: a relative --out wrote hrefs into the scratch .partial folder."""
    from glacierstack.cli import app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(
        app, ["synth", "--size-km", "0.6", "--out", "data/poiqu", "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    assert _assert_assets_inside(tmp_path / "data" / "poiqu") > 20
    region = generate_region("montblanc", "data2/mb", size_km=0.6, progress=False)
    assert _assert_assets_inside(tmp_path / "data2" / "mb") > 20
    assert region.truth_labels.is_file() and not list((tmp_path / "data2").glob(".*partial*"))


def test_every_stac_file_validates(region, stac_errors):
    """Core STAC 1.1.0 schemas (pystac's copies) + the rules of each declared extension version."""
    assert stac_errors(region.catalog_path.parent) == {}


def test_stored_extension_schemas_catch_the_old_faults(region, stac_errors, tmp_path):
    """The stored official schemas reject what our items once wrote (so the check can fail)."""
    import json

    items = {p.parent.parent.name: p for p in region.catalog_path.parent.rglob("*/*/*.json")}
    s2 = json.loads(items["sentinel-2-l2a"].read_text())
    s1 = json.loads(items["sentinel-1-slc"].read_text())
    s2["properties"]["proj:epsg"] = 32645  # gone in projection v2.0.0
    band = next(a["eo:bands"][0] for a in s2["assets"].values() if "eo:bands" in a)
    band["common_name"] = "rededge1"  # not in eo v1.1.0's list
    s1_asset = next(a for a in s1["assets"].values() if "raster:bands" in a)
    s1_asset["raster:bands"][0]["data_type"] = "complex64"  # raster v1.1.0 says cfloat32
    del s1["properties"]["sar:product_type"]  # required by sar v1.0.0
    s1["properties"]["view:off_nadir"] = 30.0
    s1["stac_extensions"] = [u for u in s1["stac_extensions"] if "/view/" not in u]
    for name, doc in (("s2.json", s2), ("s1.json", s1)):
        (tmp_path / name).write_text(json.dumps(doc))
    errors = {k: " | ".join(v) for k, v in stac_errors(tmp_path).items()}
    assert "projection/v2.0.0" in errors["s2.json"] and "eo/v1.1.0" in errors["s2.json"]
    assert "raster/v1.1.0" in errors["s1.json"] and "sar/v1.0.0" in errors["s1.json"]
    assert "declaring the view extension" in errors["s1.json"]
