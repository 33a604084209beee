"""A private STAC API end to end, on real local servers (docs/catalogs.md, "A private STAC API").

``rustac serve`` serves the synthetic region's items as a STAC API; the COGs are served over
HTTP with range requests by a small threaded server that can require an auth header. No
provider YAML lists the API: the config is inferred from its collection ids.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pystac
import pytest
import xarray as xr
from typer.testing import CliRunner

from glacierstack.catalog import open_catalog
from glacierstack.inputs import InputError, ReadConfig
from glacierstack.stack import load_modalities
from glacierstack.synthetic import generate_region

_spec = importlib.util.spec_from_file_location("gs_test_http", Path(__file__).with_name("_http.py"))
_http = sys.modules.setdefault("gs_test_http", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_http)

pytestmark = [
    pytest.mark.skipif(_http.rustac_executable() is None, reason="needs rustac (dev extra)"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]
TOKEN = ("Authorization", "Bearer s3cret-token")
MODS = ["s2", "dem", "lst", "velocity"]


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "poiqu"
    return generate_region("poiqu", out, size_km=0.6, seed=2, progress=False)


@pytest.fixture(scope="module")
def files(region, tmp_path_factory):
    with _http.file_server(region.catalog_path.parent, tmp_path_factory.mktemp("ctl")) as srv:
        yield srv


def _api_items(region, base_url: str) -> list[dict]:
    """The region's items as an API serves them: absolute https asset hrefs, no file links."""
    root = region.catalog_path.parent.resolve()
    cat = pystac.Catalog.from_file(str(region.catalog_path))
    out = []
    for it in cat.get_items(recursive=True):
        d = it.to_dict(include_self_link=False, transform_hrefs=False)
        for key, a in d["assets"].items():
            rel = Path(it.assets[key].get_absolute_href()).resolve().relative_to(root)
            a["href"] = f"{base_url}/{rel.as_posix()}"
        d["links"] = []
        out.append(d)
    return out


@pytest.fixture(scope="module")
def api(region, files, tmp_path_factory):
    with _http.stac_api(_api_items(region, files.url), tmp_path_factory.mktemp("rustac")) as url:
        yield url


def _with_query(tag: str):
    """A pystac-client modifier appending ``?tag`` to every asset href (new URLs for GDAL)."""

    def modify(obj):
        if isinstance(obj, pystac.Item):
            for a in obj.assets.values():
                a.href = f"{a.href}?{tag}"
        elif isinstance(obj, dict):
            for f in obj.get("features", [obj]):
                for a in f.get("assets", {}).values():
                    a["href"] = f"{a['href']}?{tag}"

    return modify


@pytest.fixture
def no_auth(files):
    files.required_header = None
    files.clear_log()
    yield files
    files.required_header = None


def test_any_api_url_search_to_cube_equals_the_static_cube(region, api, no_auth, tmp_path):
    """CLI `cube` on an unlisted API URL (no --provider) = the static-catalog cube, bit for bit."""
    import zarr

    from glacierstack.cli import app

    cat = open_catalog(api)
    assert cat.provider.name == "synthetic" and not cat.is_static  # inferred from collections
    g = region.grid
    bbox = ",".join(str(v) for v in g.bounds)
    common = ["--bbox", bbox, "--bbox-crs", g.crs, "--datetime", region.datetime,
              "--chunk-size", "64",
              "--no-progress"]  # fmt: skip
    runner = CliRunner()
    res = runner.invoke(
        app, ["cube", "--catalog", api, "--out", str(tmp_path / "api.zarr"), *common]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        ["cube", "--catalog", str(region.catalog_path), "--out", str(tmp_path / "static.zarr"),
         *common],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    a, b = (
        zarr.open_group(tmp_path / "api.zarr", mode="r"),
        zarr.open_group(tmp_path / "static.zarr", mode="r"),
    )
    assert sorted(a.array_keys()) == sorted(b.array_keys())
    for name in b.array_keys():
        np.testing.assert_array_equal(a[name][...], b[name][...], err_msg=name)
    # the labels came from the truth outlines, read by URL from the file server
    ref = a.attrs["outlines"]["glacier"]  # recorded as a portable reference (no port)
    assert ref.startswith("http://127.0.0.1/") and ref.endswith("glacier_outlines.gpkg")
    assert (np.asarray(a["labels"][...]) == 1).any()
    assert any(p.endswith("glacier_outlines.gpkg") for p, _, _ in no_auth.log)


def test_auth_header_reaches_the_workers_of_a_two_process_cluster(region, api, files):
    from dask.distributed import Client, LocalCluster

    static = load_modalities(region.catalog_path, region.grid, region.datetime, MODS).compute()
    files.required_header = TOKEN
    files.clear_log()
    try:
        read = ReadConfig.create(http_headers=dict([TOKEN]), check_files=False)
        with (
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
            Client(cluster) as client,
        ):
            assert all(v is None for v in client.run(os.getenv, "GDAL_HTTP_HEADERS").values())
            # without the header the workers are refused, loudly, naming the file. (First, and
            # on other URLs: GDAL caches per process what it read and what failed.)
            bare = load_modalities(
                open_catalog(api, modifier=_with_query("bare")),
                region.grid,
                region.datetime,
                ["dem"],
                read=ReadConfig(check_files=False),
            )
            with pytest.raises(Exception, match=r"data\.tif.*401"):
                client.compute(bare).result()
            files.clear_log()
            remote = load_modalities(api, region.grid, region.datetime, MODS, read=read)
            assert not files.log  # nothing read yet: the graph carries the header
            got = client.compute(remote).result()
            xr.testing.assert_identical(got.drop_attrs(), static.drop_attrs())
            assert files.log and all(ok for _, _, ok in files.log)
    finally:
        files.required_header = None


def test_a_404_is_an_error_naming_the_href(region, api, no_auth):
    def break_red(obj):
        """Point every 'red' asset at a missing file (pystac-client's modifier hook)."""
        if isinstance(obj, pystac.Item) and "red" in obj.assets:
            obj.assets["red"].href = f"{no_auth.url}/gone/B04.tif"
        elif isinstance(obj, dict):  # an item or a page of items as JSON
            for f in obj.get("features", [obj]):
                if "red" in f.get("assets", {}):
                    f["assets"]["red"]["href"] = f"{no_auth.url}/gone/B04.tif"

    cat = open_catalog(api, modifier=break_red)
    href = f"{no_auth.url}/gone/B04.tif"
    with pytest.raises(InputError, match="B04") as e:
        load_modalities(cat, region.grid, region.datetime, ["s2"])
    assert href in str(e.value) and "404" in str(e.value)
    # read lazily (no header check), the 404 is still an error at compute time, not NaN
    ds = load_modalities(
        cat, region.grid, region.datetime, ["s2"], read=ReadConfig(check_files=False)
    )
    with pytest.raises(RuntimeError, match=href):
        ds.B04.compute()
    # opted in: masked, and recorded
    ds = load_modalities(
        cat, region.grid, region.datetime, ["s2"], read=ReadConfig(allow_missing=True)
    )
    assert ds.attrs["missing_inputs"] == [href] and np.isnan(ds.B04.values).all()
    assert np.isfinite(ds.B03.values).all()


def test_cli_search_on_an_unlisted_api_and_a_provider_yaml(region, api, no_auth, tmp_path):
    import yaml

    from glacierstack.cli import app
    from glacierstack.modalities import get_provider

    g = region.grid.bbox_lonlat()
    bbox = ",".join(f"{v:.5f}" for v in g)
    res = CliRunner().invoke(app, ["search", "--catalog", api, "--modality", "s2", "--bbox", bbox])
    assert res.exit_code == 0, res.output
    assert "(synthetic)" in res.output and "S2B_45RSYN" in res.output
    res = CliRunner().invoke(
        app, ["layers", "--catalog", api, "--bbox", bbox, "--header", "X-Test: 1"]
    )
    assert res.exit_code == 0, res.output
    assert "slope" in res.output
    # a provider config given as a YAML path, for a catalog whose collection ids it names
    d = yaml.safe_load(get_provider("synthetic").path.read_text())
    d["name"] = "my-private-api"
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(d))
    res = CliRunner().invoke(
        app,
        ["search", "--catalog", api, "--provider", str(tmp_path / "mine.yaml"),
         "--modality", "dem", "--bbox", bbox],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "my-private-api" in res.output
    # an API whose collections no config reads: one line, no traceback
    res = CliRunner().invoke(
        app, ["search", "--catalog", api, "--provider", "nope", "--modality", "s2", "--bbox", bbox]
    )
    assert res.exit_code == 1 and "no provider config named 'nope'" in res.output
    assert "Traceback" not in res.output
