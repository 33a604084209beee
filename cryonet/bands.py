"""The one band rule: a model's bands are taken from a cube by name, in the model's order.

A cube must hold every band a model was trained on; its band order and any extra bands do not
matter. Prediction, evaluation, permutation importance and fine-tuning all select bands with
:func:`band_index`, so a reordered cube gives the same result everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["band_index"]


def band_index(wanted: Sequence[str], available: Sequence[str], where: str) -> list[int]:
    """Positions of the ``wanted`` bands in ``available``, in the order of ``wanted``.

    Parameters
    ----------
    wanted
        The bands a model needs, in its channel order.
    available
        The bands of a cube, in the cube's order.
    where
        What ``available`` belongs to, for the error message (e.g. ``"cube poiqu.zarr"``).

    Raises
    ------
    ValueError
        Naming the missing bands and ``where``, if any wanted band is not available or a band
        is wanted twice.
    """
    wanted, available = [str(b) for b in wanted], [str(b) for b in available]
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"duplicate band names in {wanted}")
    missing = [b for b in wanted if b not in available]
    if missing:
        raise ValueError(f"{where} lacks bands {missing} that the model needs; it has {available}")
    return [available.index(b) for b in wanted]
