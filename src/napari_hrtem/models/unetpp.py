"""U-Net++ for focal series (Zhou et al. 2018, "UNet++: A Nested U-Net Architecture";
J. B. Christensen, "Machine learning for interpreting HR-TEM images of two-dimensional
materials", Bachelor project, DTU (2024), sections 2.2.5 and 3.3).

The same convolutional blocks as :mod:`napari_hrtem.models.unet` (five 3x3 conv + PReLU layers
with a short skip), arranged as nested dense skip pathways: node ``X[i][j]`` (level ``i``, position
``j`` along the skip pathway) sees all earlier nodes of its level, ``X[i][0..j-1]``, concatenated
with the bilinearly up-sampled node ``X[i+1][j-1]`` from the level below. The output is read from
the last node of the top level, ``X[0][depth]``.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_hrtem.models.unet import ConvBlock


class UNetPlusPlus(nn.Module):
    """U-Net++ mapping an ``(B, n_images, H, W)`` focal series to ``(B, n_classes, H, W)`` logits.

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
        self.depth = depth
        self.divisor = 2**depth
        # nodes[i][j]: level i, position j (j = 0 is the encoder column)
        self.nodes = nn.ModuleList()
        for i in range(depth + 1):
            level = nn.ModuleList()
            for j in range(depth + 1 - i):
                if j == 0:
                    c_in = n_images if i == 0 else chans[i - 1]
                else:
                    c_in = j * chans[i] + chans[i + 1]
                level.append(ConvBlock(c_in, chans[i]))
            self.nodes.append(level)
        self.head = nn.Conv2d(chans[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = nn.functional.interpolate
        grid: list[list[torch.Tensor]] = [[] for _ in range(self.depth + 1)]
        for i in range(self.depth + 1):
            x = self.nodes[i][0](x if i == 0 else nn.functional.max_pool2d(x, 2))
            grid[i].append(x)
        # fill the nested pathways diagonal by diagonal: X[i][j] needs X[i+1][j-1]
        for j in range(1, self.depth + 1):
            for i in range(self.depth + 1 - j):
                below = up(grid[i + 1][j - 1], size=grid[i][0].shape[-2:], mode="bilinear", align_corners=False)
                grid[i].append(self.nodes[i][j](torch.cat([*grid[i][:j], below], dim=1)))
        return self.head(grid[0][self.depth])
