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
