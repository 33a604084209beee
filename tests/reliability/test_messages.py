"""Messages: user errors end in one line naming the file/href/band/bbox and what was expected.

Both command lines share one mechanism (:mod:`glacierstack.cli._errors`): no traceback unless
``--debug`` is given.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cryonet.cli import app as cryonet_app
from glacierstack.cli import app as gs_app
from glacierstack.synthetic import generate_region

from .conftest import make_cube


def _run(app, args):
    res = CliRunner().invoke(app, args)
    err = res.stderr if hasattr(res, "stderr") else res.output
    return res.exit_code, (res.output + (err if err != res.output else "")).strip()


def _one_line_error(code: int, text: str, *needles: str) -> None:
    assert code == 1, text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert "Traceback" not in text
    for n in needles:
        assert n in lines[0], (n, text)


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    return generate_region("poiqu", tmp_path_factory.mktemp("msg") / "reg", size_km=0.6,
                           progress=False)  # fmt: skip


def test_bad_json_catalog_names_the_file(tmp_path):
    bad = tmp_path / "catalog.json"
    bad.write_text('{"type": "Catalog", "id": ')
    code, text = _run(gs_app, ["cube", "--catalog", str(bad), "--bbox", "86.9,27.9,86.92,27.92",
                               "--out", str(tmp_path / "c.zarr"), "--no-progress"])  # fmt: skip
    _one_line_error(code, text, str(bad))
    assert not (tmp_path / "c.zarr").exists()


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "catalog.json"
    bad.write_text("{")
    args = ["--debug", "cube", "--catalog", str(bad), "--bbox", "86.9,27.9,86.92,27.92",
            "--out", str(tmp_path / "c.zarr")]  # fmt: skip
    res = CliRunner().invoke(gs_app, args)
    assert res.exit_code != 0 and res.exception is not None
    assert not isinstance(res.exception, SystemExit)


def test_text_file_as_checkpoint(tmp_path):
    cube = make_cube(tmp_path / "c.zarr")
    txt = tmp_path / "model.pt"
    txt.write_text("this is not a model\n")
    args = ["predict", "--checkpoint", str(txt), "--cube", str(cube), "--out",
            str(tmp_path / "m.zarr"), "--no-progress"]  # fmt: skip
    code, text = _run(cryonet_app, args)
    _one_line_error(code, text, "not a checkpoint", str(txt))
    assert not (tmp_path / "m.zarr").exists()


def test_exporting_a_cube(tmp_path):
    cube = make_cube(tmp_path / "c.zarr")
    code, text = _run(cryonet_app, ["export", str(cube), "--cog", str(tmp_path / "x.tif")])
    _one_line_error(code, text, "is a feature cube, not a mosaic")


def test_yaml_error_names_the_file(tmp_path):
    cube = make_cube(tmp_path / "c.zarr")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("epochs: [1, 2\nlr: 0.1\n")
    code, text = _run(cryonet_app, ["train", "--cube", str(cube), "--out", str(tmp_path / "run"),
                                    "--config", str(cfg), "--no-progress"])  # fmt: skip
    _one_line_error(code, text, str(cfg), "not valid YAML")
    assert not (tmp_path / "run").exists()


def test_config_error_leaves_no_run_folder(tmp_path):
    cube = make_cube(tmp_path / "c.zarr")
    args = ["train", "--cube", str(cube), "--out", str(tmp_path / "run"), "--config", "cpu",
            "--patch-size", "512", "--no-progress"]  # fmt: skip
    code, text = _run(cryonet_app, args)
    assert code == 1 and "Traceback" not in text
    assert not (tmp_path / "run").exists()  # no config.yaml / split.json debris


def test_tiny_region_blames_its_size(region, tmp_path):
    code, text = _run(gs_app, ["cube", "--catalog", str(region.catalog_path), "--bbox",
                               "86.0,28.3,86.0002,28.3002", "--out", str(tmp_path / "c.zarr"),
                               "--no-progress"])  # fmt: skip
    _one_line_error(code, text, "pixels", "larger bbox")


def test_utm_bbox_without_bbox_crs_hints_at_it(region, tmp_path):
    code, text = _run(gs_app, ["cube", "--catalog", str(region.catalog_path), "--bbox",
                               "400000,3100000,401000,3101000", "--out",
                               str(tmp_path / "c.zarr"), "--no-progress"])  # fmt: skip
    _one_line_error(code, text, "--bbox-crs", "400000")


def test_missing_cog_names_the_file(region, tmp_path):
    href = next(region.catalog_path.parent.glob("sentinel-2-l2a/*/B04.tif"))
    href.unlink()
    item = next(region.catalog_path.parent.glob("sentinel-2-l2a/*/*.json"))
    bbox = ",".join(str(v) for v in json.loads(item.read_text())["bbox"])
    code, text = _run(gs_app, ["cube", "--catalog", str(region.catalog_path), "--bbox", bbox,
                               "--datetime", region.datetime, "--out", str(tmp_path / "c.zarr"),
                               "--no-progress"])  # fmt: skip
    _one_line_error(code, text, "B04.tif")
