"""Keras quantization-aware training on Keras' own int8 scheme, with distillation.

Real data: scikit-learn's 8x8 digits (64 pixel values 0..16, 10 classes).
"""

import ast
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
datasets = pytest.importorskip("sklearn.datasets")

from neural_distill.adapters.tensorflow import compression  # noqa: E402
from neural_distill.adapters.tensorflow.quantization import (  # noqa: E402
    _einsum_reduced_axes, float_copy, fake_quantize, int8_layers)
from neural_distill.config import (  # noqa: E402
    DistillationConfig, IntermediateLayersKnowledgeDistillationLossConfig,
    KnowledgeDistillationLossConfig, QuantizationAwareTrainingConfig)
from neural_distill.errors import ConfigError, ModelError  # noqa: E402
from neural_distill.training import prepare_compression  # noqa: E402
from tf_helpers import assert_same_weights, weights_of  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    data = datasets.load_digits()
    x = data.data.astype("float32")
    y = data.target.astype("int64")
    return x[:1400], y[:1400], x[1400:], y[1400:]


def dense_model(seed=0):
    """Conv (stays float: Keras has no int8 conv) -> Dense -> EinsumDense -> Dense."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((64,))
    h = keras.layers.Rescaling(1 / 16, name="scale")(x)
    h = keras.layers.Reshape((64, 1), name="reshape")(h)
    h = keras.layers.Conv1D(4, 3, strides=2, activation="relu", name="conv")(h)
    h = keras.layers.Flatten(name="flat")(h)
    h = keras.layers.Dense(32, activation="relu", name="hidden")(h)
    h = keras.layers.EinsumDense("ab,bc->ac", output_shape=16, bias_axes="c",
                                 activation="relu", name="mix")(h)
    return keras.Model(x, keras.layers.Dense(10, name="logits")(h))


def embedding_model(seed=0):
    """Pixel values 0..16 as tokens: Embedding (weight-only int8) -> Dense."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((64,), dtype="int32"),
                             keras.layers.Embedding(17, 3, name="embed"),
                             keras.layers.Flatten(name="flat"),
                             keras.layers.Dense(10, name="logits")])


@keras.saving.register_keras_serializable(package="neural_distill_test_tf_qat")
class Subclassed(keras.Model):
    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = keras.layers.Dense(units, activation="relu")
        self.logits = keras.layers.Dense(10)

    def call(self, x):
        return self.logits(self.hidden(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def seed_003_loop(manager, x, y, epochs=2, batch=100, lr=1e-2):
    """The reference documents' user loop shape, every hook called, with a GradientTape."""
    model = manager.model
    optimizer = keras.optimizers.Adam(lr)
    losses = []
    manager.callbacks.on_train_begin()
    for epoch in range(epochs):
        manager.callbacks.on_epoch_begin(epoch)
        for i in range(0, len(x), batch):
            manager.callbacks.on_step_begin(i // batch)
            xb, yb = tf.constant(x[i:i + batch]), tf.constant(y[i:i + batch])
            with tf.GradientTape() as tape:
                output = model(xb, training=True)
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                    yb, output, from_logits=True))
                loss = manager.callbacks.on_after_compute_loss(xb, output, loss)
            variables = model.trainable_variables
            grads = tape.gradient(loss, variables)
            manager.callbacks.on_before_optimizer_step()
            optimizer.apply_gradients(zip(grads, variables))
            manager.callbacks.on_after_optimizer_step()
            manager.callbacks.on_step_end()
            losses.append(loss)
        manager.callbacks.on_epoch_end()
    manager.callbacks.on_train_end()
    return losses


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model(x, training=False).numpy(), -1) == y))


@pytest.mark.parametrize("build,tokens", [(dense_model, False), (embedding_model, True)],
                         ids=["dense-einsum-conv", "embedding"])
def test_fake_quantized_forward_equals_the_exported_int8_model(digits, tmp_path, build,
                                                               tokens):
    x, y, x_test, y_test = digits
    if tokens:
        x, x_test = x.astype("int32"), x_test.astype("int32")
    model = build()
    manager = prepare_compression(model, QuantizationAwareTrainingConfig())
    seed_003_loop(manager, x, y, epochs=2)
    info = manager.export(str(tmp_path / "int8.keras"))

    loaded = keras.saving.load_model(info.path)
    expected = {"hidden": "Dense", "mix": "EinsumDense", "logits": "Dense"} if not tokens else \
        {"embed": "Embedding", "logits": "Dense"}
    assert manager.qat.quantized == expected
    assert sorted(int8_layers(loaded)) == sorted(expected)
    for name in expected:
        kernel = [w for w in loaded.get_layer(name).weights if w.dtype == "int8"]
        assert len(kernel) == 1  # the layer stores an int8 kernel/table, no float copy
    if not tokens:
        assert "conv" in manager.qat.not_quantized and loaded.get_layer("conv").weights[
            0].dtype == "float32"

    fake = model(x_test, training=False).numpy()
    int8 = loaded(x_test, training=False).numpy()
    manager.qat.remove()
    plain = model(x_test, training=False).numpy()
    # One int8 step of each row's output range; differences come from float summation order
    # and, rarely, an input element that lands on the other side of a rounding boundary.
    step = np.abs(int8).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(fake - int8) <= step)
    assert np.mean(fake.argmax(1) == int8.argmax(1)) >= 0.99
    # The float forward is not what the export computes: the simulation is what makes it match.
    assert np.abs(plain - int8).max() > 2 * np.abs(fake - int8).max()
    assert info.int8 and info.compression > 1.5
    assert info.weight_bytes < info.float_weight_bytes
    assert _accuracy(loaded, x_test, y_test) > 0.7


def test_gradients_flow_through_the_fake_quantizers(digits):
    x, y, _, _ = digits
    values = tf.constant(x[:8] / 16 - 0.3)
    upstream = tf.random.stateless_normal(values.shape, seed=(1, 2))
    with tf.GradientTape() as tape:
        tape.watch(values)
        out = fake_quantize(values, -1)
    # Straight-through: the gradient of dequantize(quantize(x)) is the identity.
    np.testing.assert_array_equal(tape.gradient(out, values, output_gradients=upstream),
                                  upstream)
    # The forward really is on the int8 grid: 255 levels per row at most, abs-max kept.
    scale = 127 / (np.abs(values.numpy()).max(1, keepdims=True) + keras.backend.epsilon())
    levels = out.numpy() * scale
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)

    model = dense_model()
    manager = prepare_compression(model, QuantizationAwareTrainingConfig())
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            y[:64], manager.model(x[:64], training=True), from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    for variable, grad in zip(model.trainable_variables, grads):
        assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0, variable.path


# The user loop calls model(x); the layer features then need a second student forward.
@pytest.mark.filterwarnings("ignore:.*features were not recorded by its forward pass")
def test_qat_with_logit_and_layer_distillation_keeps_the_teacher(digits, tmp_path):
    x, y, x_test, y_test = digits
    model = dense_model()
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, batch_size=100, verbose=0)
    float_accuracy = _accuracy(model, x_test, y_test)
    manager = prepare_compression(model, [
        QuantizationAwareTrainingConfig(example_inputs=x[:4]),
        DistillationConfig(criterion=KnowledgeDistillationLossConfig(
            temperature=2.0, loss_types=["CE", "KL"], loss_weights=[0.5, 0.5])),
        DistillationConfig(criterion=IntermediateLayersKnowledgeDistillationLossConfig()),
    ])
    teacher = manager.qat.float_model
    assert teacher is not model and manager.model is model
    for distiller in manager.distillers:
        assert distiller.teacher_model is teacher  # the float copy teaches by default
    mappings = manager.parts[2].criterion_config.layer_mappings
    assert [m[0] for m in mappings] == ["conv", "hidden", "mix", "logits"]
    before = weights_of(teacher)
    np.testing.assert_array_equal(teacher(x_test, training=False).numpy(),
                                  float_copy(model, "test")(x_test, training=False).numpy())

    losses = seed_003_loop(manager, x, y, epochs=2)

    assert all(tf.is_tensor(loss) and loss.shape.rank == 0 for loss in losses)
    assert all(np.isfinite(float(loss)) for loss in losses)
    assert_same_weights(before, weights_of(teacher))
    assert manager.distillers[0].history and manager.distillers[1].history
    info = manager.export(tmp_path / "student.keras")
    loaded = keras.saving.load_model(info.path)
    assert sorted(int8_layers(loaded)) == ["hidden", "logits", "mix"]
    assert _accuracy(loaded, x_test, y_test) > float_accuracy - 0.05


def test_yaml_config_excluded_layers_and_bad_input(digits, tmp_path):
    x, y, _, _ = digits
    path = tmp_path / "qat.yaml"
    path.write_text("quantization:\n  excluded_layers: [logits]\n  freeze_observers_epoch: 1\n")
    model = dense_model()
    manager = prepare_compression(model, QuantizationAwareTrainingConfig.from_yaml(str(path)))
    assert manager.qat.not_quantized["logits"] == "excluded_layers"
    seed_003_loop(manager, x[:200], y[:200], epochs=2)  # freeze at epoch 1: a no-op here
    loaded = keras.saving.load_model(manager.export(tmp_path / "m.keras").path)
    assert sorted(int8_layers(loaded)) == ["hidden", "mix"]

    with pytest.raises(ConfigError, match="excluded_layers: the model has no layer 'head'"):
        prepare_compression(dense_model(), QuantizationAwareTrainingConfig(
            excluded_layers=["head"]))
    with pytest.raises(ConfigError, match="reduce_range: Keras' int8 export has no 7-bit"):
        prepare_compression(dense_model(), QuantizationAwareTrainingConfig(reduce_range=True))
    with pytest.raises(ConfigError, match=r"expected a file name ending in \.keras"):
        manager.export(tmp_path / "m.pt2")
    # A subclassed model trains, and converts in memory (its rebuilt copy names its layers
    # anew: they are matched by position), but Keras cannot load its int8 file back.
    subclassed = Subclassed()
    manager = prepare_compression(subclassed, QuantizationAwareTrainingConfig(
        example_inputs=x[:4]))
    assert len(int8_layers(manager.qat.convert())) == 2
    with pytest.raises(ModelError, match="cannot load an int8-quantized subclassed model"):
        manager.export(tmp_path / "sub.keras")
    conv_only = keras.Sequential([keras.Input((8, 1)), keras.layers.Conv1D(2, 3, name="c")])
    with pytest.raises(ModelError, match="no layer that Keras' int8 export quantizes.*'c': "
                                         "Keras 3 has no int8 path"):
        prepare_compression(conv_only, QuantizationAwareTrainingConfig())


def test_einsum_axes_follow_the_equation():
    assert _einsum_reduced_axes("ab,bc->ac") == ((1,), (0,))
    assert _einsum_reduced_axes("...b,bc->...c") == ((-1,), (0,))
    assert _einsum_reduced_axes("abc,cde->abde") == ((2,), (0,))
    assert _einsum_reduced_axes("abcd,cde->abe") == ((2, 3), (0, 1))


def test_backend_module_has_the_torch_backends_names():
    """Both compression backends offer the same functions to training.py (read from source, so
    no torch import is needed)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def public(path):
        tree = ast.parse(open(os.path.join(root, path), encoding="utf-8").read())
        return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)
                and not n.name.startswith("_")}
    torch_names = public("neural_distill/adapters/torch/compression.py")
    assert torch_names and torch_names <= set(dir(compression))
