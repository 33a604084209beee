"""The model registry shared by the CLI, configs and the Python API.

:data:`MODELS` maps an architecture name to a :class:`ModelSpec` (builder class, accepted
encoders, default encoder); :data:`PRESETS` maps a preset name to a full set of options
(the paper configuration on GPU, small configurations for CPU). :func:`create_model`
accepts either.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from cryonet.models.blocks import SegmentationModel
from cryonet.models.deeplabv3plus import DeepLabV3Plus
from cryonet.models.resnet import RESNETS
from cryonet.models.segformer import MIT_ENCODERS, SegFormer
from cryonet.models.unet import UNet
from cryonet.models.unetplusplus import CryoNet


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture."""

    builder: type[SegmentationModel]
    """Class called as ``builder(in_channels, num_classes, encoder=..., **options)``."""
    encoders: tuple[str, ...]
    """Encoder names it accepts."""
    default_encoder: str
    """Encoder used when none is given."""
    description: str
    """One line for ``--help`` texts and the docs."""


MODELS: dict[str, ModelSpec] = {
    "cryonet": ModelSpec(
        CryoNet,
        tuple(RESNETS),
        "resnet101",
        "UNet++ nested decoder + ResNet encoder + scSE (CryoNet)",
    ),
    "unet": ModelSpec(UNet, tuple(RESNETS), "resnet34", "U-Net decoder on a ResNet encoder"),
    "deeplabv3plus": ModelSpec(
        DeepLabV3Plus,
        tuple(RESNETS),
        "resnet101",
        "DeepLabV3+: atrous ResNet (OS 16), ASPP, low-level skip",
    ),
    "segformer": ModelSpec(
        SegFormer, tuple(MIT_ENCODERS), "mit_b2", "SegFormer: Mix Transformer + all-MLP decoder"
    ),
}
"""Architecture name -> :class:`ModelSpec`."""

PRESETS: dict[str, dict[str, Any]] = {
    # Paper-sized models (GPU).
    "cryonet-paper": {"name": "cryonet", "encoder": "resnet101"},
    "unet-paper": {"name": "unet", "encoder": "resnet101"},
    "deeplabv3plus-paper": {"name": "deeplabv3plus", "encoder": "resnet101"},
    "segformer-b2": {"name": "segformer", "encoder": "mit_b2"},
    # CPU-sized models (demo, tests, laptops).
    "cryonet-small": {
        "name": "cryonet", "encoder": "resnet34", "decoder_channels": (128, 64, 32, 16, 16),
    },
    "cryonet-tiny": {
        "name": "cryonet", "encoder": "resnet18", "decoder_channels": (64, 32, 16, 16, 8),
        "nested_channels": (16, 32, 64, 128),
    },
    "unet-tiny": {"name": "unet", "encoder": "resnet18", "decoder_channels": (64, 32, 16, 16, 8)},
    "deeplabv3plus-tiny": {
        "name": "deeplabv3plus", "encoder": "resnet18",
        "aspp_channels": 64, "low_level_channels": 16,
    },
    "segformer-b0": {"name": "segformer", "encoder": "mit_b0"},
    "segformer-tiny": {"name": "segformer", "encoder": "mit_b0", "decoder_dim": 64},
}  # fmt: skip
"""Preset name -> options (``name`` is the architecture). Any option can be overridden."""


def list_models() -> list[str]:
    """Names of the registered architectures."""
    return sorted(MODELS)


def list_presets() -> list[str]:
    """Names of the registered presets."""
    return sorted(PRESETS)


def _plain(value: Any) -> Any:
    """Tuples -> lists so configs survive JSON/YAML and ``torch.load(weights_only=True)``."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def resolve_config(
    name: str,
    in_channels: int,
    num_classes: int,
    encoder: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Resolve a model or preset name and options into a complete plain-dict config.

    Parameters
    ----------
    name
        An architecture in :data:`MODELS` or a preset in :data:`PRESETS`.
    in_channels, num_classes
        Input bands and output classes.
    encoder
        Encoder name; defaults to the preset's or the architecture's default.
    **kwargs
        Architecture options (e.g. ``decoder_channels``, ``deep_supervision``); they
        override a preset's.

    Returns
    -------
    dict
        ``{"name", "encoder", "in_channels", "num_classes", **options}`` with the
        architecture (not the preset) as ``name``; :func:`create_model` ``(**config)``
        rebuilds the same model.

    Raises
    ------
    ValueError
        For an unknown name or an encoder the architecture does not accept.
    TypeError
        For an option the architecture does not have.
    """
    options: dict[str, Any] = {}
    if name in PRESETS:
        options = dict(PRESETS[name])
        name = options.pop("name")
    if name not in MODELS:
        raise ValueError(
            f"unknown model {name!r}; architectures: {list_models()}, presets: {list_presets()}"
        )
    spec = MODELS[name]
    encoder = encoder or options.pop("encoder", None) or spec.default_encoder
    options.pop("encoder", None)
    if encoder not in spec.encoders:
        raise ValueError(
            f"model {name!r} does not accept encoder {encoder!r}; use one of {list(spec.encoders)}"
        )
    options.update(kwargs)
    allowed = set(inspect.signature(spec.builder).parameters) - {
        "in_channels",
        "num_classes",
        "encoder",
    }
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"model {name!r} has no option(s) {unknown}; it accepts {sorted(allowed)}")
    config = {
        "name": name,
        "encoder": encoder,
        "in_channels": int(in_channels),
        "num_classes": int(num_classes),
    }
    config.update({k: _plain(v) for k, v in options.items()})
    return config


def create_model(
    name: str,
    in_channels: int,
    num_classes: int,
    encoder: str | None = None,
    **kwargs: Any,
) -> SegmentationModel:
    """Build a registered segmentation model (random initialisation, never downloads weights).

    Parameters
    ----------
    name
        ``"cryonet"``, ``"unet"``, ``"deeplabv3plus"``, ``"segformer"`` or a preset name
        such as ``"cryonet-tiny"`` (see :func:`list_models`, :func:`list_presets`).
    in_channels
        Number of input bands (30 for the full CryoNet stack).
    num_classes
        Number of output classes (5).
    encoder
        Encoder name (``"resnet18"`` .. ``"resnet152"`` for the CNNs, ``"mit_b0"`` ..
        ``"mit_b2"`` for SegFormer); the default depends on the model/preset.
    **kwargs
        Architecture options, see the model classes.

    Returns
    -------
    SegmentationModel
        Maps ``(N, in_channels, H, W)`` float input to ``(N, num_classes, H, W)`` logits for
        any ``H, W`` (inputs are padded internally to a multiple of 32 and cropped back).
        Its ``config`` attribute is the resolved plain-dict configuration.

    Examples
    --------
    >>> model = create_model("cryonet", 30, 5, encoder="resnet18")
    >>> model.config["encoder"]
    'resnet18'
    """
    config = resolve_config(name, in_channels, num_classes, encoder, **kwargs)
    builder = MODELS[config["name"]].builder
    options = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in config.items()
        if k not in ("name", "in_channels", "num_classes")
    }
    model = builder(config["in_channels"], config["num_classes"], **options)
    model.config = config
    return model
