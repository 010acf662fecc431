"""The image encoder: a small ResNet sized to the crop (the encoder dominates CPU time).

Three stages of `blocks` residual blocks with width, 2·width and 4·width channels; the last two
stages halve the resolution (as the CIFAR mini-ResNets of the reference). The feature map is average-pooled to pool × pool and flattened: pool = 1
gives F = 4·width; pool > 1 keeps coarse positions, which multi-object scenes need.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Encoder"]


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class Encoder(nn.Module):
    def __init__(self, channels: int, size: int, width: int = 16, blocks: int = 1, pool: int = 1):
        super().__init__()
        # The stem halves crops of 24 px or more (and again from 96 px): the first stage then
        # runs at 12–48 px, which is where a CPU's time goes; the sprites keep full resolution.
        stem_stride = 1 if size < 24 else (2 if size < 96 else 4)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, stem_stride, 1, bias=False),
                                   nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        cin = width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for i in range(blocks):
                layers.append(_Block(cin, cout, 2 if (stage > 0 and i == 0) else 1))
                cin = cout
        self.trunk = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.features = cin * pool * pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) → (B, F)
        return self.pool(self.trunk(x)).flatten(1)
