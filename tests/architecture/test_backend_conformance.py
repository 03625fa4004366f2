"""Both backends implement the declared backend interface (neural_distill/adapters/base.py)
and expose the same public names, Keras-3 style."""

import inspect

import pytest

from neural_distill.adapters.base import BackendAdapter, backend_primitives


def _adapter(framework):
    pytest.importorskip("tensorflow" if framework == "tensorflow" else "torch")
    from neural_distill.adapters import adapter_for_framework

    return adapter_for_framework(framework)


def _public(adapter):
    return {name for name in dir(type(adapter)) if not name.startswith("_")}


def test_interface_declares_the_primitives():
    assert {"teacher_forward", "snapshot", "rng_state", "set_rng_state", "predict",
            "new_running_losses"} <= set(backend_primitives())


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_backend_implements_every_primitive(framework):
    adapter = _adapter(framework)
    assert isinstance(adapter, BackendAdapter)
    missing = [name for name in backend_primitives()
               if getattr(type(adapter), name) is getattr(BackendAdapter, name)]
    assert not missing, f"{framework} does not implement {missing}"
    for name in backend_primitives():
        declared = list(inspect.signature(getattr(BackendAdapter, name)).parameters)[1:]
        implemented = list(inspect.signature(getattr(adapter, name)).parameters)
        assert implemented == declared, (framework, name)


def test_both_backends_expose_the_same_public_names():
    torch_adapter, tf_adapter = _adapter("torch"), _adapter("tensorflow")
    assert _public(torch_adapter) == _public(tf_adapter)
    assert _public(torch_adapter) <= _public(BackendAdapter()) | {"name", "checkpoint_suffix"}


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_running_losses_round_trip_through_plain_state(framework):
    adapter = _adapter(framework)
    running = adapter.new_running_losses()
    if framework == "torch":
        import torch as fw_tensor

        tensor = fw_tensor.tensor
    else:
        import tensorflow as tf

        tensor = tf.constant
    running.add(tensor(3.0), tensor(1.0), tensor(2.0))
    running.add(tensor(5.0), None, tensor(4.0))
    state = running.to_state()
    again = adapter.new_running_losses()
    again.load_state(state)
    assert again.read() == running.read() == {"loss": 4.0, "distillation_loss": 3.0,
                                              "student_loss": 1.0}
    assert running.reset().read() == {}


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_counted_rows_and_their_top_k_match_numpy(framework):
    """The per-token cache's selection on the device (teacher_cache/token_records.py)."""
    import numpy as np

    adapter = _adapter(framework)
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(2, 5, 12)).astype(np.float32)
    valid = rng.random((2, 5)) < 0.6
    if framework == "torch":
        import torch

        tensor = torch.tensor(logits)
    else:
        import tensorflow as tf

        tensor = tf.constant(logits)
    rows = adapter.counted_rows(tensor, valid)
    np.testing.assert_array_equal(adapter.to_numpy(rows), logits[valid])
    indices, log_probs, log_tail = adapter.top_k_log_probs(rows, 3, 2.0)
    scaled = logits[valid].astype(np.float64) / 2.0
    log_p = scaled - np.log(np.exp(scaled).sum(-1, keepdims=True))
    expected = np.sort(log_p, axis=-1)[:, ::-1][:, :3]
    np.testing.assert_allclose(np.take_along_axis(log_p, indices.astype(int), -1), expected,
                               atol=1e-6)
    np.testing.assert_allclose(log_probs, expected, atol=1e-5)
    np.testing.assert_allclose(log_tail, np.log1p(-np.exp(expected).sum(-1)), atol=1e-5)
