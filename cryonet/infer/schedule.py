"""Run the chunk tasks of a mosaic through the one Dask runner (:mod:`glacierstack.runner`)."""

from __future__ import annotations

from typing import Any

from cryonet.infer.sources import CheckpointModel, ModelSource
from cryonet.infer.task import ChunkJob, run_chunk

__all__ = ["execute"]


def execute(source: ModelSource, job: ChunkJob, plan: list[tuple[int, int]], session: Any) -> None:
    """Run one task per output chunk on ``session`` (a :class:`~glacierstack.runner.DaskSession`).

    A checkpoint source is a path (tiny, sent with each task); an in-memory model is sent to
    every worker of a cluster once (broadcast, so a lost worker loses no single copy).
    """
    import dask

    from glacierstack.runner import run_tasks

    if not plan:
        return
    token = dask.base.tokenize(job, source.cache_key)
    src: Any
    if session.client is not None and not isinstance(source, CheckpointModel):
        src = session.client.scatter(source, broadcast=True, hash=False)
    else:  # a literal in each task: a shared key would pull every chunk to its worker
        src = source
    task = dask.delayed(run_chunk, pure=False)
    tasks = [
        task(src, job, iy, ix, dask_key_name=f"cryonet-chunk-{token}-{iy}-{ix}") for iy, ix in plan
    ]
    # on a cluster, one task per worker thread in flight: each freed thread takes the next
    # chunk of the plan (costliest first), the greedy longest-first schedule
    window = session.parallelism() if session.client is not None else None
    run_tasks(session, tasks, desc="cryonet predict", per_batch=window, retries=2)
