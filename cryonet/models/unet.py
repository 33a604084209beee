"""U-Net baseline (Ronneberger et al. 2015) on a ResNet encoder.

The decoder mirrors the encoder: four nodes that upsample x2, concatenate the encoder feature
of the same stride and apply two 3x3 conv-BN-ReLU, then a last node to full resolution and a
3x3 conv head (the common "U-Net with a ResNet backbone" layout used as a baseline).
"""

from __future__ import annotations

import torch
from torch import nn

from cryonet.models.blocks import (
    DecoderBlock,
    SegmentationModel,
    full_resolution_branch,
    init_decoder,
    init_head,
)
from cryonet.models.resnet import build_resnet


class UNet(SegmentationModel):
    """U-Net with a ResNet encoder.

    Parameters
    ----------
    in_channels, num_classes
        Input bands and output classes.
    encoder
        A ResNet name from :data:`cryonet.models.resnet.RESNETS`.
    decoder_channels
        Output channels of the five decoder nodes (deepest first).
    attention
        Add scSE blocks to the decoder nodes (off for the plain baseline).
    zero_init_residual
        Passed to the ResNet encoder.
    full_resolution
        Channels of a :class:`~cryonet.models.blocks.FullResolutionBranch` on the input,
        concatenated into the last decoder node (0: none, the plain U-Net).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        encoder: str = "resnet34",
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
        attention: bool = False,
        zero_init_residual: bool = False,
        full_resolution: int = 0,
    ) -> None:
        super().__init__(in_channels, num_classes)
        self.encoder = build_resnet(encoder, in_channels, zero_init_residual=zero_init_residual)
        enc = self.encoder.out_channels
        dec = tuple(decoder_channels)
        if len(dec) != 5:
            raise ValueError(f"decoder_channels needs 5 entries, got {dec}")
        ins = (enc[4], *dec[:-1])
        self.full_res = full_resolution_branch(in_channels, full_resolution)
        skips = (enc[3], enc[2], enc[1], enc[0], full_resolution)
        self.decoder = nn.ModuleList(
            DecoderBlock(i, s, o, attention=attention)
            for i, s, o in zip(ins, skips, dec, strict=True)
        )
        self.head = nn.Conv2d(dec[-1], num_classes, 3, padding=1)
        init_decoder(self.decoder)
        if self.full_res is not None:
            init_decoder(self.full_res)
        init_head(self.head)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the logits for a padded input."""
        feats = self.encoder(x)
        y = feats[4]
        full = [self.full_res(x)] if self.full_res is not None else None
        for k, block in enumerate(self.decoder):
            level = 3 - k
            y = block(y, [feats[level]] if level >= 0 else full)
        return self.head(y)
