"""Transfer a trained model to another region: evaluate, fine-tune briefly, evaluate again.

This is the paper's transferability experiment (Section II-G, Table V): a CryoNet trained on the
Poiqu Basin is applied to the Mont Blanc massif, then fine-tuned "for a limited number of
iterations" on the new region and evaluated again. :func:`finetune` does exactly that on any
target cube:

1. cut the target cube into patches and split them (random 80/20 by default, seeded; the split
   is written to ``<out>/split.json``);
2. evaluate the checkpoint on the target test patches (**before**);
3. fine-tune all weights (or only the decoder) for ``iterations`` optimizer steps on the target
   training patches — Adam, class-frequency weighted cross-entropy, AMP and gradient clipping
   as in training: the steps are :class:`cryonet.engine.Trainer`'s;
4. evaluate the fine-tuned model on the same test patches (**after**), save it as a checkpoint
   and write before/after tables (Markdown + CSV) and a JSON summary.

Inputs are normalised with the **checkpoint's** statistics by default (what prediction with the
checkpoint does); ``normalization="target"`` uses the target cube's own statistics instead,
and the fine-tuned checkpoint then records those.

The options are :mod:`cryonet.transferconfig`, the fine-tuning steps :mod:`cryonet.transfersteps`
and the tables and files :mod:`cryonet.transferoutput` (public names re-exported here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryonet.transferconfig import FinetuneConfig
from cryonet.transferoutput import save_finetuned, transfer_table, write_outputs
from cryonet.transfersteps import evaluate_patches, finetune_steps
from glacierstack import storage
from glacierstack.classes import check_same_classes

__all__ = [
    "FinetuneConfig",
    "TransferResult",
    "finetune",
    "transfer_table",
]


@dataclass(frozen=True)
class TransferResult:
    """Outcome of :func:`finetune`."""

    before: Any
    """:class:`cryonet.metrics.SegmentationMetrics` of the checkpoint on the target test set."""
    after: Any
    """The same after fine-tuning."""
    checkpoint: Path | str | None
    """The fine-tuned checkpoint (``None`` when ``iterations == 0``)."""
    out: Path | str
    """Output folder (a URL stays a string)."""
    losses: tuple[float, ...] = ()
    """Training loss of every fine-tuning step."""
    n_train: int = 0
    """Target training patches."""
    n_test: int = 0
    """Target test patches."""
    seconds: float = 0.0
    """Wall time of the fine-tuning steps."""
    files: dict[str, Path | str] = field(default_factory=dict)
    """Written tables and summaries by name."""

    def table(self):  # -> pandas.DataFrame
        """Before/after table (see :func:`transfer_table`)."""
        return transfer_table(self.before, self.after)


def finetune(
    checkpoint: str | Path,
    target_cube: str | Path,
    out: str | Path,
    config: FinetuneConfig | None = None,
    *,
    progress: bool = True,
) -> TransferResult:
    """Evaluate a checkpoint on another region, fine-tune it briefly, evaluate again.

    Parameters
    ----------
    checkpoint
        Checkpoint trained on the source region (:mod:`cryonet.checkpoint` format).
    target_cube
        Zarr cube of the target region holding the checkpoint's bands (any order).
    out
        Output folder: ``split.json``, ``finetuned.pt``, ``transfer_metrics.{csv,md}``,
        ``transfer.json`` and ``finetune_log.csv`` (loss per step).
    config
        All options (defaults: :class:`FinetuneConfig`), e.g.
        ``FinetuneConfig(iterations=60, lr=5e-5)``.
    progress
        Show a progress bar.

    Returns
    -------
    TransferResult

    Raises
    ------
    ValueError
        If the cube lacks some of the checkpoint's bands, or is too small for at least one
        training and one test patch.
    """
    import torch

    from cryonet.checkpoint import load_model
    from cryonet.data import CubeSource, PatchDataset, SplitConfig, make_split

    if storage.is_url(out):  # written in a local folder, uploaded on exit
        with storage.local_folder(out) as local:
            res = finetune(checkpoint, target_cube, local, config, progress=progress)
        url = str(out).rstrip("/")
        remote: dict[str, Path | str] = {k: f"{url}/{Path(v).name}" for k, v in res.files.items()}
        ckpt = f"{url}/{Path(res.checkpoint).name}" if res.checkpoint else None
        return replace(res, out=url, checkpoint=ckpt, files=remote)
    cfg = config or FinetuneConfig()
    out = Path(out)
    # checkpoint and cube may be URLs (s3://...): load_model and CubeSource read them
    device = torch.device(cfg.device)
    model, meta = load_model(checkpoint, map_location=device)
    # the one band rule: the checkpoint's bands by name, in its order
    stats = (meta["mean"], meta["std"]) if cfg.normalization == "checkpoint" else None
    source = CubeSource(target_cube, bands=meta["bands"], stats=stats)
    check_same_classes(
        meta["classes"], source.classes, f"checkpoint {checkpoint}", f"cube {target_cube}"
    )
    out.mkdir(parents=True, exist_ok=True)  # only once the inputs are known to fit
    class_names = [str(c["name"]) for c in meta["classes"]]
    split = make_split(
        source,
        SplitConfig(
            patch_size=cfg.patch_size, test_fraction=cfg.test_fraction, val_fraction=0.0,
            method=cfg.split_method, seed=cfg.seed,
        ),
    )  # fmt: skip
    split.to_json(out / "split.json")
    train_ds = PatchDataset(source, split.subset("train"), cfg.patch_size)
    test_ds = PatchDataset(source, split.subset("test"), cfg.patch_size)

    before = evaluate_patches(model, test_ds, cfg, class_names)
    losses: list[float] = []
    ckpt_out: Path | None = None
    t0 = time.perf_counter()
    if cfg.iterations > 0:
        losses = finetune_steps(model, source, split, train_ds, cfg, len(class_names), progress)
        seconds = time.perf_counter() - t0
        after = evaluate_patches(model, test_ds, cfg, class_names)
        ckpt_out = save_finetuned(out, model, meta, source, before, after, checkpoint, cfg)
    else:
        seconds = 0.0
        after = before
    files = write_outputs(out, before, after, losses, checkpoint, target_cube, cfg, ckpt_out,
                           len(train_ds), len(test_ds), seconds)  # fmt: skip
    return TransferResult(
        before=before,
        after=after,
        checkpoint=ckpt_out,
        out=out,
        losses=tuple(losses),
        n_train=len(train_ds),
        n_test=len(test_ds),
        seconds=seconds,
        files=dict(files),
    )
