"""The image classifier network: a small ResNet (He et al., 2016) written with torch
alone (no torchvision build works with the CPU torch here).

A 3x3 stem, then one stage per entry of ``widths``, each ``blocks`` basic residual
blocks (two 3x3 convolutions with batch norm, the shortcut a 1x1 convolution where the
width or stride changes), the first block of every stage but the first halving the
resolution, then global average pooling and one linear layer. For 28x28 digits the
defaults (16, 32, 64) have ~175k parameters: minutes of CPU for 97-99% on MNIST.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))."""
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """ResNet-style CNN; its constructor arguments are its architecture (``kwargs``)."""

    def __init__(self, num_classes: int, in_channels: int = 1,
                 widths: tuple[int, ...] | list[int] = (16, 32, 64), blocks: int = 1) -> None:
        super().__init__()
        self.kwargs: dict[str, Any] = {"num_classes": int(num_classes),
                                       "in_channels": int(in_channels),
                                       "widths": [int(w) for w in widths], "blocks": int(blocks)}
        w0 = int(widths[0])
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w0, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(w0), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        cin = w0
        for i, w in enumerate(widths):
            for b in range(int(blocks)):
                layers.append(BasicBlock(cin, int(w), 2 if (i > 0 and b == 0) else 1))
                cin = int(w)
        self.stages = nn.Sequential(*layers)
        self.head = nn.Linear(cin, int(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (n, num_classes) of normalised images (n, channels, height, width)."""
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
