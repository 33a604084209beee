"""glacierstack: multi-modal satellite feature cubes for glacier mapping (no torch here).

The public API mirrors the ``glacierstack`` command line one-to-one (same parameters, same
defaults; each command is a thin layer over one function):

==========================  =============================================================
command line                Python
==========================  =============================================================
``glacierstack synth``      :func:`generate_region`
``glacierstack providers``  :func:`list_providers` / :func:`get_provider`
``glacierstack search``     :func:`open_catalog` + :func:`search`
``glacierstack cube``       :func:`build_cube` (the steps below in one resumable call)
(steps of ``cube``)         :func:`load_modalities`, :func:`compute_features`,
                            :func:`make_labels`, :func:`write_cube`
(reading a cube)            :func:`open_cube`, :func:`summary`
``stac-from-files``         :func:`stac_from_files`
==========================  =============================================================

Every function returns lazy (Dask-backed) objects or writes a store; the work runs on the
active Dask scheduler, i.e. on a ``distributed.Client``'s cluster when one exists (Jupyter),
otherwise on the local threaded scheduler. Attributes are loaded on first access, so
``import glacierstack`` stays fast and never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from glacierstack.classes import CLASSES, NODATA_LABEL, NUM_CLASSES
from glacierstack.grid import Grid
from glacierstack.layers import ALL_LAYERS, LAYER_GROUPS, resolve_layers

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    import pystac

    from glacierstack.accessor import CubeSummary, summary
    from glacierstack.byo import stac_from_files
    from glacierstack.catalog import Catalog, EmptySearchError, open_catalog
    from glacierstack.features import FeatureOptions, GLCMParams, compute_features
    from glacierstack.labels import LabelRules, make_labels
    from glacierstack.modalities import get_provider, list_providers
    from glacierstack.pipeline import build_cube
    from glacierstack.runner import RunnerOptions, dask_session
    from glacierstack.stack import load_modalities
    from glacierstack.store import CubeError, IncompleteCubeError, open_cube, write_cube
    from glacierstack.synthetic import generate_region

__version__ = "0.1.0"

# public name -> module that defines it (imported on first attribute access)
_LAZY: dict[str, str] = {
    "generate_region": "glacierstack.synthetic",
    "list_providers": "glacierstack.modalities",
    "get_provider": "glacierstack.modalities",
    "Catalog": "glacierstack.catalog",
    "EmptySearchError": "glacierstack.catalog",
    "open_catalog": "glacierstack.catalog",
    "load_modalities": "glacierstack.stack",
    "FeatureOptions": "glacierstack.features",
    "GLCMParams": "glacierstack.features",
    "compute_features": "glacierstack.features",
    "LabelRules": "glacierstack.labels",
    "make_labels": "glacierstack.labels",
    "CubeError": "glacierstack.store",
    "IncompleteCubeError": "glacierstack.store",
    "write_cube": "glacierstack.store",
    "open_cube": "glacierstack.store",
    "build_cube": "glacierstack.pipeline",
    "RunnerOptions": "glacierstack.runner",
    "dask_session": "glacierstack.runner",
    "stac_from_files": "glacierstack.byo",
    "summary": "glacierstack.accessor",
    "CubeSummary": "glacierstack.accessor",
}

__all__ = [
    "ALL_LAYERS",
    "CLASSES",
    "LAYER_GROUPS",
    "NODATA_LABEL",
    "NUM_CLASSES",
    "Catalog",
    "CubeError",
    "CubeSummary",
    "EmptySearchError",
    "FeatureOptions",
    "GLCMParams",
    "Grid",
    "IncompleteCubeError",
    "LabelRules",
    "RunnerOptions",
    "__version__",
    "build_cube",
    "compute_features",
    "dask_session",
    "generate_region",
    "get_provider",
    "list_providers",
    "load_modalities",
    "make_labels",
    "open_catalog",
    "open_cube",
    "resolve_layers",
    "search",
    "stac_from_files",
    "summary",
    "write_cube",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'glacierstack' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    # every lazy name pulls in xarray; register the ``.gs`` accessor alongside it
    importlib.import_module("glacierstack.accessor")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def search(
    catalog: str | Catalog,
    bbox: Sequence[float],
    *,
    modality: str | None = None,
    collection: str | None = None,
    datetime: str | None = None,
    bbox_crs: str = "EPSG:4326",
    provider: str | None = None,
    limit: int = 50,
) -> list[pystac.Item]:
    """Search a catalog for the items of one modality or one collection (``glacierstack search``).

    Parameters
    ----------
    catalog
        A provider name (``earth-search``, ``planetary-computer``, ``synthetic``, ...), a STAC
        API URL, a path to a static catalog, or an opened :class:`Catalog`.
    bbox
        ``(xmin, ymin, xmax, ymax)`` in ``bbox_crs``.
    modality
        Modality name of the provider config (``s2``, ``dem``, ``lst``, ``velocity``,
        ``insar``); the items are filtered as a cube build would filter them.
    collection
        A collection id instead of a modality (no filtering). Give exactly one of the two.
    datetime
        Acquisition window, e.g. ``"2018-10-01/2018-10-31"`` or ``"2018"`` (``None``: any time).
    bbox_crs
        CRS of ``bbox``.
    provider
        Provider config used to read ``catalog`` (default: guessed from the source).
    limit
        Maximum number of items.

    Returns
    -------
    list of pystac.Item
        The items found, in the catalog's order.

    Raises
    ------
    EmptySearchError
        When nothing matches; the message names the collection, bbox and window.
    ValueError
        When both or neither of ``modality`` and ``collection`` are given.
    """
    from glacierstack.catalog import open_catalog

    if (modality is None) == (collection is None):
        raise ValueError(
            f"give exactly one of modality= or collection= (got {modality!r}, {collection!r})"
        )
    cat = open_catalog(catalog, provider)
    if modality is not None:
        return cat.search_modality(
            modality, bbox, bbox_crs=bbox_crs, datetime=datetime, limit=limit
        )
    assert collection is not None
    return cat.search(collection, bbox, bbox_crs=bbox_crs, datetime=datetime, limit=limit)
