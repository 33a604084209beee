"""cube -> train -> predict -> export with every store on s3://, on a LocalCluster.

The S3-compatible server is a real one on 127.0.0.1 (moto in server mode). No ``AWS_*``
variable is set: the credentials and endpoint reach the client through
``glacierstack.storage.configure`` / ``--storage-option`` and the Dask workers through the
runner's worker plugin. The workers run with their own temporary folder, so nothing can pass
between client and workers through a shared local directory; every output must end up in the
bucket and no store or export may appear on local disk.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import fsspec
import numpy as np
import pytest
import rasterio
import xarray as xr

from cryonet.export import export_cog, export_polygons
from cryonet.infer import open_mosaic
from cryonet.training import TrainConfig, train
from glacierstack.grid import Grid
from glacierstack.runner import RunnerOptions
from glacierstack.store import open_cube, write_cube

GRID = Grid("EPSG:32645", (400_000, 3_100_000, 401_280, 3_100_960), 10)  # 96 x 128 px


def _inputs() -> tuple[xr.DataArray, xr.DataArray]:
    h, w = GRID.shape
    rng = np.random.default_rng(1)
    lab = np.zeros((h, w), "u1")
    lab[20:70, 30:100], lab[60:90, 90:120], lab[5:15, 5:25] = 1, 2, 3
    arr = rng.normal(size=(3, h, w)).astype("f4") + lab[None] * np.array([[[1.0]], [[-1]], [[2]]])
    feats = xr.DataArray(arr.astype("f4"), dims=("band", "y", "x"),
                         coords={"band": ["B02", "B03", "NDVI"], **GRID.coords()})  # fmt: skip
    return feats, xr.DataArray(lab, dims=("y", "x"), coords=GRID.coords())


def _local_outputs(*folders: Path) -> list[Path]:
    """Stores/exports/run files on local disk (checkpoint downloads in the cache excepted)."""
    return [p for f in folders for p in f.rglob("*")
            if (p.suffix in (".zarr", ".tif", ".gpkg", ".pt") or p.name == ".zmetadata")
            and "glacierstack-cache-" not in str(p)]  # fmt: skip


@pytest.mark.timeout(600)
def test_cube_train_predict_export_all_on_s3(s3, tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    root = s3["root"]
    client_tmp, worker_tmp = tmp_path / "client-tmp", tmp_path / "worker-tmp"
    client_tmp.mkdir(), worker_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(client_tmp))
    cube_url, run_url, mosaic_url = f"{root}/cube.zarr", f"{root}/run", f"{root}/mosaic.zarr"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                     local_directory=str(worker_tmp), env={"TMPDIR": str(worker_tmp)}) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        # 1. cube, written by the workers
        feats, labels = _inputs()
        write_cube(feats, labels, cube_url, grid=GRID, chunk_size=32,
                   runner=RunnerOptions(scheduler=client, progress=False))  # fmt: skip
        assert open_cube(cube_url).rio.crs.to_epsg() == 32645
        # 2. training run directory on s3 (staged locally, uploaded)
        cfg = TrainConfig(model="unet-tiny", encoder=None, patch_size=32, batch_size=4,
                          epochs=1, num_workers=0, device="cpu", seed=3)  # fmt: skip
        res = train(cube_url, run_url, cfg, progress=False)
        assert res.best_checkpoint == f"{run_url}/checkpoints/best.pt"
        # 3. predict through the CLI (a fresh process: options only from
        # --storage-option), tasks on the same workers
        cli = [sys.executable, "-m", "cryonet.cli", *s3["cli"]]
        common = dict(timeout=400, capture_output=True, text=True)
        out = subprocess.run([*cli, "predict", "--checkpoint", str(res.best_checkpoint),
                              "--cube", cube_url, "--out", mosaic_url, "--device", "cpu",
                              "--tile-size", "32", "--overlap", "8", "--chunk-size", "48",
                              "--scheduler", cluster.scheduler_address, "--no-progress"],
                             **common)  # fmt: skip
        assert out.returncode == 0 and mosaic_url in out.stdout, out.stderr[-3000:]
    export_cog(mosaic_url, f"{root}/classes.tif")  # local temporary file + upload
    export_polygons(mosaic_url, f"{root}/outlines.gpkg")

    fs = fsspec.filesystem("s3")
    bucket = root.removeprefix("s3://")
    listed = {p.removeprefix(bucket + "/") for p in fs.ls(bucket, refresh=True)}
    assert {"cube.zarr", "run", "mosaic.zarr", "classes.tif", "classes.tif.aux.xml",
            "outlines.gpkg"} <= listed  # fmt: skip
    assert fs.exists(f"{bucket}/run/checkpoints/best.pt")
    ds = open_mosaic(mosaic_url)
    assert ds.rio.crs.to_epsg() == 32645 and ds.classes.shape == GRID.shape
    local = tmp_path / "check"
    local.mkdir()
    fs.get_file(f"{bucket}/classes.tif", str(local / "classes.tif"))
    with rasterio.open(local / "classes.tif") as src:
        assert src.crs.to_epsg() == 32645
        np.testing.assert_array_equal(src.read(1), ds.classes.values.astype("u1"))
    assert _local_outputs(client_tmp, worker_tmp) == []
