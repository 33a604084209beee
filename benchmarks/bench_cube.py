"""Benchmark 2 (feature cube) and the cube half of benchmark 5 (1 vs 2 Dask workers).

Builds the full 30-layer cube of the synthetic poiqu region from its local static STAC catalog
into Zarr and reports, per region size:

* wall time and peak RSS of the build (each build runs in a fresh subprocess; RSS is sampled
  over the whole process tree, so LocalCluster workers are included),
* the raw I/O floor measured on the same files: (a) reading + decoding every COG the cube was
  built from and writing the same arrays to a Zarr store with the cube's chunks and
  compressor, no other computation; (b) a plain byte copy of the COG files and the cube's
  chunk files (no decoding or encoding at all),
* peak RSS at two region sizes (it should not grow with the region),
* the same build on a LocalCluster with 1 and 2 single-threaded worker processes.

Usage::

    python benchmarks/bench_cube.py              # 3 km and 6 km regions (about a minute)
    python benchmarks/bench_cube.py --full       # 10 km and the default 20 km region
    python benchmarks/bench_cube.py --full --md benchmarks/results/cube.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PeakRSS  # benchmarks/_common.py; the scripts run from benchmarks/

HERE = Path(__file__).resolve()


# ------------------------------------------------------------------------- measurement helpers
def _child(args: list[str]) -> dict:
    """Run this script in a fresh interpreter and parse its JSON result line."""
    res = subprocess.run(
        [sys.executable, str(HERE), *args], capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------- child commands
def cmd_build(catalog: str, grid_json: str, datetime: str, out: str, scheduler: str | None) -> None:
    from glacierstack.grid import Grid
    from glacierstack.pipeline import build_cube
    from glacierstack.runner import RunnerOptions

    grid = Grid.from_attrs(json.loads(grid_json))
    shutil.rmtree(out, ignore_errors=True)
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        runner = RunnerOptions(scheduler=scheduler, progress=False)
        build_cube(catalog, out, grid=grid, datetime=datetime or None, runner=runner)
        wall = time.perf_counter() - t0
    print(json.dumps({"wall_s": wall, "peak_rss_mb": rss.peak / 2**20}))


def cmd_floor(catalog_dir: str, cube: str, tmp: str) -> None:
    """Raw I/O floor on the files the cube was built from (see module docstring)."""
    import rasterio
    import zarr

    from glacierstack.store import open_cube

    ds = open_cube(cube)
    used = set(ds.attrs["stac_items"])
    cogs = sorted(
        p for p in Path(catalog_dir).rglob("*.tif") if any(item in str(p) for item in used)
    )
    if not cogs:  # fall back to every COG of the catalog
        cogs = sorted(Path(catalog_dir).rglob("*.tif"))
    feats = ds.features.values  # the cube's bytes, decoded (not timed)
    labels = ds.labels.values
    enc = zarr.open_array(cube, path="features", mode="r")
    out = Path(tmp) / "floor.zarr"
    shutil.rmtree(out, ignore_errors=True)
    # (a) decode COGs + encode the same Zarr arrays
    t0 = time.perf_counter()
    nbytes_cog = 0
    for p in cogs:
        with rasterio.open(p) as src:
            nbytes_cog += src.read().nbytes
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    comp = enc.compressors
    root = zarr.open_group(str(out), mode="w", zarr_format=2)
    a = root.create_array("features", shape=feats.shape, chunks=enc.chunks, dtype="f4",
                          compressors=comp)  # fmt: skip
    a[...] = feats
    b = root.create_array("labels", shape=labels.shape, chunks=enc.chunks[1:], dtype="u1",
                          compressors=comp)  # fmt: skip
    b[...] = labels
    t_write = time.perf_counter() - t0
    # (b) byte copy of the same files (no decoding / encoding)
    shutil.rmtree(out, ignore_errors=True)
    copy_dir = Path(tmp) / "copy"
    shutil.rmtree(copy_dir, ignore_errors=True)
    copy_dir.mkdir()
    files = cogs + [p for p in Path(cube).rglob("*") if p.is_file()]
    t0 = time.perf_counter()
    nbytes = 0
    for i, p in enumerate(files):
        data = p.read_bytes()
        nbytes += len(data)
        (copy_dir / f"{i}").write_bytes(data)
    t_copy = time.perf_counter() - t0
    shutil.rmtree(copy_dir, ignore_errors=True)
    print(json.dumps({
        "read_decode_s": t_read, "encode_write_s": t_write, "byte_copy_s": t_copy,
        "n_cogs": len(cogs), "cog_decoded_mb": nbytes_cog / 2**20, "copied_mb": nbytes / 2**20,
        "cube_uncompressed_mb": (feats.nbytes + labels.nbytes) / 2**20,
    }))  # fmt: skip


def cmd_region(out: str, size_km: float, seed: int) -> None:
    """Generate the synthetic region (or reuse one generated earlier into the same workdir)."""
    info = Path(f"{out}.json")
    if info.is_file() and Path(out, "catalog.json").is_file():
        print(info.read_text())
        return
    from glacierstack.synthetic import generate_region

    t0 = time.perf_counter()
    region = generate_region("poiqu", out, size_km=size_km, seed=seed, progress=False,
                             overwrite=True)  # fmt: skip
    text = json.dumps({
        "catalog": str(region.catalog_path), "grid": region.grid.to_attrs(),
        "datetime": str(region.datetime), "gen_s": time.perf_counter() - t0,
    })  # fmt: skip
    info.write_text(text)
    print(text)


# ------------------------------------------------------------------------- driver
def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if "Model name" in ln), "?"
        )
    except FileNotFoundError:  # pragma: no cover
        model = platform.processor()
    import psutil

    return (
        f"{model}, {os.cpu_count()} logical CPUs (nproc), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, Python {platform.python_version()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--full", action="store_true", help="10 km and 20 km regions")
    ap.add_argument("--sizes", type=float, nargs=2, help="two region sizes in km")
    ap.add_argument("--repeats", type=int, default=None, help="builds per size (median)")
    ap.add_argument("--no-workers", action="store_true", help="skip the LocalCluster runs")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None, help="append a Markdown report here")
    args = ap.parse_args()
    sizes = args.sizes or ((10.0, 20.0) if args.full else (3.0, 6.0))
    repeats = args.repeats or 2
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_cube_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in sizes:
        reg = _child(["_region", str(work / f"poiqu_{size:g}km"), str(size), "0"])
        grid_json = json.dumps(reg["grid"])
        cube = str(work / f"cube_{size:g}km.zarr")

        def build(sched: str, reg=reg, grid_json=grid_json, cube=cube) -> dict:
            return _child(["_build", reg["catalog"], grid_json, reg["datetime"], cube, sched])

        builds = [build("threads") for _ in range(repeats)]
        floor = [_child(["_floor", str(Path(reg["catalog"]).parent), cube, str(work)])
                 for _ in range(repeats)]  # fmt: skip
        row = {
            "size_km": size,
            "shape": reg["grid"]["shape"],
            "wall_s": statistics.median(b["wall_s"] for b in builds),
            "walls": [round(b["wall_s"], 1) for b in builds],
            "peak_rss_mb": statistics.median(b["peak_rss_mb"] for b in builds),
            "floor_a_s": statistics.median(f["read_decode_s"] + f["encode_write_s"] for f in floor),
            "floor_b_s": statistics.median(f["byte_copy_s"] for f in floor),
            "floor": floor[0],
        }
        if not args.no_workers and size == sizes[-1]:
            for n in (1, 2):
                runs = [build(f"local:{n}") for _ in range(repeats if args.full else 1)]
                row[f"local{n}_wall_s"] = statistics.median(r["wall_s"] for r in runs)
                row[f"local{n}_rss_mb"] = statistics.median(r["peak_rss_mb"] for r in runs)
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = render(rows, repeats, " ".join(sys.argv[1:]), repeats if args.full else 1)
    print(report)
    if args.md:
        with args.md.open("a") as f:
            f.write(report + "\n")


def render(rows: list[dict], repeats: int, argv: str, worker_repeats: int) -> str:
    lines = [
        f"### Feature cube build ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"Machine: {machine()}.",
        f"Command: `python benchmarks/bench_cube.py {argv}`; median of {repeats} runs, each in a "
        "fresh process (threaded scheduler unless stated).",
        "",
        "| region | grid (px) | build wall s (runs) | peak RSS MB | I/O floor (a) s | ratio to (a) "
        "| byte-copy floor (b) s | ratio to (b) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size_km']:g} km | {r['shape'][0]} x {r['shape'][1]} | {r['wall_s']:.1f} "
            f"({', '.join(map(str, r['walls']))}) | {r['peak_rss_mb']:.0f} | "
            f"{r['floor_a_s']:.2f} | {r['wall_s'] / r['floor_a_s']:.1f}x | {r['floor_b_s']:.2f} | "
            f"{r['wall_s'] / max(r['floor_b_s'], 1e-9):.0f}x |"
        )
    f = rows[-1]["floor"]
    lines += [
        "",
        f"Floor inputs ({rows[-1]['size_km']:g} km): {f['n_cogs']} COGs, {f['cog_decoded_mb']:.0f} "
        f"MB decoded; cube {f['cube_uncompressed_mb']:.0f} MB uncompressed; "
        f"{f['copied_mb']:.0f} MB of files copied in (b).",
    ]
    last = rows[-1]
    if "local1_wall_s" in last:
        lines += [
            "",
            f"Scaling ({last['size_km']:g} km, LocalCluster, 1 thread per worker process; "
            f"median of {worker_repeats} run(s)):",
            "",
            "| scheduler | wall s | peak RSS MB (all processes) |",
            "|---|---|---|",
            f"| threads (default) | {last['wall_s']:.1f} | {last['peak_rss_mb']:.0f} |",
            *(
                f"| LocalCluster {n} worker(s) | {last[f'local{n}_wall_s']:.1f} | "
                f"{last[f'local{n}_rss_mb']:.0f} |"
                for n in (1, 2)
            ),
            "",
            f"Speed-up 1 -> 2 workers: {last['local1_wall_s'] / last['local2_wall_s']:.2f}x.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        cmd, rest = sys.argv[1], sys.argv[2:]
        if cmd == "_build":
            cmd_build(*rest)
        elif cmd == "_floor":
            cmd_floor(*rest)
        elif cmd == "_region":
            cmd_region(rest[0], float(rest[1]), int(rest[2]))
        else:
            raise SystemExit(f"unknown command {cmd}")
    else:
        main()
