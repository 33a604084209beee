"""cryonet: the PyTorch side (models, training, evaluation, inference) of glacierstack.

The public API mirrors the ``cryonet`` command line one-to-one (same parameters, same
defaults; each command is a thin layer over one function):

=======================  ===================================================================
command line             Python
=======================  ===================================================================
``cryonet train``        :func:`train` (with :func:`load_config` / :class:`TrainConfig`)
``cryonet evaluate``     :func:`evaluate`
``cryonet compare``      :func:`compare`
``cryonet predict``      :func:`predict` (read the result with :func:`open_mosaic`)
``cryonet export``       :func:`export_cog`, :func:`export_polygons`
``cryonet importance``   :func:`importance`
``cryonet finetune``     :func:`finetune`
``cryonet demo``         :func:`run_demo`
``cryonet calibrate``    :func:`calibrate_checkpoint`
``cryonet areas``        :func:`area_change` (one date: :func:`glacier_areas`)
(models, checkpoints)    :func:`create_model`, :func:`load_checkpoint`, :func:`load_model`
=======================  ===================================================================

``cryonet.train``, ``cryonet.evaluate`` and ``cryonet.importance`` are these *functions*; the
modules of the same names are imported with ``from cryonet.train import TrainConfig`` (never
``import cryonet.train as m``, which returns the function). They are imported here, eagerly, so
that the names are the functions whatever was imported before; everything else loads on first
access. :func:`predict` runs on the active Dask scheduler, i.e. on a ``distributed.Client``'s
cluster when one exists.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Names that are also sub-modules: bind the functions now, after their modules are loaded, so
# a later ``from cryonet.train import ...`` cannot replace them with the module.
from cryonet.evaluate import compare, evaluate  # noqa: E402
from cryonet.importance import importance_from_checkpoint as importance  # noqa: E402
from cryonet.train import TrainConfig, load_config, train  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from cryonet.areas import AreaOptions, area_change, glacier_areas
    from cryonet.calibration import calibrate_checkpoint
    from cryonet.checkpoint import load_checkpoint, load_model
    from cryonet.demo import DemoConfig, run_demo
    from cryonet.export import export_cog, export_polygons
    from cryonet.infer import TilingOptions, open_mosaic, predict
    from cryonet.metrics import SegmentationMetrics
    from cryonet.models import MODELS, PRESETS, create_model, list_models, list_presets
    from cryonet.transfer import FinetuneConfig, finetune

# public name -> module that defines it (imported on first attribute access)
_LAZY: dict[str, str] = {
    "predict": "cryonet.infer",
    "open_mosaic": "cryonet.infer",
    "TilingOptions": "cryonet.infer",
    "export_cog": "cryonet.export",
    "export_polygons": "cryonet.export",
    "finetune": "cryonet.transfer",
    "FinetuneConfig": "cryonet.transfer",
    "run_demo": "cryonet.demo",
    "DemoConfig": "cryonet.demo",
    "create_model": "cryonet.models",
    "list_models": "cryonet.models",
    "list_presets": "cryonet.models",
    "MODELS": "cryonet.models",
    "PRESETS": "cryonet.models",
    "load_checkpoint": "cryonet.checkpoint",
    "load_model": "cryonet.checkpoint",
    "SegmentationMetrics": "cryonet.metrics",
    "calibrate_checkpoint": "cryonet.calibration",
    "AreaOptions": "cryonet.areas",
    "area_change": "cryonet.areas",
    "glacier_areas": "cryonet.areas",
}

__all__ = [
    "MODELS",
    "AreaOptions",
    "PRESETS",
    "DemoConfig",
    "FinetuneConfig",
    "SegmentationMetrics",
    "TilingOptions",
    "TrainConfig",
    "__version__",
    "area_change",
    "calibrate_checkpoint",
    "compare",
    "create_model",
    "evaluate",
    "export_cog",
    "export_polygons",
    "finetune",
    "glacier_areas",
    "importance",
    "list_models",
    "list_presets",
    "load_checkpoint",
    "load_config",
    "load_model",
    "open_mosaic",
    "predict",
    "run_demo",
    "train",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cryonet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
