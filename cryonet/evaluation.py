"""Evaluation of checkpoints on a split's test patches, and model comparisons (paper Tables I–III).

:func:`evaluate` accumulates the confusion matrix of one checkpoint over the test patches of
a run's ``split.json`` and writes the paper-style tables and a confusion-matrix figure.
:func:`compare` trains (or reuses) several models on the **identical** split and writes one
comparison table and an overall-accuracy bar chart (like the paper's Fig. 6).

Tables are in percent with two decimals, columns in the paper's order: clean-ice glaciers,
debris-covered glaciers, water bodies, vegetation, background, then the mean.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cryonet.calibration import checkpoint_temperature
from cryonet.checkpoint import load_model
from cryonet.data import (
    SPLIT_FILE,
    CubeSource,
    PatchDataset,
    PatchSampler,
    PatchSplit,
    batch_loader,
    split_json,
)
from cryonet.engine import evaluate_loader, resolve_device
from cryonet.evaltables import (
    CLASS_LABELS,
    PAPER_CLASS_ORDER,
    metric_tables,
    plot_accuracy_bars,
    write_tables,
)
from cryonet.metrics import SegmentationMetrics
from cryonet.training import TrainConfig, train
from glacierstack import storage
from glacierstack.classes import (
    CLASS_NAMES,
    CLASSES,
    NODATA_LABEL,
    ClassInfo,
    check_same_classes,
)

__all__ = [
    "PAPER_CLASS_ORDER",
    "compare",
    "evaluate",
    "metric_tables",
    "write_tables",
]


# ----------------------------------------------------------------------------- evaluate
def evaluate(
    checkpoint: str | os.PathLike[str],
    cube: str | os.PathLike[str],
    split: PatchSplit | str | os.PathLike[str],
    *,
    subset: str = "test",
    out: str | os.PathLike[str] | None = None,
    name: str | None = None,
    batch_size: int = 16,
    num_workers: int = 0,
    device: str = "auto",
    amp: bool = True,
    dedupe: bool = True,
    ensemble: Sequence[str | os.PathLike[str]] = (),
    tta: str | Sequence[int] | None = None,
) -> SegmentationMetrics:
    """Evaluate a checkpoint on one subset of a split.

    Parameters
    ----------
    checkpoint
        Contract checkpoint (e.g. ``RUN/checkpoints/best.pt``).
    cube
        The Zarr cube the split refers to.
    split
        A :class:`~cryonet.data.PatchSplit`, a ``split.json``, or a run directory holding one.
    subset
        ``test`` (default), ``val`` or ``train``.
    out
        If given, write the tables (``table_I_iou``, ``table_II_recall``,
        ``table_III_precision``, ``summary``; ``.md`` + ``.csv``), ``metrics.json`` and
        ``confusion_matrix.png`` there, and ``calibration.json`` and ``reliability.png``: the
        expected calibration error on the same pixels before (``T = 1``) and after the
        checkpoint's temperature (:func:`cryonet.calibration.calibration_report`); for an
        ensemble / TTA average, before and after the temperature fitted for that average
        (``T = 1``: the plain average of the calibrated members).
    name
        Row name in the tables (default: the checkpoint's model name).
    batch_size, num_workers, device, amp
        Inference settings (``amp`` only matters on CUDA).
    dedupe
        Count every pixel once when windows overlap (the prediction of the first window in
        split order that holds it); without overlap this changes nothing.
    ensemble, tta
        Average with more checkpoints and/or over dihedral transforms, exactly as
        :func:`cryonet.infer.predict` does (:mod:`cryonet.infer.ensemble`).

    Returns
    -------
    SegmentationMetrics
    """
    if out is not None and storage.is_url(out):  # tables staged locally, uploaded at the end
        with storage.local_folder(out) as local:
            return evaluate(checkpoint, cube, split, subset=subset, out=local, name=name,
                            batch_size=batch_size, num_workers=num_workers, device=device,
                            amp=amp, dedupe=dedupe, ensemble=ensemble, tta=tta)  # fmt: skip
    if batch_size < 1 or num_workers < 0:
        raise ValueError(
            f"batch_size must be >= 1 and num_workers >= 0, got {batch_size} and {num_workers}"
        )
    dev = resolve_device(device)
    model, ckpt = load_model(checkpoint, map_location=dev)
    # the checkpoint's bands, by name, normalised with the checkpoint's statistics (as predict)
    source = CubeSource(cube, bands=ckpt["bands"], stats=(ckpt["mean"], ckpt["std"]))
    check_same_classes(ckpt["classes"], source.classes, f"checkpoint {checkpoint}", f"cube {cube}")
    if not isinstance(split, PatchSplit):
        split = PatchSplit.from_json(split_json(split))
    split.check_cube(source)
    label = name or str(ckpt["model"].get("name", "model"))
    temperature = checkpoint_temperature(ckpt)
    from cryonet.infer.ensemble import model_source, parse_tta

    if ensemble or parse_tta(tta) != (0,):  # members calibrated inside; log p_avg out
        averaged = model_source(checkpoint, list(ensemble), tta).load(dev)
        model = averaged.module  # type: ignore[assignment]  # evaluate_loader takes a callable
        temperature = averaged.temperature  # fitted for this average (1: none stored)
    ds = PatchDataset(source, split.subset(subset), split.patch_size)
    if len(ds) == 0:
        raise ValueError(f"the split has no {subset!r} patches")
    loader = batch_loader(
        ds,
        PatchSampler(len(ds), shuffle=False, equal_shards=False),
        batch_size,
        num_workers=num_workers,
    )
    hook = None
    if dedupe:  # overlapping windows: count every pixel once (first window that holds it)
        counted = np.zeros(source.shape, dtype=bool)
        windows, size = split.subset(subset), split.patch_size

        def hook(b: int, y: torch.Tensor) -> torch.Tensor:
            for k, (y0, x0) in enumerate(windows[b * batch_size : (b + 1) * batch_size]):
                seen = counted[y0 : y0 + size, x0 : x0 + size]
                y[k][torch.from_numpy(seen.copy())] = NODATA_LABEL
                seen[...] = True
            return y

    # the checkpoint's class scheme (the five CryoNet classes for older checkpoints)
    names = tuple(str(c["name"]) for c in ckpt.get("classes") or []) or CLASS_NAMES
    metrics, _ = evaluate_loader(
        model, loader, dev, num_classes=len(names), class_names=names, amp=amp,
        target_hook=hook,
    )  # fmt: skip
    if out is not None:
        from cryonet.calibration import calibration_report
        from cryonet.plots import plot_confusion_matrix

        write_tables({label: metrics}, out)
        calibration_report(
            model,
            batch_loader(ds, PatchSampler(len(ds), shuffle=False, equal_shards=False), batch_size),
            dev,
            temperature,
            out,
            title=f"{label}: reliability ({subset} patches)",
        )
        plot_confusion_matrix(
            metrics.confusion,
            Path(out) / "confusion_matrix.png",
            classes=[ClassInfo(**c) for c in ckpt.get("classes") or []] or CLASSES,
            title=f"{label}: confusion matrix ({subset} patches)",
        )
    return metrics


# ----------------------------------------------------------------------------- compare
def compare(
    cube: str | os.PathLike[str],
    models: Sequence[str],
    out: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    model_options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    seeds: Sequence[int] | None = None,
    baseline: bool = False,
) -> dict[str, SegmentationMetrics]:
    """Train and evaluate several models on the identical patch split.

    The split is made once (``out/split.json``, from ``config``) and every model is trained
    with ``config`` (only ``model``/``encoder``/``model_options`` change) in ``out/<model>/``;
    runs that already finished are resumed, i.e. not retrained. Each model's best checkpoint
    is evaluated on the test patches.

    Parameters
    ----------
    cube
        Zarr cube path.
    models
        Registry names or presets, e.g. ``["cryonet", "unet", "deeplabv3plus", "segformer"]``
        or ``["cryonet-tiny", "unet-tiny", "deeplabv3plus-tiny", "segformer-tiny"]``.
    out
        Output directory: ``split.json``, one run directory per model, the tables of
        :func:`write_tables`, ``comparison.md`` / ``.csv`` (per-class IoU, mIoU, overall
        accuracy) and ``overall_accuracy.png``.
    config
        Shared training options (default: the paper's recipe).
    model_options
        Optional per-model architecture options.
    progress
        Show progress bars.
    seeds
        Training seeds (initialisation, sample order, augmentation; the split stays the one
        of ``config.seed``). With more than one seed every model is trained once per seed in
        ``out/<model>/seed<k>/`` and ``comparison_seeds.md`` / ``.csv`` hold the mean ± std
        over seeds (:mod:`cryonet.comparison`); the other tables show the first seed.
    baseline
        Also train the per-pixel random forest (:mod:`cryonet.baseline`) on the same train
        windows and score it on the same test windows: a ``random-forest`` row in every table
        (``out/random-forest.tif`` is its map).

    Returns
    -------
    dict
        Model name -> test metrics (of the first seed).
    """
    import pandas as pd

    from cryonet.tables import markdown_table

    if storage.is_url(out):  # the whole comparison staged locally (resumes), uploaded at the end
        with storage.local_folder(out) as local:
            return compare(cube, models, local, config, model_options=model_options,
                           progress=progress, seeds=seeds, baseline=baseline)  # fmt: skip
    config = config or TrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source = CubeSource(cube, cache=config.cache)
    split_path = out / SPLIT_FILE
    if split_path.exists():
        split = PatchSplit.from_json(split_path)
        split.check_cube(source)
    else:
        from cryonet.data import make_split

        split = make_split(source, config.split_config())
        split.to_json(split_path)
    seed_list = list(seeds) if seeds else [config.seed]
    per_seed: dict[str, list[SegmentationMetrics]] = {}
    # seed-major: an interrupted comparison has every model at the seeds it finished
    for seed in seed_list:
        for name in models:
            run = out / name if len(seed_list) == 1 else out / name / f"seed{seed}"
            cfg = replace(
                config,
                model=name,
                encoder=None,
                model_options=dict((model_options or {}).get(name, {})),
                seed=seed,
            )
            res = train(cube, run, cfg, split=split, progress=progress)
            per_seed.setdefault(name, []).append(
                evaluate(
                    res.best_checkpoint,
                    cube,
                    split,
                    out=run / "evaluation",
                    name=name,
                    device=config.device,
                    amp=config.amp,
                )
            )
    results = {name: runs[0] for name, runs in per_seed.items()}
    extra = {}
    if baseline:
        from cryonet.comparison import baseline_metrics, baseline_row

        rf = baseline_metrics(cube, split, out / "random-forest.tif", seed=config.seed)
        results["random-forest"] = rf
        extra["random forest (per pixel)"] = baseline_row(rf)
    if len(seed_list) > 1:
        from cryonet.comparison import write_seed_table

        write_seed_table(per_seed, out, extra)
    write_tables(results, out)
    rows = {
        name: [100 * dict(zip(m.class_names, m.iou, strict=True))[c] for c in PAPER_CLASS_ORDER]
        + [100 * m.miou, 100 * m.overall_accuracy]
        for name, m in results.items()
    }
    df = pd.DataFrame.from_dict(
        rows,
        orient="index",
        columns=[CLASS_LABELS[c] for c in PAPER_CLASS_ORDER] + ["Mean IoU", "Overall accuracy"],
    )
    df.index.name = "Model"
    (out / "comparison.md").write_text(
        "**Test IoU per class, mean IoU and overall accuracy (%)**\n\n"
        + markdown_table(df.round(2), floatfmt=".2f")
        + "\n"
    )
    df.to_csv(out / "comparison.csv", float_format="%.4f")
    plot_accuracy_bars(results, out / "overall_accuracy.png")
    return results
