"""MNIST-1D as torch datasets, for the distillation configs of this folder.

Named in `distill.yaml` as `datasets.py:<function>` factories, so `neural-distill run` builds
the same data as `compare.py`.
"""

import numpy as np
import torch
from torch.utils.data import TensorDataset

from data import load_mnist1d, make_transfer_set

# Validation data for picking the best epoch: fresh samples from the same generator, so model
# selection never looks at the test set and the 4000 training samples stay untouched.
VALIDATION_SEED = 7
UNLABELED = -100  # PyTorch's ignore index: these samples get the distillation term alone


def _tensors(x, y):
    return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))


def labeled():
    x, y, _, _ = load_mnist1d()
    return _tensors(x, y)


def test():
    _, _, x, y = load_mnist1d()
    return _tensors(x, y)


def validation():
    x, y, _, _ = load_mnist1d(seed=VALIDATION_SEED)
    return _tensors(x[:1000], y[:1000])


def labeled_plus_transfer(num_transfer=20000, seed=1000):
    """The 4000 labeled samples plus an unlabeled transfer set (labels = -100)."""
    x, y, _, _ = load_mnist1d()
    x_transfer = make_transfer_set(num_transfer, seed=seed)
    unlabeled = np.full(len(x_transfer), UNLABELED, dtype=np.int64)
    return _tensors(np.concatenate([x, x_transfer]), np.concatenate([y, unlabeled]))
