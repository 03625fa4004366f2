"""Keras users' own code (issue 10): Keras checkpoint callbacks and logs on DistillationModel,
a softmax head with the default from_logits, a dict-returning eval_func, callables in configs."""

import logging
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from helpers import NUM_CLASSES, NUM_FEATURES  # noqa: E402
from neural_distill.criterion import TensorflowKnowledgeDistillationLoss  # noqa: E402
from neural_distill.integrations.keras import DistillationModel  # noqa: E402
from tf_helpers import accuracy, mlp, tf_config, train_plain  # noqa: E402


@pytest.fixture(scope="module")
def teacher(data):
    x, y, _, _ = data
    return train_plain(mlp(hidden=32, seed=1), x, y)


def test_keras_checkpoint_callbacks_save_the_student(data, teacher, tmp_path):
    x, y, x_eval, y_eval = data
    student = mlp(seed=0)
    model = DistillationModel(student, teacher,
                              TensorflowKnowledgeDistillationLoss(temperature=2.0,
                                                                  loss_types=["CE", "KL"]))
    model.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"])
    # What a Keras user writes: a best-model file and a weights-only file.
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0,
                        validation_data=(x_eval, y_eval), callbacks=[
                            keras.callbacks.ModelCheckpoint("best.keras", monitor="val_loss",
                                                            save_best_only=True),
                            keras.callbacks.ModelCheckpoint("last.weights.h5",
                                                            save_weights_only=True)])

    logs = history.history
    # Keras' own Distiller reports total_loss; ours reports it next to Keras' `loss`.
    assert {"loss", "total_loss", "student_loss", "distillation_loss"} <= set(logs)
    np.testing.assert_allclose(logs["total_loss"], logs["loss"], rtol=1e-5)

    restored = keras.models.load_model("best.keras")
    assert isinstance(restored, keras.Sequential) and len(restored.weights) == \
        len(student.weights)
    assert accuracy(restored, x_eval, y_eval) > 0.8
    fresh = mlp(seed=7)
    fresh.load_weights("last.weights.h5")
    np.testing.assert_allclose(fresh(x_eval, training=False).numpy(),
                               student(x_eval, training=False).numpy(), atol=1e-6)
    # model.save on the wrapper is the student's save, too.
    model.save("student_again.keras")
    np.testing.assert_allclose(
        keras.models.load_model("student_again.keras")(x_eval, training=False).numpy(),
        student(x_eval, training=False).numpy(), atol=1e-6)


def _softmax_mlp(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((NUM_FEATURES,)),
                             keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(NUM_CLASSES, activation="softmax")])


def test_a_softmax_head_with_from_logits_true_warns_in_the_built_in_loop(data, workspace):
    from neural_distill import Distillation

    x, y, _, _ = data
    distiller = Distillation(tf_config(workspace, distillation={"train": {"epoch": 1}}))
    distiller.student_model, distiller.teacher_model = _softmax_mlp(0), _softmax_mlp(1)
    distiller.train_dataloader = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    with pytest.warns(UserWarning, match="KnowledgeDistillationLoss.from_logits: false") as got:
        distiller.fit()
    assert sum("from_logits" in str(w.message) for w in got) == 1


def test_logits_with_from_logits_false_warn_in_a_user_loop(data, teacher, workspace):
    from neural_distill import Distillation

    x, y, _, _ = data
    distiller = Distillation(tf_config(workspace, distillation={"train": {"criterion": {
        "KnowledgeDistillationLoss": {"from_logits": False}}}}))
    student = mlp(seed=0)
    distiller.student_model, distiller.teacher_model = student, teacher
    distiller.on_train_begin()
    with pytest.warns(UserWarning, match="KnowledgeDistillationLoss.from_logits: true"):
        with tf.GradientTape():
            output = student(x[:32], training=True)
            distiller.on_after_compute_loss(x[:32], output, None)


# The seed's loop shape, in Keras: optimizer first, on_train_begin() without data, the user's
# own tape over the student's variables, only on_after_compute_loss and on_epoch_end.
def _keras_seed_loop(distiller, student, x, y, optimizer, epochs, variables=None):
    distiller.on_train_begin()
    for _ in range(epochs):
        for start in range(0, len(x), 32):
            xb, yb = x[start:start + 32], y[start:start + 32]
            with tf.GradientTape() as tape:
                output = distiller.criterion.student_forward(xb, training=True)
                loss = keras.losses.sparse_categorical_crossentropy(yb, output,
                                                                    from_logits=True)
                loss = distiller.on_after_compute_loss(xb, output, tf.reduce_mean(loss))
            names = variables if variables is not None else student.trainable_variables
            optimizer.apply_gradients(zip(tape.gradient(loss, names), names))
        distiller.on_epoch_end()


FEATURES = {"distillation": {"train": {
    "optimizer": {"Adam": {"learning_rate": 0.02}},
    "criterion": {"IntermediateLayersKnowledgeDistillationLoss": {
        "layer_mappings": [["hidden", "hidden"]]}}}}}


# The feature term alone does not reach the logits layer: Keras says so, rightly.
@pytest.mark.filterwarnings("ignore:Gradients do not exist")
def test_matchers_learn_in_a_keras_user_loop(data, teacher, workspace):
    from neural_distill import Distillation

    x, y, _, _ = data
    distiller = Distillation(tf_config(workspace, **FEATURES))
    student = mlp(seed=0)
    distiller.student_model, distiller.teacher_model = student, teacher
    before = [np.array(w) for w in student.weights]
    # learning rate 0: a falling feature loss can only come from the matchers.
    _keras_seed_loop(distiller, student, x, y, keras.optimizers.SGD(0.0), epochs=4)
    losses = [r["distillation_loss"] for r in distiller.history]
    assert losses[-1] < 0.8 * losses[0]
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(before, student.weights))


# The feature term alone does not reach the logits layer: Keras says so, rightly.
@pytest.mark.filterwarnings("ignore:Gradients do not exist")
def test_matchers_the_keras_loop_updates_are_updated_once(data, teacher, workspace):
    from neural_distill import Distillation

    x, y, _, _ = data
    distiller = Distillation(tf_config(workspace, **FEATURES))
    student = mlp(seed=0)
    distiller.student_model, distiller.teacher_model = student, teacher
    distiller.on_train_begin()
    matchers = list(distiller.criterion.trainable_variables)
    variables = list(student.trainable_variables) + matchers
    optimizer = keras.optimizers.SGD(0.1)
    for start in range(0, 96, 32):
        xb, yb = x[start:start + 32], y[start:start + 32]
        with tf.GradientTape() as tape:
            output = distiller.criterion.student_forward(xb, training=True)
            loss = distiller.on_after_compute_loss(xb, output, None)
        grads = tape.gradient(loss, variables)
        kernel_before = np.array(matchers[0])
        optimizer.apply_gradients(zip(grads, variables))
        distiller.on_step_end()
        # Exactly the user's SGD step: their own optimizer did not step as well.
        np.testing.assert_allclose(np.array(matchers[0]),
                                   kernel_before - 0.1 * grads[len(variables) - 2].numpy(),
                                   rtol=1e-6, atol=1e-7)


def test_distillation_model_with_softmax_heads_warns(data):
    # A keras.applications-style classifier: Dense(..., activation="softmax") on top.
    with pytest.warns(UserWarning, match="KnowledgeDistillationLoss.from_logits: false"):
        DistillationModel(_softmax_mlp(0), _softmax_mlp(1))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DistillationModel(_softmax_mlp(0), _softmax_mlp(1),
                          {"KnowledgeDistillationLoss": {"from_logits": False}})
        DistillationModel(mlp(seed=0), mlp(seed=1))
