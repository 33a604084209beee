"""Patch-loader throughput: our loader vs the NumPy floor vs naive xbatcher vs the model.

Measures patches/s for

* ``numpy floor``       -- slicing + copying patches from an in-memory NumPy array (no
                           normalisation, no torch): the upper bound of any loader;
* ``ours (memory)``     -- ``cryonet.data`` PatchDataset + DataLoader, cube held in memory
                           (the default for cubes up to 4 GiB), 0 and 2 workers;
* ``ours (zarr)``       -- the same, reading chunk blocks from Zarr through the per-worker
                           chunk cache (the mode for cubes larger than memory);
* ``xbatcher naive``    -- ``xbatcher.BatchGenerator`` over the lazily opened cube, one
                           ``generator[i]`` per sample in random order, converted to torch;
* ``model train step``  -- forward + backward + Adam step of the CPU-preset CryoNet
                           (``cryonet-tiny``) at the same patch size and batch 16,

all in random patch order over a synthetic 30-band cube in the contract layout. The loader
must be faster than the model by a margin.

Run ``python benchmarks/bench_loader.py`` (about a minute) or ``--full`` (larger cube, more
patches, the paper's 256 px patches as well).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch


def _median_rate(fn: Callable[[], int], repeats: int) -> tuple[float, list[float]]:
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="larger cube and more patches")
    ap.add_argument("--size", type=int, default=None, help="cube edge in pixels")
    ap.add_argument("--patch-size", type=int, nargs="+", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size = args.size or (3072 if args.full else 1024)
    patch_sizes = args.patch_size or ([128, 256] if args.full else [128])
    n_patches = 512 if args.full else 128
    n_naive = 64 if args.full else 24
    batch = 16

    import xbatcher

    from cryonet.data import (
        CubeSource,
        PatchDataset,
        PatchSampler,
        batch_loader,
        patch_windows,
    )
    from cryonet.models import create_model
    from cryonet.testing import write_toy_cube
    from glacierstack.store import open_cube

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_loader_"))
    cube = work / f"cube_{size}.zarr"
    if not cube.exists():
        print(f"writing a {size} x {size} x 30 cube to {cube} ...", flush=True)
        write_toy_cube(cube, (size, size), 30, chunks=512, nodata_rows=0)
    mem = CubeSource(cube, cache="memory")
    lazy = CubeSource(cube, cache="zarr")
    ds_lazy = open_cube(cube)  # dask-backed, as a user would open it
    rng = np.random.default_rng(0)
    print(
        f"# bench_loader  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {platform.processor() or ''}"
        f"  nproc={os.cpu_count()}  torch threads={torch.get_num_threads()}  cube={size}^2 x 30"
    )
    print("| patch | method | patches/s (median) | runs | ratio to NumPy floor |")
    print("|---|---|---|---|---|")
    for p in patch_sizes:
        import xarray as xr

        wins = patch_windows(xr.DataArray(mem.labels, dims=("y", "x")), p)
        order = rng.choice(len(wins), size=min(n_patches, len(wins)), replace=False)
        sel = wins[order]

        def floor(sel=sel, p=p) -> int:
            arr = mem.features
            for y0, x0 in sel:
                _ = torch.from_numpy(arr[:, y0 : y0 + p, x0 : x0 + p].copy())
            return len(sel)

        def ours(src: CubeSource, workers: int, sel=sel, p=p) -> Callable[[], int]:
            def run() -> int:
                ds = PatchDataset(src, sel, p)
                src._blocks.clear()
                sampler = PatchSampler(len(ds), seed=1, augment=True)
                dl = batch_loader(ds, sampler, batch, num_workers=workers)
                n = 0
                for x, _ in dl:
                    n += x.shape[0]
                return n

            return run

        def naive(p=p) -> int:
            gen = xbatcher.BatchGenerator(ds_lazy[["features", "labels"]], {"y": p, "x": p})
            idx = rng.choice(len(gen), size=min(n_naive, len(gen)), replace=False)
            for i in idx:
                b = gen[int(i)]
                _ = torch.from_numpy(b["features"].values), torch.from_numpy(b["labels"].values)
            return len(idx)

        rows = [("numpy floor (in-memory slice + copy)", floor)]
        rows += [(f"ours, memory, {w} workers", ours(mem, w)) for w in (0, 2)]
        rows += [(f"ours, zarr + chunk cache, {w} workers", ours(lazy, w)) for w in (0, 2)]
        rows += [("xbatcher naive (per-sample generator[i])", naive)]
        base = None
        for name, fn in rows:
            med, rates = _median_rate(fn, args.repeats)
            base = base or med
            runs = ", ".join(f"{r:.0f}" for r in rates)
            print(f"| {p} | {name} | {med:,.1f} | {runs} | {med / base:.3f} |", flush=True)

        model = create_model("cryonet-tiny", 30, 5)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.randn(batch, 30, p, p)
        y = torch.randint(0, 5, (batch, p, p))
        loss_fn = torch.nn.CrossEntropyLoss()

        def step(model=model, opt=opt, x=x, y=y, loss_fn=loss_fn) -> int:
            steps = 3
            for _ in range(steps):
                opt.zero_grad()
                loss_fn(model(x), y).backward()
                opt.step()
            return steps * batch

        step()  # warm-up
        med, rates = _median_rate(step, args.repeats)
        runs = ", ".join(f"{r:.1f}" for r in rates)
        print(
            f"| {p} | model train step, cryonet-tiny, batch {batch} | {med:,.1f} | {runs} | "
            f"{med / base:.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
