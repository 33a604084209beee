"""Transfer to another region, its options: :class:`FinetuneConfig`.

Split out of :mod:`cryonet.transfer`, which runs it (and re-exports its public names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["FinetuneConfig"]


@dataclass(frozen=True)
class FinetuneConfig:
    """Options of :func:`finetune`."""

    iterations: int = 100
    """Optimizer steps of fine-tuning (0 = evaluate only)."""
    batch_size: int = 8
    """Patches per step."""
    lr: float = 1e-4
    """Adam learning rate (lower than training's 3e-4: the weights are already trained)."""
    weight_decay: float = 1e-4
    """Adam weight decay (paper value)."""
    patch_size: int = 128
    """Patch edge in pixels for the target cube."""
    test_fraction: float = 0.2
    """Fraction of target patches held out for the before/after evaluation."""
    split_method: Literal["random", "blocked"] = "random"
    """``random`` patch split (paper) or spatially ``blocked`` (see :mod:`cryonet.data`)."""
    class_weighting: Literal["inverse", "sqrt_inverse", "median", "none"] = "sqrt_inverse"
    """Class weights of the cross-entropy, from the target training patches."""
    augment: bool = True
    """Random flips/rot90 of the training patches."""
    freeze_encoder: bool = False
    """Fine-tune only the decoder and head (the encoder keeps the source-region weights)."""
    normalization: Literal["checkpoint", "target"] = "checkpoint"
    """Normalise inputs with the checkpoint's or the target cube's band statistics."""
    seed: int = 0
    """Seed of the split, the sampling order and the augmentation."""
    device: str = "cpu"
    """Torch device."""
    eval_batch_size: int = 8
    """Batch size of the evaluations."""
    amp: bool = True
    """Mixed precision on CUDA (as in training); ignored on CPU."""
    grad_clip: float | None = None
    """Clip the global gradient norm to this value (``None``: no clipping)."""

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError(
                f"batch sizes must be >= 1, got batch_size={self.batch_size}, "
                f"eval_batch_size={self.eval_batch_size}"
            )
        if self.patch_size < 8:
            raise ValueError(f"patch_size must be >= 8 pixels, got {self.patch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.normalization not in ("checkpoint", "target"):
            raise ValueError(
                f"normalization must be 'checkpoint' or 'target', got {self.normalization!r}"
            )
