"""``importance``, ``finetune`` and ``calibrate`` with cube, checkpoint and outputs on s3://.

The S3-compatible server is a real one on 127.0.0.1 (moto in server mode, ``s3`` fixture).
Importance on the bucket must equal importance on local copies of the same inputs; every
output must land in the bucket, and the recorded metadata names the URLs given.
"""

from __future__ import annotations

import json

import fsspec
import numpy as np
import pytest
import torch

from cryonet.calibration import calibrate_checkpoint
from cryonet.checkpoint import load_checkpoint, save_checkpoint
from cryonet.data import CubeSource, SplitConfig, make_split
from cryonet.models import create_model
from cryonet.permutation import importance_from_checkpoint
from cryonet.testing import write_toy_cube
from cryonet.transfer import FinetuneConfig, finetune

BANDS = [f"band{i}" for i in range(3)]


@pytest.mark.timeout(300)
def test_importance_finetune_calibrate_on_s3(s3, tmp_path):
    root, fs = s3["root"], fsspec.filesystem("s3")
    bucket = root.removeprefix("s3://")
    local_cube = write_toy_cube(tmp_path / "cube.zarr", (64, 64), n_bands=3, chunks=32)
    cube = f"{root}/cube.zarr"
    write_toy_cube(cube, (64, 64), n_bands=3, chunks=32)
    torch.manual_seed(0)
    model = create_model("unet-tiny", len(BANDS), 5)
    local_ckpt = save_checkpoint(tmp_path / "m.pt", model, bands=BANDS, mean=[100.0] * 3,
                                 std=[10.0] * 3)  # fmt: skip
    ckpt = f"{root}/m.pt"
    fs.put_file(str(local_ckpt), f"{bucket}/m.pt")

    # importance: same numbers as on the local copies, files in the bucket
    common = dict(patch_size=16, repeats=1, seed=0, progress=False)
    res = importance_from_checkpoint(ckpt, cube, f"{root}/imp", **common)
    ref = importance_from_checkpoint(local_ckpt, local_cube, None, **common)
    assert res.meta["checkpoint"] == ckpt and res.meta["cube"] == cube
    assert res.baseline == pytest.approx(ref.baseline, nan_ok=True)
    np.testing.assert_allclose(
        res.table().to_numpy(float), ref.table().to_numpy(float), equal_nan=True
    )
    assert {"importance.csv", "importance.json", "importance.png"} <= {
        p.rsplit("/", 1)[1] for p in fs.ls(f"{bucket}/imp", refresh=True)
    }

    # finetune: outputs folder on s3, metadata names the URLs
    cfg = FinetuneConfig(iterations=2, batch_size=2, patch_size=16, seed=0, device="cpu")
    tr = finetune(ckpt, cube, f"{root}/ft", cfg, progress=False)
    assert tr.out == f"{root}/ft" and tr.checkpoint == f"{root}/ft/finetuned.pt"
    summary = json.loads(fs.cat_file(f"{bucket}/ft/transfer.json"))
    assert summary["checkpoint"] == ckpt and summary["target_cube"] == cube
    assert load_checkpoint(str(tr.checkpoint))["bands"] == BANDS
    assert {"split.json", "finetune_log.csv", "transfer_metrics.csv"} <= {
        p.rsplit("/", 1)[1] for p in fs.ls(f"{bucket}/ft", refresh=True)
    }

    # calibrate: the checkpoint on s3 is rewritten with a calibration entry
    split = make_split(CubeSource(local_cube), SplitConfig(patch_size=16, val_fraction=0.3))
    split.to_json(tmp_path / "split.json")
    fs.put_file(str(tmp_path / "split.json"), f"{bucket}/split.json")
    assert "calibration" not in load_checkpoint(ckpt)
    cal = calibrate_checkpoint(ckpt, cube, f"{root}/split.json")
    assert load_checkpoint(ckpt)["calibration"]["temperature"] == pytest.approx(cal.temperature)
