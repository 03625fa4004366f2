"""A tiny PyTorch experiment for the command-line tests: files written into a temporary folder.

The teacher is a fixed linear rule that labels the data (accuracy 1.0); the student, a small
MLP, learns it in a few epochs. Everything runs in about a second.
"""

import textwrap

import yaml

FACTORIES = textwrap.dedent('''
    import numpy as np
    import torch

    def _rule():
        return np.random.default_rng(7).normal(size=(8, 3)).astype(np.float32)

    def dataset(n=256, seed=0):
        x = np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)
        y = np.argmax(x @ _rule(), axis=1)
        return torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))

    def build_teacher():
        teacher = torch.nn.Linear(8, 3)
        with torch.no_grad():
            teacher.weight.copy_(torch.from_numpy(_rule().T * 3.0))
            teacher.bias.zero_()
        return teacher

    def build_student(width=16):
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU(),
                                   torch.nn.Linear(width, 3))
''')


def config(epochs=3):
    return {
        "model": {"name": "tiny", "student": {"factory": "factories.py:build_student",
                                               "kwargs": {"width": 16}},
                  "teacher": "factories.py:build_teacher"},
        "distillation": {"train": {
            "epoch": epochs, "progress_bar": False,
            "optimizer": {"Adam": {"learning_rate": 0.02}},
            "criterion": {"KnowledgeDistillationLoss": {
                "temperature": 2.0, "loss_types": ["CE", "KL"], "loss_weights": [0.5, 0.5]}},
            "dataloader": {"batch_size": 32, "dataset": {"factory": {
                "name": "factories.py:dataset", "kwargs": {"n": 256, "seed": 0}}}}}},
        "evaluation": {"accuracy": {"metric": {"topk": 1}, "dataloader": {
            "batch_size": 64, "dataset": {"factory": {
                "name": "factories.py:dataset", "kwargs": {"n": 128, "seed": 1}}}}}},
        "tuning": {"random_seed": 0, "workspace": {"path": "runs"}},
    }


def write(folder, epochs=3, **changes):
    """``folder/factories.py`` and ``folder/tiny.yaml``; returns the YAML path."""
    (folder / "factories.py").write_text(FACTORIES, encoding="utf-8")
    document = config(epochs)
    document.update(changes)
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path
