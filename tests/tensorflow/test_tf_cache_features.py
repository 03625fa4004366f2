"""The teacher cache with IntermediateLayersKnowledgeDistillationLoss in the TensorFlow built-in
loop: the teachers' captured features are cached with their logits (on a miss the compiled step
runs the teachers and hands back what it used), and a hit feeds both to the compiled step."""

import logging

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from helpers import NUM_FEATURES, make_blobs  # noqa: E402
from tf_helpers import dataset, functional_cnn, tf_config, train_plain, weights_of  # noqa: E402

from neural_distill import Distillation  # noqa: E402
from neural_distill.errors import ConfigError  # noqa: E402

# conv features 4 (student) -> 8 (teacher) channels: a learned Dense matcher; the teacher's
# logits layer against the student's whole output: identity.
MAPPINGS = [["conv"], ["", "logits"]]


class _Count:
    """A plain holder (Keras does not track it): the counter stays out of the teacher's
    weights, so it changes neither the fingerprint nor the teacher's state."""

    def __init__(self):
        self.samples = tf.Variable(0, dtype=tf.int64, trainable=False)


class CountSamples(keras.layers.Layer):
    """Identity that counts the samples it sees, in eager and in compiled calls alike (a Python
    counter would count traces inside a tf.function)."""

    def __init__(self, count=None, **kwargs):
        super().__init__(**kwargs)
        self.count = count

    def call(self, x):
        if self.count is not None:
            self.count.samples.assign_add(tf.cast(tf.shape(x)[0], tf.int64))
        return x

    def compute_output_spec(self, x):
        return keras.KerasTensor(x.shape, x.dtype)


def counting_teacher(trained):
    """``trained``'s layers (shared, not copied) behind a counting layer, in one Functional
    model whose layer names are the same, so the mappings reach them."""
    count = _Count()
    x = keras.Input((NUM_FEATURES,))
    h = CountSamples(count, name="count")(x)
    for layer in trained.layers:
        if not isinstance(layer, keras.layers.InputLayer):
            h = layer(h)
    return keras.Model(x, h), count


@pytest.fixture(scope="module")
def data():
    x, y = make_blobs(n=96)
    x = x.astype(np.float32)
    return x, y, train_plain(functional_cnn(channels=8, seed=1), x, y, epochs=5)


def _distiller(workspace, teacher, x, y, epochs=3, mode="graph", **cache):
    distiller = Distillation(tf_config(workspace, distillation={"train": {
        "epoch": epochs, "teacher_cache": cache, "execution_mode": mode,
        "criterion": {"IntermediateLayersKnowledgeDistillationLoss": {
            "layer_mappings": MAPPINGS, "loss_types": ["MSE", "L1"],
            "add_origin_loss": True}}}}))
    distiller.student_model = functional_cnn(channels=4, seed=0)
    distiller.teacher_model = teacher
    distiller.train_dataloader = dataset(x, y)  # fixed order: 3 batches of 32
    return distiller


def _matchers(distiller):
    return [v.numpy().copy() for v in distiller.criterion.trainable_variables]


def test_cached_feature_kd_trains_bit_identically_and_runs_the_teacher_in_epoch_1(
        workspace, data, monkeypatch):
    from neural_distill.criterion import TensorflowIntermediateLayersKnowledgeDistillationLoss as TF


    x, y, trained = data
    before = weights_of(trained)
    plain_teacher, plain_count = counting_teacher(trained)
    plain = _distiller(workspace, plain_teacher, x, y)
    plain_student = plain.fit()
    teacher, count = counting_teacher(trained)
    distiller = _distiller(workspace, teacher, x, y, enabled=True)
    traces = []
    original = TF.use_teacher_features
    monkeypatch.setattr(TF, "use_teacher_features",
                        lambda self, f: (traces.append(len(f)), original(self, f)))
    student = distiller.fit()

    # Same weights and matchers, bit for bit: a hit feeds the step the float32 values the
    # teacher produced for the same batch in epoch 1, and the student's side is unchanged.
    for a, b in zip(weights_of(plain_student), weights_of(student)):
        np.testing.assert_array_equal(a, b)
    assert len(_matchers(distiller)) == 2  # the conv matcher's kernel and bias
    for a, b in zip(_matchers(plain), _matchers(distiller)):
        np.testing.assert_array_equal(a, b)
    assert [r["loss"] for r in plain.history if "time_s" in r] == \
        [r["loss"] for r in distiller.history if "time_s" in r]
    # Uncached: every epoch plus the first-batch check; cached: epoch 1 only (the matchers
    # come from the models' graphs, so the first-batch check does not run the teachers).
    assert int(plain_count.samples.numpy()) == 3 * len(x) + 32
    assert int(count.samples.numpy()) == len(x)
    rates = [r["teacher_cache_hit_rate"] for r in distiller.history if "time_s" in r]
    assert rates == [0.0, 1.0, 1.0]
    cache = distiller.step.cache
    assert cache.features and [shape for shape, _ in cache.parts] == [(3,), (8, 8), (3,)]
    # Graph mode: use_teacher_features runs in Python only while the step is traced: once for
    # the miss trace and once for the hit trace, not once per batch (6 hits).
    assert traces == [2, 2]
    for a, b in zip(before, weights_of(trained)):  # the teacher is left as it was
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("variant", ["optimizer hooks", "eager"])
def test_feature_cache_with_separate_compiled_steps_or_eagerly(workspace, data, variant):
    """With an optimizer hook overridden, compute and apply are two compiled functions; with
    execution_mode: eager nothing is compiled. Both train as without the cache."""
    x, y, trained = data
    mode = "eager" if variant == "eager" else "graph"
    runs = []
    for cache in ({}, {"enabled": True}):
        teacher, count = counting_teacher(trained)
        distiller = _distiller(workspace, teacher, x, y, epochs=2, mode=mode, **cache)
        if variant == "optimizer hooks":
            calls = []
            distiller.on_before_optimizer_step = lambda calls=calls: calls.append(1)
        student = distiller.fit()
        runs.append((weights_of(student) + _matchers(distiller), int(count.samples.numpy())))
    (plain, plain_samples), (cached, samples) = runs
    for a, b in zip(plain, cached):
        np.testing.assert_array_equal(a, b)
    assert (plain_samples, samples) == (2 * len(x) + 32, len(x))
    if variant == "optimizer hooks":
        assert len(calls) == 6
    assert [r["teacher_cache_hit_rate"] for r in distiller.history if "time_s" in r] == \
        [0.0, 1.0]


def test_feature_cache_hit_serves_the_features_the_teacher_produced(workspace, data):
    x, y, trained = data
    teacher, _ = counting_teacher(trained)
    distiller = _distiller(workspace, teacher, x, y, epochs=1, enabled=True)
    distiller.fit()
    logits, conv, selected = distiller.step.cache.lookup(x[[5, 70, 1]])
    # The counting teacher shares the trained model's layers: read them through its graph.
    extractor = keras.Model(trained.input, [trained.get_layer("conv").output, trained.output])
    want_conv, want_logits = (t.numpy() for t in extractor(x[[5, 70, 1]], training=False))
    np.testing.assert_allclose(conv, want_conv, rtol=1e-5, atol=1e-6)  # another batch: rounding
    np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(logits, selected)


def test_feature_cache_settings_that_cannot_serve_are_refused(workspace, data):
    x, y, trained = data
    with pytest.raises(ConfigError, match="compression: none"):
        _distiller(workspace, counting_teacher(trained)[0], x, y, epochs=1, enabled=True,
                   compression="float16").fit()



def _user_loop(distiller, loader, epochs=2):
    """A user's eager tape loop through the hooks (the step's eager cache path)."""
    student = distiller.student_model
    distiller.on_train_begin(loader)
    criterion = distiller.criterion
    variables = student.trainable_variables + criterion.trainable_variables
    optimizer = keras.optimizers.SGD(0.05)
    for epoch in range(epochs):
        distiller.on_epoch_begin(epoch)
        for i, (x, y) in enumerate(loader):
            distiller.on_step_begin(i)
            with tf.GradientTape() as tape:
                out = criterion.student_forward(x, training=True)
                ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                    y, out, from_logits=True))
                loss = distiller.on_after_compute_loss(x, out, ce)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            distiller.on_step_end()
        distiller.on_epoch_end()
    distiller.on_train_end()
    return weights_of(student) + [v.numpy() for v in criterion.trainable_variables]


def test_feature_cache_in_a_users_eager_loop(workspace, data):
    x, y, trained = data
    runs = []
    for cache in ({}, {"enabled": True}):
        teacher, count = counting_teacher(trained)
        distiller = _distiller(workspace, teacher, x, y, **cache)
        runs.append((_user_loop(distiller, dataset(x, y)), int(count.samples.numpy())))
    (plain, plain_samples), (cached, samples) = runs
    for a, b in zip(plain, cached):
        np.testing.assert_array_equal(a, b)
    assert samples == len(x) and plain_samples == 2 * len(x) + 32
    assert [e["hit_rate"] for e in distiller.step.cache.epochs] == [0.0, 1.0]
