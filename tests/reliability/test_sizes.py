"""Sizes: every size option is checked before any work or output, never replaced by a default."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from cryonet.cli import app as cryonet_app
from cryonet.infer import TilingOptions
from cryonet.training import TrainConfig
from cryonet.transfer import FinetuneConfig
from glacierstack.cli import app as gs_app
from glacierstack.grid import Grid

from .conftest import make_cube


def _err(app, args) -> str:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert res.output.startswith("error: "), res.output  # ours, not a usage error
    return res.output


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [("--chunk-size", "0", "chunk_size"), ("--chunk-size", "8", "chunk_size"),
     ("--resolution", "0", "resolution")],
)  # fmt: skip
def test_cube_sizes_refused_up_front(tmp_path, option, value, needle):
    t0 = time.perf_counter()
    out = _err(gs_app, ["cube", "--catalog", str(tmp_path / "nowhere.json"), "--bbox",
                        "86.0,28.3,86.02,28.32", "--out", str(tmp_path / "c.zarr"), option,
                        value, "--no-progress"])  # fmt: skip
    assert needle in out and "ZeroDivision" not in out
    assert time.perf_counter() - t0 < 10 and not (tmp_path / "c.zarr").exists()


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [("--chunk-size", "0", "chunk_size"), ("--threads", "0", "threads"),
     ("--torch-threads", "-1", "torch_threads"), ("--batch-size", "0", "batch_size"),
     ("--tile-size", "0", "tile_size")],
)  # fmt: skip
def test_predict_sizes_refused_before_output(tmp_path, option, value, needle):
    cube = make_cube(tmp_path / "c.zarr")
    ck = tmp_path / "m.pt"
    ck.write_bytes(b"")  # never read: sizes are checked first
    out = _err(cryonet_app, ["predict", "--checkpoint", str(ck), "--cube", str(cube), "--out",
                             str(tmp_path / "m.zarr"), option, value, "--no-progress"])  # fmt: skip
    assert needle in out
    assert not (tmp_path / "m.zarr").exists()


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [("--epochs", "0", "epochs"), ("--batch-size", "0", "batch_size"),
     ("--patch-size", "0", "patch_size"), ("--threads", "0", "threads"),
     ("--num-workers", "-1", "num_workers")],
)  # fmt: skip
def test_train_sizes_refused_before_output(tmp_path, option, value, needle):
    out = _err(cryonet_app, ["train", "--cube", str(tmp_path / "none.zarr"), "--out",
                             str(tmp_path / "run"), "--config", "cpu", option, value,
                             "--no-progress"])  # fmt: skip
    assert needle in out and "total_steps" not in out
    assert not (tmp_path / "run").exists()


def test_importance_and_finetune_sizes(tmp_path):
    out = _err(cryonet_app, ["importance", "--checkpoint", str(tmp_path / "m.pt"), "--cube",
                             str(tmp_path / "c.zarr"), "--out", str(tmp_path / "imp"),
                             "--patch-size", "0", "--no-progress"])  # fmt: skip
    assert "patch_size" in out and not (tmp_path / "imp").exists()
    out = _err(cryonet_app, ["finetune", "--checkpoint", str(tmp_path / "m.pt"), "--cube",
                             str(tmp_path / "c.zarr"), "--out", str(tmp_path / "ft"),
                             "--batch-size", "0", "--no-progress"])  # fmt: skip
    assert "batch" in out and not (tmp_path / "ft").exists()


def test_typed_configs_validate_themselves():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="overlap"):
        TrainConfig(patch_size=64, overlap=64)
    with pytest.raises(ValueError, match="scheduler"):
        TrainConfig(scheduler="linear")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        TilingOptions(batch_size=0)
    with pytest.raises(ValueError, match="patch_size"):
        FinetuneConfig(patch_size=0)
    with pytest.raises(ValueError, match="resolution"):
        Grid.from_bbox((86.0, 28.3, 86.02, 28.32), resolution=0)
