"""Models and data for the torchrun test (named as factories by its YAML)."""

import numpy as np
import torch
from torch import nn


def teacher():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 4))


def student():
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 4))


def make_data(path, samples=64):
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(samples, 12)).astype(np.float32),
             y=rng.integers(0, 4, size=samples).astype(np.int64))
