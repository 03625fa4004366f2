"""Models and data for the FSDP torchrun tests (named as factories by their YAML).

With ``ND_TEST_EXIT_AT=N`` in the environment, every process exits abruptly (no clean-up) at
its N-th training forward pass: a run killed mid-epoch, for the resume test."""

import os

import numpy as np
import torch
from torch import nn


def teacher():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 4))


def student():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 4))
    exit_at = int(os.environ.get("ND_TEST_EXIT_AT", "0"))
    if exit_at:
        calls = []

        def count(module, inputs):
            if torch.is_grad_enabled() and module.training:
                calls.append(1)
                if len(calls) == exit_at:
                    os._exit(3)

        model.register_forward_pre_hook(count)
    return model


def make_data(path, samples=64):
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(samples, 12)).astype(np.float32),
             y=rng.integers(0, 4, size=samples).astype(np.int64))
