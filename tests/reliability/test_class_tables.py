"""Class tables: evaluate, importance and finetune refuse a checkpoint whose classes differ."""

from __future__ import annotations

import numpy as np
import pytest

from cryonet.checkpoint import save_checkpoint
from cryonet.data import CubeSource, SplitConfig, make_split
from cryonet.evaluation import evaluate
from cryonet.models import create_model
from cryonet.permutation import importance_from_checkpoint
from cryonet.transfer import FinetuneConfig, finetune
from glacierstack.classes import check_same_classes, class_table

from .conftest import BANDS, make_cube


def _ckpt(path, table):
    model = create_model("unet-tiny", in_channels=len(BANDS), num_classes=len(table))
    return save_checkpoint(path, model, bands=BANDS, mean=np.zeros(6), std=np.ones(6),
                           classes=table, epoch=1)  # fmt: skip


@pytest.fixture(scope="module")
def cube_and_split(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("classes")
    cube = make_cube(tmp / "cube.zarr")
    split = make_split(CubeSource(cube), SplitConfig(patch_size=32, test_fraction=0.34,
                                                     val_fraction=0.2))  # fmt: skip
    split.to_json(tmp / "split.json")
    return tmp, cube, tmp / "split.json"


def _three_classes():
    return [c for c in class_table() if c["name"] in ("background", "clean_ice", "debris")]


def _swapped():
    t = class_table()
    t[1]["name"], t[2]["name"] = t[2]["name"], t[1]["name"]
    return t


@pytest.mark.parametrize("table", [_three_classes(), _swapped()], ids=["3-class", "swapped"])
def test_evaluate_refuses_other_class_table(cube_and_split, table):
    tmp, cube, split = cube_and_split
    ck = _ckpt(tmp / f"m{len(table)}{table[1]['name']}.pt", table)
    with pytest.raises(ValueError, match="class tables differ") as err:
        evaluate(ck, cube, split, out=tmp / "eval", device="cpu")
    msg = str(err.value)
    assert f"1 {table[1]['name']}" in msg and "1 clean_ice" in msg  # both tables shown
    assert str(ck) in msg and str(cube) in msg


def test_importance_and_finetune_refuse_other_class_table(cube_and_split):
    tmp, cube, split = cube_and_split
    ck = _ckpt(tmp / "m3.pt", _three_classes())
    with pytest.raises(ValueError, match="class tables differ"):
        importance_from_checkpoint(ck, cube, tmp / "imp", split=split, progress=False)
    with pytest.raises(ValueError, match="class tables differ"):
        finetune(ck, cube, tmp / "ft", config=FinetuneConfig(iterations=1, patch_size=32),
                 progress=False)  # fmt: skip
    assert not (tmp / "ft").exists() and not (tmp / "imp").exists()


def test_same_table_passes_and_ids_count():
    check_same_classes(class_table(), class_table(), "a", "b")
    moved = class_table()
    moved[0]["id"] = 7
    with pytest.raises(ValueError, match="7 background"):
        check_same_classes(moved, class_table(), "checkpoint", "cube")
