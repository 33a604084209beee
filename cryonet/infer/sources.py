"""Model sources: what a Dask worker turns into a model, and the per-worker model cache.

A :class:`ModelSource` is small and picklable (a checkpoint path, or an in-memory model that is
shipped once); :func:`load_cached` builds its :class:`LoadedModel` at most once per worker and
device. Each source also names itself for the run signature of a mosaic
(:attr:`ModelSource.cache_key`): equal keys mean equal models, so a run can be resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from glacierstack import storage
from glacierstack.classes import class_table
from glacierstack.provenance import location_ref

__all__ = [
    "CheckpointModel",
    "InMemoryModel",
    "LoadedModel",
    "ModelSource",
    "clear_model_cache",
    "load_cached",
    "model_fingerprint",
    "model_load_count",
]


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready to predict, with the input contract it was trained on.

    Parameters
    ----------
    module
        Maps ``(N, C, H, W)`` float tensors to ``(N, K, H, W)`` logits.
    bands
        Input layer names, in the model's channel order.
    mean, std
        Per-band normalisation statistics (same order as ``bands``).
    classes
        Class table (list of dicts with at least ``id`` and ``name``), ``K`` entries.
    meta
        Provenance to record in the mosaic (model config, epoch, checkpoint hash, ...).
    temperature
        Softmax temperature (logits are divided by it; from the checkpoint's
        ``calibration``, :mod:`cryonet.calibration`).
    """

    module: Callable[[torch.Tensor], torch.Tensor]
    bands: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    classes: list[dict[str, Any]] = field(default_factory=class_table)
    meta: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be positive and finite, got {self.temperature}")
        mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        std = np.asarray(self.std, dtype=np.float64).reshape(-1)
        n = len(self.bands)
        if mean.shape != (n,) or std.shape != (n,):
            raise ValueError(
                f"mean/std have shapes {mean.shape}/{std.shape}; expected ({n},) for bands "
                f"{list(self.bands)}"
            )
        if np.any(~np.isfinite(std)) or np.any(std <= 0):
            bad = [b for b, s in zip(self.bands, std, strict=True) if not (s > 0)]
            raise ValueError(f"std must be positive and finite; bad bands: {bad}")
        object.__setattr__(self, "bands", tuple(self.bands))
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def num_classes(self) -> int:
        """Number of output classes ``K``."""
        return len(self.classes)


@runtime_checkable
class ModelSource(Protocol):
    """Something a worker can turn into a :class:`LoadedModel` (must be picklable)."""

    @property
    def cache_key(self) -> str:
        """Identity of the model; equal keys share one loaded copy per worker."""
        ...

    def load(self, device: torch.device) -> LoadedModel:
        """Build the model on ``device`` (called once per worker and device)."""
        ...


@dataclass(frozen=True)
class CheckpointModel:
    """A model stored as a ``cryonet.checkpoint`` file (see ``docs/developer/contracts.md``).

    ``path`` is a local file or an fsspec URL (``s3://bucket/run/checkpoints/best.pt``); a URL
    is downloaded once per machine (:func:`glacierstack.storage.local_file`) where it is loaded.
    """

    path: Path | str

    def __post_init__(self) -> None:
        if storage.is_url(self.path):
            if not storage.output_exists(self.path):
                raise FileNotFoundError(f"checkpoint {self.path} does not exist")
            object.__setattr__(self, "path", str(self.path))
            return
        p = Path(self.path).expanduser().resolve()
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint {p} does not exist")
        object.__setattr__(self, "path", p)

    @property
    def cache_key(self) -> str:
        """Path, size and modification time: a rewritten checkpoint is reloaded."""
        if isinstance(self.path, str):
            url = storage.StoreURL.parse(self.path)
            info = url.fs.info(url.path)
            return f"ckpt:{self.path}:{info.get('size')}:{info.get('ETag') or info.get('mtime')}"
        st = self.path.stat()
        return f"ckpt:{self.path}:{st.st_size}:{st.st_mtime_ns}"

    def _local(self) -> Path:
        return storage.local_file(self.path)

    def sha256(self) -> str:
        """SHA-256 of the checkpoint file (recorded in the mosaic's provenance)."""
        h = hashlib.sha256()
        with self._local().open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    def load(self, device: torch.device) -> LoadedModel:
        """Load with ``cryonet.checkpoint.load_model`` (``weights_only=True``)."""
        from cryonet.calibration import checkpoint_temperature
        from cryonet.checkpoint import load_model

        module, meta = load_model(self._local(), map_location=device)
        return LoadedModel(
            module=module,
            bands=tuple(meta["bands"]),
            mean=np.asarray(meta["mean"]),
            std=np.asarray(meta["std"]),
            classes=list(meta.get("classes") or class_table()),
            meta={
                "checkpoint": location_ref(self.path),
                "model": meta.get("model"),
                "epoch": meta.get("epoch"),
                "software": meta.get("software"),
                "calibration": meta.get("calibration"),
                # temperatures of averages with this checkpoint first (EnsembleModel)
                **{k: meta[k] for k in ("ensemble_calibrations",) if k in meta},
            },
            temperature=checkpoint_temperature(meta),
        )


def model_fingerprint(model: LoadedModel) -> str | None:
    """SHA-256 of a model's weights and input contract, or ``None`` if it cannot be known.

    For a :class:`torch.nn.Module` the hash covers the module's class and architecture
    (``repr``), every ``state_dict`` entry (name, dtype, shape, bytes), the bands, the
    normalisation statistics and the class table. Two modules with equal weights get equal
    fingerprints wherever and whenever they were built; any changed weight changes it. A plain
    callable has no weights to hash: ``None``.
    """
    module = model.module
    if not isinstance(module, torch.nn.Module):
        return None
    h = hashlib.sha256()
    cls = type(module)
    h.update(f"{cls.__module__}.{cls.__qualname__}\n{module!r}\n".encode())
    for name, value in module.state_dict().items():
        t = value.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        # bytes via a uint8 view: works for every dtype, bfloat16 included
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(json.dumps(list(model.bands)).encode())
    h.update(np.ascontiguousarray(model.mean, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(model.std, dtype=np.float64).tobytes())
    h.update(json.dumps(model.classes, sort_keys=True, default=str).encode())
    if model.temperature != 1.0:  # (so fingerprints of uncalibrated models stay as they were)
        h.update(f"temperature:{model.temperature!r}".encode())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class InMemoryModel:
    """Wrap an already built :class:`LoadedModel` as a source (threaded scheduler, notebooks).

    With ``dask.distributed`` the wrapped model is pickled once and shipped to each worker once.

    Parameters
    ----------
    model
        The model and its input contract.
    key
        Identity of the model (run signature and cache key). Default: ``"memory:"`` plus
        :func:`model_fingerprint` of the weights, so a notebook run with the same weights
        resumes an interrupted mosaic; a random id for a plain callable (never resumable).
        The fingerprint is taken at construction: wrap the model again after changing it.
    """

    model: LoadedModel
    key: str | None = None

    def __post_init__(self) -> None:
        if self.key is None:
            fp = model_fingerprint(self.model)
            key = f"memory:{fp}" if fp is not None else f"memory-random:{uuid.uuid4().hex}"
            object.__setattr__(self, "key", key)

    @property
    def cache_key(self) -> str:
        """The key given, or the fingerprint of the weights taken at construction."""
        return str(self.key)  # never None after __post_init__

    def load(self, device: torch.device) -> LoadedModel:
        """Move the module to ``device`` (a no-op for plain callables)."""
        module = self.model.module
        if isinstance(module, torch.nn.Module):
            module = module.to(device)
        return LoadedModel(
            module,
            self.model.bands,
            self.model.mean,
            self.model.std,
            self.model.classes,
            self.model.meta,
            self.model.temperature,
        )


_CACHE: dict[tuple[str, str, str], LoadedModel] = {}
_LOADS: dict[tuple[str, str, str], int] = {}
_CACHE_LOCK = threading.Lock()


def _worker_id() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().id)
    except (ImportError, ValueError):
        return f"pid{os.getpid()}"


def load_cached(source: ModelSource, device: torch.device) -> LoadedModel:
    """Return the model of ``source`` on ``device``, loading it at most once per worker.

    The cache is keyed by ``(source.cache_key, device, worker)`` where *worker* is the
    ``dask.distributed`` worker id inside a worker, else the process id. Modules are put in
    ``eval()`` mode.
    """
    key = (source.cache_key, str(device), _worker_id())
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is None:
            hit = source.load(device)
            if isinstance(hit.module, torch.nn.Module):
                hit.module.eval()
            _CACHE[key] = hit
            _LOADS[key] = _LOADS.get(key, 0) + 1
        return hit


def model_load_count(cache_key: str | None = None) -> dict[tuple[str, str, str], int]:
    """How often each ``(cache_key, device, worker)`` was loaded in this process (diagnostics)."""
    with _CACHE_LOCK:
        return {k: v for k, v in _LOADS.items() if cache_key is None or k[0] == cache_key}


def clear_model_cache() -> None:
    """Drop every cached model of this process (frees memory; counts are kept)."""
    with _CACHE_LOCK:
        _CACHE.clear()
