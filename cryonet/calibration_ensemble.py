"""Temperature scaling of averaged outputs: test-time augmentation and ensembles.

The members of an ensemble (or the transforms of TTA) are each calibrated by their own
temperature, but the average of calibrated probabilities is not calibrated: it is usually
*less* confident than its members. One more temperature ``T_avg`` is fitted on the log of the
averaged probabilities, ``p = softmax(log p_avg / T_avg)`` (the arg-max, hence the class map,
is unchanged), by the same NLL fit as for a single model.

It is stored in the **first** checkpoint of the ensemble, under ``ensemble_calibrations``: one
entry per combination of the other members (their SHA-256, in order) and the dihedral
transform codes, with the same fields as a single model's ``calibration``.
:class:`cryonet.infer.EnsembleModel` applies the entry that matches its members and
transforms exactly; any other combination (or a member file that changed since) gets
``T_avg = 1``, the plain average.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryonet.calibration import Calibration

__all__ = ["ENSEMBLE_KEY", "averaged_temperature", "store_averaged_calibration"]

ENSEMBLE_KEY = "ensemble_calibrations"
"""Checkpoint key of the temperatures fitted for averaged outputs (a list of entries)."""


def _matches(entry: Mapping[str, Any], members: Sequence[str], tta: Sequence[int]) -> bool:
    return list(entry.get("members", ())) == list(members) and list(entry.get("tta", ())) == [
        int(c) for c in tta
    ]


def averaged_temperature(
    meta: Mapping[str, Any], members: Sequence[str], tta: Sequence[int]
) -> float:
    """Return the temperature stored for this average in a first member's checkpoint (or 1).

    Parameters
    ----------
    meta
        The first member's checkpoint dict (or a dict holding its ``ensemble_calibrations``).
    members
        SHA-256 (or cache keys) of the *other* members, in order.
    tta
        Dihedral transform codes.

    Raises
    ------
    ValueError
        For a stored temperature that is not positive and finite.
    """
    for entry in meta.get(ENSEMBLE_KEY) or ():
        if _matches(entry, members, tta):
            t = float(entry["temperature"])
            if not math.isfinite(t) or t <= 0:
                raise ValueError(f"ensemble calibration has an invalid temperature {t}")
            return t
    return 1.0


def store_averaged_calibration(
    checkpoint: str | os.PathLike[str],
    calibration: Calibration,
    members: Sequence[str],
    tta: Sequence[int],
) -> Path | str:
    """Add (or replace) the entry for ``members`` / ``tta`` in the checkpoint, atomically."""
    from cryonet.checkpoint import load_checkpoint, rewrite_checkpoint

    ckpt = load_checkpoint(checkpoint)
    kept = [e for e in ckpt.get(ENSEMBLE_KEY) or [] if not _matches(e, members, tta)]
    entry = {"members": list(members), "tta": [int(c) for c in tta], **calibration.to_dict()}
    ckpt[ENSEMBLE_KEY] = [*kept, entry]
    return rewrite_checkpoint(checkpoint, ckpt)
