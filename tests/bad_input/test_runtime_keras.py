"""Run-time bad input with Keras models (issue 11, items 3-6, 8-10), the twins of
``test_runtime_torch.py`` where the mistake exists in Keras too."""

import os
import sys
import warnings

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from helpers import NUM_CLASSES, NUM_FEATURES, make_blobs  # noqa: E402
from neural_distill import DataError, Distillation, ModelError  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tensorflow"))
from tf_helpers import dataset, mlp, tf_config  # noqa: E402


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n=64)


def distiller_for(workspace, loader=None, student=None, teacher=None, **overrides):
    distiller = Distillation(tf_config(workspace, **overrides))
    distiller.student_model = student if student is not None else mlp(seed=0)
    distiller.teacher_model = teacher if teacher is not None else mlp(hidden=32, seed=1)
    distiller.train_dataloader = loader
    return distiller


def batches(blobs, batch_size=16):
    x, y = blobs
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]


# ---------------------------------------------------------------------------- 3: shared weights
def test_student_is_or_shares_a_layer_with_the_teacher(workspace):
    teacher = mlp(hidden=32, seed=1)
    distiller = Distillation(tf_config(workspace))
    distiller.teacher_model = teacher
    with pytest.raises(ModelError, match="same object"):
        distiller.student_model = teacher
    inputs = keras.Input((NUM_FEATURES,))
    shared = keras.Model(inputs, teacher.get_layer("logits")(
        keras.layers.Dense(32, activation="relu")(inputs)))
    with pytest.raises(ModelError, match="share 2 weight.*would change the teacher"):
        distiller.student_model = shared


# ---------------------------------------------------------------------------- 4: NaN / inf
def test_non_finite_loss_in_the_compiled_step_keeps_the_best_student(workspace, blobs):
    x, y = blobs
    poisoned = x.copy()
    poisoned[20, 0] = np.inf
    passes = []

    def epochs():  # re-iterable: epoch 0 clean, epoch 1 poisoned at step 1
        passes.append(1)
        source = poisoned if len(passes) > 2 else x  # pass 1 is the preflight peek
        return iter(batches((source, y)))

    class Loader:
        __iter__ = staticmethod(epochs)

    distiller = distiller_for(workspace, Loader(),
                              evaluation={"accuracy": {"metric": "Accuracy"}})
    distiller.eval_dataloader = dataset(x, y)
    with pytest.raises(DataError, match="became (nan|inf|-inf) at epoch 1, step 1.*"
                                        "distiller.best_model"):
        distiller.fit()
    assert all(np.isfinite(w).all() for w in distiller.best_model.get_weights())
    assert os.path.exists(os.path.join(distiller.workspace.path, "best_student.weights.h5"))


# ---------------------------------------------------------------------------- 5: empty data
@pytest.mark.parametrize("make_loader, words", [
    (lambda: dataset(np.zeros((0, NUM_FEATURES), np.float32), np.zeros(0, np.int64)), "empty"),
    (lambda: (b for b in batches(make_blobs(n=32))), "one-shot iterator.*2 epochs"),
], ids=["empty-tf.data", "generator"])
def test_empty_or_one_shot_data(workspace, make_loader, words):
    with pytest.raises(DataError, match=words):
        distiller_for(workspace, make_loader()).fit()


# ---------------------------------------------------------------------------- 6: loss shape
def test_per_sample_student_loss_and_python_float(workspace, blobs):
    distiller = distiller_for(workspace)
    x, y = batches(blobs)[0]
    out = distiller.student_model(x)
    per_sample = keras.losses.sparse_categorical_crossentropy(y, out, from_logits=True)
    with pytest.warns(UserWarning, match="one value per sample"):
        loss = distiller.on_after_compute_loss(x, out, per_sample)
    assert loss.shape == ()
    expected = distiller.on_after_compute_loss(x, out, tf.reduce_mean(per_sample))
    np.testing.assert_allclose(loss.numpy(), expected.numpy(), rtol=1e-6)
    with pytest.raises(ModelError, match="Python number"):
        distiller.on_after_compute_loss(x, out, float(expected))


# ---------------------------------------------------------------------------- 8: warnings
@pytest.mark.parametrize("overrides, words", [
    ({"evaluation": {"accuracy": {"metric": {"topk": 3}}}}, "k=3 but the model predicts 3"),
    ({"evaluation": {"accuracy": {"metric": "Accuracy"}}}, "no evaluation data"),
    ({"distillation": {"train": {"criterion": {"KnowledgeDistillationLoss": {
        "loss_types": ["CE", "KL"], "from_logits": False}}}}}, "look like logits"),
], ids=["topk", "metric-without-data", "from_logits"])
def test_warnings(workspace, blobs, overrides, words):
    distiller = distiller_for(workspace, dataset(*blobs), **overrides)
    if "topk" in str(overrides):
        distiller.eval_dataloader = dataset(*blobs)
    with pytest.warns(UserWarning, match=words):
        distiller.fit()


# ---------------------------------------------------------------------------- 9: raw errors
def _two_inputs_model():
    a, b = keras.Input((NUM_FEATURES,)), keras.Input((NUM_FEATURES,))
    return keras.Model([a, b], keras.layers.Dense(NUM_CLASSES)(keras.layers.Add()([a, b])))


@pytest.mark.parametrize("case, error, words", [
    ("out-of-range", DataError, r"a label is \d+, but the student predicts 3 classes.*0..2"),
    ("later-out-of-range", DataError, r"a label is 7, but the student predicts 3"),
    ("float", DataError, "class labels must be integers"),
    ("one-hot", DataError, "one-hot"),
    ("mse", DataError, "student loss is MSE"),
    ("three-items", DataError, "batches have 3 items"),
    ("dict-without-labels", DataError, "rename the label key to 'labels'"),
    ("class-counts", ModelError, "student predicts 3 classes but teacher_model predicts 5"),
])
def test_raw_errors_become_clear(workspace, blobs, case, error, words):
    x, y = blobs
    teacher, overrides, loader = None, {}, None
    if case == "out-of-range":
        loader = dataset(x, y + 5)
    elif case == "later-out-of-range":
        y = y.copy()
        y[40] = 7
        loader = dataset(x, y)
    elif case == "float":
        loader = dataset(x, y.astype(np.float32))
    elif case == "one-hot":
        loader = dataset(x, np.eye(NUM_CLASSES, dtype=np.int64)[y])
    elif case == "mse":
        overrides = {"distillation": {"train": {"criterion": {
            "KnowledgeDistillationLoss": {"loss_types": ["MSE", "KL"]}}}}}
        loader = dataset(x, y)
    elif case == "three-items":
        loader = [(x[:16], x[:16], y[:16])]
    elif case == "dict-without-labels":
        teacher = _two_inputs_model()
        loader = [{"a": x[:16], "b": x[:16], "target": y[:16]}]
    elif case == "class-counts":
        keras.utils.set_random_seed(1)
        teacher = keras.Sequential([keras.Input((NUM_FEATURES,)), keras.layers.Dense(5)])
        loader = dataset(x, y + 2)
    student = _two_inputs_model() if case == "dict-without-labels" else None
    distiller = distiller_for(workspace, loader, student=student, teacher=teacher, **overrides)
    with pytest.raises(error, match=words):
        distiller.fit()


def test_float64_teacher_with_float32_student_trains(workspace, blobs):
    """Keras casts each layer's inputs to its dtype: no clash, and the loss is float32."""
    keras.utils.set_random_seed(1)
    teacher = keras.Sequential([keras.Input((NUM_FEATURES,)),
                                keras.layers.Dense(NUM_CLASSES, dtype="float64")])
    distiller = distiller_for(workspace, dataset(*blobs), teacher=teacher)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        student = distiller.fit()
    assert all(np.isfinite(w).all() for w in student.get_weights())


# ---------------------------------------------------------------------------- 10: devices
def test_mps_device_without_a_gpu(workspace, blobs):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelError, match="device 'mps'.*device: cpu"):
        distiller_for(workspace, dataset(*blobs), device="mps").fit()


def test_keras_on_another_backend_is_refused(monkeypatch):
    from neural_distill.adapters.tensorflow import checks as tf_checks

    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(ModelError, match="'torch' backend.*KERAS_BACKEND=tensorflow"):
        tf_checks.check_keras_backend()


def test_keras_model_that_is_also_a_torch_module_goes_to_the_keras_adapter(monkeypatch):
    """On Keras' torch backend every keras.Model is a torch.nn.Module: Keras must win."""
    from types import SimpleNamespace

    from neural_distill.adapters import detect_framework

    fake_torch = SimpleNamespace(nn=SimpleNamespace(Module=keras.Model))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    assert detect_framework(mlp()) == "tensorflow"
