"""TensorFlow test set-up: one thread per op pool (two cores are shared with other workers,
and single-threaded reductions make runs bit-reproducible)."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

try:
    import tensorflow as tf
except ImportError:  # pragma: no cover - the modules skip themselves via importorskip
    tf = None

if tf is not None:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # the runtime was already initialised by an earlier test module
        pass


def pytest_configure(config):
    # Emitted inside Keras' own weight saving (keras/src/backend/tensorflow/core.py) under
    # NumPy 2; nothing in neural_distill triggers it differently from any Keras user.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


@pytest.fixture(scope="module")
def data():
    """Blobs to train on and to evaluate with: ``(x, y, x_eval, y_eval)``."""
    from tests.helpers import make_blobs

    return (*make_blobs(n=192, seed=0), *make_blobs(n=96, seed=5))
