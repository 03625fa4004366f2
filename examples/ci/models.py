"""The CI example's experiment: a teacher that knows the rule labelling the data exactly (a
fixed random two-layer network) and a smaller student that learns it from the teacher. It
trains in a few seconds on one CPU thread, so a CI job can run it on every push."""

import numpy as np
import torch

FEATURES, HIDDEN, CLASSES = 16, 64, 5


def _rule_weights():
    rng = np.random.default_rng(2026)
    return (rng.normal(size=(HIDDEN, FEATURES)).astype(np.float32) / 4,
            rng.normal(size=(CLASSES, HIDDEN)).astype(np.float32))


def build_teacher():
    """The labelling rule itself, as a network: it is right on every sample."""
    first, second = _rule_weights()
    teacher = torch.nn.Sequential(torch.nn.Linear(FEATURES, HIDDEN), torch.nn.ReLU(),
                                  torch.nn.Linear(HIDDEN, CLASSES))
    with torch.no_grad():
        teacher[0].weight.copy_(torch.from_numpy(first))
        teacher[0].bias.zero_()
        teacher[2].weight.copy_(torch.from_numpy(second))
        teacher[2].bias.zero_()
    return teacher


def build_student(width=24):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(FEATURES, width), torch.nn.ReLU(),
                               torch.nn.Linear(width, CLASSES))


def dataset(n=2048, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, FEATURES)).astype(np.float32)
    with torch.no_grad():
        y = build_teacher()(torch.from_numpy(x)).argmax(dim=1)
    return torch.utils.data.TensorDataset(torch.from_numpy(x), y)
