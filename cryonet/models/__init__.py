"""The cryonet model zoo in plain PyTorch: CryoNet, U-Net, DeepLabV3+, SegFormer."""

from __future__ import annotations

from cryonet.models.blocks import SegmentationModel
from cryonet.models.registry import (
    MODELS,
    PRESETS,
    ModelSpec,
    create_model,
    list_models,
    list_presets,
    resolve_config,
)

__all__ = [
    "MODELS",
    "PRESETS",
    "ModelSpec",
    "SegmentationModel",
    "create_model",
    "list_models",
    "list_presets",
    "resolve_config",
]
