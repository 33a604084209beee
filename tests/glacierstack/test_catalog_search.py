"""Catalog opening, searching and scene selection on the real recorded STAC metadata (offline)."""

from __future__ import annotations

import datetime as dt
import json

import pystac
import pytest
import shapely.geometry
from pyproj import Transformer

from glacierstack.catalog import (
    EmptySearchError,
    bbox_to_lonlat,
    group_acquisitions,
    open_catalog,
    pad_window,
    parse_datetime,
    select_items,
)
from glacierstack.modalities import get_provider

UTC = dt.UTC


def test_parse_datetime_windows():
    assert parse_datetime("2018-10-15") == (
        dt.datetime(2018, 10, 15, tzinfo=UTC),
        dt.datetime(2018, 10, 15, 23, 59, 59, 999999, tzinfo=UTC),
    )
    start, end = parse_datetime("2018-12")
    assert (start.day, end.month, end.day) == (1, 12, 31)
    start, end = parse_datetime("2018")
    assert (start.month, end.month, end.day) == (1, 12, 31)
    start, end = parse_datetime("2018-10-01/2018-10-31")
    assert end - start == dt.timedelta(days=31, microseconds=-1)
    assert parse_datetime("../2019-01-01")[0] is None
    assert parse_datetime("2019-01-01T10:00:00Z/..")[1] is None
    assert parse_datetime(None) == (None, None)
    with pytest.raises(ValueError, match="ends before it starts"):
        parse_datetime("2019-01-02/2019-01-01")
    with pytest.raises(ValueError, match="cannot parse"):
        parse_datetime("yesterday")
    assert pad_window("2020-01-10", 5).startswith("2020-01-05T00:00:00")


@pytest.mark.parametrize(
    ("fname", "provider"),
    [
        ("es_sentinel-2-c1-l2a.json", "earth-search"),
        ("es_landsat-c2-l2.json", "earth-search"),
        ("pc_sentinel-2-l2a.json", "planetary-computer"),
        ("pc_landsat-c2-l2.json", "planetary-computer"),
    ],
)
def test_provider_detected_from_recorded_links(realdata, fname, provider):
    cat = open_catalog(realdata / "stac" / fname)
    assert cat.provider.name == provider and cat.is_static
    n = len(json.loads((realdata / "stac" / fname).read_text())["features"])
    assert len(cat.items) == n


def test_search_bbox_in_any_crs(realdata):
    cat = open_catalog(realdata / "stac" / "es_sentinel-2-c1-l2a.json")
    ll = (-39.05, -4.75, -38.95, -4.65)
    by_ll = cat.search("sentinel-2-c1-l2a", ll, datetime="2025-07-31")
    # the same box stated in UTM 24S metres
    tr = Transformer.from_crs("EPSG:4326", "EPSG:32724", always_xy=True)
    utm = tr.transform_bounds(*ll)
    by_utm = cat.search("sentinel-2-c1-l2a", utm, bbox_crs="EPSG:32724", datetime="2025-07-31")
    assert {i.id for i in by_ll} == {i.id for i in by_utm}
    # independent check: items whose recorded lon/lat bbox intersects the query
    expected = {
        f["id"]
        for f in json.loads((realdata / "stac" / "es_sentinel-2-c1-l2a.json").read_text())[
            "features"
        ]
        if f["bbox"][0] < ll[2]
        and f["bbox"][2] > ll[0]
        and f["bbox"][1] < ll[3]
        and f["bbox"][3] > ll[1]
    }
    assert (
        {i.id for i in by_ll}
        == expected
        == {
            "S2B_T24MVV_20250731T130245_L2A",
            "S2B_T24MWV_20250731T130245_L2A",
        }
    )
    assert bbox_to_lonlat(utm, "EPSG:32724") == pytest.approx(ll, abs=1e-3)


def test_search_datetime_filter_counts(realdata):
    path = realdata / "stac" / "es_sentinel-2-c1-l2a.json"
    cat = open_catalog(path)
    bbox = (-105.2, 40.0, -105.0, 40.2)  # tile 13TDE
    dates = [
        f["properties"]["datetime"][:10]
        for f in json.loads(path.read_text())["features"]
        if "T13TDE" in f["id"]
    ]
    for window, lo, hi in [
        ("2025-07-14/2025-07-21", "2025-07-14", "2025-07-21"),
        ("2025-07", "2025-07-01", "2025-07-31"),
    ]:
        found = cat.search("sentinel-2-c1-l2a", bbox, datetime=window)
        assert len(found) == sum(lo <= d <= hi for d in dates) > 0


def test_empty_search_names_collection_bbox_dates(realdata):
    cat = open_catalog(realdata / "stac" / "es_sentinel-2-c1-l2a.json")
    with pytest.raises(EmptySearchError) as e:
        cat.search("sentinel-2-c1-l2a", (10.0, 45.0, 10.1, 45.1), datetime="2018-10-01/2018-10-31")
    msg = str(e.value)
    assert (
        "sentinel-2-c1-l2a" in msg
        and "(10.0, 45.0, 10.1, 45.1)" in msg
        and "2018-10-01/2018-10-31" in msg
    )
    with pytest.raises(EmptySearchError, match="landsat-c2-l2"):
        cat.search("landsat-c2-l2", (-105.2, 40.0, -105.0, 40.2))


def test_open_errors():
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        open_catalog("nowhere/nowhere.json")
    with pytest.raises(KeyError, match="no provider config named 'nope'"):
        open_catalog("nope")
    with pytest.raises(ValueError, match="no STAC API"):
        open_catalog("synthetic")


def test_adjacent_tiles_grouped_and_least_cloud_first(realdata):
    cat = open_catalog(realdata / "stac" / "es_sentinel-2-c1-l2a.json")
    spec = cat.provider.modality("s2")
    aoi = (-39.05, -4.75, -38.95, -4.65)  # straddles tiles 24MVV and 24MWV
    items = cat.search_modality(spec, aoi, datetime="2025-07")
    groups = group_acquisitions(items)
    assert len(groups) == 1 and len(groups[0]) == 2
    sel = select_items(items, spec, aoi, required_assets=spec.assets)
    (acq,) = sel.acquisitions
    clouds = [it.properties["eo:cloud_cover"] for it in acq]
    assert clouds == sorted(clouds)  # best scene first: it wins where both overlap
    assert sel.coverage[0] == pytest.approx(1.0)


def test_best_acquisition_prefers_complete_then_least_cloud():
    def item(i, day, cloud, x0):
        return pystac.Item(
            id=f"it{i}",
            geometry={
                "type": "Polygon",
                "coordinates": [[[x0, 0], [x0 + 1, 0], [x0 + 1, 1], [x0, 1], [x0, 0]]],
            },
            bbox=[x0, 0, x0 + 1, 1],
            datetime=dt.datetime(2020, 1, day, tzinfo=UTC),
            properties={"eo:cloud_cover": cloud, "platform": "p"},
            collection="c",
        )

    spec = get_provider("earth-search").modality("s2")
    aoi = (0.2, 0.2, 0.8, 0.8)
    items = [item(1, 1, 50.0, 0.0), item(2, 2, 5.0, 0.5), item(3, 3, 20.0, 0.0)]
    sel = select_items(items, spec, aoi)
    # it2 is clearer but covers only part of the AOI
    assert sel.item_ids == ["it3"]
    # no single acquisition covers the AOI: adjacent scenes of different days are mosaicked
    west, east = item(5, 10, 30.0, -0.5), item(6, 17, 10.0, 0.5)
    sel = select_items([west, east, item(7, 12, 0.0, 5.0)], spec, aoi)
    assert sel.item_ids == ["it6", "it5"] and sel.coverage[0] == pytest.approx(1.0)
    pair_spec = get_provider("synthetic").modality("insar")
    pair = select_items(items + [item(4, 20, 0.0, 0.0)], pair_spec, aoi)
    assert pair.item_ids == ["it1", "it3"]  # shortest separation among complete ones, earlier first


def test_lst_selection_skips_l2sr_items(realdata):
    cat = open_catalog(realdata / "stac" / "pc_landsat-c2-l2.json")
    spec = cat.provider.modality("lst")
    feats = json.loads((realdata / "stac" / "pc_landsat-c2-l2.json").read_text())["features"]
    l2sp = [f for f in feats if f["properties"]["landsat:correction"] == "L2SP"]
    # an AOI inside the two adjacent L2SP scenes of the same pass
    lon = (max(f["bbox"][0] for f in l2sp) + min(f["bbox"][2] for f in l2sp)) / 2
    lat = (max(f["bbox"][1] for f in l2sp) + min(f["bbox"][3] for f in l2sp)) / 2
    aoi = (lon - 0.05, lat - 0.05, lon + 0.05, lat + 0.05)
    items = cat.search_modality(spec, aoi, datetime="2025-07-22")
    sel = select_items(items, spec, aoi, required_assets=["lwir11"])
    assert sel.item_ids and all("L2SP" in i for i in sel.item_ids)
    assert all("L2SP" in it.id or "lwir11" not in it.assets for it in items)
    with pytest.raises(EmptySearchError, match="lwir11"):
        select_items(
            [it for it in items if "L2SR" in it.id] or items[:0],
            spec,
            aoi,
            required_assets=["lwir11"],
        )


def _asf_item(stem: str) -> pystac.Item:
    """An item shaped like ASF's sentinel-1-global-coherence items (no proj/raster fields)."""
    return pystac.Item.from_dict(
        {
            "type": "Feature", "stac_version": "1.0.0", "id": stem,
            "collection": "sentinel-1-global-coherence",
            "geometry": shapely.geometry.mapping(shapely.geometry.box(86, 28, 87, 29)),
            "bbox": [86, 28, 87, 29],
            "properties": {
                "datetime": "2020-10-16T00:00:00Z", "season": "FALL", "sar:polarizations": ["VV"],
                "start_datetime": "2020-09-01T00:00:00Z", "end_datetime": "2020-11-30T00:00:00Z",
            },
            "assets": {"data": {"href": f"https://example.invalid/{stem}.tif",
                                "type": "image/tiff; application=geotiff"}},
            "links": [],
        }
    )  # fmt: skip


def test_coherence_product_selected_by_id_pattern():
    from glacierstack.catalog import Catalog
    from glacierstack.grid import Grid
    from glacierstack.inputs import ReadConfig
    from glacierstack.stack import load_modalities

    stems = ["N29E086_fall_vv_COH12", "N29E086_fall_vv_COH06", "N29E086_fall_vh_AMP"]
    cat = Catalog(
        source="asf-test", provider=get_provider("asf"), items=[_asf_item(s) for s in stems]
    )
    spec = cat.provider.modality("coherence")
    sel = select_items(cat.items, spec, (86.2, 28.2, 86.3, 28.3), required_assets=["data"])
    assert sel.item_ids == ["N29E086_fall_vv_COH12"]
    grid = Grid.from_bbox((86.2, 28.2, 86.25, 28.25), resolution=10)
    # metadata only (the hrefs are not real): no file is opened
    ds = load_modalities(cat, grid, "2018-10", read=ReadConfig(check_files=False))  # 2020 data
    assert list(ds.data_vars) == ["coherence"] and ds.coherence.attrs["scale"] == [0.01]
    assert ds.attrs["stac_items"] == ["N29E086_fall_vv_COH12"]
    with pytest.raises(EmptySearchError, match="COH12"):
        select_items(cat.items[1:], spec, (86.2, 28.2, 86.3, 28.3), required_assets=["data"])
