"""Benchmark 4 (inference) and the inference half of benchmark 5 (1 vs 2 Dask workers).

Measures ``cryonet.infer.predict`` on synthetic 30-layer Zarr cubes (random features; the
speed of a CNN does not depend on the values):

* **throughput** in km² per minute (10 m pixels) for the CPU preset (``cryonet-tiny``, 128 px
  tiles, the size it is trained on) and for the paper model (CryoNet, UNet++ / ResNet-101 /
  scSE, 256 px tiles) at a small region size;
* **overhead** of tiling + normalisation + blending + Zarr writing, as a fraction of the pure
  model-forward time of *the same number of tiles* in the same batch size (random tensors,
  nothing else); also the tile *redundancy* (tiles run / tiles of the global grid) that comes
  from chunk halos;
* **peak RSS** (process tree, sampled) of a predict run in a fresh subprocess at two region
  sizes with the same chunk size: it must not grow with the region;
* **scaling**: the same prediction on the threaded scheduler and on a ``LocalCluster`` with 1
  and 2 single-threaded worker processes (torch threads = cores / workers).

Usage::

    python benchmarks/bench_infer.py                      # small sizes, a few minutes on 2 cores
    python benchmarks/bench_infer.py --full               # larger regions
    python benchmarks/bench_infer.py --device cuda --amp  # GPU figures
    python benchmarks/bench_infer.py --md benchmarks/results/infer_run.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PeakRSS  # benchmarks/_common.py; the scripts run from benchmarks/

HERE = Path(__file__).resolve()
MODELS = {
    # label: (create_model name, encoder, tile size, overlap)
    "cpu-preset": ("cryonet-tiny", None, 128, 32),
    "paper": ("cryonet", "resnet101", 256, 64),
}


# ------------------------------------------------------------------------------- helpers
def make_cube(path: Path, h: int, w: int, chunk: int = 512) -> Path:
    """A 30-layer cube in the glacierstack layout, written chunk by chunk (bounded memory)."""
    import dask.array as da
    import numpy as np
    import xarray as xr

    from glacierstack.grid import Grid
    from glacierstack.layers import ALL_LAYERS
    from glacierstack.store import write_cube

    if path.exists():
        return path
    grid = Grid(
        "EPSG:32645", (400_000.0, 3_100_000.0, 400_000.0 + 10 * w, 3_100_000.0 + 10 * h), 10
    )
    rs = da.random.RandomState(0)
    feats = rs.standard_normal((len(ALL_LAYERS), h, w), chunks=(len(ALL_LAYERS), chunk, chunk))
    fa = xr.DataArray(
        feats.astype(np.float32),
        dims=("band", "y", "x"),
        coords={"band": list(ALL_LAYERS), **grid.coords()},
    )
    labels = xr.DataArray(
        da.zeros((h, w), dtype=np.uint8, chunks=chunk), dims=("y", "x"), coords=grid.coords()
    )
    return write_cube(fa, labels, path, grid=grid, chunk_size=chunk, progress=False)


class TimedModule:
    """Wrap a module and add up the wall time of its forward calls (synchronised on CUDA)."""

    def __init__(self, module) -> None:
        self.module = module
        self.seconds = 0.0

    def __call__(self, x):
        import torch

        t0 = time.perf_counter()
        y = self.module(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - t0
        return y


def build_source(label: str, device: str, timed: bool = False):
    """The benchmark model as an InMemoryModel (random init, fixed seed)."""
    import numpy as np
    import torch

    from cryonet.infer import InMemoryModel, LoadedModel
    from cryonet.models import create_model
    from glacierstack.layers import ALL_LAYERS

    name, encoder, _, _ = MODELS[label]
    torch.manual_seed(0)
    model = create_model(name, in_channels=len(ALL_LAYERS), num_classes=5, encoder=encoder).eval()
    model = model.to(device)
    module = TimedModule(model) if timed else model
    n = len(ALL_LAYERS)
    loaded = LoadedModel(module, tuple(ALL_LAYERS), np.zeros(n), np.ones(n))
    return InMemoryModel(loaded, key=f"bench:{label}:{timed}")


def tiles_run(shape: tuple[int, int], chunk: int, tile: int, overlap: int) -> tuple[int, int]:
    """(tiles run by predict over all chunks, tiles of the global grid)."""
    from cryonet.infer import chunk_plan, tile_starts

    sy, sx = tile_starts(shape[0], tile, overlap), tile_starts(shape[1], tile, overlap)
    run = 0
    for _, _, ys, xs in chunk_plan(shape, chunk):
        ny = sum(1 for s in sy if s < ys.stop and s + tile > ys.start)
        nx = sum(1 for s in sx if s < xs.stop and s + tile > xs.start)
        run += ny * nx
    return run, len(sy) * len(sx)


def forward_only(source, n_tiles: int, tile: int, batch: int, device: str, amp: bool) -> float:
    """Seconds for ``n_tiles`` forward passes on random tensors (batch as in predict)."""
    import torch

    from cryonet.infer import load_cached

    dev = torch.device(device)
    model = load_cached(source, dev).module
    model = getattr(model, "module", model)  # unwrap TimedModule
    x = torch.randn(batch, 30, tile, tile, device=dev)
    sizes = [batch] * (n_tiles // batch) + ([n_tiles % batch] if n_tiles % batch else [])

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        model(x)  # warm-up
        sync()
        t0 = time.perf_counter()
        for n in sizes:
            if amp:
                dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
                with torch.autocast(device_type=dev.type, dtype=dtype):
                    model(x[:n])
            else:
                model(x[:n])
        sync()
    return time.perf_counter() - t0


def timed_predict(source, cube: Path, out: Path, **kw) -> float:
    from cryonet.infer import predict

    t0 = time.perf_counter()
    predict(source, cube, out, overwrite=True, progress=False, **kw)
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------- child mode
def _warm_worker() -> None:
    import cryonet.infer  # noqa: F401


def child(args: argparse.Namespace) -> None:
    """Run one predict in this fresh process and print JSON (wall, peak RSS of the tree)."""
    import torch

    from cryonet.infer import load_cached

    source = build_source(args.model, args.device)
    load_cached(source, torch.device(args.device))
    _, _, tile, overlap = MODELS[args.model]
    client = cluster = None
    startup = 0.0
    if args.child_workers:  # start the cluster outside the timed section (reported separately)
        from distributed import Client, LocalCluster

        t0 = time.perf_counter()
        cluster = LocalCluster(
            n_workers=args.child_workers, threads_per_worker=1, dashboard_address=None
        )
        client = Client(cluster)
        client.run(_warm_worker)  # imports torch/cryonet in each worker, as a real run has
        startup = time.perf_counter() - t0
    threads = args.child_threads or max(1, (os.cpu_count() or 1) // (args.child_workers or 1))
    with PeakRSS() as rss:
        base = rss.peak
        wall = timed_predict(
            source,
            Path(args.child_cube),
            Path(args.child_out),
            tile_size=tile,
            overlap=overlap,
            batch_size=args.batch_size,
            chunk_size=args.chunk,
            device=args.device,
            amp=args.amp,
            scheduler=client,
            torch_threads=threads if (client is not None or args.child_threads) else None,
        )
    if client is not None:
        client.close()
        cluster.close()
    result = {"wall_s": wall, "startup_s": startup}
    result.update(peak_rss_mb=rss.peak / 2**20, base_rss_mb=base / 2**20)
    print(json.dumps(result))


def run_child(
    args: argparse.Namespace,
    cube: Path,
    out: Path,
    chunk: int,
    workers: int | None,
    threads: int | None = None,
) -> dict:
    cmd = [
        sys.executable,
        str(HERE),
        "--child",
        "--model",
        "cpu-preset",
        "--device",
        args.device,
        "--batch-size",
        str(args.batch_size),
        "--chunk",
        str(chunk),
        "--child-cube",
        str(cube),
        "--child-out",
        str(out),
    ]
    if workers:
        cmd += ["--child-workers", str(workers)]
    if threads:
        cmd += ["--child-threads", str(threads)]
    if args.amp:
        cmd.append("--amp")
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"child failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------- main
def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if "Model name" in ln), "?"
        )
    except OSError:
        model = platform.processor()
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    threads = torch.get_num_threads()
    return f"{model}, nproc={os.cpu_count()}, torch {torch.__version__} ({threads} thr), GPU: {gpu}"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--full", action="store_true", help="larger regions")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="autocast forward (float16 on CUDA)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--torch-threads", type=int, default=None, help="torch threads for the throughput runs"
    )
    ap.add_argument(
        "--skip", nargs="*", default=[], choices=["cpu-preset", "paper", "rss", "scaling"]
    )
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None, help="append a Markdown table here")
    # child mode (internal)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="cpu-preset", help=argparse.SUPPRESS)
    ap.add_argument("--chunk", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-cube", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    ap.add_argument("--child-workers", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-threads", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    import torch

    gpu = args.device.startswith("cuda")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-infer-"))
    work.mkdir(parents=True, exist_ok=True)
    # region sides (pixels, 10 m): throughput per model, RSS pair, scaling
    size = {
        "cpu-preset": 2048 if args.full else 512,
        "paper": (2048 if gpu else 768) if args.full else (1024 if gpu else 384),
    }
    if gpu and not args.full:
        size["cpu-preset"] = 2048
    rows: list[str] = []
    log = print
    log(f"# machine: {machine()}")
    log(f"# date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load avg {os.getloadavg()}")
    log(f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}")

    # ---- 4a/4b: throughput and overhead vs forward-only
    for label in ["cpu-preset", "paper"]:
        if label in args.skip:
            continue
        name, enc, tile, overlap = MODELS[label]
        n = size[label]
        cube = make_cube(work / f"cube_{n}.zarr", n, n)
        source = build_source(label, args.device, timed=True)
        from cryonet.infer import TilingOptions, default_chunk_size, load_cached

        timer = load_cached(source, torch.device(args.device)).module
        chunk = default_chunk_size(TilingOptions(tile, overlap))
        n_run, n_grid = tiles_run((n, n), chunk, tile, overlap)
        kw = dict(
            tile_size=tile,
            overlap=overlap,
            batch_size=args.batch_size,
            chunk_size=chunk,
            device=args.device,
            amp=args.amp,
        )
        timed_predict(source, cube, work / f"out_{label}.zarr", **kw)  # warm-up (not counted)
        t_pred, t_fwd, t_in = [], [], []
        for r in range(args.repeats):
            timer.seconds = 0.0
            t_pred.append(timed_predict(source, cube, work / f"out_{label}.zarr", **kw))
            t_in.append(timer.seconds)
            t_fwd.append(forward_only(source, n_run, tile, args.batch_size, args.device, args.amp))
            log(
                f"  {label} repeat {r}: predict {t_pred[-1]:.2f} s (forward inside "
                f"{t_in[-1]:.2f} s), forward-only {t_fwd[-1]:.2f} s"
            )
        mp, mf, mi = statistics.median(t_pred), statistics.median(t_fwd), statistics.median(t_in)
        km2 = n * n * 100 / 1e6
        ov = [(p - f) / f for p, f in zip(t_pred, t_fwd, strict=True)]
        ov_in = statistics.median((p - i) / i for p, i in zip(t_pred, t_in, strict=True))
        amp = " AMP" if args.amp else ""
        runs = ", ".join(f"{100 * o:.0f}" for o in ov)
        rows.append(
            f"| throughput | {label} ({name}, {enc or 'preset'}) "
            f"| {n}x{n} px ({km2:.2f} km²), tile {tile}/{overlap}, chunk {chunk}, "
            f"batch {args.batch_size}, {args.device}{amp}, torch {torch.get_num_threads()} thr "
            f"| predict {mp:.2f} s = **{km2 / (mp / 60):.1f} km²/min**; forward-only {mf:.2f} s "
            f"for the same {n_run} tiles -> overhead **{100 * statistics.median(ov):.0f} %** "
            f"(runs: {runs} %); time outside the forward calls inside predict: "
            f"**{100 * ov_in:.0f} %** of their {mi:.2f} s; "
            f"tiles run / grid tiles {n_run}/{n_grid} |"
        )
        log(rows[-1])

    # ---- 4c: peak RSS at two region sizes (fresh subprocess each), chunk fixed
    if "rss" not in args.skip:
        _, _, tile, overlap = MODELS["cpu-preset"]
        chunk = 2 * (tile - overlap)
        base = 768 if args.full else 384
        res = {}
        for h, w in [(base, base), (base, 2 * base)]:
            cube = make_cube(work / f"cube_{h}x{w}.zarr", h, w, chunk=chunk)
            res[(h, w)] = run_child(args, cube, work / f"rss_{h}x{w}.zarr", chunk, None)
            log(f"  rss {h}x{w}: {res[(h, w)]}")
        (a, ra), (b, rb) = res.items()
        rows.append(
            f"| peak RSS | cpu-preset, chunk {chunk}, tile {tile}/{overlap}, threaded "
            f"| {a[0]}x{a[1]} px: {ra['peak_rss_mb']:.0f} MB "
            f"(after model load {ra['base_rss_mb']:.0f} MB); "
            f"{b[0]}x{b[1]} px: {rb['peak_rss_mb']:.0f} MB "
            f"(after load {rb['base_rss_mb']:.0f} MB); "
            f"ratio **{rb['peak_rss_mb'] / ra['peak_rss_mb']:.2f}** for 2x the region |"
        )
        log(rows[-1])

    # ---- 5: scaling, threaded vs LocalCluster with 1 and 2 workers (fresh subprocess each)
    if "scaling" not in args.skip:
        _, _, tile, overlap = MODELS["cpu-preset"]
        chunk = 2 * (tile - overlap)
        n = 1536 if args.full else 768
        cube = make_cube(work / f"cube_{n}x{n}_c{chunk}.zarr", n, n, chunk=chunk)
        out = {}
        cores = os.cpu_count() or 1
        configs = [  # label, LocalCluster workers (None: threaded scheduler), torch threads
            (f"threads, torch {cores} thr", None, cores),
            ("threads, torch 1 thr", None, 1),
            ("LocalCluster 1 worker x 1 thr", 1, 1),
            ("LocalCluster 2 workers x 1 thr", 2, 1),
        ]
        for label, workers, threads in configs:
            runs = [
                run_child(args, cube, work / f"scale_{workers}.zarr", chunk, workers, threads)
                for _ in range(max(1, args.repeats - 1))
            ]
            out[label] = statistics.median(r["wall_s"] for r in runs)
            up = statistics.median(r["startup_s"] for r in runs)
            log(
                f"  scaling {label}: {[round(r['wall_s'], 2) for r in runs]} s, start-up {up:.1f} s"
            )
        t1 = out["LocalCluster 1 worker x 1 thr"]
        t2 = out["LocalCluster 2 workers x 1 thr"]
        rows.append(
            f"| scaling | cpu-preset, {n}x{n} px, chunk {chunk} "
            f"({math.ceil(n / chunk) ** 2} tasks; wall excl. cluster start-up) | "
            + "; ".join(f"{k}: {v:.1f} s" for k, v in out.items())
            + f"; 2 vs 1 worker (1 thread each) speed-up **{t1 / t2:.2f}x** |"
        )
        log(rows[-1])

    table = "\n".join(["| what | setup | result |", "|---|---|---|", *rows])
    print(table)
    if args.md:
        with args.md.open("a") as f:
            f.write(
                f"\n<!-- {machine()} ; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} -->\n"
            )
            f.write(table + "\n")


if __name__ == "__main__":
    main()
