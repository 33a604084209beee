"""Checkpoints: weights plus everything needed to apply them to a new cube.

A checkpoint is ``torch.save`` of one plain dict (only dicts, lists, strings, numbers and
tensors, so it loads with ``torch.load(weights_only=True)``; nothing is unpickled as code):

============== ==============================================================================
key            content
============== ==============================================================================
``format``     ``"cryonet-checkpoint"``
``version``    checkpoint format version (:data:`FORMAT_VERSION`)
``state_dict`` model weights (CPU tensors)
``model``      model config: ``{"name", "encoder", "in_channels", "num_classes", ...}``
``bands``      input band (layer) names, in the channel order the model expects
``mean``       per-band normalisation mean (list of float, same order as ``bands``)
``std``        per-band normalisation standard deviation
``classes``    class table (list of ``{"id", "name", "label", "color"}``)
``epoch``      training epoch (int or ``None``)
``metrics``    dict of plain values (e.g. validation mIoU)
``software``   ``{"cryonet": ..., "torch": ...}`` versions that wrote it
``extra``      free-form plain dict (e.g. the training config)
``calibration`` optional: temperature scaling fitted after training
               (:mod:`cryonet.calibration`; ``{"temperature", "ece_before", "ece_after", ...}``)
============== ==============================================================================
"""

from __future__ import annotations

import math
import os
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cryonet._version import __version__
from cryonet.models import SegmentationModel, create_model
from glacierstack import storage

FORMAT = "cryonet-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "version", "state_dict", "model", "bands", "mean", "std", "classes")


def _plain(obj: Any, where: str) -> Any:
    """Convert ``obj`` to dicts/lists/str/int/float/bool/None/tensors, or raise ``TypeError``."""
    if obj is None:
        return None
    if isinstance(obj, np.generic):
        return obj.item()
    for kind in (bool, int, float, str):  # exact builtins (np.float64, TorchVersion are subclasses)
        if isinstance(obj, kind):
            return kind(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): _plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, Sequence):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(
        f"checkpoint field {where} has type {type(obj).__name__}; only dicts, lists, str, numbers, "
        "bools, None, NumPy values and tensors can be stored"
    )


def _unwrap(model: nn.Module) -> nn.Module:
    """Strip ``torch.compile`` and (Distributed)DataParallel wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _stats(values: Any, name: str, bands: list[str]) -> list[float]:
    out = [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]
    if len(out) != len(bands):
        raise ValueError(f"{name} has {len(out)} values but there are {len(bands)} bands")
    bad = [b for b, v in zip(bands, out, strict=True) if not math.isfinite(v)]
    if name == "std":
        bad += [b for b, v in zip(bands, out, strict=True) if math.isfinite(v) and v <= 0]
    if bad:
        raise ValueError(
            f"{name} is not finite{' and positive' if name == 'std' else ''} for bands {bad}"
        )
    return out


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    bands: Sequence[str],
    mean: Sequence[float] | np.ndarray,
    std: Sequence[float] | np.ndarray,
    classes: Sequence[Mapping[str, Any]] | None = None,
    epoch: int | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path | str:
    """Write a checkpoint atomically (temporary file in the same folder, then rename).

    Parameters
    ----------
    path
        Output file (conventionally ``*.pt``); parent folders are created. A URL
        (``s3://bucket/runs/a/best.pt``) is written locally and uploaded in one piece.
    model
        A model from :func:`cryonet.models.create_model` (``torch.compile``/DDP wrappers are
        unwrapped); its ``config`` attribute is stored.
    bands
        Input band names in channel order; must match the model's ``in_channels``.
    mean, std
        Per-band normalisation statistics (``std > 0``), same order as ``bands``.
    classes
        Class table (default :func:`glacierstack.classes.class_table`); its length must match
        the model's ``num_classes``.
    epoch, metrics, extra
        Training state; ``metrics`` and ``extra`` must hold plain values (NumPy scalars and
        arrays are converted).

    Returns
    -------
    pathlib.Path or str
        The written path (the URL for a URL).

    Raises
    ------
    ValueError
        If bands/statistics/classes are inconsistent with each other or with the model.
    TypeError
        If ``metrics``/``extra`` hold values that cannot be stored safely.
    """
    from glacierstack.classes import class_table

    net = _unwrap(model)
    config = getattr(net, "config", None)
    if not config:
        raise ValueError(
            f"{type(net).__name__} has no model config; "
            "build models with cryonet.models.create_model"
        )
    bands = [str(b) for b in bands]
    if len(set(bands)) != len(bands):
        raise ValueError(f"duplicate band names in {bands}")
    if len(bands) != config["in_channels"]:
        raise ValueError(
            f"{len(bands)} band names given but the model has "
            f"{config['in_channels']} input channels"
        )
    table = _plain(list(classes) if classes is not None else class_table(), "classes")
    if len(table) != config["num_classes"]:
        raise ValueError(
            f"class table has {len(table)} classes but the model has "
            f"{config['num_classes']} outputs"
        )
    ckpt = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "model": _plain(config, "model"),
        "bands": bands,
        "mean": _stats(mean, "mean", bands),
        "std": _stats(std, "std", bands),
        "classes": table,
        "epoch": None if epoch is None else int(epoch),
        "metrics": _plain(dict(metrics or {}), "metrics"),
        "software": {"cryonet": str(__version__), "torch": str(torch.__version__)},
        "extra": _plain(dict(extra or {}), "extra"),
    }
    return _write_atomic(path, ckpt)


def _write_atomic(where: str | os.PathLike[str], ckpt: dict[str, Any]) -> Path | str:
    if storage.is_url(where):  # staged in a temporary folder, then uploaded
        with storage.staged_output(where) as local:
            _write_atomic(local, ckpt)
        return os.fspath(where)
    path = Path(where)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
        storage.publish(tmp, path)
    except BaseException:
        storage.discard(tmp)
        raise
    return path


def rewrite_checkpoint(path: str | os.PathLike[str], ckpt: Mapping[str, Any]) -> Path | str:
    """Atomically replace a checkpoint (a path or URL) with a dict from :func:`load_checkpoint`.

    Used to add entries after training (e.g. ``calibration``); the dict must still be a valid
    checkpoint and hold only plain values.
    """
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if ckpt.get("format") != FORMAT or missing:
        raise ValueError(
            f"refusing to write {path}: not a cryonet checkpoint dict (missing {missing})"
        )
    plain = {k: (v if k == "state_dict" else _plain(v, k)) for k, v in ckpt.items()}
    return _write_atomic(path, plain)


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Load and validate a checkpoint dict with ``torch.load(weights_only=True)``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a cryonet checkpoint (unsafe content, missing keys, newer format).
    """
    if storage.is_url(path):  # s3://... : read from a local copy (fetched once per machine)
        if not storage.output_exists(path):
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        path = storage.local_file(path)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # unsafe content refused by weights_only=True
        raise ValueError(f"{path} is not a loadable cryonet checkpoint: {err}") from err
    except Exception as err:  # noqa: BLE001 - a text file, a truncated zip, ... (KeyError: 101)
        raise ValueError(
            f"{path} is not a checkpoint (torch.load failed: {type(err).__name__}: {err}); give "
            "a .pt file written by cryonet train"
        ) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a cryonet checkpoint (no format={FORMAT!r} entry)")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint {path} lacks the entries {missing}")
    if ckpt["version"] > FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {path} has format version {ckpt['version']}; this cryonet "
            f"({__version__}) reads up to {FORMAT_VERSION}"
        )
    return ckpt


def check_bands(
    checkpoint_bands: Sequence[str], cube_bands: Sequence[str], source: str = "checkpoint"
) -> list[int]:
    """Check that a cube holds every band of a checkpoint; return their positions in the cube.

    The one band rule (:mod:`cryonet.bands`): bands are taken by name, in the checkpoint's
    order; the cube's order and extra bands do not matter. The message names the missing bands.
    """
    from cryonet.bands import band_index

    return band_index(checkpoint_bands, cube_bands, f"the cube for the {source}")


def load_model(
    path: str | os.PathLike[str],
    map_location: str | torch.device | None = "cpu",
    bands: Sequence[str] | None = None,
) -> tuple[SegmentationModel, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint and load its weights.

    Parameters
    ----------
    path
        Checkpoint file written by :func:`save_checkpoint`.
    map_location
        Device for the weights and the returned model.
    bands
        The band list of the cube the model will be applied to; if given it must hold every
        band of the checkpoint, in any order (see :func:`check_bands`).

    Returns
    -------
    model
        The model in ``eval()`` mode on ``map_location``.
    meta
        The checkpoint dict without ``state_dict`` (``model``, ``bands``, ``mean``, ``std``,
        ``classes``, ``epoch``, ``metrics``, ``software``, ...).

    Raises
    ------
    ValueError
        If the file is not a valid checkpoint or ``bands`` lack some of the checkpoint's.
    """
    ckpt = load_checkpoint(path, map_location=map_location)
    if bands is not None:
        check_bands(ckpt["bands"], bands, source=f"checkpoint {Path(path).name}")
    model = create_model(**ckpt["model"])
    model.load_state_dict(ckpt["state_dict"], strict=True)
    if map_location is not None:
        model.to(map_location)
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model, meta
