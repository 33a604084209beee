"""The one Dask runner: scheduler vocabulary, worker settings on a real LocalCluster, no
kernel compile inside tasks, and the CLI refusing a bad --scheduler."""

from __future__ import annotations

import os

import dask.array as da
import numpy as np
import pytest
from typer.testing import CliRunner

from glacierstack.cli import app
from glacierstack.dispatch import apply_kernel
from glacierstack.kernels import glcm_dissimilarity
from glacierstack.runner import RunnerOptions, Scheduler, dask_session, parse_scheduler, run_tasks
from glacierstack.warmup import compile_count


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, Scheduler("active")),
        ("threads", Scheduler("threads")),
        ("processes", Scheduler("processes")),
        ("sync", Scheduler("synchronous")),
        ("local:2", Scheduler("local", n_workers=2)),
        ("tcp://10.0.0.1:8786", Scheduler("address", address="tcp://10.0.0.1:8786")),
    ],
)
def test_parse_scheduler_accepts_the_vocabulary(text, expected):
    assert parse_scheduler(text) == expected


@pytest.mark.parametrize(
    "text", ["local:0", "local:two", "locl:2", "host:8786", "tcp://", "cluster"]
)
def test_parse_scheduler_refuses_anything_else(text):
    with pytest.raises(ValueError, match="is not threads, processes"):
        parse_scheduler(text)


def test_cli_refuses_a_bad_scheduler_before_any_work(tmp_path):
    res = CliRunner().invoke(
        app,
        ["cube", "--catalog", str(tmp_path / "none"), "--bbox", "0,0,1,1",
         "--out", str(tmp_path / "c.zarr"), "--scheduler", "local-2"],
    )  # fmt: skip
    assert res.exit_code != 0
    assert "local-2" in res.output and "local:N" in res.output
    assert not (tmp_path / "c.zarr").exists()


def test_profile_needs_a_distributed_scheduler(tmp_path):
    opts = RunnerOptions(scheduler="threads", profile=str(tmp_path / "r.html"))
    with pytest.raises(ValueError, match="--profile needs a distributed"):
        with dask_session(opts):
            pass


def _texture(x: np.ndarray) -> np.ndarray:
    arr = da.from_array(x, chunks=16)
    offsets = np.array([[0, 1]], dtype=np.int64)
    out = apply_kernel(
        glcm_dissimilarity, arr, depth=3, boundary="reflect", args=(7, 8, 0.0, 1.0, offsets)
    )
    return out.compute()


@pytest.mark.distributed
def test_local_cluster_applies_worker_settings_and_compiles_nothing_in_tasks(tmp_path):
    def _worker_state() -> tuple[str | None, int]:
        # nested, so cloudpickle ships it by value: workers cannot import the tests package
        return os.environ.get("GDAL_HTTP_MAX_RETRY"), compile_count()

    x = np.random.default_rng(0).uniform(0, 1, (40, 40)).astype(np.float32)
    expected = _texture(x)  # threaded, in this process
    opts = RunnerOptions(
        scheduler="local:1",
        gdal_env=(("GDAL_HTTP_MAX_RETRY", "7"),),
        profile=str(tmp_path / "report.html"),
        progress=False,
    )
    with dask_session(opts) as session:
        assert session.client is not None and session.parallelism() == 1
        before = session.client.run(_worker_state)
        ((env, compiled_at_start),) = before.values()
        assert env == "7"  # the plugin ran in the worker process
        arr = da.from_array(x, chunks=16)
        offsets = np.array([[0, 1]], dtype=np.int64)
        lazy = apply_kernel(
            glcm_dissimilarity, arr, depth=3, boundary="reflect", args=(7, 8, 0.0, 1.0, offsets)
        )
        got = session.compute(lazy)[0]
        after = session.client.run(_worker_state)
        ((_, compiled_after),) = after.values()
        seen: list[int] = []
        run_tasks(session, lazy.to_delayed().ravel().tolist(), desc="t", on_result=seen.append)
    np.testing.assert_array_equal(got, expected)
    assert compiled_after == compiled_at_start  # kernels came warm: no compile inside a task
    assert len(seen) == 9
    assert (tmp_path / "report.html").stat().st_size > 1000


def test_kernels_travel_by_import_path_not_by_value():
    import cloudpickle

    from glacierstack.dispatch import KernelRef, kernel_ref

    assert kernel_ref(glcm_dissimilarity) == KernelRef(
        "glacierstack.kernels.glcm", "glcm_dissimilarity"
    )
    arr = da.zeros((32, 32), chunks=16, dtype=np.float32)
    lazy = apply_kernel(glcm_dissimilarity, arr, depth=3, args=(7, 8, 0.0, 1.0, np.zeros((1, 2))))
    graph = cloudpickle.dumps(dict(lazy.__dask_graph__()))
    by_value = cloudpickle.dumps(glcm_dissimilarity)  # the Numba dispatcher with its bytecode
    assert b"numba.core.serialize" in by_value
    assert b"glacierstack.kernels.glcm" in graph
    assert b"numba.core.serialize" not in graph  # no task carries a dispatcher by value


@pytest.mark.distributed
def test_worker_settings_stop_the_nannys_malloc_trim_from_mmapping_every_buffer():
    """A Dask nanny sets MALLOC_TRIM_THRESHOLD_, which made every 4 MiB buffer a fresh mmap."""
    import ctypes

    from distributed import Client, LocalCluster

    def _mmapped_bytes_of_a_live_4mib_buffer() -> int:
        """Bytes of a live 4 MiB buffer glibc served by mmap (nested: workers lack tests/)."""
        import ctypes

        import numpy as np

        class _Info(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in
                        ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                         "uordblks", "fordblks", "keepcost")]  # fmt: skip

        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Info
        np.ones(2**20, dtype=np.float32).sum()  # one allocate/free cycle first
        before = libc.mallinfo2().hblkhd
        buf = np.ones(2**20, dtype=np.float32)
        during = libc.mallinfo2().hblkhd
        del buf
        return int(during - before)

    try:
        ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018
    except (OSError, AttributeError):
        pytest.skip("needs glibc >= 2.33 (mallinfo2)")
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster:
        with Client(cluster) as client:  # a plain cluster: the reference
            env = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
            (plain,) = client.run(_mmapped_bytes_of_a_live_4mib_buffer).values()
    if not next(iter(env.values())):
        pytest.skip("this Dask nanny does not set MALLOC_TRIM_THRESHOLD_")
    with dask_session(RunnerOptions(scheduler="local:1", progress=False)) as session:
        assert session.client is not None
        (ours,) = session.client.run(_mmapped_bytes_of_a_live_4mib_buffer).values()
    assert plain >= 4 * 2**20  # the plain worker mmaps the buffer (page faults on every use)
    assert ours == 0  # ours serves it from the heap, reused across allocations
