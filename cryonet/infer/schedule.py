"""Run the chunk tasks of a mosaic on the chosen Dask scheduler, with a progress bar."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from cryonet.infer.sources import CheckpointModel, ModelSource
from cryonet.infer.task import ChunkJob, run_chunk

__all__ = ["LOCAL_SCHEDULERS", "active_client_or", "check_scheduler", "execute"]

LOCAL_SCHEDULERS = (None, "threads", "sync", "synchronous")


def active_client_or(scheduler: Any) -> Any:
    """``scheduler``, or for ``None`` the active ``distributed.Client`` when one exists."""
    if scheduler is not None:
        return scheduler
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover
        return None
    try:
        return default_client()
    except ValueError:  # no client running
        return None


def check_scheduler(scheduler: Any) -> None:
    """Raise if ``scheduler`` is none of the accepted names, addresses or clients."""
    if scheduler in LOCAL_SCHEDULERS or scheduler == "local-cluster":
        return
    if isinstance(scheduler, str):
        if "://" in scheduler or ":" in scheduler:
            return
        raise ValueError(
            f"scheduler {scheduler!r} is not one of None, 'threads', 'synchronous', "
            "'local-cluster' or a dask.distributed address like 'tcp://host:8786'"
        )
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover
        Client = ()  # type: ignore[assignment,misc]  # noqa: N806
    if not isinstance(scheduler, Client):
        raise TypeError(f"scheduler must be a string or a distributed.Client, got {scheduler!r}")


def execute(
    source: ModelSource,
    job: ChunkJob,
    plan: list[tuple[int, int]],
    scheduler: Any,
    workers: int | None,
    progress: bool,
) -> None:
    """Run the chunk tasks on the chosen Dask scheduler."""
    import dask
    from tqdm.auto import tqdm

    if not plan:
        return
    token = dask.base.tokenize(job, source.cache_key)
    bar = tqdm(total=len(plan), desc="cryonet predict", unit="chunk", disable=not progress)
    try:
        if scheduler in LOCAL_SCHEDULERS:
            src = dask.delayed(source, pure=True, name=f"cryonet-model-{token}")
            tasks = [
                dask.delayed(run_chunk, pure=False)(
                    src, job, iy, ix, dask_key_name=f"cryonet-chunk-{token}-{iy}-{ix}"
                )
                for iy, ix in plan
            ]
            name = "sync" if scheduler in ("sync", "synchronous") else "threads"
            with _TqdmCallback(bar, prefix="cryonet-chunk-"):
                dask.compute(*tasks, scheduler=name, num_workers=workers or 1)
            return
        _execute_distributed(source, job, plan, scheduler, workers, bar, token)
    finally:
        bar.close()


def _execute_distributed(
    source: ModelSource,
    job: ChunkJob,
    plan: list[tuple[int, int]],
    scheduler: Any,
    workers: int | None,
    bar: Any,
    token: str,
) -> None:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if isinstance(scheduler, Client):
        client = scheduler
    elif scheduler == "local-cluster":
        n = workers or 1
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None)
        client = Client(cluster)
        if job.torch_threads is None:
            job = replace(job, torch_threads=max(1, (os.cpu_count() or 1) // n))
    else:
        client = Client(str(scheduler))
    try:
        # A checkpoint source is a path (tiny, sent with each task); an in-memory model is
        # sent to every worker once (broadcast, so a lost worker loses no single copy).
        src: Any = source
        if not isinstance(source, CheckpointModel):
            src = client.scatter(source, broadcast=True, hash=False)
        futures = [
            client.submit(
                run_chunk,
                src,
                job,
                iy,
                ix,
                key=f"cryonet-chunk-{token}-{iy}-{ix}",
                pure=False,
                retries=2,
            )
            for iy, ix in plan
        ]
        for fut in as_completed(futures):
            fut.result()
            bar.update()
    finally:
        if not isinstance(scheduler, Client):
            client.close()
        if cluster is not None:
            cluster.close()


class _TqdmCallback:
    """Dask local-scheduler callback advancing a tqdm bar for each finished chunk task."""

    def __init__(self, bar: Any, prefix: str) -> None:
        from dask.callbacks import Callback

        def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            if str(key).startswith(prefix):
                bar.update()

        self._cb = Callback(posttask=posttask)

    def __enter__(self) -> _TqdmCallback:
        self._cb.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._cb.__exit__(*exc)
