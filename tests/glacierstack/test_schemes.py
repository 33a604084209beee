"""Class schemes: lookup tables, rule classes opt-in, minimum mapping unit, YAML schemes."""

from __future__ import annotations

import numpy as np
import pytest

from glacierstack.classes import check_class_table
from glacierstack.schemes import SCHEMES, get_scheme, map_labels

# base labels: 0 background, 1 clean ice, 2 debris, 3 water, 4 vegetation, 255 nodata
BASE = np.array([[0, 1, 2, 3, 4, 255]], np.uint8)


def test_named_schemes_map_the_base_classes():
    assert map_labels(BASE, SCHEMES["cryonet5"]).tolist() == [[0, 1, 2, 3, 4, 255]]
    assert map_labels(BASE, SCHEMES["glacier"]).tolist() == [[0, 1, 1, 0, 0, 255]]
    assert map_labels(BASE, SCHEMES["ice-debris"]).tolist() == [[0, 1, 2, 0, 0, 255]]
    assert SCHEMES["cryonet5"].rule_classes == ("water", "vegetation")
    assert SCHEMES["glacier"].rule_classes == () and SCHEMES["ice-debris"].rule_classes == ()
    for s in SCHEMES.values():
        check_class_table(s.table())  # a valid class table for cubes and checkpoints
    assert dict(SCHEMES["ice-debris"].groups) == {"glacier": ("clean_ice", "debris")}


def test_yaml_scheme_with_minimum_mapping_unit(tmp_path):
    f = tmp_path / "lakes.yaml"
    f.write_text("name: lakes\nclasses: [background, glacier, water]\nmin_mapping_unit: 4\n")
    s = get_scheme(f)
    assert [c.name for c in s.classes] == ["background", "glacier", "water"]
    assert s.rule_classes == ("water",)
    lab = np.zeros((6, 6), np.uint8)
    lab[0:2, 0:2] = 3  # a 4-pixel lake: kept
    lab[4, 4] = 3  # a 1-pixel lake: below the unit, becomes background
    lab[5, 0:3] = 1  # glacier: not a rule class, never removed
    lab[3, 3] = 4  # vegetation is not in the scheme: background
    out = map_labels(lab, s)
    assert (out[0:2, 0:2] == 2).all() and out[4, 4] == 0 and (out[5, 0:3] == 1).all()
    assert out[3, 3] == 0 and set(np.unique(out)) == {0, 1, 2}


def test_unknown_scheme_and_bad_tables():
    with pytest.raises(KeyError, match="unknown class scheme 'nope'"):
        get_scheme("nope")
    with pytest.raises(ValueError, match="ids 0..n-1"):
        check_class_table([{"id": 0, "name": "a"}, {"id": 2, "name": "b"}])


def test_yaml_class_from_its_own_outline_file(tmp_path):
    import dask.array as da
    import geopandas as gpd
    import xarray as xr
    from shapely.geometry import box

    from glacierstack.grid import Grid
    from glacierstack.schemes import burn_outline_classes

    grid = Grid("EPSG:32645", (0.0, 0.0, 80.0, 40.0), 10.0)  # 4 x 8 pixels
    rg = gpd.GeoDataFrame(geometry=[box(40, 0, 60, 20)], crs="EPSG:32645").to_crs("EPSG:4326")
    rg.to_file(tmp_path / "rock.gpkg")
    (tmp_path / "s.yaml").write_text(
        "classes: [background, glacier, {name: rock_glacier, outlines: rock.gpkg}]\n"
    )
    s = get_scheme(tmp_path / "s.yaml")
    assert [c.name for c in s.classes] == ["background", "glacier", "rock_glacier"]
    assert s.to_attrs()["outlines"]["rock_glacier"] == str(tmp_path / "rock.gpkg")
    base = np.zeros((4, 8), np.uint8)
    base[:, 0] = 1
    base[3, 5] = 255  # nodata stays nodata
    lab = xr.DataArray(da.from_array(map_labels(base, s), chunks=(2, 3)), dims=("y", "x"))
    out = burn_outline_classes(lab, grid, s).values
    expect = map_labels(base, s)
    expect[2:4, 4:6] = 2  # rows 2-3 (y 0..20), cols 4-5 (x 40..60), across block edges
    expect[3, 5] = 255
    assert out.tolist() == expect.tolist()
