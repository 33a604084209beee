"""Concurrent spatial and channel squeeze-and-excitation (scSE), Roy et al. 2019.

Roy, A. G., Navab, N. & Wachinger, C. (2019). Recalibrating fully convolutional networks with
spatial and channel "squeeze and excitation" blocks. IEEE TMI 38(2), 540-549.
"""

from __future__ import annotations

import torch
from torch import nn


class SCSE(nn.Module):
    """scSE block: ``x * cSE(x) + x * sSE(x)``.

    * cSE (channel): global average pooling -> 1x1 conv ``C -> C // reduction`` -> ReLU ->
      1x1 conv back to ``C`` -> sigmoid, one gate per channel.
    * sSE (spatial): 1x1 conv ``C -> 1`` -> sigmoid, one gate per pixel.

    The two recalibrated tensors are added (the "addition" aggregation of the paper, which the
    widely used UNet++/scSE implementation also uses).

    Parameters
    ----------
    channels
        Number of channels ``C``.
    reduction
        Channel reduction ratio of the cSE bottleneck (hidden width ``max(1, C // reduction)``).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.cse = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )
        self.sse = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Recalibrate ``x`` (shape unchanged)."""
        # x * cSE + x * sSE, with one full-size product instead of two.
        return x * (self.cse(x) + self.sse(x))
