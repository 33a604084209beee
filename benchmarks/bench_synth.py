"""Benchmark the synthetic region generator: wall time and peak RSS versus region size.

Each run is a fresh Python process (``glacierstack synth``) so its peak resident set size is
its own (``resource.getrusage(RUSAGE_CHILDREN)`` after the child exits; includes imports and
Numba's cached-kernel loading). The baseline is the smallest size of the same invocation:
with bounded memory, peak RSS must stay roughly flat while time grows with the area.

Usage::

    python benchmarks/bench_synth.py            # 2.5 and 5 km, 3 runs each (~1 min)
    python benchmarks/bench_synth.py --full     # adds 10 and 20 km (default poiqu region)
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(preset: str, size_km: float, out: Path) -> tuple[float, float]:
    cli = Path(sys.executable).with_name("glacierstack")
    cmd = [str(cli), "synth", "--preset", preset, "--size-km", str(size_km), "--out", str(out),
           "--overwrite", "--no-progress"]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all waited-for children: only trust increases,
    # so sizes are run in increasing order
    return wall, max(after, before) / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="also run 10 and 20 km")
    ap.add_argument("--preset", default="poiqu")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sizes = [2.5, 5.0] + ([10.0, 20.0] if args.full else [])
    tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    rows = []
    try:
        run_once(args.preset, 1.0, tmp / "warm")  # Numba cache, file-system warm-up
        for size in sizes:
            reps = args.repeat if size <= 5 else max(1, args.repeat - 1)
            walls, rss = [], []
            for _ in range(reps):
                w, r = run_once(args.preset, size, tmp / f"r{size}")
                walls.append(w)
                rss.append(r)
            out = tmp / f"r{size}"
            nbytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            rows.append((size, statistics.median(walls), max(rss), nbytes / 2**20, reps))
            shutil.rmtree(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base_t, base_a = rows[0][1], rows[0][0] ** 2
    print(f"# bench_synth  {platform.node()}  nproc={os.cpu_count()}  "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")  # fmt: skip
    print("| size (km) | runs | median wall (s) | s per km² | time ratio vs "
          f"{rows[0][0]:g} km | area ratio | peak RSS (MiB) | output (MiB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for size, wall, rss, mib, reps in rows:
        print(f"| {size:g} | {reps} | {wall:.1f} | {wall / size**2:.2f} | {wall / base_t:.1f} | "
              f"{size**2 / base_a:.0f} | {rss:.0f} | {mib:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
