"""Small building blocks shared by the decoders: conv-BN-ReLU, decoder node, head, base class."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cryonet.models.scse import SCSE


class ConvBNReLU(nn.Sequential):
    """``Conv2d`` (no bias) -> ``BatchNorm2d`` -> ``ReLU``.

    Parameters
    ----------
    in_channels, out_channels
        Channel counts.
    kernel_size
        Square kernel size; padding keeps the spatial size (``dilation * (k - 1) // 2``).
    dilation
        Atrous rate.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1
    ) -> None:
        pad = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(
                in_channels, out_channels, kernel_size, padding=pad, dilation=dilation, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DecoderBlock(nn.Module):
    """A U-Net / UNet++ decoder node: upsample x2, concatenate skips, two conv-BN-ReLU.

    With ``attention=True`` an :class:`~cryonet.models.scse.SCSE` block recalibrates the
    concatenated input (when there is a skip) and the node's output, as in the reference
    UNet++/scSE decoder.

    Parameters
    ----------
    in_channels
        Channels of the tensor coming from the coarser level (upsampled by 2).
    skip_channels
        Total channels of the concatenated skip tensors (0 for none).
    out_channels
        Output channels.
    attention
        Add scSE blocks.
    """

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, attention: bool = False
    ) -> None:
        super().__init__()
        cat = in_channels + skip_channels
        self.attention_in: nn.Module = (
            SCSE(cat) if attention and skip_channels > 0 else nn.Identity()
        )
        self.conv1 = ConvBNReLU(cat, out_channels)
        self.conv2 = ConvBNReLU(out_channels, out_channels)
        self.attention_out: nn.Module = SCSE(out_channels) if attention else nn.Identity()

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Upsample ``x`` by 2 (nearest), concatenate ``skips`` and convolve."""
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skips:
            x = self.attention_in(torch.cat([x, *skips], dim=1))
        x = self.conv2(self.conv1(x))
        return self.attention_out(x)


class FullResolutionBranch(nn.Sequential):
    """Per-pixel features of the input at full resolution, a skip for the last decoder node.

    ResNet encoders start with a stride-2 convolution, so without it the last decoder node
    only upsamples stride-2 features: one-pixel details (a water pixel, a glacier margin) must
    survive the encoder. This branch, a 1x1 conv-BN-ReLU (per-pixel features, like a
    per-pixel classifier) followed by a 3x3 conv-BN-ReLU, hands them to the last node
    directly.

    Parameters
    ----------
    in_channels
        Input bands.
    channels
        Output channels of the branch.
    """

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__(
            ConvBNReLU(in_channels, channels, kernel_size=1),
            ConvBNReLU(channels, channels, kernel_size=3),
        )


def full_resolution_branch(in_channels: int, channels: int) -> FullResolutionBranch | None:
    """Return a :class:`FullResolutionBranch`, or ``None`` for ``channels == 0``.

    Raises
    ------
    ValueError
        For a negative channel count.
    """
    if channels < 0:
        raise ValueError(f"full_resolution must be >= 0 channels, got {channels}")
    return FullResolutionBranch(in_channels, channels) if channels else None


def init_decoder(module: nn.Module) -> None:
    """Initialise convs (Kaiming-uniform, ReLU gain) and norms (1, 0) of a decoder in place."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm | nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_head(module: nn.Module) -> None:
    """Initialise a segmentation head (Xavier-uniform weights, zero bias) in place."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SegmentationModel(nn.Module):
    """Base class of every registered model: input checks and pad-to-multiple handling.

    Subclasses implement :meth:`forward_padded` on inputs whose height and width are
    multiples of :attr:`size_divisor`. :meth:`forward` accepts any ``H, W >= 1``: it pads the
    bottom/right edges by edge replication up to the next multiple, runs the network and
    crops the logits back to ``(N, num_classes, H, W)``.

    Attributes
    ----------
    config
        The plain-dict model configuration (``name``, ``encoder``, ``in_channels``,
        ``num_classes`` and keyword options) that :func:`cryonet.models.create_model`
        rebuilds the model from; stored in checkpoints.
    """

    size_divisor: int = 32
    in_channels: int
    num_classes: int
    config: dict[str, Any]

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(
                f"in_channels and num_classes must be >= 1, got {in_channels} and {num_classes}"
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.config = {}

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network on an input whose sides are multiples of :attr:`size_divisor`."""
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a float ``(N, in_channels, H, W)`` tensor."""
        if x.ndim != 4:
            raise ValueError(
                f"{type(self).__name__} expects a (N, C, H, W) tensor, got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} was built for {self.in_channels} input channels (bands), "
                f"got a tensor with {x.shape[1]} channels (shape {tuple(x.shape)})"
            )
        if not x.is_floating_point():
            raise ValueError(f"{type(self).__name__} expects a floating-point input, got {x.dtype}")

    def pad(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Replicate-pad ``x`` at the bottom/right to multiples of :attr:`size_divisor`."""
        h, w = x.shape[-2:]
        d = self.size_divisor
        ph, pw = (-h) % d, (-w) % d
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, h, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(N, num_classes, H, W)`` for an input ``(N, in_channels, H, W)``."""
        self.check_input(x)
        xp, h, w = self.pad(x)
        out = self.forward_padded(xp)
        return out[..., :h, :w]
