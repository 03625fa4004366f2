"""Small factories for the tests: tiny models, synthetic datasets, configs.

Everything here is deliberately tiny (a few hundred samples, a few hundred parameters) so the
whole suite runs in seconds on two shared CPU cores.
"""

import copy

import numpy as np

NUM_FEATURES = 8
NUM_CLASSES = 3


# ---------------------------------------------------------------------------- data (NumPy)
def make_blobs(n=192, dim=NUM_FEATURES, classes=NUM_CLASSES, seed=0, spread=0.5):
    """A linearly separable problem: one Gaussian blob per class around a random centre."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1234).normal(0.0, 2.0, size=(classes, dim))
    y = rng.integers(0, classes, size=n)
    x = centres[y] + rng.normal(0.0, spread, size=(n, dim))
    return x.astype(np.float32), y.astype(np.int64)


# Sections that hold exactly one choice (``optimizer: {SGD: ...}``): an override replaces them.
ONE_CHOICE_KEYS = {"optimizer", "criterion", "lr_schedule", "metric", "dataset"}


def deep_update(base, overrides):
    """``base`` with ``overrides`` merged in recursively (neither argument is changed)."""
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        if (isinstance(value, dict) and isinstance(result.get(key), dict)
                and key not in ONE_CHOICE_KEYS):
            result[key] = deep_update(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def base_config(workspace, **overrides):
    """A small valid config dict: 2 epochs, Adam, KD loss, quiet, workspace in ``workspace``."""
    config = {
        "model": {"name": "test", "framework": "pytorch"},
        "device": "cpu",
        "distillation": {"train": {
            "optimizer": {"Adam": {"learning_rate": 0.01}},
            "criterion": {"KnowledgeDistillationLoss": {
                "temperature": 2.0, "loss_types": ["CE", "KL"], "loss_weights": [0.5, 0.5]}},
            "epoch": 2,
            "progress_bar": False,
        }},
        "tuning": {"random_seed": 7, "workspace": {"path": str(workspace)}},
    }
    return deep_update(config, overrides)


# ---------------------------------------------------------------------------- torch parts
def _torch():
    import torch

    return torch


def tensor_loader(x, y=None, batch_size=32, shuffle=False):
    """A DataLoader over NumPy arrays; without ``y`` it yields inputs only."""
    torch = _torch()
    from torch.utils.data import DataLoader, TensorDataset

    tensors = [torch.as_tensor(x)] + ([] if y is None else [torch.as_tensor(y)])
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=shuffle)


def tiny_mlp(in_dim=NUM_FEATURES, hidden=16, out=NUM_CLASSES, dropout=0.0, seed=0):
    torch = _torch()
    nn = torch.nn
    torch.manual_seed(seed)
    layers = [nn.Linear(in_dim, hidden), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, out))
    return nn.Sequential(*layers)


def make_teacher_bn(in_dim=NUM_FEATURES, hidden=32, out=NUM_CLASSES, seed=1):
    """A teacher with BatchNorm (running statistics) and Dropout, both mode-dependent."""
    torch = _torch()
    nn = torch.nn

    class TeacherBN(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(in_dim, hidden)
            self.bn = nn.BatchNorm1d(hidden)
            self.drop = nn.Dropout(0.5)
            self.fc2 = nn.Linear(hidden, out)

        def forward(self, x):
            return self.fc2(self.drop(torch.relu(self.bn(self.fc1(x)))))

    torch.manual_seed(seed)
    return TeacherBN()


def make_tiny_cnn(in_dim=NUM_FEATURES, channels=4, out=NUM_CLASSES, seed=2):
    """A 1-D CNN over (batch, in_dim) inputs, with a BatchNorm: a second architecture."""
    torch = _torch()
    nn = torch.nn

    class TinyCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(1, channels, kernel_size=3, padding=1)
            self.bn = nn.BatchNorm1d(channels)
            self.head = nn.Linear(channels * in_dim, out)

        def forward(self, x):
            h = torch.relu(self.bn(self.conv(x.unsqueeze(1))))
            return self.head(h.flatten(1))

    torch.manual_seed(seed)
    return TinyCNN()


def train_plain(model, x, y, steps=60, lr=0.05, seed=0):
    """Supervised training without distillation (to make a teacher that knows something)."""
    torch = _torch()
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    model.eval()
    return model


def accuracy(model, x, y):
    torch = _torch()
    with torch.no_grad():
        pred = model(torch.as_tensor(x)).argmax(-1).numpy()
    return float((pred == y).mean())


def state_arrays(model):
    """Every parameter and buffer as a NumPy copy, keyed by name (for bit-exact checks)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def assert_states_identical(before, after):
    assert before.keys() == after.keys()
    for key in before:
        assert before[key].dtype == after[key].dtype, key
        assert np.array_equal(before[key], after[key]), f"{key} changed"


def trained_teacher(x, y, seed=1):
    return train_plain(tiny_mlp(hidden=32, seed=seed), x, y, steps=80, lr=0.05, seed=seed)
