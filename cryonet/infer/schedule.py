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
    else:
        src = dask.delayed(source, pure=True, name=f"cryonet-model-{token}")
    task = dask.delayed(run_chunk, pure=False)
    tasks = [
        task(src, job, iy, ix, dask_key_name=f"cryonet-chunk-{token}-{iy}-{ix}") for iy, ix in plan
    ]
    run_tasks(session, tasks, desc="cryonet predict", retries=2)
