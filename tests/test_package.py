import subprocess
import sys

import numpy as np
import pytest

import glacierstack
from glacierstack.grid import Grid, utm_crs_for
from glacierstack.layers import ALL_LAYERS, resolve_layers


def test_glacierstack_never_imports_torch():
    code = "import sys, glacierstack, glacierstack.cli; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("prog", ["glacierstack", "cryonet"])
def test_cli_help(prog):
    mod = f"{prog}.cli"
    out = subprocess.run(
        [sys.executable, "-c", f"import {mod}; {mod}.main()", "--help"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout


def test_utm_zone():
    assert utm_crs_for(86.0, 28.3) == "EPSG:32645"
    assert utm_crs_for(6.9, 45.9) == "EPSG:32632"
    assert utm_crs_for(-147.0, -60.0) == "EPSG:32706"


def test_grid_from_bbox_snaps_and_covers():
    bbox = (85.98, 28.28, 86.02, 28.32)
    g = Grid.from_bbox(bbox, resolution=10)
    assert g.crs == "EPSG:32645"
    xmin, ymin, xmax, ymax = g.bounds
    assert all(v % 10 == 0 for v in g.bounds)
    h, w = g.shape
    assert 385 < w < 405 and 435 < h < 455  # ~3.9 km x ~4.4 km
    lon0, lat0, lon1, lat1 = g.bbox_lonlat()
    assert lon0 <= bbox[0] and lat0 <= bbox[1] and lon1 >= bbox[2] and lat1 >= bbox[3]
    # pixel centres and transform agree
    assert np.isclose(g.x[0], g.transform.c + 5) and np.isclose(g.y[0], g.transform.f - 5)
    assert Grid.from_attrs(g.to_attrs()) == g


def test_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="empty or inverted"):
        Grid.from_bbox((86.0, 28.3, 85.0, 28.4))
    with pytest.raises(ValueError, match="whole number"):
        Grid("EPSG:32645", (0, 0, 15, 10), 10)


def test_resolve_layers():
    assert resolve_layers(None) == ALL_LAYERS
    assert resolve_layers("coherence,optical")[:12] == ALL_LAYERS[:12]
    assert resolve_layers(["lst", "B02"]) == ("B02", "lst")
    with pytest.raises(ValueError, match="unknown layer"):
        resolve_layers(["B10"])
    assert glacierstack.NUM_CLASSES == 5
