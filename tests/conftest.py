"""Shared pytest fixtures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO / "tests" / "data"
SHARED = Path(os.environ.get("GLACIERSTACK_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Real reference data shipped with the repository (``tests/data``, see its README.md).

    Recorded STAC JSON under ``stac/``, small DEMs, outlines and velocity crops under
    ``oggm/``; always present, so no test skips for missing data in a plain clone.
    """
    return TESTDATA


@pytest.fixture(scope="session")
def shared_realdata() -> Path:
    """Optional extras in ``$GLACIERSTACK_SHARED/realdata`` (files not copied to tests/data)."""
    path = SHARED / "realdata"
    if not path.is_dir():
        pytest.skip(f"optional extra data not found at {path} (set GLACIERSTACK_SHARED)")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests cleanly when no CUDA device is present."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch missing or broken
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# ------------------------------------------------------------------ S3-compatible test server
@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3-compatible server (moto in server mode) on 127.0.0.1, for the session.

    Yields its endpoint URL. A separate process, so Dask workers and killed writers reach it
    over HTTP like any object store.
    """
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except urllib.error.HTTPError:  # it answers: up
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start on {url}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A fresh bucket on :func:`s3_server`, with the storage options that reach it in force.

    Yields ``{"root": "s3://<bucket>", "options": {...}, "cli": [--storage-option args]}``.
    The options are set with :func:`glacierstack.storage.configure` (the CLI's
    ``--storage-option``) and removed afterwards; no ``AWS_*`` variable is set, so anything
    that reaches the bucket got the options through our code.
    """
    import fsspec

    from glacierstack import storage

    for var in [v for v in os.environ if v.startswith(("AWS_", "FSSPEC_"))]:
        monkeypatch.delenv(var)
    opts = {
        "key": "testing",
        "secret": "testing",
        "endpoint_url": s3_server,
        "client_kwargs": {"region_name": "eu-west-1"},
        "use_listings_cache": False,  # other processes write the same bucket
    }
    saved = json.loads(json.dumps(fsspec.config.conf))
    storage.configure({"s3": opts})
    bucket = f"gs-test-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3").mkdir(bucket)
    try:
        yield {
            "root": f"s3://{bucket}",
            "options": opts,
            "cli": [
                "--storage-option", "s3:key=testing",
                "--storage-option", "s3:secret=testing",
                "--storage-option", f"s3:endpoint_url={s3_server}",
                "--storage-option", "s3:client_kwargs.region_name=eu-west-1",
                "--storage-option", "s3:use_listings_cache=false",
            ],
        }  # fmt: skip
    finally:
        fsspec.config.conf.clear()
        fsspec.config.conf.update(saved)
