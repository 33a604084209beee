"""fsspec storage options per protocol (``--storage-option``).

The options live in fsspec's own per-protocol configuration (``fsspec.config.conf``), which is
process-wide state. That is deliberate for now: every reader of a store URL gets them without
being handed anything (xarray's and zarr's own ``open_zarr``/``open_group`` calls, rasterio and
pyogrio through fsspec, the ``train``/``predict``/``importance`` code paths), and
:mod:`glacierstack.runner` sends :func:`configured` to every Dask worker. Passing a typed config
explicitly instead would mean threading it through every store-opening call of both packages
and through the runner's worker plugin; that is left for a later change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import fsspec

__all__ = ["REMOTE_PROTOCOLS", "configure", "configured", "parse_storage_options"]


REMOTE_PROTOCOLS = ("s3", "gs", "gcs", "az", "abfs", "abfss")
"""Protocols an unprefixed ``--storage-option`` applies to (object stores)."""


def parse_storage_options(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Parse ``[PROTOCOL:]KEY=VALUE`` strings (``--storage-option``) into ``{protocol: opts}``.

    ``KEY`` may be dotted to nest (``client_kwargs.region_name=eu-west-1``); ``VALUE`` is
    decoded as JSON when it parses (``anon=true``, ``config_kwargs={"retries": ...}``), else
    kept as a string. Without a ``PROTOCOL:`` prefix the option is for every object store
    (:data:`REMOTE_PROTOCOLS`, key ``"*"``).

    Examples
    --------
    >>> parse_storage_options(["endpoint_url=http://127.0.0.1:9000", "gs:token=anon"])
    {'*': {'endpoint_url': 'http://127.0.0.1:9000'}, 'gs': {'token': 'anon'}}
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"storage option {item!r}: expected [PROTOCOL:]KEY=VALUE")
        proto, colon, key = key.strip().rpartition(":")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        *parents, leaf = key.split(".")
        node = out.setdefault(proto if colon else "*", {})
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _deep_update(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            _deep_update(into[k], v)
        else:
            into[k] = json.loads(json.dumps(v)) if isinstance(v, Mapping) else v


def configure(options: Mapping[str, Mapping[str, Any]]) -> None:
    """Use fsspec storage options for every store, export and checkpoint of a protocol.

    The options become fsspec's configuration for the protocol (``fsspec.config.conf``), so
    every file system this process opens for it (zarr, xarray, our storage calls) gets them,
    and :mod:`glacierstack.runner` sends them to every Dask worker it starts or joins
    (:func:`configured`). On a cluster whose workers have their own credentials (IAM role,
    workload identity, ``FSSPEC_S3_*``/``AWS_*`` environment variables) nothing needs to be
    set here.

    Parameters
    ----------
    options
        ``{protocol: {option: value}}`` as from :func:`parse_storage_options`; protocol
        ``"*"`` means every object store of :data:`REMOTE_PROTOCOLS`.
    """
    for proto, opts in options.items():
        for p in REMOTE_PROTOCOLS if proto == "*" else (proto,):
            _deep_update(fsspec.config.conf.setdefault(p, {}), opts)


def configured() -> dict[str, dict[str, Any]]:
    """Return a copy of the storage options in force (what Dask workers are given)."""
    return json.loads(json.dumps(fsspec.config.conf, default=str))
