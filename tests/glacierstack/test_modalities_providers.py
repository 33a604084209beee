"""Provider configs against the real recorded STAC metadata (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from glacierstack.layers import ALL_LAYERS
from glacierstack.modalities import (
    CATALOG_DIR,
    S2_BASELINE_OFFSET,
    ModalitySpec,
    choose_band_set,
    get_provider,
    list_providers,
    provider_from_dict,
    resolve_scale_offset,
)

S2_BANDS = [b for b in ALL_LAYERS if b.startswith("B")]


# Sentinel-2 MSI central wavelengths in micrometres (ESA S2 MSI user guide, S2A values).
S2_WAVELENGTH = {
    "B01": 0.443, "B02": 0.490, "B03": 0.560, "B04": 0.665, "B05": 0.705, "B06": 0.740,
    "B07": 0.783, "B08": 0.842, "B8A": 0.865, "B09": 0.945, "B11": 1.610, "B12": 2.190,
}  # fmt: skip


def _features(path: Path) -> list[dict]:
    """Recorded items that carry assets (some ES responses were fields-filtered)."""
    d = json.loads(path.read_text())
    feats = d if isinstance(d, list) else d["features"]
    return [f for f in feats if "assets" in f]


def test_all_yaml_files_parse_with_safe_load():
    files = sorted(CATALOG_DIR.glob("*.yaml"))
    assert {f.stem for f in files} >= {"earth-search", "planetary-computer", "itslive", "synthetic"}
    for f in files:
        d = yaml.safe_load(f.read_text())
        cfg = provider_from_dict(d, path=f)
        assert cfg.name == d["name"]
    assert set(list_providers()) >= {"earth-search", "planetary-computer", "itslive", "synthetic"}


@pytest.mark.parametrize("provider", ["earth-search", "planetary-computer", "synthetic"])
def test_s2_bands_are_the_twelve_l2a_bands(provider):
    s2 = get_provider(provider).modality("s2")
    assert s2.band_names == S2_BANDS  # canonical order, no B10
    res = {b.name: b.resolution for b in s2.bands}
    assert {n for n, r in res.items() if r == 10} == {"B02", "B03", "B04", "B08"}
    assert {n for n, r in res.items() if r == 60} == {"B01", "B09"}
    assert all(b.resampling == "bilinear" and b.dtype == "float32" for b in s2.bands)


@pytest.mark.parametrize(
    ("provider", "modality", "fname"),
    [
        ("earth-search", "s2", "es_sentinel-2-c1-l2a.json"),
        ("earth-search", "s2_legacy", "es_sentinel-2-l2a.json"),
        ("planetary-computer", "s2", "pc_sentinel-2-l2a.json"),
        ("planetary-computer", "s2", "pc_sentinel-2-l2a-items.json"),
    ],
)
def test_s2_asset_keys_match_recorded_eo_bands(realdata, provider, modality, fname):
    spec = get_provider(provider).modality(modality)
    feats = _features(realdata / "stac" / fname)
    assert all(f["collection"] == spec.collection for f in feats)
    for f in feats:
        for b in spec.bands:
            asset = f["assets"][b.asset]
            eo = asset["eo:bands"][0]
            # older ES items name bands by common name; the wavelength decides
            assert eo["name"] in (b.name, b.asset)
            assert eo["center_wavelength"] == pytest.approx(S2_WAVELENGTH[b.name], abs=0.015)
            assert asset["gsd"] == b.resolution


def test_earth_search_encoding_matches_raster_bands(realdata):
    cfg = get_provider("earth-search")
    for mod, fname in [("s2", "es_sentinel-2-c1-l2a.json"), ("lst", "es_landsat-c2-l2.json")]:
        spec = cfg.modality(mod)
        for f in _features(realdata / "stac" / fname):
            for b in spec.bands:
                rb = f["assets"][b.asset]["raster:bands"][0]
                assert (rb["scale"], rb["offset"], rb["nodata"]) == (b.scale, b.offset, b.nodata)
    dem = cfg.modality("dem")
    for f in _features(realdata / "stac" / "es_cop-dem-glo-30.json"):
        rb = f["assets"]["data"]["raster:bands"][0]
        assert rb["unit"] == "meter" and "nodata" not in rb and dem.bands[0].nodata is None


def test_landsat_lst_encoding_both_providers(realdata):
    for provider, fname in [
        ("earth-search", "es_landsat-c2-l2.json"),
        ("planetary-computer", "pc_landsat-c2-l2-items.json"),
    ]:
        spec = get_provider(provider).modality("lst")
        (band,) = spec.bands
        for f in _features(realdata / "stac" / fname):
            rb = f["assets"]["lwir11"]["raster:bands"][0]
            enc = resolve_scale_offset(spec, band, f["properties"], f["assets"]["lwir11"], f["id"])
            assert (enc.scale, enc.offset, enc.nodata) == (0.00341802, 149.0, 0.0)
            assert rb["unit"] == "kelvin" and band.unit == "K"
            # hand-computed: DN 35000 -> 35000 * 0.00341802 + 149 = 268.6307 K
            assert 35000 * enc.scale + enc.offset == pytest.approx(268.6307)


def test_pc_s2_offset_keyed_on_processing_baseline(realdata):
    spec = get_provider("planetary-computer").modality("s2")
    b04 = spec.band("B04")
    seen = set()
    for fname in ("pc_sentinel-2-l2a.json", "pc_sentinel-2-l2a-items.json"):
        for f in _features(realdata / "stac" / fname):
            asset = f["assets"]["B04"]
            assert "raster:bands" not in asset  # the trap: PC items carry no scale/offset
            pb = f["properties"]["s2:processing_baseline"]
            enc = resolve_scale_offset(spec, b04, f["properties"], asset, f["id"])
            expected = -0.1 if float(pb) >= 4.0 else 0.0
            assert enc.offset == expected and enc.scale == 1e-4 and enc.nodata == 0
            # DN 1500: (1500 - 1000) / 10000 = 0.05 for PB >= 04.00, else 0.15
            assert 1500 * enc.scale + enc.offset == pytest.approx(0.05 if expected else 0.15)
            seen.add(expected)
    assert seen == {0.0, -0.1}  # the recorded items cover both baselines


def test_earth_search_legacy_trusts_boa_offset_applied(realdata):
    spec = get_provider("earth-search").modality("s2_legacy")
    band = spec.band("B04")
    for f in _features(realdata / "stac" / "es_sentinel-2-l2a.json"):
        props, asset = f["properties"], f["assets"]["red"]
        # the trap: the flag says applied AND raster:bands still says -0.1
        assert props["earthsearch:boa_offset_applied"] is True
        assert asset["raster:bands"][0]["offset"] == -0.1
        enc = resolve_scale_offset(spec, band, props, asset, f["id"])
        assert (enc.scale, enc.offset) == (1e-4, 0.0)
        # flag false on a PB >= 04.00 item: the offset must be applied once
        enc = resolve_scale_offset(
            spec, band, {**props, "earthsearch:boa_offset_applied": False}, asset
        )
        assert enc.offset == S2_BASELINE_OFFSET


def test_earth_search_c1_applies_raster_bands_to_every_item(realdata):
    spec = get_provider("earth-search").modality("s2")
    for f in _features(realdata / "stac" / "es_sentinel-2-c1-l2a.json"):
        for b in spec.bands:
            enc = resolve_scale_offset(spec, b, f["properties"], f["assets"][b.asset], f["id"])
            assert (enc.scale, enc.offset) == (1e-4, -0.1)


def test_missing_processing_baseline_is_an_error():
    spec = get_provider("planetary-computer").modality("s2")
    with pytest.raises(ValueError, match="s2:processing_baseline.*B04"):
        resolve_scale_offset(spec, spec.band("B04"), {}, {}, "X")


def test_l2sr_items_lack_lwir11(realdata):
    spec = get_provider("planetary-computer").modality("lst")
    feats = _features(realdata / "stac" / "pc_landsat-c2-l2.json")
    l2sr = [f for f in feats if f["properties"]["landsat:correction"] == "L2SR"]
    assert l2sr and all("lwir11" not in f["assets"] for f in l2sr)
    assert all("tirs" in f["properties"]["instruments"] for f in l2sr)  # do not trust this
    with pytest.raises(KeyError, match="lwir11"):
        choose_band_set(spec, [set(f["assets"]) for f in l2sr])
    bands = choose_band_set(spec, [set(f["assets"]) for f in feats])
    assert [b.asset for b in bands] == ["lwir11"]


def test_velocity_band_options():
    spec = get_provider("itslive").modality("velocity")
    assert [b.name for b in choose_band_set(spec, [{"v", "vx", "vy"}])] == ["velocity"]
    assert [b.name for b in choose_band_set(spec, [{"vx", "vy"}])] == ["vx", "vy"]
    with pytest.raises(KeyError, match="vx"):
        choose_band_set(spec, [{"vx"}])


def test_insar_pair_is_complex_nearest():
    spec = get_provider("synthetic").modality("insar")
    assert spec.select == "pair"
    assert spec.bands[0].dtype == "complex64" and spec.bands[0].resampling == "nearest"


def test_yaml_errors_name_the_problem():
    base = {"name": "x", "modalities": {"m": {"collection": "c", "bands": []}}}
    with pytest.raises(ValueError, match="unknown keys.*colour"):
        provider_from_dict({**base, "colour": 1})
    bad_band = {"name": "b", "asset": "a", "resolution": 10, "resampling": "lanczos9"}
    with pytest.raises(ValueError, match="lanczos9"):
        provider_from_dict(
            {"name": "x", "modalities": {"m": {"collection": "c", "bands": [bad_band]}}}
        )
    with pytest.raises(KeyError, match="no modality 'nope'"):
        get_provider("earth-search").modality("nope")
    with pytest.raises(KeyError, match="no provider config named"):
        get_provider("no-such-provider")
    with pytest.raises(ValueError, match="duplicate"):
        ModalitySpec(
            name="m",
            collection="c",
            bands=tuple(get_provider("earth-search").modality("dem").bands * 2),
        )


def test_catalog_dirs_read_at_call_time_and_searched_first(monkeypatch, tmp_path):
    from glacierstack import modalities

    monkeypatch.delenv("GLACIERSTACK_CATALOGS", raising=False)
    assert modalities.catalog_dirs() == [CATALOG_DIR]
    assert CATALOG_DIR.parent.name == "glacierstack" and (CATALOG_DIR / "synthetic.yaml").is_file()
    # a private config under a new name, and one shadowing a packaged name
    es = yaml.safe_load((CATALOG_DIR / "earth-search.yaml").read_text())
    (tmp_path / "my-api.yaml").write_text(yaml.safe_dump({**es, "name": "my-api", "url": None}))
    (tmp_path / "synthetic.yaml").write_text(yaml.safe_dump({**es, "title": "shadow"}))
    with pytest.raises(KeyError, match="my-api"):
        get_provider("my-api")
    monkeypatch.setenv("GLACIERSTACK_CATALOGS", str(tmp_path))  # after import: still honoured
    assert modalities.catalog_dirs() == [tmp_path, CATALOG_DIR]
    assert get_provider("my-api").path == (tmp_path / "my-api.yaml").resolve()
    assert get_provider("synthetic").title == "shadow"
    assert {"my-api", "earth-search", "asf"} <= set(list_providers())
    # a YAML path works as a provider name too
    monkeypatch.delenv("GLACIERSTACK_CATALOGS")
    assert get_provider(str(tmp_path / "my-api.yaml")).name == "my-api"
    assert get_provider("synthetic").title != "shadow"


def test_top_level_catalogs_folder_points_at_the_packaged_configs():
    top = Path(__file__).resolve().parents[2] / "catalogs"
    assert sorted(p.name for p in top.glob("*.yaml")) == sorted(
        p.name for p in CATALOG_DIR.glob("*.yaml")
    )
