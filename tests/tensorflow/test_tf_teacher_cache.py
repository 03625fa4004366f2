"""The teacher cache in the TensorFlow built-in loop, and offline caches across frameworks."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

from helpers import make_blobs, tensor_loader, tiny_mlp, trained_teacher  # noqa: E402
from tf_helpers import dataset, mlp, tf_config, train_plain, weights_of  # noqa: E402

from neural_distill import Distillation  # noqa: E402
from neural_distill.commands.cache_teacher import write_offline_cache  # noqa: E402


class CountingKerasTeacher(keras.Model):
    def __init__(self, teacher):
        super().__init__()
        self.teacher = teacher
        self.samples = 0
        self(np.zeros((1,) + tuple(teacher.input_shape[1:]), np.float32))  # built now
        self.samples = 0

    def call(self, x, training=False):
        self.samples += int(x.shape[0])
        return self.teacher(x, training=training)


def _keras_distiller(workspace, teacher, data, epochs=3, **cache):
    distiller = Distillation(tf_config(workspace, distillation={"train": {
        "epoch": epochs, "teacher_cache": cache}}))
    distiller.student_model = mlp(seed=3)
    distiller.teacher_model = teacher
    distiller.train_dataloader = data
    return distiller


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n=96)


def test_keras_loop_with_a_dense_cache_runs_the_teacher_once_and_trains_the_same(workspace,
                                                                                 blobs):
    x, y = blobs
    teacher = train_plain(mlp(hidden=32, seed=1), x, y, epochs=5)
    plain = _keras_distiller(workspace, teacher, dataset(x, y)).fit()
    counting = CountingKerasTeacher(teacher)
    cached = _keras_distiller(workspace, counting, dataset(x, y), enabled=True).fit()
    assert counting.samples == len(x)
    for a, b in zip(weights_of(plain), weights_of(cached)):
        np.testing.assert_array_equal(a, b)


def test_a_keras_teacher_cache_teaches_a_torch_student(workspace, blobs, tmp_path):
    x, y = blobs
    teacher = train_plain(mlp(hidden=32, seed=1), x, y, epochs=5)
    folder = str(tmp_path / "keras_cache")
    writer = _keras_distiller(workspace, teacher, dataset(x.astype(np.float32), y),
                              path=folder)
    write_offline_cache(writer, progress_bar=False)

    torch_run = Distillation({**_torch_config(workspace, folder)})
    torch_run.student_model = tiny_mlp()
    torch_run.train_dataloader = tensor_loader(x.astype(np.float32), y, shuffle=True)
    student = torch_run.fit()
    keras_logits = teacher(x.astype(np.float32), training=False).numpy()
    torch_logits = student(torch.as_tensor(x, dtype=torch.float32)).detach().numpy()
    agreement = (keras_logits.argmax(-1) == torch_logits.argmax(-1)).mean()
    assert agreement > 0.9  # the torch student learned the Keras teacher's answers


def test_a_torch_teacher_cache_teaches_a_keras_student(workspace, blobs, tmp_path):
    x, y = blobs
    x = x.astype(np.float32)
    teacher = trained_teacher(x, y)
    folder = str(tmp_path / "torch_cache")
    writer = Distillation(_torch_config(workspace, folder))
    writer.teacher_model = teacher
    writer.train_dataloader = tensor_loader(x, y)
    write_offline_cache(writer, progress_bar=False)

    keras_run = _keras_distiller(workspace, None, dataset(x, y, shuffle=True), epochs=12,
                                 path=folder)
    student = keras_run.fit()
    torch_logits = teacher(torch.as_tensor(x)).detach().numpy()
    agreement = (student(x, training=False).numpy().argmax(-1) == torch_logits.argmax(-1))
    assert agreement.mean() > 0.9


def _torch_config(workspace, folder):
    from helpers import base_config

    return base_config(workspace, distillation={"train": {"epoch": 12, "teacher_cache": {
        "path": folder}}})


def test_a_cache_inside_a_users_tf_function_says_why_it_cannot_serve(workspace, blobs, caplog):
    # Inside a trace the batch has no values to hash: the step runs the teacher and says so,
    # instead of failing on a symbolic tensor.
    x, y = blobs
    teacher = mlp(hidden=32, seed=1)
    distiller = _keras_distiller(workspace, teacher, dataset(x, y), enabled=True)
    distiller.on_train_begin()
    student = distiller.student_model
    optimizer = keras.optimizers.SGD(0.1)

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            out = student(xb, training=True)
            ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                yb, out, from_logits=True))
            loss = distiller.on_after_compute_loss(xb, out, ce)
        optimizer.apply_gradients(zip(tape.gradient(loss, student.trainable_variables),
                                      student.trainable_variables))
        return loss

    with caplog.at_level("WARNING", logger="neural_distill"):
        losses = [float(step(xb, yb)) for xb, yb in dataset(x, y)]
    distiller.on_train_end()
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert "inside a tf.function" in caplog.text
