"""Stand-ins for the test helpers the seed 004 snippets import (``tests.common``).

``SimpleConvModel`` follows the Composer model shape the snippets were written for: called on
the whole ``(images, labels)`` batch, with a ``.loss(outputs, batch)`` method.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset


class RandomImageDataset(Dataset):
    """A few random 3x8x8 images with random labels among 2 classes (deterministic)."""

    def __init__(self, size=6, shape=(3, 8, 8), num_classes=2, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(size, *shape, generator=generator)
        self.y = torch.randint(0, num_classes, (size,), generator=generator)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, index):
        return self.x[index], self.y[index]


class SimpleConvModel(nn.Module):
    def __init__(self, num_channels=3, num_classes=2, width=4):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(num_channels, width, 3, padding=1),
                                 nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(width, num_classes))

    def forward(self, batch):
        inputs, _ = batch
        return self.net(inputs)

    def loss(self, outputs, batch):
        return F.cross_entropy(outputs, batch[1])
