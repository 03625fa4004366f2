"""MNIST-1D as NumPy arrays, for the Keras distillation configs of this folder.

Named in `distill.yaml` as `datasets.py:<function>` factories; the TensorFlow adapter turns
`(x, y)` arrays into a shuffled, batched `tf.data` pipeline. The data itself comes from the
PyTorch example's `data.py` (generated offline by the `mnist1d` package).
"""

import importlib.util
import os

import numpy as np


def _load_data_module():
    # Loaded by path under its own name: putting ../mnist1d on sys.path would make its
    # PyTorch `models.py` shadow this folder's Keras one.
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mnist1d", "data.py")
    spec = importlib.util.spec_from_file_location("mnist1d_example_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_data = _load_data_module()
load_mnist1d, make_transfer_set = _data.load_mnist1d, _data.make_transfer_set

# Validation data for picking the best epoch: fresh samples, never the test set.
VALIDATION_SEED = 7
UNLABELED = -100  # these samples get the distillation term alone


def labeled_arrays():
    x, y, _, _ = load_mnist1d()
    return x, y


def labeled():
    return labeled_arrays()


def test():
    _, _, x, y = load_mnist1d()
    return x, y


def validation():
    x, y, _, _ = load_mnist1d(seed=VALIDATION_SEED)
    return x[:1000], y[:1000]


def labeled_plus_transfer(num_transfer=20000, seed=1000):
    """The 4000 labeled samples plus an unlabeled transfer set (labels = -100)."""
    x, y = labeled_arrays()
    x_transfer = make_transfer_set(num_transfer, seed=seed)
    unlabeled = np.full(len(x_transfer), UNLABELED, dtype=np.int64)
    return np.concatenate([x, x_transfer]), np.concatenate([y, unlabeled])
