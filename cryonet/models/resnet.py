"""ResNet encoders (He et al. 2016) for any number of input channels, trained from scratch.

The encoders are data: :data:`RESNETS` maps a name to ``{"block", "layers", "out_channels"}``
and one :class:`ResNetEncoder` class builds all of them. No pretrained weights exist or are
ever downloaded.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(
            inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, out, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(inplanes, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual forward pass."""
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.downsample(x))


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand (x4) bottleneck (ResNet-50/101/152, v1.5)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(inplanes, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual forward pass."""
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + self.downsample(x))


def _shortcut(inplanes: int, out: int, stride: int) -> nn.Module:
    if stride == 1 and inplanes == out:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
    )


_C18 = (64, 64, 128, 256, 512)
_C50 = (64, 256, 512, 1024, 2048)
RESNETS: dict[str, dict[str, Any]] = {
    "resnet18": {"block": BasicBlock, "layers": (2, 2, 2, 2), "out_channels": _C18},
    "resnet34": {"block": BasicBlock, "layers": (3, 4, 6, 3), "out_channels": _C18},
    "resnet50": {"block": Bottleneck, "layers": (3, 4, 6, 3), "out_channels": _C50},
    "resnet101": {"block": Bottleneck, "layers": (3, 4, 23, 3), "out_channels": _C50},
    "resnet152": {"block": Bottleneck, "layers": (3, 8, 36, 3), "out_channels": _C50},
}
"""ResNet encoder registry: block type, blocks per stage, channels of the five feature maps."""


class ResNetEncoder(nn.Module):
    """A ResNet trunk returning the five feature maps at strides 2, 4, 8, 16, 32.

    Stem: 7x7/2 conv (``in_channels`` -> 64) -> BN -> ReLU (stride 2, first feature) ->
    3x3/2 max-pool; then four stages of residual blocks (strides 1, 2, 2, 2). There is no
    classification head.

    Parameters
    ----------
    block
        :class:`BasicBlock` or :class:`Bottleneck`.
    layers
        Number of blocks in each of the four stages (``(3, 4, 23, 3)`` for ResNet-101).
    out_channels
        Channels of the five returned feature maps (stem, stage 1..4); checked against the
        blocks.
    in_channels
        Number of input bands (any positive integer).
    output_stride
        32 (default) or 16 / 8: the last one / two stages keep their resolution and use
        dilated 3x3 convolutions instead (DeepLab's atrous ResNet).
    zero_init_residual
        Initialise the last BN of every residual branch to zero, so each block starts as the
        identity (Goyal et al. 2017); helps training from scratch.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, ...],
        out_channels: tuple[int, ...],
        in_channels: int = 3,
        output_stride: int = 32,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        self.in_channels = in_channels
        self.out_channels = tuple(out_channels)
        self.output_stride = output_stride
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        # Dilate the last stage(s) instead of striding when output_stride < 32.
        dilate = {32: (False, False), 16: (False, True), 8: (True, True)}[output_stride]
        self.inplanes, self.dilation = 64, 1
        self.layer1 = self._make_stage(block, 64, layers[0], 1, False)
        self.layer2 = self._make_stage(block, 128, layers[1], 2, False)
        self.layer3 = self._make_stage(block, 256, layers[2], 2, dilate[0])
        self.layer4 = self._make_stage(block, 512, layers[3], 2, dilate[1])
        built = (64, *(p * block.expansion for p in (64, 128, 256, 512)))
        if built != self.out_channels:
            raise ValueError(f"out_channels {self.out_channels} do not match the blocks {built}")
        self._init_weights(zero_init_residual)

    def _make_stage(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        planes: int,
        n: int,
        stride: int,
        dilate: bool,
    ) -> nn.Sequential:
        first_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        blocks = [block(self.inplanes, planes, stride=stride, dilation=first_dilation)]
        self.inplanes = planes * block.expansion
        blocks += [block(self.inplanes, planes, dilation=self.dilation) for _ in range(1, n)]
        return nn.Sequential(*blocks)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[stem, stage1, stage2, stage3, stage4]`` feature maps."""
        f0 = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(f0))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f0, f1, f2, f3, f4]


def build_resnet(name: str, in_channels: int, **kwargs: Any) -> ResNetEncoder:
    """Build the ResNet encoder registered as ``name`` (see :data:`RESNETS`).

    Parameters
    ----------
    name
        ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"resnet101"`` or ``"resnet152"``.
    in_channels
        Number of input bands.
    **kwargs
        ``output_stride`` and ``zero_init_residual`` of :class:`ResNetEncoder`.

    Raises
    ------
    ValueError
        If ``name`` is not registered.
    """
    if name not in RESNETS:
        raise ValueError(f"unknown ResNet encoder {name!r}; available: {sorted(RESNETS)}")
    return ResNetEncoder(**RESNETS[name], in_channels=in_channels, **kwargs)
