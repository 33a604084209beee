"""GPU checks, ready to run on a machine with one NVIDIA GPU (< 8 minutes in all).

1. CryoNet ResNet-101 training throughput with AMP: images/s at batch 16, 256 x 256 px,
   30 input layers (random data; forward + backward + optimiser step). Target >= 150 img/s
   on one H100/H200-class GPU.
2. Inference: ``cryonet predict`` (device cuda, AMP) on a 20 km x 20 km cube (2000 x 2000 px,
   30 layers, random values), in km²/min, and the extrapolated time for a 110 x 110 km
   Sentinel-2 tile (target <= 2 minutes).
3. A 1-GPU ``torchrun`` DistributedDataParallel smoke run of ``cryonet train`` (1 epoch on a
   small random cube).

Usage::

    python benchmarks/gpu_check.py --work /tmp/gpu_check --out gpu_check.json

Prints one JSON object; exits non-zero if no CUDA device is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def training_throughput(steps: int = 30, warmup: int = 8) -> dict:
    import torch

    from cryonet.models import create_model

    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    model = create_model("cryonet", in_channels=30, num_classes=5, encoder="resnet101").to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda")
    x = torch.randn(16, 30, 256, 256, device=dev)
    y = torch.randint(0, 5, (16, 256, 256), device=dev)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {
        "img_per_s": 16 * steps / dt,
        "target_img_per_s": 150,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "peak_gpu_mem_gb": torch.cuda.max_memory_allocated() / 2**30,
    }


def random_cube(path: Path, size: int, labels: bool = False) -> Path:
    import numpy as np
    import xarray as xr

    from glacierstack.grid import Grid
    from glacierstack.layers import ALL_LAYERS
    from glacierstack.store import write_cube

    grid = Grid("EPSG:32645", (500_000.0, 3_000_000.0, 500_000.0 + 10 * size,
                               3_000_000.0 + 10 * size), 10)  # fmt: skip
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(len(ALL_LAYERS), size, size)).astype(np.float32)
    lab = (rng.integers(0, 5, (size, size)) if labels else np.zeros((size, size))).astype("u1")
    fa = xr.DataArray(feats, dims=("band", "y", "x"), coords={"band": list(ALL_LAYERS),
                                                              **grid.coords()})  # fmt: skip
    la = xr.DataArray(lab, dims=("y", "x"), coords=grid.coords())
    shutil.rmtree(path, ignore_errors=True)
    return write_cube(fa, la, path, grid=grid, chunk_size=512, progress=False)


def inference(work: Path) -> dict:
    import numpy as np
    import torch

    from cryonet.checkpoint import save_checkpoint
    from cryonet.infer import predict
    from glacierstack.classes import class_table
    from glacierstack.layers import ALL_LAYERS

    cube = random_cube(work / "cube20.zarr", 2000)
    torch.manual_seed(0)
    from cryonet.models import create_model

    model = create_model("cryonet", in_channels=30, num_classes=5, encoder="resnet101")
    n = len(ALL_LAYERS)
    ckpt = save_checkpoint(work / "r101.pt", model, bands=list(ALL_LAYERS), mean=np.zeros(n),
                           std=np.ones(n), classes=class_table(), epoch=0)  # fmt: skip
    out = work / "map20.zarr"
    shutil.rmtree(out, ignore_errors=True)
    kw = dict(tile_size=256, overlap=64, batch_size=32, device="cuda", amp=True, progress=False)
    t0 = time.perf_counter()
    predict(ckpt, cube, out, **kw)
    wall = time.perf_counter() - t0
    km2 = 20.0 * 20.0
    rate = km2 / (wall / 60)
    return {"region_km2": km2, "wall_s": wall, "km2_per_min": rate,
            "s2_tile_110km_min": 12100.0 / rate, "target_s2_tile_min": 2.0}  # fmt: skip


def ddp_smoke(work: Path) -> dict:
    cube = random_cube(work / "cube_ddp.zarr", 512, labels=True)
    run = work / "ddp_run"
    shutil.rmtree(run, ignore_errors=True)
    cmd = ["torchrun", "--standalone", "--nproc_per_node=1", "-m", "cryonet.cli", "train",
           "--cube", str(cube), "--out", str(run), "--model", "cryonet-tiny", "--config", "cpu",
           "--epochs", "1", "--batch-size", "8", "--patch-size", "128", "--device", "cuda",
           "--num-workers", "0", "--no-progress"]  # fmt: skip
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd[0] = str(torchrun) if torchrun.exists() else cmd[0]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    return {"returncode": res.returncode, "wall_s": time.perf_counter() - t0,
            "checkpoints": sorted(p.name for p in run.rglob("*.pt")),
            "stderr_tail": res.stderr[-1500:] if res.returncode else ""}  # fmt: skip


def main() -> None:  # noqa: D103
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default="/tmp/gpu_check")
    p.add_argument("--out", default="gpu_check.json")
    a = p.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device visible"}))
        sys.exit(2)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                 "cpus": os.cpu_count()}  # fmt: skip
    t0 = time.perf_counter()
    for name, fn in (("training", training_throughput), ("inference", lambda: inference(work)),
                     ("ddp_smoke", lambda: ddp_smoke(work))):  # fmt: skip
        try:
            res[name] = fn()
        except Exception as e:  # noqa: BLE001 - record and continue with the next check
            res[name] = {"error": f"{type(e).__name__}: {e}"}
        print(name, json.dumps(res[name]), file=sys.stderr, flush=True)
    res["total_s"] = time.perf_counter() - t0
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
