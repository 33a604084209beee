"""Does a Dask cluster pay for itself, and does a 50 km region map in bounded memory?

Measures, in one run, the "done when" ratios of the scale-out issue (see RESULTS.md):

* 12 km synthetic cube (``build_cube``) on ``threads`` (2 threads), ``local:2`` (2 workers x 1
  thread) and ``local:1`` with 2 threads: wall time (cluster start excluded, reported apart),
  tasks per output tile and worker busy fraction (from the task stream), Numba compilations
  inside tasks (worker compile counters after the plugin warmed the kernels vs after the build);
* ``cryonet predict`` on that cube (CPU preset model, random weights): ``threads`` (torch 2
  threads), ``local:1`` (torch 2), ``local:2`` (torch 1 each);
* 50 km region on ``local:2``: cube, predict, export (COG + GeoPackage); time per km², peak RSS
  per process, and the cube compared byte for byte with a threaded build;
* lazy graph construction (no compute) for 25/50/100 km grids: seconds and tasks vs tiles.

Every measurement runs in a fresh child process (its own RSS). Usage::

    python benchmarks/bench_scaling.py --r12 DIR12 --r50 DIR50 --repeats 3 --out results.json
    python benchmarks/bench_scaling.py --r12 DIR --quick      # smoke test: 12 km part, 1 run

``DIR12``/``DIR50`` are ``glacierstack synth --preset poiqu --size-km 12|50`` outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
CUBE_CONFIGS = {"threads": ("threads", 2), "local:2": ("local:2", 1), "local:1": ("local:1", 2)}
PREDICT_CONFIGS = {"threads": ("threads", 1, 2), "local:1": ("local:1", 1, 2),
                   "local:1 torch1": ("local:1", 1, 1), "local:2": ("local:2", 1, 1)}  # fmt: skip
TILE, OVERLAP, PRED_CHUNK = 128, 32, 576  # cpu preset tiling; 6 strides per output chunk


# ------------------------------------------------------------------------------ children
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _region(path: str) -> tuple[str, object, str]:
    import rasterio

    from glacierstack.grid import Grid

    cat = str(Path(path, "catalog.json"))
    tif = next(Path(path).glob("synthetic-truth/*/labels.tif"))  # the region's grid
    with rasterio.open(tif) as src:
        b = src.bounds
        grid = Grid(src.crs.to_string(), (b.left, b.bottom, b.right, b.top), src.res[0])
    return cat, grid, "2018-09-20/2018-11-10"


def _busy(stream: list[dict], nthreads: dict[str, int]) -> dict[str, float]:
    """Per worker: summed task compute time / (threads x span from first start to last end)."""
    spans: dict[str, list[float]] = {}
    busy: dict[str, float] = {}
    for t in stream:
        for ss in t.get("startstops", ()):
            if ss["action"] != "compute":
                continue
            w = t["worker"]
            lo, hi = spans.get(w, [ss["start"], ss["stop"]])
            spans[w] = [min(lo, ss["start"]), max(hi, ss["stop"])]
            busy[w] = busy.get(w, 0.0) + ss["stop"] - ss["start"]
    return {w: busy[w] / (nthreads.get(w, 1) * (hi - lo)) for w, (lo, hi) in spans.items()}


def child_cube(region: str, out: str, scheduler: str, threads: int) -> dict:
    from glacierstack.pipeline import build_cube
    from glacierstack.runner import RunnerOptions, dask_session
    from glacierstack.warmup import compile_count

    cat, grid, dt = _region(region)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    opts = RunnerOptions(scheduler, threads=threads, progress=False)
    res: dict = {"scheduler": scheduler, "threads": threads, "tiles": _tiles(grid.shape),
                 "area_km2": grid.area_km2}  # fmt: skip
    with dask_session(opts) as session:
        res["start_s"] = time.perf_counter() - t0
        client = session.client
        if client is None:
            t1 = time.perf_counter()
            build_cube(cat, out, grid=grid, datetime=dt, runner=session)
            res["wall_s"] = time.perf_counter() - t1
        else:
            from distributed import get_task_stream

            before = client.run(compile_count)
            with get_task_stream(client) as ts:
                t1 = time.perf_counter()
                build_cube(cat, out, grid=grid, datetime=dt, runner=session)
                res["wall_s"] = time.perf_counter() - t1
            after = client.run(compile_count)
            res["compiles_in_tasks"] = sum(after[w] - before[w] for w in after)
            res["compiles_at_worker_start"] = sum(before.values())
            res["tasks"] = len(ts.data)
            res["tasks_per_tile"] = len(ts.data) / res["tiles"]
            res["busy"] = _busy(ts.data, dict(client.nthreads()))
            res["worker_rss_mb"] = list(client.run(_rss_mb).values())
    res["client_rss_mb"] = _rss_mb()
    return res


def _tiles(shape: tuple[int, int], chunk: int = 512) -> int:
    return -(-shape[0] // chunk) * -(-shape[1] // chunk)


def _import_cryonet() -> None:
    import cryonet.infer  # noqa: F401


def child_predict(ckpt: str, cube: str, out: str, scheduler: str, threads: int, torch_t: int):
    from distributed import get_task_stream

    from cryonet.infer import predict
    from glacierstack.runner import RunnerOptions, dask_session

    shutil.rmtree(out, ignore_errors=True)
    kw = dict(tile_size=TILE, overlap=OVERLAP, chunk_size=PRED_CHUNK, device="cpu",
              threads=threads, torch_threads=torch_t, progress=False)  # fmt: skip
    res: dict = {"scheduler": scheduler, "threads": threads, "torch_threads": torch_t}
    if scheduler == "threads":
        t1 = time.perf_counter()
        predict(ckpt, cube, out, scheduler="threads", **kw)
        res["wall_s"] = time.perf_counter() - t1
    else:
        opts = RunnerOptions(scheduler, threads=threads, torch_threads=torch_t, progress=False)
        with dask_session(opts) as session:
            client = session.client
            client.run(_import_cryonet)  # warm workers: torch import excluded, as for threads
            with get_task_stream(client) as ts:
                t1 = time.perf_counter()
                predict(ckpt, cube, out, scheduler=client, **kw)
                res["wall_s"] = time.perf_counter() - t1
            res["busy"] = _busy(ts.data, dict(client.nthreads()))
            res["worker_rss_mb"] = list(client.run(_rss_mb).values())
    res["client_rss_mb"] = _rss_mb()
    return res


def child_export(mosaic: str, outdir: str) -> dict:
    from cryonet.export import export_cog, export_polygons

    t0 = time.perf_counter()
    export_cog(mosaic, Path(outdir, "map.tif"), overwrite=True)
    export_polygons(mosaic, Path(outdir, "outlines.gpkg"), overwrite=True)
    return {"wall_s": time.perf_counter() - t0, "client_rss_mb": _rss_mb()}


def child_checkpoint(path: str) -> dict:
    import numpy as np
    import torch

    from cryonet.checkpoint import save_checkpoint
    from cryonet.models import create_model
    from glacierstack.classes import class_table
    from glacierstack.layers import ALL_LAYERS

    torch.manual_seed(0)
    model = create_model("cryonet-tiny", in_channels=len(ALL_LAYERS), num_classes=5)
    n = len(ALL_LAYERS)
    save_checkpoint(path, model, bands=list(ALL_LAYERS), mean=np.zeros(n), std=np.ones(n),
                    classes=class_table(), epoch=0)  # fmt: skip
    return {"checkpoint": path}


def child_compare(a: str, b: str) -> dict:
    """Bit-identity of two cubes, one Zarr chunk at a time (bounded memory)."""
    import numpy as np
    import zarr

    same = True
    for name in ("features", "labels"):
        x, y = zarr.open_array(a, path=name, mode="r"), zarr.open_array(b, path=name, mode="r")
        cs = x.chunks[-1]
        for i in range(0, x.shape[-2], cs):
            for j in range(0, x.shape[-1], cs):
                sl = (..., slice(i, i + cs), slice(j, j + cs))
                same &= bool(np.array_equal(x[sl], y[sl], equal_nan=True))
    return {"identical": same}


def child_graph(region: str, km: float) -> dict:
    """Lazy graph construction only (nothing read): tile path and lazy xarray path."""
    import numpy as np

    from glacierstack.features import FeatureOptions, compute_features
    from glacierstack.grid import Grid
    from glacierstack.labels import LabelRules
    from glacierstack.layers import ALL_LAYERS
    from glacierstack.stack import plan_reads, read_plan
    from glacierstack.tiles import TilePlan, tile_cube

    cat, g, dt = _region(region)
    r, half = g.resolution, km * 500.0  # a km x km grid centred on the region
    cx = round((g.bounds[0] + g.bounds[2]) / 2 / r) * r
    cy = round((g.bounds[1] + g.bounds[3]) / 2 / r) * r
    grid = Grid(g.crs, (cx - half, cy - half, cx + half, cy + half), r)
    t0 = time.perf_counter()
    reads = plan_reads(cat, grid, dt, ["s2", "dem", "lst", "velocity", "insar"])
    t_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    empty = np.empty(0, dtype=object)
    opts = FeatureOptions(pca=None)
    layers = tuple(n for n in ALL_LAYERS if not n.startswith("PC"))
    feats, labels = tile_cube(TilePlan(reads, grid, layers, opts, LabelRules(), 512), empty, empty)
    n_tile = len(dict(feats.data.__dask_graph__()))
    t_tile = time.perf_counter() - t0
    t0 = time.perf_counter()
    lazy = compute_features(read_plan(reads, grid, chunks=512), layers)
    n_lazy = len(dict(lazy.data.__dask_graph__()))
    t_lazy = time.perf_counter() - t0
    return {
        "km": km, "tiles": _tiles(grid.shape), "plan_s": t_plan, "tile_graph_s": t_tile,
        "tile_graph_tasks": n_tile, "lazy_graph_s": t_lazy, "lazy_graph_tasks": n_lazy,
    }  # fmt: skip


# --------------------------------------------------------------------------------- driver
LOG: list[Path] = []  # each child's result is also appended here as it finishes


def run(*args: str) -> dict:
    load = list(os.getloadavg())
    res = subprocess.run([sys.executable, str(HERE), "--child", *args], capture_output=True,
                         text=True, check=False)  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{res.stderr[-4000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["load_before"], out["load_after"] = load, list(os.getloadavg())  # 1/5/15 min
    for log in LOG:
        with log.open("a") as f:
            f.write(json.dumps({"args": args, "result": out, "time": time.time()}) + "\n")
    return out


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:  # noqa: D103
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--r12", required=True)
    p.add_argument("--r50")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--work", default="/tmp/bench_scaling")
    p.add_argument("--out", default="bench_scaling.json")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--parts", default="cube12,predict12,region50,graph",
                   help="comma-separated subset of cube12,predict12,region50,graph")  # fmt: skip
    a = p.parse_args()
    parts = set(a.parts.split(","))
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    LOG.append(Path(a.out).with_suffix(".jsonl"))
    reps = 1 if a.quick else a.repeats
    out: dict = {"load_before": list(os.getloadavg())}
    run("warm", "")  # fill the Numba on-disk cache once
    ckpt = str(work / "tiny.pt")
    run("checkpoint", ckpt)
    if "cube12" in parts or "predict12" in parts:
        out.update(part_12km(a.r12, work, reps, ckpt, "predict12" in parts))
    if "region50" in parts and a.r50 and not a.quick:
        out["region50"] = part_50km(a.r50, work, ckpt, a.r12)
    if "graph" in parts:
        out["graph"] = []
        for km in (25, 50, 100):
            try:
                out["graph"].append(run("graph", a.r50 or a.r12, str(km)))
            except RuntimeError as e:  # recorded, not fatal
                out["graph"].append({"km": km, "error": str(e)[-300:]})
    out["load_after"] = list(os.getloadavg())
    Path(a.out).write_text(json.dumps(out, indent=1, default=str))
    summary = {k: v for k, v in out.items() if "ratio" in k or "speedup" in k}
    summary |= {k: v for k, v in out.get("region50", {}).items() if k.startswith("s_per_km2")}
    print(json.dumps(summary, indent=1))


def part_12km(r12: str, work: Path, reps: int, ckpt: str, with_predict: bool) -> dict:
    """Cube (and predict) on the 12 km region, schedulers interleaved back to back."""
    out: dict = {}
    cubes: dict[str, list[dict]] = {k: [] for k in CUBE_CONFIGS}
    for _ in range(reps):  # interleaved, back to back
        for name, (sched, thr) in CUBE_CONFIGS.items():
            cubes[name].append(run("cube", r12, str(work / f"c12-{name}.zarr"), sched, str(thr)))
            print(name, cubes[name][-1]["wall_s"], file=sys.stderr)
    out["cube12"] = cubes
    base = _median(cubes["threads"], "wall_s")
    out["cube12_ratio"] = {k: _median(v, "wall_s") / base for k, v in cubes.items()}
    out["cube12_identical"] = run("compare", str(work / "c12-threads.zarr"),
                                  str(work / "c12-local:2.zarr"))["identical"]  # fmt: skip
    if not with_predict:
        return out
    preds: dict[str, list[dict]] = {k: [] for k in PREDICT_CONFIGS}
    for _ in range(reps):
        for name, (sched, thr, tt) in PREDICT_CONFIGS.items():
            mosaic = str(work / f"m12-{name}.zarr")
            cube = str(work / "c12-threads.zarr")
            preds[name].append(run("predict", ckpt, cube, mosaic, sched, str(thr), str(tt)))
            print("predict", name, preds[name][-1]["wall_s"], file=sys.stderr)
    out["predict12"] = preds
    pm = {k: _median(v, "wall_s") for k, v in preds.items()}
    out["predict12_speedup_2v1"] = pm["local:1 torch1"] / pm["local:2"]  # same worker config
    out["predict12_speedup_2v1_torch2"] = pm["local:1"] / pm["local:2"]  # 1 worker, 2 threads
    out["predict12_ratio_to_threads"] = pm["local:2"] / pm["threads"]
    return out


def part_50km(r50: str, work: Path, ckpt: str, r12: str) -> dict:
    """50 km on ``local:2`` (cube, predict, export, threaded cube compared), 12 km as reference.

    The same steps (cube ``local:2``, predict ``local:2``) run on the 12 km region right before
    and right after each 50 km step, so the time per km² is compared under the same load; the
    reference is the mean of the two 12 km runs.
    """
    big: dict = {}
    c12, m12 = str(work / "c12-ref.zarr"), str(work / "m12-ref.zarr")

    def cube12() -> dict:
        return run("cube", r12, c12, "local:2", "1")

    def predict12() -> dict:
        return run("predict", ckpt, c12, m12, "local:2", "1", "1")

    big["cube12_before"] = cube12()
    big["cube_local2"] = run("cube", r50, str(work / "c50-l2.zarr"), "local:2", "1")
    print("cube50 local:2", big["cube_local2"]["wall_s"], file=sys.stderr)
    big["cube12_after"] = cube12()
    big["predict12_before"] = predict12()
    big["predict"] = run("predict", ckpt, str(work / "c50-l2.zarr"), str(work / "m50.zarr"),
                         "local:2", "1", "1")  # fmt: skip
    print("predict50", big["predict"]["wall_s"], file=sys.stderr)
    big["predict12_after"] = predict12()
    a12, a50 = big["cube12_before"]["area_km2"], big["cube_local2"]["area_km2"]
    for step, k50, k12 in (("cube", "cube_local2", "cube12"), ("predict", "predict", "predict12")):
        ref = [big[f"{k12}_{w}"]["wall_s"] / a12 for w in ("before", "after")]
        per = big[k50]["wall_s"] / a50
        big[f"s_per_km2_{step}"] = {"50km": per, "12km_before": ref[0], "12km_after": ref[1],
                                    "ratio_to_12km_mean": per / statistics.mean(ref)}  # fmt: skip
    big["export"] = run("export", str(work / "m50.zarr"), str(work))
    big["cube_threads"] = run("cube", r50, str(work / "c50-th.zarr"), "threads", "2")
    print("cube50 threads", big["cube_threads"]["wall_s"], file=sys.stderr)
    big["identical"] = run("compare", str(work / "c50-l2.zarr"), str(work / "c50-th.zarr"))
    return big


def child_main(argv: list[str]) -> None:
    cmd, *args = argv
    if cmd == "warm":
        from glacierstack.warmup import warm_kernels

        res: dict = {"compiled": warm_kernels()}
    elif cmd == "cube":
        res = child_cube(args[0], args[1], args[2], int(args[3]))
    elif cmd == "predict":
        res = child_predict(args[0], args[1], args[2], args[3], int(args[4]), int(args[5]))
    elif cmd == "export":
        res = child_export(*args)
    elif cmd == "checkpoint":
        res = child_checkpoint(args[0])
    elif cmd == "compare":
        res = child_compare(*args)
    else:
        res = child_graph(args[0], float(args[1]))
    print(json.dumps(res, default=str))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
    else:
        main()
