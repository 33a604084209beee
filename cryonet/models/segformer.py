"""SegFormer baseline (Xie et al. 2021): Mix Transformer (MiT) encoder + all-MLP decoder.

The encoder sizes are data (:data:`MIT_ENCODERS`): ``mit_b0`` (small, about 3.7 M parameters
with its decoder) and ``mit_b2`` (about 27 M), with the embedding widths, depths, heads and
spatial-reduction ratios of the paper.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cryonet.models.blocks import ConvBNReLU, SegmentationModel, init_head

MIT_ENCODERS: dict[str, dict[str, Any]] = {
    "mit_b0": {"dims": (32, 64, 160, 256), "depths": (2, 2, 2, 2), "decoder_dim": 256},
    "mit_b1": {"dims": (64, 128, 320, 512), "depths": (2, 2, 2, 2), "decoder_dim": 256},
    "mit_b2": {"dims": (64, 128, 320, 512), "depths": (3, 4, 6, 3), "decoder_dim": 768},
}
"""Mix Transformer sizes. Shared by all: heads (1, 2, 5, 8), spatial-reduction ratios
(8, 4, 2, 1), MLP ratio 4, patch-embedding kernels/strides (7/4, 3/2, 3/2, 3/2)."""

HEADS = (1, 2, 5, 8)
SR_RATIOS = (8, 4, 2, 1)
MLP_RATIO = 4


class OverlapPatchEmbed(nn.Module):
    """Overlapping patch embedding: strided conv (kernel > stride) + LayerNorm."""

    def __init__(self, in_channels: int, dim: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Return tokens ``(N, H*W, dim)`` and the token grid ``H, W``."""
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention whose keys/values are spatially reduced by ``sr_ratio``.

    The key/value tokens come from a ``sr_ratio``-strided conv of the token map followed by
    LayerNorm, which cuts the attention cost by ``sr_ratio**2``.
    """

    def __init__(self, dim: int, heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr: nn.Module = nn.Identity()
        self.sr_norm: nn.Module = nn.Identity()
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
            self.sr_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Attend over the tokens ``x`` of an ``h x w`` grid."""
        n, t, c = x.shape
        q = self.q(x).reshape(n, t, self.heads, c // self.heads).transpose(1, 2)
        kv_in = x
        if not isinstance(self.sr, nn.Identity):
            grid = x.transpose(1, 2).reshape(n, c, h, w)
            kv_in = self.sr_norm(self.sr(grid).flatten(2).transpose(1, 2))
        k, v = self.kv(kv_in).reshape(n, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(n, t, c))


class MixFFN(nn.Module):
    """Mix-FFN: Linear -> 3x3 depthwise conv -> GELU -> Linear (positional info from the conv)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Apply to tokens of an ``h x w`` grid."""
        x = self.fc1(x)
        n, t, c = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(n, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(x))


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch per sample with probability ``p`` (training)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Identity in eval mode or when ``p == 0``."""
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class MiTBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(LN(x))``, then ``x + MixFFN(LN(x))``."""

    def __init__(self, dim: int, heads: int, sr_ratio: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = EfficientSelfAttention(dim, heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = MixFFN(dim, dim * MLP_RATIO)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Transform tokens of an ``h x w`` grid."""
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.ffn(self.norm2(x), h, w))


class MixTransformer(nn.Module):
    """Hierarchical Mix Transformer encoder: four stages at strides 4, 8, 16, 32.

    Parameters
    ----------
    in_channels
        Input bands.
    dims, depths
        Embedding width and number of blocks of each stage.
    drop_path_rate
        Stochastic-depth rate, increased linearly over all blocks from 0.
    """

    def __init__(
        self,
        in_channels: int,
        dims: tuple[int, ...],
        depths: tuple[int, ...],
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        self.out_channels = tuple(dims)
        n = sum(depths)
        rates = [drop_path_rate * i / max(1, n - 1) for i in range(n)]  # 0 .. drop_path_rate
        self.embeds = nn.ModuleList()
        self.stages = nn.ModuleList()
        self.norms = nn.ModuleList()
        prev, k = in_channels, 0
        for s, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
            kernel, stride = (7, 4) if s == 0 else (3, 2)
            self.embeds.append(OverlapPatchEmbed(prev, dim, kernel, stride))
            self.stages.append(
                nn.ModuleList(
                    MiTBlock(dim, HEADS[s], SR_RATIOS[s], rates[k + i]) for i in range(depth)
                )
            )
            self.norms.append(nn.LayerNorm(dim))
            prev, k = dim, k + depth

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the four stage outputs as ``(N, C_s, H/4/2**s, W/4/2**s)`` maps."""
        feats = []
        for embed, blocks, norm in zip(self.embeds, self.stages, self.norms, strict=True):
            t, h, w = embed(x)
            for block in blocks:  # type: ignore[attr-defined]  # an nn.ModuleList
                t = block(t, h, w)
            x = norm(t).transpose(1, 2).reshape(t.shape[0], -1, h, w)
            feats.append(x)
        return feats


class SegFormer(SegmentationModel):
    """SegFormer: MiT encoder + all-MLP decoder.

    The decoder projects each stage to ``decoder_dim`` channels with a linear layer (1x1
    conv), upsamples all four to stride 4, concatenates, fuses with a 1x1 conv-BN-ReLU and
    classifies with a linear layer; the logits are bilinearly upsampled to the input size.

    Parameters
    ----------
    in_channels, num_classes
        Input bands and output classes.
    encoder
        ``"mit_b0"``, ``"mit_b1"`` or ``"mit_b2"`` (see :data:`MIT_ENCODERS`).
    decoder_dim
        Width of the MLP decoder; ``None`` takes the encoder's default (256 for B0/B1,
        768 for B2).
    drop_path_rate
        Stochastic depth of the encoder.
    dropout
        Dropout before the classifier.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        encoder: str = "mit_b2",
        decoder_dim: int | None = None,
        drop_path_rate: float = 0.1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_channels, num_classes)
        if encoder not in MIT_ENCODERS:
            raise ValueError(
                f"unknown SegFormer encoder {encoder!r}; available: {sorted(MIT_ENCODERS)}"
            )
        spec = MIT_ENCODERS[encoder]
        dim = decoder_dim or spec["decoder_dim"]
        self.encoder = MixTransformer(in_channels, spec["dims"], spec["depths"], drop_path_rate)
        self.linears = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in self.encoder.out_channels)
        self.fuse = ConvBNReLU(4 * dim, dim, 1)
        self.dropout = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(dim, num_classes, 1)
        self.apply(_init_transformer)
        init_head(self.head)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the logits for a padded input."""
        feats = self.encoder(x)
        size = feats[0].shape[-2:]
        ups = [
            F.interpolate(lin(f), size=size, mode="bilinear", align_corners=False)
            for lin, f in zip(self.linears, feats, strict=True)
        ]
        y = self.head(self.dropout(self.fuse(torch.cat(ups[::-1], dim=1))))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _init_transformer(m: nn.Module) -> None:
    """SegFormer initialisation: truncated normal (std 0.02) linears, fan-out normal convs."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm | nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, std=(2.0 / fan_out) ** 0.5)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
