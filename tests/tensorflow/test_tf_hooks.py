"""The hooks inside a user's own tf.GradientTape loop, eager and under tf.function."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from helpers import make_blobs  # noqa: E402
from neural_distill import Distillation  # noqa: E402
from neural_distill.criterion import TensorflowKnowledgeDistillationLoss  # noqa: E402
from tf_helpers import assert_same_weights, dataset, mlp, tf_config, weights_of  # noqa: E402


def _run_user_loop(distiller, student, teacher, loader, compiled, epochs=2):
    optimizer = keras.optimizers.SGD(0.1)
    returned, teacher_grads = [], []

    def step(x, y):
        with tf.GradientTape(persistent=True) as tape:
            out = student(x, training=True)
            ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                y, out, from_logits=True))
            loss = distiller.on_after_compute_loss(x, out, ce)
        grads = tape.gradient(loss, student.trainable_variables)
        teacher_grads.append(tape.gradient(loss, teacher.trainable_variables))
        optimizer.apply_gradients(zip(grads, student.trainable_variables))
        return loss

    step_fn = tf.function(step) if compiled else step
    distiller.on_train_begin(loader)
    for epoch in range(epochs):
        distiller.on_epoch_begin(epoch)
        for i, (x, y) in enumerate(loader):
            distiller.on_step_begin(i)
            loss = step_fn(x, y)
            returned.append(loss)
            distiller.on_before_optimizer_step()
            distiller.on_after_optimizer_step()
            distiller.on_step_end()
        distiller.on_epoch_end()
    distiller.on_train_end()
    return returned, teacher_grads


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf.function"])
def test_hooks_in_a_user_tape_loop(workspace, compiled):
    x, y = make_blobs(n=64, seed=0)
    x_eval, y_eval = make_blobs(n=48, seed=5)
    teacher = mlp(hidden=16, seed=1, batchnorm=True, dropout=0.5)
    teacher(x[:32], training=True)  # moving statistics that a training-mode call would move
    before = weights_of(teacher)
    student = mlp(seed=0)
    start = weights_of(student)
    distiller = Distillation(tf_config(workspace, evaluation={"accuracy": {
        "metric": "Accuracy"}}))
    distiller.student_model, distiller.teacher_model = student, teacher
    distiller.criterion = TensorflowKnowledgeDistillationLoss(
        temperature=2.0, loss_types=["CE", "KL"], loss_weights=[0.5, 0.5])
    distiller.eval_dataloader = dataset(x_eval, y_eval, batch_size=48)
    loader = dataset(x, y, batch_size=16)

    # The loss of the first step, from the starting weights, by the criterion directly.
    check = mlp(seed=0)
    check.set_weights(start)
    expected_first = float(distiller.criterion(check(x[:16], training=True),
                                               teacher(x[:16], training=False), y[:16]))

    returned, teacher_grads = _run_user_loop(distiller, student, teacher, loader, compiled)

    assert all(tf.is_tensor(loss) and loss.shape.rank == 0 for loss in returned)
    assert float(returned[0]) == pytest.approx(expected_first, rel=1e-5)
    # The teacher is frozen: no gradient reaches it, its weights and statistics are unchanged.
    assert all(g is None for grads in teacher_grads for g in grads)
    assert_same_weights(before, weights_of(teacher))
    # Running losses are summed by TensorFlow ops, so they are right under tf.function too
    # (and reset between epochs): each epoch's record is the mean of that epoch's losses.
    values = [float(loss) for loss in returned]
    assert [r["loss"] for r in distiller.history] == pytest.approx(
        [np.mean(values[:4]), np.mean(values[4:])], rel=1e-5)
    assert [r["step"] for r in distiller.history] == [4, 8]
    assert distiller.best_model is not None and distiller.best_score > 0.5


def test_cached_teacher_outputs_need_no_teacher_model(workspace):
    x, y = make_blobs(n=32, seed=0)
    teacher = mlp(hidden=16, seed=1)
    cached = teacher(x, training=False).numpy()  # e.g. stored with the dataset
    student = mlp(seed=0)
    distiller = Distillation(tf_config(workspace))
    distiller.student_model = student
    out = student(x, training=True)
    loss = distiller.on_after_compute_loss(x, out, None, teacher_output=cached)
    crit = TensorflowKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", "KL"])
    assert float(loss) == pytest.approx(0.5 * float(crit.distillation_loss(out, cached)),
                                        rel=1e-6)


def test_feature_distillation_when_the_user_calls_the_student_directly(workspace):
    # Keras has no forward hooks: the student's layers run once more on the step's inputs.
    x, y = make_blobs(n=32, seed=0)
    teacher, student = mlp(hidden=32, seed=1), mlp(hidden=16, seed=0)
    distiller = Distillation(tf_config(workspace, distillation={"train": {"criterion": {
        "IntermediateLayersKnowledgeDistillationLoss": {"layer_mappings": [["hidden"]]}}}}))
    distiller.student_model, distiller.teacher_model = student, teacher
    distiller.on_train_begin()
    criterion = distiller.criterion
    xb = tf.constant(x)
    with tf.GradientTape() as tape:
        out = student(xb, training=True)
        with pytest.warns(UserWarning, match="run a second time"):
            loss = distiller.on_after_compute_loss(xb, out, None)
    grads = tape.gradient(loss, student.trainable_variables + criterion.trainable_variables)
    assert all(g is not None for g in grads[:2])  # the hidden layer learns from the feature term
    matcher = criterion.matchers[0]
    expected = tf.reduce_mean(tf.square(
        matcher(student.get_layer("hidden")(xb)) - teacher.get_layer("hidden")(xb)))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    distiller.on_train_end()


def test_feature_distillation_in_a_compiled_user_loop(workspace):
    x, y = make_blobs(n=64, seed=0)
    teacher, student = mlp(hidden=32, seed=1), mlp(hidden=16, seed=0)
    distiller = Distillation(tf_config(workspace, distillation={"train": {"criterion": {
        "IntermediateLayersKnowledgeDistillationLoss": {
            "layer_mappings": [["hidden"]], "add_origin_loss": True}}}}))
    distiller.student_model, distiller.teacher_model = student, teacher
    loader = dataset(x, y, batch_size=16)
    distiller.on_train_begin(loader)
    criterion = distiller.criterion
    variables = student.trainable_variables + criterion.trainable_variables
    assert len(criterion.trainable_variables) == 2  # a Dense matcher 16 -> 32
    start = [v.numpy().copy() for v in criterion.trainable_variables]
    optimizer = keras.optimizers.Adam(0.01)

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            # One pass gives the output and records the features.
            out = criterion.student_forward(xb, training=True)
            ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                yb, out, from_logits=True))
            loss = distiller.on_after_compute_loss(xb, out, ce)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    distiller.on_epoch_begin(0)
    losses = [float(step(xb, yb)) for xb, yb in loader]
    distiller.on_epoch_end()
    distiller.on_train_end()
    assert losses[-1] < losses[0]
    assert all(not np.array_equal(a, v.numpy())
               for a, v in zip(start, criterion.trainable_variables))
