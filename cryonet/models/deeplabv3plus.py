"""DeepLabV3+ baseline (Chen et al. 2018): atrous ResNet (stride 16), ASPP, low-level skip."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cryonet.models.blocks import ConvBNReLU, SegmentationModel, init_decoder, init_head
from cryonet.models.resnet import build_resnet


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabV3).

    Five parallel branches - a 1x1 conv, three 3x3 atrous convs and image-level pooling -
    concatenated and projected by a 1x1 conv-BN-ReLU with dropout.

    Parameters
    ----------
    in_channels, out_channels
        Input channels and the width of every branch and of the output.
    rates
        Atrous rates of the three 3x3 branches ((6, 12, 18) at output stride 16).
    dropout
        Dropout after the projection.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rates: tuple[int, ...] = (6, 12, 18),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_channels, out_channels, 1)]
            + [ConvBNReLU(in_channels, out_channels, 3, dilation=r) for r in rates]
        )
        # Image-level branch. As in the reference implementations it uses BatchNorm on a 1x1
        # map, so training needs a batch of at least 2.
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNReLU(in_channels, out_channels, 1))
        self.project = nn.Sequential(
            ConvBNReLU(out_channels * (len(rates) + 2), out_channels, 1), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the pyramid; output has ``out_channels`` and the input's size."""
        pooled = F.interpolate(self.pool(x), size=x.shape[-2:], mode="nearest")
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3Plus(SegmentationModel):
    """DeepLabV3+ with a dilated ResNet encoder.

    Parameters
    ----------
    in_channels, num_classes
        Input bands and output classes.
    encoder
        A ResNet name from :data:`cryonet.models.resnet.RESNETS`.
    output_stride
        Encoder output stride: 16 (default, ASPP rates (6, 12, 18)) or 8 (rates doubled).
    aspp_channels
        Width of the ASPP branches and of the decoder convs.
    low_level_channels
        Channels the stride-4 encoder feature is reduced to before concatenation (48).
    zero_init_residual
        Passed to the ResNet encoder.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        encoder: str = "resnet101",
        output_stride: int = 16,
        aspp_channels: int = 256,
        low_level_channels: int = 48,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__(in_channels, num_classes)
        if output_stride not in (8, 16):
            raise ValueError(f"DeepLabV3+ output_stride must be 8 or 16, got {output_stride}")
        self.encoder = build_resnet(
            encoder, in_channels, output_stride=output_stride, zero_init_residual=zero_init_residual
        )
        enc = self.encoder.out_channels
        rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
        self.aspp = ASPP(enc[4], aspp_channels, rates)
        self.low_level = ConvBNReLU(enc[1], low_level_channels, 1)
        self.fuse = nn.Sequential(
            ConvBNReLU(aspp_channels + low_level_channels, aspp_channels, 3),
            ConvBNReLU(aspp_channels, aspp_channels, 3),
        )
        self.head = nn.Conv2d(aspp_channels, num_classes, 1)
        init_decoder(nn.ModuleList([self.aspp, self.low_level, self.fuse]))
        init_head(self.head)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the logits for a padded input."""
        feats = self.encoder(x)
        low = self.low_level(feats[1])  # stride 4
        y = F.interpolate(
            self.aspp(feats[4]), size=low.shape[-2:], mode="bilinear", align_corners=False
        )
        y = self.head(self.fuse(torch.cat([y, low], dim=1)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
