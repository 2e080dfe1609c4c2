"""Mixed-scale dense network (Pelt & Sethian, PNAS 115, 254 (2018)).

Every layer sees the input and all earlier layers' outputs; layer ``i`` uses the dilation
``1 + i % max_dilation`` (dilations cycling 1..10); a 1x1 convolution maps all feature maps to
the class logits.
"""

from __future__ import annotations

import torch
from torch import nn


class MSDNet(nn.Module):
    """MSD-net mapping an ``(B, n_images, H, W)`` focal series to ``(B, n_classes, H, W)`` logits.

    Parameters
    ----------
    n_images : int
        Input channels (images of the focal series).
    n_classes : int
        Output channels (site classes + background).
    width : int
        Channels added per layer (w).
    depth : int
        Number of layers (d).
    kernel_size : int
        Kernel size k (odd).
    max_dilation : int
        Dilations cycle through ``1..max_dilation``.
    """

    def __init__(self, n_images: int = 3, n_classes: int = 4, width: int = 1, depth: int = 50,
                 kernel_size: int = 3, max_dilation: int = 10):
        super().__init__()
        self.layers = nn.ModuleList()
        for i in range(depth):
            dilation = 1 + i % max_dilation
            self.layers.append(nn.Sequential(
                nn.Conv2d(n_images + i * width, width, kernel_size, dilation=dilation,
                          padding=dilation * (kernel_size // 2), bias=False),
                nn.BatchNorm2d(width), nn.ReLU(inplace=True)))
        self.head = nn.Conv2d(n_images + depth * width, n_classes, 1)
        self.divisor = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x
        for layer in self.layers:
            features = torch.cat([features, layer(features)], dim=1)
        return self.head(features)
