"""One Dask runner for glacierstack and cryonet: scheduler choice, worker settings, progress.

Every command that computes Dask work (``glacierstack cube``, ``cryonet predict``) goes through
:func:`dask_session` and :func:`run_tasks`, with one vocabulary:

``--scheduler``
    ``threads`` (the default when no ``distributed.Client`` is active), ``processes``,
    ``synchronous``, ``local`` / ``local:N`` (start a LocalCluster of N worker processes,
    default one per core) or the address of a running scheduler (``tcp://host:8786``,
    ``tls://...``). Anything else is refused with a one-line error (:func:`parse_scheduler`).
``--threads``
    Threads per worker process for ``local:N`` (default 1); the pool size for ``threads`` and
    ``processes`` (default: all cores).
``--torch-threads``
    torch intra-op threads in every process that runs tasks (cryonet only).
``--profile report.html``
    Write Dask's performance report of the run (distributed schedulers only).

Worker settings (torch threads, GDAL configuration, warm Numba kernels) are applied to every
worker by one :class:`WorkerSettings` plugin, so a worker that joins later gets them too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import dask

from glacierstack.storage import configured
from glacierstack.warmup import WorkerSettings, apply_settings

__all__ = [
    "PROFILE_HELP",
    "SCHEDULER_HELP",
    "THREADS_HELP",
    "TORCH_THREADS_HELP",
    "DaskSession",
    "RunnerOptions",
    "Scheduler",
    "WorkerSettings",
    "active_client",
    "dask_session",
    "ensure_session",
    "parse_scheduler",
    "run_tasks",
    "runner_options",
]

SCHEDULER_HELP = (
    "Dask scheduler: threads, processes, synchronous, local:N (a LocalCluster of N worker "
    "processes) or a scheduler address tcp://host:8786 (default: an active distributed "
    "Client, else threads)"
)
THREADS_HELP = "Threads per worker for local:N (default 1); pool size for threads/processes"
TORCH_THREADS_HELP = "torch intra-op threads per process running tasks (1 is best on shared CPUs)"
PROFILE_HELP = "Write Dask's performance report (HTML) of the run (local:N or tcp:// only)"

_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc|ws|wss)://[^\s/]+$")

Kind = Literal["active", "threads", "processes", "synchronous", "local", "address"]


@dataclass(frozen=True)
class Scheduler:
    """A validated scheduler choice.

    Attributes
    ----------
    kind
        ``"active"`` (use the active ``distributed.Client``, else threads), ``"threads"``,
        ``"processes"``, ``"synchronous"``, ``"local"`` (start a LocalCluster) or
        ``"address"`` (connect to a running scheduler).
    n_workers
        Worker processes of a LocalCluster (``kind == "local"``).
    address
        Scheduler address (``kind == "address"``).
    """

    kind: Kind
    n_workers: int | None = None
    address: str | None = None

    @property
    def distributed(self) -> bool:
        """Whether the work runs on a ``distributed`` scheduler we start or connect to."""
        return self.kind in ("local", "address")


def parse_scheduler(text: str | None) -> Scheduler:
    """Validate a ``--scheduler`` value.

    Parameters
    ----------
    text
        ``None``, ``threads``, ``processes``, ``synchronous`` (``sync``), ``local``,
        ``local:N`` or ``tcp://host:port`` (also ``tls://``, ``ucx://``, ``inproc://``).

    Returns
    -------
    Scheduler

    Raises
    ------
    ValueError
        For anything else (one line naming the value and the accepted forms).
    """
    if text is None or text == "":
        return Scheduler("active")
    t = text.strip()
    if t in ("threads", "threading"):
        return Scheduler("threads")
    if t in ("processes", "multiprocessing"):
        return Scheduler("processes")
    if t in ("synchronous", "sync", "single-threaded"):
        return Scheduler("synchronous")
    if t == "local":
        return Scheduler("local", n_workers=os.cpu_count() or 1)
    m = re.fullmatch(r"local:(\d+)", t)
    if m and int(m.group(1)) >= 1:
        return Scheduler("local", n_workers=int(m.group(1)))
    if _ADDRESS.match(t):
        return Scheduler("address", address=t)
    raise ValueError(
        f"--scheduler {text!r} is not threads, processes, synchronous, local:N (N >= 1) "
        "or a scheduler address like tcp://host:8786"
    )


@dataclass(frozen=True)
class RunnerOptions:
    """How to run Dask work (the ``--scheduler/--threads/--torch-threads/--profile`` options).

    Attributes
    ----------
    scheduler
        A ``--scheduler`` value (see :func:`parse_scheduler`) or an existing
        ``distributed.Client`` (used as is, never closed).
    threads
        Threads per worker for ``local:N`` (default 1); the pool size for ``threads`` and
        ``processes`` (default: all cores).
    torch_threads
        torch intra-op threads per task-running process (``None``: unchanged locally; for a
        LocalCluster started here, ``cores // (workers * threads)``).
    gdal_env
        GDAL configuration options set in every worker (e.g. ``GDAL_HTTP_MAX_RETRY``).
    profile
        Path of an HTML Dask performance report to write (distributed schedulers only).
    progress
        Show progress bars.
    warm_kernels
        Load the glacierstack Numba kernels in every worker process at start (raster work);
        cryonet inference, which runs none, turns it off.
    """

    scheduler: Any = None
    threads: int | None = None
    torch_threads: int | None = None
    gdal_env: tuple[tuple[str, str], ...] = ()
    profile: str | None = None
    progress: bool = True
    warm_kernels: bool = True

    def __post_init__(self) -> None:
        if self.scheduler is None or isinstance(self.scheduler, str):
            parse_scheduler(self.scheduler)  # validate early, at the edge
        for name in ("threads", "torch_threads"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
        object.__setattr__(self, "gdal_env", tuple((str(k), str(v)) for k, v in self.gdal_env))


# ------------------------------------------------------------------------------- session
def active_client() -> Any | None:
    """Return the ``distributed.Client`` that ``dask.compute`` would use now, or None."""
    sched = dask.config.get("scheduler", None)
    if sched not in (None, "dask.distributed", "distributed"):
        return None
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return default_client()
    except ValueError:
        return None


@dataclass
class DaskSession:
    """The scheduler a block of work runs on (yielded by :func:`dask_session`).

    Attributes
    ----------
    client
        The ``distributed.Client``, or None for a local scheduler.
    local
        ``"threads"``, ``"processes"`` or ``"sync"`` when ``client`` is None.
    num_workers
        Pool size of the local scheduler (None: Dask's default).
    options
        The options the session was opened with.
    pool
        The process pool of the ``processes`` scheduler: started once per session (worker
        settings applied by its initializer), so each compute does not spawn new processes.
    """

    client: Any | None
    local: str = "threads"
    num_workers: int | None = None
    options: RunnerOptions = field(default_factory=RunnerOptions)
    pool: Any = None

    def parallelism(self) -> int:
        """Return the number of tasks that can run at once."""
        if self.client is not None:
            return max(1, sum(self.client.nthreads().values()))
        if self.local == "sync":
            return 1
        return int(self.num_workers or os.cpu_count() or 1)

    def compute(self, *tasks: Any) -> tuple[Any, ...]:
        """``dask.compute`` on this session's scheduler."""
        if self.client is not None:
            return tuple(self.client.compute(list(tasks), sync=True))
        return dask.compute(*tasks, **self._local_kwargs())

    def _local_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"scheduler": self.local}
        if self.local != "sync" and self.num_workers:
            kw["num_workers"] = self.num_workers
        if self.pool is not None:
            kw["pool"] = self.pool
        return kw


@contextlib.contextmanager
def dask_session(options: RunnerOptions | None = None) -> Iterator[DaskSession]:
    """Open the scheduler chosen by ``options`` for the enclosed work.

    A LocalCluster or connection started here is closed on exit; an active or given
    ``distributed.Client`` is used and left open. Worker settings are registered as a
    :class:`WorkerSettings` plugin; the dashboard link is printed to stderr; with
    ``options.profile`` a Dask performance report is written on exit.

    Yields
    ------
    DaskSession
    """
    opts = options or RunnerOptions()
    if opts.scheduler is not None and not isinstance(opts.scheduler, str):
        yield from _with_client(opts.scheduler, opts, owned=False)
        return
    sched = parse_scheduler(opts.scheduler)
    if sched.kind == "active":
        client = active_client()
        if client is not None:
            yield from _with_client(client, opts, owned=False)
            return
        local = dask.config.get("scheduler", None)
        sched = parse_scheduler(local if local in ("processes", "synchronous", "sync") else None)
        sched = sched if sched.kind != "active" else Scheduler("threads")
    if not sched.distributed:
        if opts.profile:
            raise ValueError(
                f"--profile needs a distributed scheduler (local:N or tcp://...), not {sched.kind}"
            )
        yield from _local(sched, opts)
        return
    from distributed import Client, LocalCluster

    if sched.kind == "address":
        with Client(sched.address) as client:
            yield from _with_client(client, opts, owned=True)
        return
    n = int(sched.n_workers or 1)
    threads = opts.threads or 1
    torch_threads = opts.torch_threads or max(1, (os.cpu_count() or 1) // (n * threads))
    opts = dataclasses.replace(opts, torch_threads=torch_threads)
    # queuing holds tasks back on the scheduler; with few big tasks it only idles workers
    with (
        dask.config.set({"distributed.scheduler.worker-saturation": "inf"}),
        LocalCluster(
            n_workers=n, threads_per_worker=threads, dashboard_address=":0", processes=True
        ) as cluster,
        Client(cluster) as client,
    ):
        yield from _with_client(client, opts, owned=True)


@contextlib.contextmanager
def ensure_session(runner: RunnerOptions | DaskSession | None) -> Iterator[DaskSession]:
    """Use an open :class:`DaskSession` as is, or open one from options (library entry points)."""
    if isinstance(runner, DaskSession):
        yield runner
    else:
        with dask_session(runner) as session:
            yield session


def _local(sched: Scheduler, opts: RunnerOptions) -> Iterator[DaskSession]:
    name = {"threads": "threads", "processes": "processes", "synchronous": "sync"}[sched.kind]
    saved = dict(os.environ)
    pool = None
    try:
        if name == "processes":
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(
                max_workers=opts.threads or os.cpu_count() or 1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=apply_settings,
                initargs=(opts.torch_threads, opts.gdal_env, opts.warm_kernels, configured()),
            )
        else:
            apply_settings(opts.torch_threads, opts.gdal_env, warm=False)  # warms on first use
        yield DaskSession(None, name, opts.threads, opts, pool)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        os.environ.clear()
        os.environ.update(saved)


def _with_client(client: Any, opts: RunnerOptions, *, owned: bool) -> Iterator[DaskSession]:
    conf = configured()  # storage options reach every worker, also ones joining later
    plugin = WorkerSettings(opts.torch_threads, opts.gdal_env, opts.warm_kernels, conf)
    if owned or opts.torch_threads is not None or opts.gdal_env or conf:
        client.register_plugin(plugin)
    link = getattr(client, "dashboard_link", None)
    if link and opts.progress:
        print(f"Dask dashboard: {link}", file=sys.stderr)
    session = DaskSession(client, options=opts)
    if opts.profile:
        from distributed import performance_report

        with performance_report(filename=str(opts.profile)):
            yield session
    else:
        yield session


# ------------------------------------------------------------------------------ progress
def run_tasks(
    session: DaskSession,
    tasks: Sequence[Any],
    *,
    desc: str,
    per_batch: int | None = None,
    retries: int = 0,
    on_result: Callable[[Any], None] | None = None,
) -> None:
    """Compute Dask ``Delayed`` tasks, at most ``per_batch`` at a time, with one progress bar.

    On a distributed scheduler the window slides (a new task is submitted as each one
    finishes, so no worker waits for a batch's last task); local schedulers run batches.

    Parameters
    ----------
    session
        Where to run.
    tasks
        Delayed objects; each finished one advances the bar by one.
    desc
        Progress bar label.
    per_batch
        Tasks in flight (default: all). Neighbouring tiles in flight together share their
        inputs; a bound keeps memory independent of the number of tasks.
    retries
        Retries of a failed task on a distributed scheduler (a lost worker).
    on_result
        Called with each task's result as it finishes (in completion order).
    """
    from tqdm.auto import tqdm

    if not tasks:
        return
    size = per_batch or len(tasks)
    with tqdm(
        total=len(tasks), desc=desc, unit="task", disable=not session.options.progress
    ) as bar:
        if session.client is not None:
            _run_distributed(session.client, list(tasks), size, bar, retries, on_result)
            return
        for k in range(0, len(tasks), size):
            _run_local(session, list(tasks[k : k + size]), bar, on_result)


def _run_distributed(
    client: Any,
    tasks: list[Any],
    size: int,
    bar: Any,
    retries: int,
    on_result: Callable[[Any], None] | None,
) -> None:
    from distributed import as_completed

    def submit(task: Any) -> Any:
        return client.compute(task, retries=retries or None)

    futures = [submit(t) for t in tasks[:size]]
    todo = iter(tasks[size:])
    running = as_completed(futures)
    try:
        for fut in running:
            res = fut.result()
            if on_result is not None:
                on_result(res)
            bar.update(1)
            nxt = next(todo, None)
            if nxt is not None:
                new = submit(nxt)
                futures.append(new)
                running.add(new)
    finally:
        client.cancel(futures)


def _run_local(
    session: DaskSession, batch: list[Any], bar: Any, on_result: Callable[[Any], None] | None
) -> None:
    from dask.callbacks import Callback

    keys = {t.key for t in batch}

    def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if key in keys:
            bar.update(1)

    with Callback(posttask=posttask):
        results = dask.compute(*batch, **session._local_kwargs())
    if on_result is not None:
        for r in results:
            on_result(r)


def runner_options(
    scheduler: str | None,
    threads: int | None,
    torch_threads: int | None,
    profile: os.PathLike[str] | str | None,
    progress: bool,
) -> RunnerOptions:
    """Build :class:`RunnerOptions` from CLI values; bad values raise ``typer.BadParameter``."""
    import typer

    try:
        return RunnerOptions(
            scheduler=scheduler,
            threads=threads,
            torch_threads=torch_threads,
            profile=str(profile) if profile is not None else None,
            progress=progress,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
