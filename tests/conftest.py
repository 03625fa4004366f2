"""Shared test set-up.

Every run writes into a temporary folder: the ``workspace`` fixture is the folder that configs
name under ``tuning.workspace.path``, and each test runs with its current directory in
``tmp_path`` so that even a forgotten workspace path never lands in the repository.
"""

import os
import sys

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

try:  # Two cores are shared with other workers: one intra-op thread keeps runs predictable.
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch-less environments run the framework-free tests
    torch = None


def pytest_configure(config):
    # `make gpu-check` runs these (`pytest -m gpu`); without a CUDA device they skip.
    config.addinivalue_line("markers", "gpu: needs a CUDA device (tests/gpu, make gpu-check)")


@pytest.fixture(autouse=True)
def _run_in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def workspace(tmp_path):
    """A fresh folder for ``tuning.workspace.path``; never inside the repository."""
    path = tmp_path / "nd_ws"
    path.mkdir()
    return str(path)


@pytest.fixture
def repo_root():
    return REPO_ROOT
