"""U-Net for focal series (thesis [1]_ section 3.3; Ronneberger et al. [2]_).

Convolutional blocks of five 3x3 convolutions with PReLU activations and a short skip from the
output of the first layer to the input of the fifth; max-pooling down, bilinear up-sampling,
concatenated long skips, channels doubling per level.

References
----------
.. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
   two-dimensional materials", Bachelor project, DTU (2024).
.. [2] O. Ronneberger, P. Fischer, T. Brox, "U-Net: convolutional networks for biomedical image
   segmentation", MICCAI 2015, LNCS 9351, 234-241 (2015).
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Module):
    """Five 3x3 conv + BatchNorm + PReLU layers, the first layer's output added before the fifth."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()

        def layer(a, b):
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.PReLU(b))

        self.first = layer(c_in, c_out)
        self.middle = nn.Sequential(*[layer(c_out, c_out) for _ in range(3)])
        self.last = layer(c_out, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.first(x)
        return self.last(self.middle(first) + first)


class UNet(nn.Module):
    """U-Net mapping an ``(B, n_images, H, W)`` focal series to ``(B, n_classes, H, W)`` logits.

    Parameters
    ----------
    n_images : int
        Input channels (images of the focal series).
    n_classes : int
        Output channels (site classes + background).
    base_channels : int
        Channels of the first level; doubled at every level down.
    depth : int
        Number of down-sampling steps; H and W must be divisible by ``2**depth``.
    """

    def __init__(self, n_images: int = 3, n_classes: int = 4, base_channels: int = 8, depth: int = 3):
        super().__init__()
        chans = [base_channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            [ConvBlock(n_images, chans[0])] + [ConvBlock(chans[i], chans[i + 1]) for i in range(depth)]
        )
        self.up = nn.ModuleList([ConvBlock(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], n_classes, 1)
        self.divisor = 2**depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = nn.functional.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)
