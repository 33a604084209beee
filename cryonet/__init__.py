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

Every name loads on first access (``import cryonet`` does not import torch), and no name is also
a sub-module: the functions :func:`train`, :func:`evaluate` and :func:`importance` live in the
modules :mod:`cryonet.training`, :mod:`cryonet.evaluation` and :mod:`cryonet.permutation`.
:func:`predict` runs on the active Dask scheduler, i.e. on a ``distributed.Client``'s cluster
when one exists. ``docs/developer/cryonet-map.md`` lists the modules in data-flow order.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cryonet._version import __version__

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from cryonet.areas import AreaOptions, area_change, glacier_areas
    from cryonet.calibration import calibrate_checkpoint
    from cryonet.checkpoint import load_checkpoint, load_model
    from cryonet.demo import DemoConfig, run_demo
    from cryonet.evaluation import compare, evaluate
    from cryonet.export import export_cog, export_polygons
    from cryonet.infer import TilingOptions, open_mosaic, predict
    from cryonet.metrics import SegmentationMetrics
    from cryonet.models import MODELS, PRESETS, create_model, list_models, list_presets
    from cryonet.permutation import importance_from_checkpoint as importance
    from cryonet.training import TrainConfig, load_config, train
    from cryonet.transfer import FinetuneConfig, finetune

# public name -> (module, attribute) imported on first attribute access
_LAZY: dict[str, tuple[str, str]] = {
    "train": ("cryonet.training", "train"),
    "load_config": ("cryonet.training", "load_config"),
    "TrainConfig": ("cryonet.training", "TrainConfig"),
    "evaluate": ("cryonet.evaluation", "evaluate"),
    "compare": ("cryonet.evaluation", "compare"),
    "importance": ("cryonet.permutation", "importance_from_checkpoint"),
    "predict": ("cryonet.infer", "predict"),
    "open_mosaic": ("cryonet.infer", "open_mosaic"),
    "TilingOptions": ("cryonet.infer", "TilingOptions"),
    "export_cog": ("cryonet.export", "export_cog"),
    "export_polygons": ("cryonet.export", "export_polygons"),
    "finetune": ("cryonet.transfer", "finetune"),
    "FinetuneConfig": ("cryonet.transfer", "FinetuneConfig"),
    "run_demo": ("cryonet.demo", "run_demo"),
    "DemoConfig": ("cryonet.demo", "DemoConfig"),
    "create_model": ("cryonet.models", "create_model"),
    "list_models": ("cryonet.models", "list_models"),
    "list_presets": ("cryonet.models", "list_presets"),
    "MODELS": ("cryonet.models", "MODELS"),
    "PRESETS": ("cryonet.models", "PRESETS"),
    "load_checkpoint": ("cryonet.checkpoint", "load_checkpoint"),
    "load_model": ("cryonet.checkpoint", "load_model"),
    "SegmentationMetrics": ("cryonet.metrics", "SegmentationMetrics"),
    "calibrate_checkpoint": ("cryonet.calibration", "calibrate_checkpoint"),
    "AreaOptions": ("cryonet.areas", "AreaOptions"),
    "area_change": ("cryonet.areas", "area_change"),
    "glacier_areas": ("cryonet.areas", "glacier_areas"),
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
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'cryonet' has no attribute {name!r}")
    value = getattr(importlib.import_module(where[0]), where[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
