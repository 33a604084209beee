"""Transfer to another region, the fine-tuning: the steps of the Trainer and the evaluation.

:func:`finetune_steps` runs ``iterations`` steps of :class:`cryonet.engine.Trainer` (optionally
on the decoder only, :func:`_decoder_parameters`); :func:`evaluate_patches` is the one
evaluation loop on the target test patches.

Split out of :mod:`cryonet.transfer`, which runs it (and re-exports its public names).
"""

from __future__ import annotations

from typing import Any

from cryonet.transferconfig import FinetuneConfig
from glacierstack.classes import NODATA_LABEL

__all__ = [
    "evaluate_patches",
    "finetune_steps",
]


def _decoder_parameters(model: Any) -> list[Any]:
    enc = getattr(model, "encoder", None)
    if enc is None:
        raise ValueError(
            "freeze_encoder=True needs a model with an 'encoder' attribute, "
            f"{type(model).__name__} has none"
        )
    frozen = {id(p) for p in enc.parameters()}
    for p in enc.parameters():
        p.requires_grad_(False)
    return [p for p in model.parameters() if id(p) not in frozen]


def evaluate_patches(model: Any, ds: Any, cfg: FinetuneConfig, class_names: list[str]) -> Any:
    """Metrics of ``model`` on the patches of ``ds`` (the one evaluation loop)."""
    import torch

    from cryonet.data import PatchSampler, batch_loader
    from cryonet.engine import evaluate_loader

    sampler = PatchSampler(len(ds), shuffle=False, equal_shards=False)
    loader = batch_loader(ds, sampler, cfg.eval_batch_size)
    metrics, _ = evaluate_loader(
        model, loader, torch.device(cfg.device), num_classes=len(class_names),
        class_names=class_names, amp=cfg.amp,
    )  # fmt: skip
    return metrics


def finetune_steps(
    model: Any,
    source: Any,
    split: Any,
    train_ds: Any,
    cfg: FinetuneConfig,
    num_classes: int,
    progress: bool,
) -> list[float]:
    """Run ``cfg.iterations`` steps of :class:`cryonet.engine.Trainer`; return their losses."""
    import torch
    from tqdm.auto import tqdm

    from cryonet.data import PatchSampler, batch_loader, class_counts, class_weights
    from cryonet.engine import Trainer

    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    counts = class_counts(source, split.subset("train"), cfg.patch_size, num_classes)
    weights = torch.as_tensor(class_weights(counts, cfg.class_weighting), device=device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=NODATA_LABEL)
    params = _decoder_parameters(model) if cfg.freeze_encoder else None
    trainer = Trainer(
        model, loss_fn, device, params=params, lr=cfg.lr, weight_decay=cfg.weight_decay,
        total_steps=cfg.iterations, amp=cfg.amp, grad_clip=cfg.grad_clip,
    )  # fmt: skip
    sampler = PatchSampler(len(train_ds), shuffle=True, augment=cfg.augment, seed=cfg.seed)
    model.train()
    if cfg.freeze_encoder:  # keep the source region's batch-norm statistics too
        model.encoder.eval()
    losses: list[float] = []
    epoch = 0
    with tqdm(total=cfg.iterations, desc="fine-tuning", unit="step", disable=not progress) as bar:
        while len(losses) < cfg.iterations:
            sampler.set_epoch(epoch)
            generator = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
            for x, y in batch_loader(train_ds, sampler, cfg.batch_size, generator=generator):
                losses.append(trainer.step(x, y))
                bar.update()
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                if len(losses) >= cfg.iterations:
                    break
            epoch += 1
    return losses
