"""The in-memory kernel: normalise a window, run its tiles, blend them with Hann weights.

:func:`predict_array` is the reference path for a region held in memory; the Dask path
(:mod:`cryonet.infer.task`) calls the same :func:`normalise` / :func:`blend_window` /
:func:`finish` per output chunk.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cryonet.infer.sources import LoadedModel
from cryonet.infer.tiling import TilingOptions, hann_window, input_window, touching_starts
from glacierstack.classes import NODATA_LABEL

__all__ = [
    "PROBABILITY_FILL",
    "PROBABILITY_SCALE",
    "blend_window",
    "finish",
    "normalise",
    "predict_array",
    "quantise",
]

PROBABILITY_SCALE = 254
"""Probabilities are stored as ``uint8``: ``round(p * 254)``; read back with ``/ 254``."""

PROBABILITY_FILL = 255
"""Fill value of the stored probabilities: a chunk never written reads as 255 (missing)."""


def _forward(model: LoadedModel, batch: np.ndarray, device: torch.device, amp: bool) -> np.ndarray:
    x = torch.from_numpy(batch).to(device)
    with torch.inference_mode():
        if amp:
            dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
            with torch.autocast(device_type=device.type, dtype=dtype):
                logits = model.module(x)
        else:
            logits = model.module(x)
        probs = torch.softmax(logits.float() / model.temperature, dim=1)
    if probs.shape[1] != model.num_classes or probs.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"model returned {tuple(probs.shape)} for input {tuple(x.shape)}; expected "
            f"(N, {model.num_classes}, H, W) with the input's H, W"
        )
    return probs.cpu().numpy()


def blend_window(
    window: np.ndarray,
    origin: tuple[int, int],
    region_shape: tuple[int, int],
    target: tuple[slice, slice],
    model: LoadedModel,
    tiling: TilingOptions,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Blend the global tiles touching ``target`` (region pixel slices).

    ``window`` holds the normalised input ``(C, h, w)`` for region pixels starting at ``origin``
    and must contain every tile touching ``target``. Returns the blended probabilities
    ``(K, th, tw)`` float32. ``on_batch(n)`` is called after each forward pass of ``n`` tiles.
    """
    t = tiling.tile_size
    (ty, tx), (oy, ox) = target, origin
    th, tw = ty.stop - ty.start, tx.stop - tx.start
    sy, sx = (touching_starts(n, sl, tiling) for n, sl in zip(region_shape, target, strict=True))
    weights = hann_window(t).astype(np.float32)
    acc = np.zeros((model.num_classes, th, tw), dtype=np.float32)
    wsum = np.zeros((th, tw), dtype=np.float32)
    device = tiling.resolved_device()

    # Pad so that every tile is t x t (only when the region is smaller than a tile).
    c, h, w = window.shape
    need_h, need_w = max(h, max(sy) - oy + t), max(w, max(sx) - ox + t)
    if (need_h, need_w) != (h, w):
        pad = ((0, 0), (0, need_h - h), (0, need_w - w))
        window = np.pad(window, pad, mode="reflect" if min(h, w) > 1 else "edge")

    tiles = [(y, x) for y in sy for x in sx]
    for b0 in range(0, len(tiles), tiling.batch_size):
        group = tiles[b0 : b0 + tiling.batch_size]
        batch = np.stack([window[:, y - oy : y - oy + t, x - ox : x - ox + t] for y, x in group])
        probs = _forward(model, np.ascontiguousarray(batch, dtype=np.float32), device, tiling.amp)
        if on_batch is not None:
            on_batch(len(group))
        for (y, x), p in zip(group, probs, strict=True):
            # intersection of tile [y, y+t) x [x, x+t) with the target, in region coordinates
            y0, y1 = max(y, ty.start), min(y + t, ty.stop, region_shape[0])
            x0, x1 = max(x, tx.start), min(x + t, tx.stop, region_shape[1])
            wv = weights[y0 - y : y1 - y, x0 - x : x1 - x]
            acc[:, y0 - ty.start : y1 - ty.start, x0 - tx.start : x1 - tx.start] += (
                p[:, y0 - y : y1 - y, x0 - x : x1 - x] * wv
            )
            wsum[y0 - ty.start : y1 - ty.start, x0 - tx.start : x1 - tx.start] += wv
    acc /= wsum
    return acc


def normalise(raw: np.ndarray, model: LoadedModel) -> tuple[np.ndarray, np.ndarray]:
    """``(x - mean) / std`` in float32 with NaN -> 0 (the mean); also the all-NaN mask."""
    raw = np.asarray(raw, dtype=np.float32)
    nodata = np.all(np.isnan(raw), axis=0)
    mean = model.mean.astype(np.float32)[:, None, None]
    std = model.std.astype(np.float32)[:, None, None]
    x = (raw - mean) / std
    np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return x, nodata


def finish(probs: np.ndarray, nodata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax classes (``NODATA_LABEL`` where all inputs are NaN) and probabilities zeroed there."""
    classes = np.argmax(probs, axis=0).astype(np.uint8)
    classes[nodata] = NODATA_LABEL
    probs[:, nodata] = 0.0
    return probs, classes


def quantise(probs: np.ndarray) -> np.ndarray:
    """Probabilities in ``[0, 1]`` as ``uint8`` (``round(p * PROBABILITY_SCALE)``)."""
    return np.rint(np.clip(probs, 0.0, 1.0) * PROBABILITY_SCALE).astype(np.uint8)


def predict_array(
    features: np.ndarray,
    model: LoadedModel,
    tiling: TilingOptions | None = None,
    *,
    target: tuple[slice, slice] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Predict an in-memory region (the reference path; :func:`predict` does this per chunk).

    Parameters
    ----------
    features
        ``(C, H, W)`` raw (un-normalised) inputs in ``model.bands`` order; NaN = missing.
    model
        The model and its normalisation statistics.
    tiling
        Tile size, overlap, batch size, device.
    target
        Optional ``(rows, cols)`` slices of the region to return (default: all of it). The
        result for a sub-region equals the same pixels of the whole-region result.

    Returns
    -------
    probs : numpy.ndarray
        ``(K, h, w)`` float32 blended class probabilities (0 where all inputs are NaN).
    classes : numpy.ndarray
        ``(h, w)`` uint8 argmax class; ``NODATA_LABEL`` (255) where all inputs are NaN.
    """
    tiling = tiling or TilingOptions()
    if features.ndim != 3 or features.shape[0] != len(model.bands):
        raise ValueError(
            f"features must be (C={len(model.bands)}, H, W) in band order {list(model.bands)}, "
            f"got shape {features.shape}"
        )
    region = (int(features.shape[1]), int(features.shape[2]))
    target = target or (slice(0, region[0]), slice(0, region[1]))
    wy, wx = input_window(region, target, tiling)
    x, nodata = normalise(features[:, wy, wx], model)
    probs = blend_window(x, (wy.start, wx.start), region, target, model, tiling)
    ty, tx = target
    nodata = nodata[
        ty.start - wy.start : ty.stop - wy.start, tx.start - wx.start : tx.stop - wx.start
    ]
    return finish(probs, nodata)
