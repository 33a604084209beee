"""CryoNet: UNet++ (Zhou et al. 2020) with a ResNet encoder and scSE attention in every node.

Notation follows the UNet++ paper: ``X[i][0]`` is the encoder feature at level ``i``
(strides 2, 4, 8, 16, 32 for ``i = 0..4``) and the decoder node ``X[i][j]`` (``j >= 1``,
``i + j <= 4``) is::

    X[i][j] = Node(upsample(X[i+1][j-1]), concat(X[i][0], ..., X[i][j-1]))

so every level keeps a dense chain of skip connections. Nodes on the main decoder diagonal
(``i + j == 4``) have ``decoder_channels[3 - i]`` channels; the nested nodes inside the
diagonal keep their level's encoder width (as in the UNet++ paper and in the widely used
reference implementation, which this reproduces layer for layer: about 68.1 M parameters for
ResNet-101 at 30 input channels). A last node upsamples ``X[0][4]`` from stride 2 to full
resolution (``decoder_channels[4]`` channels) and a 3x3 conv head gives the class logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cryonet.models.blocks import (
    DecoderBlock,
    SegmentationModel,
    full_resolution_branch,
    init_decoder,
    init_head,
)
from cryonet.models.resnet import build_resnet

DEPTH = 4  # index of the deepest encoder level


class NestedDecoder(nn.Module):
    """The UNet++ nested dense decoder over five encoder feature maps.

    Parameters
    ----------
    encoder_channels
        Channels of the five encoder features (strides 2 .. 32).
    decoder_channels
        Five channel counts: the four main-diagonal nodes (deepest first) and the final
        full-resolution node.
    attention
        Put scSE blocks in every node.
    nested_channels
        Widths of the nested (off-diagonal) nodes at levels 0..3; ``None`` (default) uses the
        encoder widths of those levels, as UNet++ does. Smaller values make cheap CPU models.
    full_resolution
        Channels of a full-resolution skip into the final node (0: none, as in UNet++).
    """

    def __init__(
        self,
        encoder_channels: tuple[int, ...],
        decoder_channels: tuple[int, ...],
        attention: bool = True,
        nested_channels: tuple[int, ...] | None = None,
        full_resolution: int = 0,
    ) -> None:
        super().__init__()
        if len(encoder_channels) != DEPTH + 1 or len(decoder_channels) != DEPTH + 1:
            raise ValueError(
                f"need {DEPTH + 1} encoder and decoder channel counts, got "
                f"{tuple(encoder_channels)} and {tuple(decoder_channels)}"
            )
        enc, dec = tuple(encoder_channels), tuple(decoder_channels)
        nested = tuple(nested_channels) if nested_channels is not None else enc[:DEPTH]
        if len(nested) != DEPTH:
            raise ValueError(f"nested_channels needs {DEPTH} entries (levels 0..3), got {nested}")
        self.channels: dict[tuple[int, int], int] = {(i, 0): enc[i] for i in range(DEPTH + 1)}
        self.nodes = nn.ModuleDict()
        for j in range(1, DEPTH + 1):
            for i in range(DEPTH + 1 - j):
                out = dec[DEPTH - 1 - i] if i + j == DEPTH else nested[i]
                self.channels[i, j] = out
                skip = sum(self.channels[i, k] for k in range(j))
                self.nodes[f"x_{i}_{j}"] = DecoderBlock(
                    self.channels[i + 1, j - 1], skip, out, attention=attention
                )
        self.final = DecoderBlock(dec[DEPTH - 1], full_resolution, dec[DEPTH], attention=attention)
        self.out_channels = dec[DEPTH]

    def forward(
        self, features: list[torch.Tensor], full: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return the full-resolution decoder output and the top-row nodes ``X[0][1..4]``.

        ``full`` is the full-resolution skip of the final node (when it has one).
        """
        x: dict[tuple[int, int], torch.Tensor] = {(i, 0): f for i, f in enumerate(features)}
        for j in range(1, DEPTH + 1):
            for i in range(DEPTH + 1 - j):
                skips = [x[i, k] for k in range(j)]
                x[i, j] = self.nodes[f"x_{i}_{j}"](x[i + 1, j - 1], skips)
        out = self.final(x[0, DEPTH], [full] if full is not None else None)
        return out, [x[0, j] for j in range(1, DEPTH + 1)]


class CryoNet(SegmentationModel):
    """UNet++ / ResNet / scSE segmentation network (the CryoNet architecture).

    Parameters
    ----------
    in_channels
        Number of input bands (30 for the full CryoNet layer stack).
    num_classes
        Number of output classes (5).
    encoder
        A ResNet name from :data:`cryonet.models.resnet.RESNETS` (paper: ``"resnet101"``).
    decoder_channels
        Channels of the four main-diagonal decoder nodes and of the final node.
    attention
        scSE blocks in every decoder node (``False`` gives plain UNet++).
    nested_channels
        Widths of the nested decoder nodes at levels 0..3 (default: the encoder widths).
    deep_supervision
        Add 1x1 auxiliary heads on the top-row nodes ``X[0][1..3]``; their logits (upsampled
        to the input size) are returned by :meth:`forward_aux`. :meth:`forward` always
        returns the main logits only.
    zero_init_residual
        Passed to the ResNet encoder.
    full_resolution
        Channels of a :class:`~cryonet.models.blocks.FullResolutionBranch` on the input,
        concatenated into the final decoder node (0: none, the paper's CryoNet).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        encoder: str = "resnet101",
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
        attention: bool = True,
        nested_channels: tuple[int, ...] | None = None,
        deep_supervision: bool = False,
        zero_init_residual: bool = False,
        full_resolution: int = 0,
    ) -> None:
        super().__init__(in_channels, num_classes)
        self.encoder = build_resnet(encoder, in_channels, zero_init_residual=zero_init_residual)
        self.full_res = full_resolution_branch(in_channels, full_resolution)
        self.decoder = NestedDecoder(
            self.encoder.out_channels,
            tuple(decoder_channels),
            attention,
            nested_channels,
            full_resolution,
        )
        self.head = nn.Conv2d(self.decoder.out_channels, num_classes, 3, padding=1)
        self.deep_supervision = deep_supervision
        self.aux_heads = nn.ModuleList(
            [nn.Conv2d(self.decoder.channels[0, j], num_classes, 1) for j in range(1, DEPTH)]
            if deep_supervision
            else []
        )
        init_decoder(self.decoder)
        if self.full_res is not None:
            init_decoder(self.full_res)
        init_head(self.head)
        init_head(self.aux_heads)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the main logits for a padded input."""
        out, _ = self.decoder(self.encoder(x), self._full(x))
        return self.head(out)

    def _full(self, x: torch.Tensor) -> torch.Tensor | None:
        return self.full_res(x) if self.full_res is not None else None

    def forward_aux(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Deep-supervision outputs: ``[aux X[0][1], aux X[0][2], aux X[0][3], main]``.

        Every element has shape ``(N, num_classes, H, W)``; average the losses over them.

        Raises
        ------
        RuntimeError
            If the model was built without ``deep_supervision=True``.
        """
        if not self.deep_supervision:
            raise RuntimeError("forward_aux needs a CryoNet built with deep_supervision=True")
        self.check_input(x)
        xp, h, w = self.pad(x)
        out, top = self.decoder(self.encoder(xp), self._full(xp))
        outs = [
            F.interpolate(head(t), size=xp.shape[-2:], mode="bilinear", align_corners=False)
            for head, t in zip(self.aux_heads, top, strict=False)
        ]
        outs.append(self.head(out))
        return [o[..., :h, :w] for o in outs]
