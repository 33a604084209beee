"""The training recipe: :class:`TrainConfig`, bundled presets (:func:`load_config`), the model.

A frozen dataclass whose defaults are the paper's recipe; ``configs/paper.yaml`` and
``configs/cpu.yaml`` are bundled presets of it. :func:`build_model` turns a config into a model
of the :mod:`cryonet.models` registry.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from torch import nn

from cryonet.data import SplitConfig
from glacierstack.classes import NUM_CLASSES

__all__ = ["TrainConfig", "build_model", "load_config"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (defaults: the paper's recipe)."""

    model: str = "cryonet"
    """Architecture or preset name of :mod:`cryonet.models` (e.g. ``cryonet``, ``cryonet-tiny``)."""
    encoder: str | None = None
    """Encoder name; ``None``: the preset's encoder, or the architecture's default (ResNet-101
    for ``cryonet``, the paper's)."""
    model_options: dict[str, Any] = field(default_factory=dict)
    """Extra keyword options of the architecture (e.g. ``decoder_channels``;
    ``deep_supervision: true`` trains CryoNet's auxiliary heads too, the loss averaged over the
    four outputs)."""
    patch_size: int = 256
    """Patch edge in pixels."""
    overlap: int = 0
    """Pixels shared by neighbouring patch windows."""
    split: Literal["random", "blocked"] = "random"
    """Random patch split (paper) or spatially blocked split."""
    block_size: int = 1024
    """Block edge (pixels) of the blocked split."""
    test_fraction: float = 0.2
    """Share of patches in the test set (paper: 0.2)."""
    val_fraction: float = 0.1
    """Share of patches, taken from the training 80 %, used to select the best checkpoint."""
    min_valid_fraction: float = 0.05
    """Patches with fewer labelled pixels are dropped."""
    epochs: int = 100
    """Number of epochs."""
    batch_size: int = 16
    """Patches per optimizer step (per process under torchrun)."""
    lr: float = 3e-4
    """Adam learning rate."""
    weight_decay: float = 1e-4
    """Adam weight decay (L2)."""
    scheduler: Literal["constant", "cosine", "onecycle"] = "constant"
    """Learning-rate schedule, stepped per optimizer step (paper: constant)."""
    class_weighting: Literal["inverse", "sqrt_inverse", "median", "none"] = "inverse"
    """Class-frequency weights of the cross-entropy, from the training patches."""
    augment: bool = False
    """Random flips / 90-degree rotations of training patches."""
    grad_clip: float | None = None
    """Clip the global gradient norm to this value."""
    amp: bool = True
    """Mixed precision (bfloat16, or float16 with loss scaling) on CUDA; ignored on CPU."""
    epoch_repeats: int = 1
    """Passes over the training patches per epoch, each with its own order and augmentation
    (more optimizer steps between validations and checkpoints on small training sets)."""
    steps_per_epoch: int | None = None
    """Cap the optimizer steps per epoch (``None``: one pass over the training patches)."""
    num_workers: int = 2
    """DataLoader worker processes."""
    cache: Literal["auto", "memory", "zarr"] = "auto"
    """How patches are read, see :class:`cryonet.data.CubeSource`."""
    checkpoint_every_steps: int = 0
    """Also write the resume state every N optimizer steps (0: only at epoch ends)."""
    seed: int = 0
    """Seed of the split, the sample order, augmentation and the model initialisation."""
    device: str = "auto"
    """``auto`` (CUDA if available), ``cpu``, ``cuda``, ``cuda:1`` ..."""
    threads: int | None = None
    """torch intra-op CPU threads (``None``: torch's default, one per core)."""
    calibrate: bool = True
    """Fit temperature scaling on the validation patches at the end and store it in the best
    checkpoint (:func:`cryonet.calibration.calibrate_checkpoint`)."""

    def __post_init__(self) -> None:
        """Refuse values that cannot work, naming the option (before any work or output)."""
        at_least = {
            "patch_size": (self.patch_size, 8),
            "epochs": (self.epochs, 1),
            "batch_size": (self.batch_size, 1),
            "block_size": (self.block_size, 1),
            "num_workers": (self.num_workers, 0),
            "checkpoint_every_steps": (self.checkpoint_every_steps, 0),
            "overlap": (self.overlap, 0),
            "epoch_repeats": (self.epoch_repeats, 1),
        }
        if self.threads is not None:
            at_least["threads"] = (self.threads, 1)
        if self.steps_per_epoch is not None:
            at_least["steps_per_epoch"] = (self.steps_per_epoch, 1)
        for name, (value, lo) in at_least.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ValueError(
                    f"training option {name} must be an integer >= {lo}, got {value!r}"
                )
        if self.overlap >= self.patch_size:
            raise ValueError(
                f"training option overlap must be < patch_size={self.patch_size}, got "
                f"{self.overlap}"
            )
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"training option lr must be a positive number, got {self.lr!r}")
        for name in ("test_fraction", "val_fraction", "min_valid_fraction"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < 1):
                raise ValueError(f"training option {name} must be in [0, 1), got {value!r}")
        choices = {
            "split": ("random", "blocked"),
            "scheduler": ("constant", "cosine", "onecycle"),
            "class_weighting": ("inverse", "sqrt_inverse", "median", "none"),
            "cache": ("auto", "memory", "zarr"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"training option {name} must be one of {list(allowed)}, got "
                    f"{getattr(self, name)!r}"
                )

    def split_config(self) -> SplitConfig:
        """Return the :class:`cryonet.data.SplitConfig` part of this config."""
        return SplitConfig(
            patch_size=self.patch_size,
            overlap=self.overlap,
            test_fraction=self.test_fraction,
            val_fraction=self.val_fraction,
            method=self.split,
            block_size=self.block_size,
            min_valid_fraction=self.min_valid_fraction,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON/checkpoint friendly)."""
        return json.loads(json.dumps(asdict(self)))


def _read_yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as err:  # also refuses !!python tags (safe_load)
        detail = " ".join(str(err).split())
        raise ValueError(f"config {where} is not valid YAML: {detail}") from err


def load_config(source: str | os.PathLike[str] | None = None, **overrides: Any) -> TrainConfig:
    """Read a :class:`TrainConfig` from YAML (``yaml.safe_load``) and apply overrides.

    Parameters
    ----------
    source
        A YAML file, or the name of a bundled preset (``"paper"``, ``"cpu"``); ``None``: the
        dataclass defaults (= ``paper``).
    **overrides
        Field values replacing the file's (``None`` values are ignored).

    Raises
    ------
    ValueError
        For unknown keys, naming them and the file.
    """
    data: dict[str, Any] = {}
    where = "defaults"
    if source is not None:
        path = Path(source)
        if not path.exists() and not str(source).endswith((".yaml", ".yml")):
            text = resources.files("cryonet").joinpath("configs", f"{source}.yaml")
            if not text.is_file():
                raise FileNotFoundError(
                    f"config {source!r} is neither a file nor a bundled preset (paper, cpu)"
                )
            where = f"preset {source}"
            data = _read_yaml(text.read_text(), where)
        else:
            where = str(path)
            if not path.is_file():
                raise FileNotFoundError(f"config file {path} does not exist")
            data = _read_yaml(path.read_text(), where)
        if not isinstance(data, dict):
            raise ValueError(f"config {where} must be a mapping, got {type(data).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown training option(s) {unknown} in {where}; known: {sorted(names)}")
    return TrainConfig(**data)


def build_model(config: TrainConfig, in_channels: int, num_classes: int = NUM_CLASSES) -> nn.Module:
    """Create the configured model from the :mod:`cryonet.models` registry."""
    from cryonet.models import create_model

    return create_model(
        config.model, in_channels, num_classes, encoder=config.encoder, **config.model_options
    )
