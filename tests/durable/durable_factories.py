"""Models and data for the durable-run tests, named as factories by their YAML experiment.

``ND_TEST_SIGNAL`` (KILL or INT) and ``ND_TEST_SIGNAL_AT`` (a count of training samples read)
make the training dataset send that signal to its own process mid-epoch: a kill at an exact,
repeatable point of the run, with no timing involved.
"""

import os
import signal

import numpy as np
import torch
from torch import nn

torch.set_num_threads(1)


class Student(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(),
                                    nn.Dropout(0.2))
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.hidden(x))


class Teacher(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(),
                                    nn.Dropout(0.5))
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        return self.head(self.hidden(x))


def student():
    torch.manual_seed(0)
    return Student()


def teacher():
    torch.manual_seed(1)
    return Teacher()


class _Blobs(torch.utils.data.Dataset):
    def __init__(self, split):
        rng = np.random.default_rng(0 if split == "train" else 1)
        centres = np.random.default_rng(5).normal(0.0, 2.0, size=(3, 8))
        self.y = rng.integers(0, 3, size=48)
        self.x = (centres[self.y] + rng.normal(0.0, 0.7, size=(48, 8))).astype(np.float32)
        self.split = split
        self.read = 0

    def __len__(self):
        return len(self.y)

    def __getitem__(self, index):
        if self.split == "train":
            self.read += 1
            if self.read == int(os.environ.get("ND_TEST_SIGNAL_AT", "0")):
                os.kill(os.getpid(), getattr(signal, "SIG" + os.environ["ND_TEST_SIGNAL"]))
        return torch.from_numpy(self.x[index]), int(self.y[index])


def dataset(split):
    return _Blobs(split)
