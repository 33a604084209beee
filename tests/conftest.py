"""Shared pytest fixtures."""

from __future__ import annotations

import importlib.resources
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
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


@pytest.fixture
def s3_gdal_env(s3: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Call it to point GDAL's own ``AWS_*`` settings at the :func:`s3` bucket's server.

    Input rasters and vectors are read by GDAL (``/vsis3/``), which takes environment variables,
    not our storage options. A callable, so a test sets them only where GDAL reads from S3.
    """
    port = s3["options"]["endpoint_url"].rsplit(":", 1)[1]
    gdal = {"AWS_S3_ENDPOINT": f"127.0.0.1:{port}", "AWS_HTTPS": "NO",
            "AWS_VIRTUAL_HOSTING": "FALSE", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "eu-west-1"}  # fmt: skip

    def apply() -> None:
        for k, v in gdal.items():
            monkeypatch.setenv(k, v)

    return apply


# ------------------------------------------------------------------ STAC validation (offline)
STAC_CORE = "https://schemas.stacspec.org/v1.1.0/{}-spec/json-schema/{}.json"
EXTENSION_SCHEMAS = TESTDATA / "stac-schemas"
"""The official extension schemas, byte for byte as stac-extensions.github.io serves them."""
PREFIXES = {
    "proj:": "projection",
    "raster:": "raster",
    "eo:": "eo",
    "sar:": "sar",
    "sat:": "sat",
    "view:": "view",
}
"""Field prefixes of the extensions we have schemas for: using one obliges declaring it."""


def _registry() -> tuple[Any, dict[str, Any]]:
    """Offline registry of the STAC 1.1.0 core schemas and of the stored extension schemas.

    Core schemas are pystac's bundled copies; extension schemas are the files under
    ``tests/data/stac-schemas/``, registered under their ``$id`` (the URL an item declares in
    ``stac_extensions``). Any other reference raises instead of fetching, so the tests never
    touch the network.
    """
    from referencing import Registry, Resource

    root = importlib.resources.files("pystac.validation.jsonschemas")
    resources = []
    for f in (root / "stac-spec" / "v1.1.0").iterdir():
        name = f.name.removesuffix(".json")
        spec = name if name in ("catalog", "collection") else "item"
        resources.append((STAC_CORE.format(spec, name), json.loads(f.read_text())))
    for f in (root / "geojson").iterdir():
        resources.append((f"https://geojson.org/schema/{f.name}", json.loads(f.read_text())))
    for f in sorted(EXTENSION_SCHEMAS.glob("*.json")):
        doc = json.loads(f.read_bytes())
        resources.append((doc["$id"].rstrip("#"), doc))

    def offline(uri: str) -> Resource:
        raise LookupError(f"schema {uri} is not stored; the tests do not download schemas")

    registry = Registry(retrieve=offline).with_resources(  # type: ignore[call-arg]
        (uri, Resource.from_contents(c)) for uri, c in resources
    )
    return registry, dict(resources)


def _walk_keys(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _walk_keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk_keys(v)


def _undeclared(doc: dict[str, Any]) -> list[str]:
    """Fields of a stored extension used without declaring that extension (any version)."""
    declared = " ".join(doc.get("stac_extensions", []))
    used = {PREFIXES[p] for k in _walk_keys(doc) for p in PREFIXES if k.startswith(p)}
    return [f"uses {n}: fields without declaring the {n} extension" for n in sorted(used)
            if f"stac-extensions.github.io/{n}/" not in declared]  # fmt: skip


@pytest.fixture(scope="session")
def stac_errors() -> Callable[[Path], dict[str, list[str]]]:
    """Return ``check(folder) -> {json file: [errors]}`` over every STAC file under a folder."""
    from jsonschema import Draft7Validator

    registry, schemas = _registry()
    kinds = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}

    def validator(uri: str) -> Draft7Validator:
        return Draft7Validator(schemas[uri], registry=registry)

    def check(folder: Path) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        files = sorted(Path(folder).rglob("*.json"))
        assert files, f"no STAC JSON under {folder}"
        for f in files:
            doc = json.loads(f.read_text())
            kind = kinds[doc["type"]]
            errs = [f"{kind} schema: {e.message}"
                    for e in validator(STAC_CORE.format(kind, kind)).iter_errors(doc)]  # fmt: skip
            for uri in doc.get("stac_extensions", []):
                if uri not in schemas:
                    errs.append(f"declares {uri}, whose schema is not in {EXTENSION_SCHEMAS}")
                    continue
                errs += [f"{uri}: {e.message} (at {'/'.join(map(str, e.absolute_path))})"
                         for e in validator(uri).iter_errors(doc)]  # fmt: skip
            errs += _undeclared(doc)
            if errs:
                out[str(f.relative_to(folder))] = errs
        return out

    return check
