"""The demo's types: its options, a step, a step's context and the result.

:class:`DemoConfig` (options), :class:`Step` (one step), :class:`DemoContext` (what a step
function receives) and :class:`DemoResult` (what :func:`cryonet.demo.run_demo` returns).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DemoConfig",
    "DemoContext",
    "DemoResult",
    "STEP_DIR",
    "Step",
]

STEP_DIR = "steps"


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and budgets of the demo (defaults: 5 min 29 s measured on 2 cores, docs/demo.md)."""

    size_km: float = 8.0
    """Edge of the square synthetic Poiqu region in km (10 m pixels)."""
    montblanc_size_km: float | None = None
    """Edge of the Mont Blanc region; ``None``: ``min(size_km, 10)`` (it is only used for the
    transfer experiment, which needs far fewer patches than training)."""
    seed: int = 0
    """Seed of the synthetic regions, the split, training and the permutations."""
    train_preset: str = "cpu"
    """Training config (bundled preset or YAML file) of :func:`cryonet.training.load_config`."""
    train_overrides: Mapping[str, Any] = field(default_factory=dict)
    """Options replacing the preset's (e.g. ``{"epochs": 2}``)."""
    tile_size: int = 128
    """Inference tile size (pixels)."""
    overlap: int = 32
    """Inference tile overlap (pixels)."""
    importance_repeats: int = 2
    """Shuffles per band in the permutation importance."""
    importance_max_samples: int | None = 24
    """Test patches used by the importance (``None``: all)."""
    finetune_iterations: int = 60
    """Fine-tuning steps on Mont Blanc."""
    finetune_batch_size: int = 8
    """Patches per fine-tuning step."""
    finetune_lr: float = 2e-4
    """Fine-tuning learning rate."""
    html: bool = True
    """Also write ``report.html``."""
    device: str = "cpu"
    """Torch device for training and inference."""
    later_year: int = 2028
    """Second observation year of the Poiqu region (retreated glaciers) for the area change."""
    area_buffer_m: float = 20.0
    """Buffer around the inventory outlines when attributing pixels to glaciers (m)."""
    torch_threads: int | None = None
    """torch intra-op threads while the demo runs; ``None``: 1 on machines with at most 2 CPU
    cores (measured: with 2 threads next to the data-loader worker, training steps were 3-10x
    slower on a busy 2-core machine), torch's default otherwise."""

    def resolved_montblanc_km(self) -> float:
        """Edge of the Mont Blanc region in km."""
        if self.montblanc_size_km is not None:
            return self.montblanc_size_km
        return min(self.size_km, 10.0)


@dataclass(frozen=True)
class Step:
    """One step of the demo."""

    name: str
    """Step id (record file name, ``redo`` entry)."""
    title: str
    """What is shown while it runs."""
    deps: tuple[str, ...]
    """Steps whose outputs it reads."""
    params: Callable[[DemoConfig], dict[str, Any]]
    """The config values the step depends on (a change reruns the step)."""
    run: Callable[[DemoContext], dict[str, Any]]
    """Does the work; returns the outputs (paths relative to ``out``) and summary values."""
    folder: str
    """Folder (relative to ``out``) the step writes into; emptied when the step is redone."""


@dataclass(frozen=True)
class DemoContext:
    """What a step function receives: the demo folder, options, earlier steps' records."""

    out: Path
    config: DemoConfig
    records: dict[str, dict[str, Any]]
    progress: bool

    def output(self, step: str, key: str) -> Path:
        """Path of output ``key`` of an earlier ``step``."""
        return self.out / self.records[step]["outputs"][key]


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` returns."""

    out: Path
    """The output folder."""
    report: Path
    """``report.md``."""
    records: dict[str, dict[str, Any]]
    """The record of every step (outputs, seconds, finished time, key)."""
    ran: tuple[str, ...]
    """Steps that ran in this call (the others were reused)."""
    seconds: float
    """Wall time of this call."""
