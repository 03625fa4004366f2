"""INC's Keras criterion objects used directly, written as INC's own tests write them
(test/distillation/test_distillation_1.x.py ``test_distillation_external``), with only the
import path changed (``neural_compressor.experimental`` -> ``neural_distill``)."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import np_reference as ref  # noqa: E402
from helpers import make_blobs  # noqa: E402
from neural_distill import ModelError  # noqa: E402
from tf_helpers import accuracy, assert_same_weights, mlp, weights_of  # noqa: E402

NEG_LOG_095 = -np.log(0.95)


def clamped_soft_ce(student_probs, teacher_probs, eps=1e-7):
    """-sum p_t log p_s with zero probabilities clamped to eps (docs/criteria.md)."""
    def renorm(p):
        p = np.maximum(np.asarray(p, np.float64), eps)
        return p / p.sum(-1, keepdims=True)
    return float(np.mean(-np.sum(renorm(teacher_probs) * np.log(renorm(student_probs)), -1)))


def test_distillation_external():
    from neural_distill.common.criterion import TensorflowKnowledgeDistillationLossExternal

    criterion = TensorflowKnowledgeDistillationLossExternal()
    criterion.teacher_model_forward(None)
    y_true = [[0, 1, 0]]
    y_pred = [[0.05, 0.95, 0]]
    kd = criterion.teacher_student_loss_cal(y_pred, y_true)
    student = criterion.student_targets_loss_cal(y_pred, y_true)

    # Probabilities and one-hot rows, as Keras' CategoricalCrossentropy reads them (INC's
    # defaults: CE for both terms, temperature 1).
    assert criterion.teacher_model_forward(None) is None
    assert float(student) == pytest.approx(NEG_LOG_095, rel=1e-5)
    assert float(kd) == pytest.approx(clamped_soft_ce(y_pred, y_true), rel=1e-5)
    assert float(kd) == pytest.approx(NEG_LOG_095, rel=1e-4)
    assert float(criterion.loss_cal_sloss(y_pred, y_true, student)) == pytest.approx(
        0.5 * NEG_LOG_095 + 0.5 * clamped_soft_ce(y_pred, y_true), rel=1e-5)
    # Class indices are read as indices.
    assert float(criterion.loss_cal(y_pred, [1])) == pytest.approx(NEG_LOG_095, rel=1e-5)


def test_external_criterion_in_a_keras_loop_with_teacher_outputs_from_elsewhere():
    from neural_distill.common.criterion import TensorflowKnowledgeDistillationLossExternal

    x, y = make_blobs(n=192, seed=0)
    x_eval, y_eval = make_blobs(n=96, seed=5)
    # Computed elsewhere (a cache, another process): here a nearest-centre teacher's
    # probabilities, softmax of minus the squared distance to each class mean.
    centres = np.stack([x[y == c].mean(0) for c in range(3)])
    scores = -((x[:, None, :] - centres[None]) ** 2).sum(-1) / 4.0
    teacher_probs = np.exp(scores - scores.max(-1, keepdims=True))
    teacher_probs = (teacher_probs / teacher_probs.sum(-1, keepdims=True)).astype(np.float32)
    assert (teacher_probs.argmax(-1) == y).mean() > 0.95
    one_hot = np.eye(3, dtype=np.float32)[y]

    keras.utils.set_random_seed(0)
    student = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                                keras.layers.Dense(3, activation="softmax")])
    criterion = TensorflowKnowledgeDistillationLossExternal(temperature=2.0,
                                                           loss_types=["CE", "KL"],
                                                           loss_weights=[0.5, 0.5])
    optimizer = keras.optimizers.SGD(1.0)
    first = None
    for epoch in range(10):
        for start in range(0, len(x), 64):
            xb, tb, yb = (x[start:start + 64], teacher_probs[start:start + 64],
                          one_hot[start:start + 64])
            with tf.GradientTape() as tape:
                probs = student(xb, training=True)
                loss = criterion.loss_cal_sloss(probs, tb, criterion.loss_cal(probs, yb))
            if first is None:
                # Probabilities are clamped to 1e-7 before their log (docs/criteria.md).
                p, t = np.maximum(probs.numpy(), 1e-7), np.maximum(tb, 1e-7)
                expected = (0.5 * np.mean(-np.sum(yb * np.log(p), -1))
                            + 0.5 * ref.kd("KL", p, t, 2.0, from_logits=False))
                assert float(loss) == pytest.approx(expected, rel=1e-4)
                first = float(loss)
            grads = tape.gradient(loss, student.trainable_variables)
            optimizer.apply_gradients(zip(grads, student.trainable_variables))
    assert accuracy(student, x_eval, y_eval) > 0.85


def test_keras_criterion_runs_the_teacher_itself_in_inference_mode():
    from neural_distill.common.criterion import TensorflowKnowledgeDistillationLoss

    x, _ = make_blobs(n=16, seed=0)
    teacher = mlp(hidden=32, seed=1, dropout=0.5, batchnorm=True)
    before = weights_of(teacher)
    criterion = TensorflowKnowledgeDistillationLoss(loss_types=["CE", "KL"],
                                                    teacher_model=teacher)
    assert criterion.teacher_model is teacher
    output = criterion.teacher_model_forward(x)
    # Dropout off and BatchNorm statistics read, not updated: the same as training=False.
    np.testing.assert_allclose(output.numpy(), teacher(x, training=False).numpy(), rtol=1e-6)
    assert criterion.teacher_outputs is output
    assert_same_weights(before, weights_of(teacher))


def test_keras_outputs_differing_by_leading_size_one_axes():
    from neural_distill.common.criterion import TensorflowKnowledgeDistillationLoss

    criterion = TensorflowKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", "KL"])
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(1, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)
    with pytest.warns(UserWarning, match="leading axes of size 1") as caught:
        value = criterion.distillation_loss(tf.constant(s), tf.constant(t))
        criterion.distillation_loss(tf.constant(s), tf.constant(t))
    assert len([w for w in caught if "leading axes" in str(w.message)]) == 1
    assert float(value) == pytest.approx(ref.kd("KL", s, t[None], 2.0), rel=1e-5)
    for student_shape, teacher_shape in [((2, 3), (2, 4)), ((1, 3), (3, 1))]:
        with pytest.raises(ModelError, match="disagree"):
            criterion.distillation_loss(tf.zeros(student_shape), tf.zeros(teacher_shape))
