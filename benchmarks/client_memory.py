"""Where does the client process of ``glacierstack cube`` grow with the region? Peak RSS by phase.

Runs :func:`glacierstack.pipeline.build_cube` on a synthetic region in this process (the
client: driver, and for ``local:N`` the in-process scheduler; workers are other processes) and
samples its RSS every 50 ms, attributing each sample to the build step running at the time
(catalog search, layer check, outlines, PCA sample, tile writes, statistics + manifest).
Compare two or three region sizes: a step whose peak grows with the area is the culprit.

Usage::

    glacierstack synth --preset poiqu --size-km 12 --out r12
    python benchmarks/client_memory.py r12 /tmp/c12.zarr --scheduler local:2

Prints one JSON object: area, wall time, ``ru_maxrss`` and the peak RSS (MB) per step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scaling import _region  # noqa: E402

STEPS = {
    "glacierstack.pipeline": ("plan_layers", "plan_reads", "_check_layers", "_polygons",
                              "fit_pca_windows", "tile_cube"),
    "glacierstack.store": ("_run_tasks", "_finalise"),
}  # fmt: skip


class PhaseSampler:
    """Peak RSS of this process per named phase (a background thread, every ``every`` s)."""

    def __init__(self, every: float = 0.05) -> None:
        self.phase = "start"
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            rss = self._proc.memory_info().rss / 2**20
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)
            time.sleep(every)

    def wrap(self, mod: Any, name: str) -> None:
        """Attribute the time inside ``mod.name`` to the phase ``name``."""
        func: Callable[..., Any] = getattr(mod, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            outer, self.phase = self.phase, name
            try:
                return func(*args, **kwargs)
            finally:
                self.phase = outer

        setattr(mod, name, timed)

    def __enter__(self) -> PhaseSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:  # noqa: D103
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("region", help="a `glacierstack synth` output folder")
    p.add_argument("out", help="cube store to write (replaced)")
    p.add_argument("--scheduler", default="local:2")
    a = p.parse_args()
    import importlib

    from glacierstack.pipeline import build_cube
    from glacierstack.runner import RunnerOptions, dask_session

    cat, grid, dt = _region(a.region)
    shutil.rmtree(a.out, ignore_errors=True)
    threads = 1 if a.scheduler.startswith("local") else None
    with PhaseSampler() as sampler:
        for mod, names in STEPS.items():
            for name in names:
                sampler.wrap(importlib.import_module(mod), name)
        sampler.phase = "cluster start"
        with dask_session(RunnerOptions(a.scheduler, threads=threads, progress=False)) as s:
            sampler.phase = "other"
            t0 = time.perf_counter()
            build_cube(cat, a.out, grid=grid, datetime=dt, runner=s)
            wall = time.perf_counter() - t0
    res = {
        "region": a.region, "area_km2": grid.area_km2, "scheduler": a.scheduler, "wall_s": wall,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_mb_by_step": {k: round(v) for k, v in sampler.peaks.items()},
        "load": os.getloadavg(),
    }  # fmt: skip
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
