"""Keras-native use: DistillationModel inside compile() / fit()."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from neural_distill import ModelError  # noqa: E402
from neural_distill.criterion import (  # noqa: E402
    TensorflowIntermediateLayersKnowledgeDistillationLoss, TensorflowKnowledgeDistillationLoss)
from neural_distill.integrations.keras import DistillationModel  # noqa: E402
from tf_helpers import (accuracy, assert_same_weights, mlp, train_plain,  # noqa: E402
                        weights_of)


@pytest.fixture(scope="module")
def teacher(data):
    x, y, _, _ = data
    return train_plain(mlp(hidden=32, seed=1, batchnorm=True), x, y)


def test_wrapper_trains_the_student_and_leaves_the_teacher_alone(data, teacher):
    x, y, x_eval, y_eval = data
    before = weights_of(teacher)
    student = mlp(seed=0)
    chance = accuracy(student, x_eval, y_eval)
    model = DistillationModel(student, teacher, TensorflowKnowledgeDistillationLoss(
        temperature=2.0, loss_types=["CE", "KL"]))
    # The teacher is not part of the wrapper: its variables are not trained, saved or counted.
    assert {id(v) for v in model.trainable_weights} == {id(v) for v in student.trainable_weights}
    model.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=4, verbose=0,
                        validation_data=(x_eval, y_eval))

    assert model.student is student
    assert accuracy(student, x_eval, y_eval) > max(0.9, chance + 0.2)
    assert {"loss", "student_loss", "distillation_loss", "accuracy",
            "val_distillation_loss"} <= set(history.history)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert_same_weights(before, weights_of(teacher))
    np.testing.assert_allclose(model.predict(x_eval, verbose=0),
                               student(x_eval, training=False).numpy(), atol=1e-5)


def test_compiled_loss_replaces_the_student_term(data, teacher):
    x, y, _, _ = data
    model = DistillationModel(mlp(seed=0), teacher, {"KnowledgeDistillationLoss": {
        "temperature": 2.0, "loss_types": ["CE", "KL"], "loss_weights": [1.0, 0.0]}})
    model.compile(optimizer=keras.optimizers.SGD(0.0),
                  loss=keras.losses.MeanSquaredError())
    logs = model.evaluate(x, keras.utils.to_categorical(y, 3), batch_size=192, verbose=0,
                          return_dict=True)
    mse = float(np.mean((model.student(x, training=False).numpy()
                         - keras.utils.to_categorical(y, 3)) ** 2))
    assert logs["loss"] == pytest.approx(mse, rel=1e-5)


def test_wrapper_trains_feature_matchers(data, teacher):
    x, y, _, _ = data
    criterion = TensorflowIntermediateLayersKnowledgeDistillationLoss(
        layer_mappings=[["hidden"]], add_origin_loss=True)
    student = mlp(seed=0)
    model = DistillationModel(student, teacher, criterion)
    matcher_variables = criterion.trainable_variables
    assert len(matcher_variables) == 2
    assert len(model.trainable_weights) == len(student.trainable_weights) + 2
    start = [v.numpy().copy() for v in matcher_variables]
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert history.history["distillation_loss"][-1] < history.history["distillation_loss"][0]
    assert all(not np.array_equal(a, v.numpy()) for a, v in zip(start, matcher_variables))


def test_wrapper_rejects_a_non_keras_teacher(data):
    torch = pytest.importorskip("torch")
    with pytest.raises(ModelError, match=r"teacher must be a keras.Model, got torch"):
        DistillationModel(mlp(seed=0), torch.nn.Linear(8, 3))
