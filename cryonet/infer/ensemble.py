"""Test-time augmentation (the 8 dihedral transforms) and ensembles of checkpoints.

Both average class *probabilities*: for every member model ``m`` (with its calibrated
temperature ``T_m``) and every chosen transform ``g`` of the dihedral group D4 (identity,
rotations by 90/180/270 degrees, and the same after a left-right flip), the input tile is
transformed, the model run, its softmax turned back with ``g^-1``, and all of these averaged:

``p = 1 / (M |G|) * sum_m sum_g g^-1( softmax( m(g x) / T_m ) )``

The result plugs into the tiled mosaic machinery as one more :class:`ModelSource`
(:class:`EnsembleModel`), so it is tiled, blended, chunk-independent and resumable like a
single model; its module returns ``log p``, whose softmax is ``p`` again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cryonet.infer.sources import CheckpointModel, LoadedModel, ModelSource

__all__ = [
    "DIHEDRAL",
    "AveragedModule",
    "EnsembleModel",
    "dihedral",
    "inverse_dihedral",
    "model_source",
    "parse_tta",
]

DIHEDRAL: tuple[int, ...] = tuple(range(8))
"""Codes of the 8 dihedral transforms: ``k = code % 4`` quarter turns, after a left-right
flip when ``code >= 4`` (0 is the identity)."""


def dihedral(x: torch.Tensor, code: int) -> torch.Tensor:
    """Apply dihedral transform ``code`` to the last two axes of ``x``."""
    if code >= 4:
        x = x.flip(-1)
    return torch.rot90(x, code % 4, dims=(-2, -1))


def inverse_dihedral(y: torch.Tensor, code: int) -> torch.Tensor:
    """Undo :func:`dihedral` ``code``."""
    y = torch.rot90(y, -(code % 4), dims=(-2, -1))
    return y.flip(-1) if code >= 4 else y


def parse_tta(spec: str | Sequence[int] | None) -> tuple[int, ...]:
    """Parse ``None``/``"none"`` (identity only), ``"all"`` (8) or codes ``"0,4"``."""
    if spec is None or spec == "none":
        return (0,)
    if spec == "all":
        return DIHEDRAL
    codes = [int(c) for c in spec.split(",")] if isinstance(spec, str) else [int(c) for c in spec]
    bad = [c for c in codes if c not in DIHEDRAL]
    if bad or not codes or len(set(codes)) != len(codes):
        raise ValueError(f"TTA transforms must be distinct codes 0..7 (or 'all'), got {spec!r}")
    return tuple(codes)


class AveragedModule(nn.Module):
    """Average the probabilities of several models over several dihedral transforms.

    The forward pass returns the log of the averaged probabilities.

    Parameters
    ----------
    members
        Modules mapping ``(N, C, H, W)`` to logits ``(N, K, H, W)``.
    temperatures
        Softmax temperature of each member.
    scales, shifts
        Per member ``(C,)`` affine maps from the first member's normalised input to the
        member's own normalisation (``None``: identical statistics).
    transforms
        Dihedral codes (see :data:`DIHEDRAL`).
    """

    def __init__(
        self,
        members: Sequence[nn.Module],
        temperatures: Sequence[float],
        transforms: Sequence[int] = (0,),
        scales: Sequence[np.ndarray | None] | None = None,
        shifts: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.temperatures = [float(t) for t in temperatures]
        self.transforms = parse_tta(list(transforms))
        n = len(self.members)
        self._affine = [
            None
            if (scales is None or scales[i] is None)
            else (
                torch.as_tensor(scales[i], dtype=torch.float32).view(1, -1, 1, 1),
                torch.as_tensor(shifts[i], dtype=torch.float32).view(1, -1, 1, 1),  # type: ignore[index]
            )
            for i in range(n)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        acc: torch.Tensor | None = None
        for member, t, aff in zip(self.members, self.temperatures, self._affine, strict=True):
            xm = x if aff is None else x * aff[0].to(x.device) + aff[1].to(x.device)
            for code in self.transforms:
                logits = member(dihedral(xm, code)).float()
                p = inverse_dihedral(torch.softmax(logits / t, dim=1), code)
                acc = p if acc is None else acc + p
        assert acc is not None
        acc = acc / (len(self.members) * len(self.transforms))
        return torch.log(acc.clamp_min(1e-12))


def _check_same_contract(models: Sequence[LoadedModel], names: Sequence[str]) -> None:
    first = models[0]
    for m, name in zip(models[1:], names[1:], strict=True):
        if m.bands != first.bands:
            raise ValueError(
                f"ensemble member {name} uses bands {list(m.bands)}; the first member "
                f"{names[0]} uses {list(first.bands)}"
            )
        if [c.get("name") for c in m.classes] != [c.get("name") for c in first.classes]:
            raise ValueError(f"ensemble member {name} has other classes than {names[0]}")


@dataclass(frozen=True)
class EnsembleModel:
    """A :class:`ModelSource` averaging members and test-time transforms (see module docs)."""

    members: tuple[ModelSource, ...]
    """Member sources (checkpoints of several seeds or folds); same bands and classes."""
    tta: tuple[int, ...] = (0,)
    """Dihedral transform codes (``(0,)``: no TTA; :data:`DIHEDRAL`: all 8)."""

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("an ensemble needs at least one member")
        object.__setattr__(self, "members", tuple(self.members))
        object.__setattr__(self, "tta", parse_tta(list(self.tta)))

    @property
    def cache_key(self) -> str:
        """Member keys and transforms."""
        return "ensemble:" + json.dumps([[m.cache_key for m in self.members], list(self.tta)])

    def member_ids(self) -> list[str]:
        """Each member's identity: its checkpoint's SHA-256 (else its cache key)."""
        return [m.sha256() if hasattr(m, "sha256") else m.cache_key for m in self.members]

    def sha256(self) -> str:
        """Hash of the members' identities (checkpoint SHA-256s) and the transforms."""
        return hashlib.sha256(json.dumps([self.member_ids(), list(self.tta)]).encode()).hexdigest()

    def load(self, device: torch.device) -> LoadedModel:
        """Load every member and wrap them in an :class:`AveragedModule`.

        The :class:`LoadedModel`'s temperature is the one fitted for exactly this average
        (stored in the first member's checkpoint by
        :func:`cryonet.calibration.calibrate_checkpoint`; 1 if none was).
        """
        from cryonet.calibration_ensemble import ENSEMBLE_KEY, averaged_temperature

        loaded = [m.load(device) for m in self.members]
        names = [m.cache_key for m in self.members]
        _check_same_contract(loaded, names)
        first = loaded[0]
        scales: list[np.ndarray | None] = []
        shifts: list[np.ndarray | None] = []
        for m in loaded:
            if np.array_equal(m.mean, first.mean) and np.array_equal(m.std, first.std):
                scales.append(None)
                shifts.append(None)
            else:
                scales.append(first.std / m.std)
                shifts.append((first.mean - m.mean) / m.std)
        for m in loaded:
            if isinstance(m.module, nn.Module):
                m.module.eval()
        module = AveragedModule(
            [m.module for m in loaded],  # type: ignore[misc]
            [m.temperature for m in loaded],
            self.tta,
            scales,
            shifts,
        ).to(device)
        stored = first.meta.get(ENSEMBLE_KEY)
        temperature = (
            averaged_temperature(first.meta, self.member_ids()[1:], self.tta) if stored else 1.0
        )
        meta: dict[str, Any] = {
            "ensemble": [{k: v for k, v in m.meta.items() if k != ENSEMBLE_KEY} for m in loaded],
            "tta": list(self.tta),
            "averaged_temperature": temperature,
        }
        return LoadedModel(
            module, first.bands, first.mean, first.std, first.classes, meta, temperature
        )


def model_source(
    checkpoint: str | os.PathLike[str] | ModelSource,
    ensemble: Sequence[str | os.PathLike[str] | ModelSource] = (),
    tta: str | Sequence[int] | None = None,
) -> ModelSource:
    """Build the source for a checkpoint plus optional ensemble members and TTA transforms.

    A plain checkpoint without either stays a :class:`CheckpointModel` (unchanged mosaics
    and run signatures); otherwise an :class:`EnsembleModel` of all of them.
    """

    def as_source(c: str | os.PathLike[str] | ModelSource) -> ModelSource:
        return (
            c
            if isinstance(c, ModelSource)
            else CheckpointModel(c if isinstance(c, str) else Path(c))
        )

    transforms = parse_tta(tta)
    first = as_source(checkpoint)
    if not ensemble and transforms == (0,):
        return first
    return EnsembleModel((first, *(as_source(c) for c in ensemble)), transforms)
