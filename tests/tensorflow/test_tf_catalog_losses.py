"""The catalog's newer losses in TensorFlow against the NumPy reference of the papers' formulas
(tests/np_reference_catalog.py), value and gradient, as the PyTorch tests check them
(tests/torch/test_catalog_losses.py); features are channels-last here."""

import warnings

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import np_reference as ref  # noqa: E402
import np_reference_catalog as cat  # noqa: E402
from helpers import make_blobs  # noqa: E402
from neural_distill import Distillation  # noqa: E402
from neural_distill.adapters.tensorflow import losses  # noqa: E402
from neural_distill.criterion import (  # noqa: E402
    TensorflowDecoupledKnowledgeDistillationLoss, TensorflowDISTLoss,
    TensorflowKnowledgeDistillationLoss)
from tf_helpers import dataset, mlp, tf_config  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6
GRAD_RTOL, GRAD_ATOL = 1e-3, 1e-5


def pair(shape=(6, 5), seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    return ((rng.normal(size=shape) * scale).astype(np.float32),
            (rng.normal(size=shape) * scale).astype(np.float32))


def check(loss_of_student, reference_of_student, student):
    s = tf.Variable(student)
    with tf.GradientTape() as tape:
        loss = loss_of_student(s)
    assert loss.shape.rank == 0
    np.testing.assert_allclose(float(loss), reference_of_student(student), rtol=RTOL, atol=ATOL)
    grad = tape.gradient(loss, s).numpy()
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, cat.numerical_gradient(reference_of_student, student),
                               rtol=GRAD_RTOL, atol=GRAD_ATOL)


@pytest.mark.parametrize("kd_type,beta", [("RKL", 0.5), ("JSD", 0.0), ("JSD", 0.3),
                                          ("JSD", 1.0)])
def test_divergences(kd_type, beta):
    s, t = pair(seed=1)
    kd = TensorflowKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", kd_type],
                                             beta=beta)
    reference = ((lambda x: cat.reverse_kl(x, t, 2.0)) if kd_type == "RKL"
                 else (lambda x: cat.generalized_jsd(x, t, 2.0, beta)))
    check(lambda x: kd.distillation_loss(x, tf.constant(t)), reference, s)


def test_kd_with_logit_standardization():
    s, t = pair(seed=2, scale=4.0)
    kd = TensorflowKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", "KL"],
                                             logit_standardization=True)
    check(lambda x: kd.distillation_loss(x, tf.constant(t)),
          lambda x: ref.kd("KL", cat.standardize(x), cat.standardize(t), 2.0), s)


@pytest.mark.parametrize("standardize", [False, True])
def test_dkd(standardize):
    s, t = pair(shape=(7, 6), seed=3)
    y = np.random.default_rng(4).integers(0, 6, size=7)
    dkd = TensorflowDecoupledKnowledgeDistillationLoss(
        alpha=0.5, beta=8.0, temperature=4.0, logit_standardization=standardize)

    def reference(x):
        if standardize:
            return cat.dkd(cat.standardize(x), cat.standardize(t), y, 0.5, 8.0, 4.0)
        return cat.dkd(x, t, y, 0.5, 8.0, 4.0)
    check(lambda x: dkd.distillation_loss(x, tf.constant(t), tf.constant(y)), reference, s)


def test_dkd_unlabeled_rows_and_no_labels_take_the_teachers_top1():
    s, t = pair(seed=5)
    y = np.array([0, -100, 2, -100, 4, 1])
    dkd = TensorflowDecoupledKnowledgeDistillationLoss()
    filled = np.where(y == -100, t.argmax(-1), y)
    got = float(dkd.distillation_loss(tf.constant(s), tf.constant(t), tf.constant(y)))
    assert got == pytest.approx(cat.dkd(s, t, filled, 1.0, 8.0, 4.0), rel=1e-5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = float(dkd.distillation_loss(tf.constant(s), tf.constant(t)))
    assert any("top-1" in str(w.message) for w in caught)
    assert got == pytest.approx(cat.dkd(s, t, t.argmax(-1), 1.0, 8.0, 4.0), rel=1e-5)


def test_dist():
    s, t = pair(shape=(8, 5), seed=6)
    dist = TensorflowDISTLoss(beta=2.0, gamma=0.5, temperature=4.0, loss_weights=[0.2, 1.0])
    check(lambda x: dist.distillation_loss(x, tf.constant(t)),
          lambda x: cat.dist(x, t, 2.0, 0.5, 4.0), s)
    y = np.array([0, 1, 2, 3, 4, 0, 1, 2])
    total = float(dist(tf.constant(s), tf.constant(t), tf.constant(y)))
    assert total == pytest.approx(0.2 * ref.student_term("CE", s, y)
                                  + cat.dist(s, t, 2.0, 0.5, 4.0), rel=1e-5)


def features(shape_s, shape_t, seed=7):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape_s).astype(np.float32),
            rng.normal(size=shape_t).astype(np.float32))


def test_attention_transfer_channels_last():
    s, t = features((4, 5, 5, 3), (4, 5, 5, 6))
    check(lambda x: losses.feature_attention(x, tf.constant(t)),
          lambda x: cat.attention(x, t, channel_axis=-1), s)


def test_similarity_preserving():
    s, t = features((6, 4, 3), (6, 10))
    check(lambda x: losses.feature_similarity(x, tf.constant(t)),
          lambda x: cat.similarity(x, t), s)


def test_relational_kd():
    s, t = features((5, 4), (5, 7), seed=8)
    check(lambda x: losses.feature_relational(x, tf.constant(t), 25.0, 50.0),
          lambda x: cat.relational(x, t, 25.0, 50.0), s)


def test_the_built_in_loop_passes_labels_to_dkd(workspace):
    x, y = make_blobs(n=64, seed=1)
    conf = tf_config(workspace, distillation={"train": {"criterion": {
        "DecoupledKnowledgeDistillationLoss": {"temperature": 2.0}}, "epoch": 1}})
    distiller = Distillation(conf)
    distiller.student_model = mlp(seed=0)
    distiller.teacher_model = mlp(hidden=32, seed=1)
    distiller.train_dataloader = dataset(x, y)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*top-1.*")
        distiller.fit()


def _keras_with_feature(width, seed):
    keras.utils.set_random_seed(seed)
    x = keras.Input((5, 3))
    feat = keras.layers.Dense(width, name="feat")(x)
    return keras.Model(x, keras.layers.Dense(2, name="head")(feat))


@pytest.mark.parametrize("loss_type", ["AT", "SP", "RKD"])
def test_relation_types_on_the_intermediate_criterion_need_no_matcher(loss_type):
    from neural_distill.criterion import TensorflowIntermediateLayersKnowledgeDistillationLoss

    criterion = TensorflowIntermediateLayersKnowledgeDistillationLoss(
        layer_mappings=[["feat"]], loss_types=[loss_type], loss_weights=[0.7],
        rkd_weights=[2.0, 3.0])
    criterion.attach(_keras_with_feature(4, 0), [_keras_with_feature(9, 1)])
    try:
        assert not criterion.needs_preparation and criterion.trainable_variables == []
        s, t = features((4, 5, 4), (4, 5, 9), seed=9)
        criterion._student_capture.outputs["feat"] = tf.constant(s)
        criterion._teacher_captures[0].outputs["feat"] = tf.constant(t)
        got = float(criterion.distillation_loss())
    finally:
        criterion.detach()
    reference = {"AT": lambda: cat.attention(s, t, -1), "SP": lambda: cat.similarity(s, t),
                 "RKD": lambda: cat.relational(s, t, 2.0, 3.0)}[loss_type]()
    assert got == pytest.approx(0.7 * reference, rel=1e-4)


def test_keras_distillation_model_passes_labels_to_dkd():
    from neural_distill.integrations.keras import DistillationModel

    x, y = make_blobs(n=64, seed=2)
    model = DistillationModel(mlp(seed=0), mlp(hidden=32, seed=1),
                              {"DecoupledKnowledgeDistillationLoss": {"temperature": 2.0}})
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*top-1.*")
        history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
