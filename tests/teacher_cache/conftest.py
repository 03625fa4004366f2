"""Teacher-cache test set-up shared by the PyTorch cache tests."""

import pytest

from tests.helpers import make_blobs, trained_teacher


@pytest.fixture(scope="module")
def data():
    """Blobs and a teacher trained on them: ``(x, y, teacher)``."""
    x, y = make_blobs(n=96)
    return x, y, trained_teacher(x, y)
