"""Bad input gives clear errors that say what was expected, what was received and the fix."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from helpers import make_blobs  # noqa: E402
from neural_distill import Distillation, ModelError  # noqa: E402
from neural_distill.criterion import (  # noqa: E402
    TensorflowIntermediateLayersKnowledgeDistillationLoss)
from tf_helpers import dataset, functional_cnn, mlp, tf_config  # noqa: E402


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n=64, seed=0)


def _distiller(workspace, blobs, student, teacher, criterion=None, **train):
    config = tf_config(workspace, distillation={"train": {"epoch": 1, **train}})
    if criterion is not None:
        config["distillation"]["train"]["criterion"] = criterion
    distiller = Distillation(config)
    distiller.student_model, distiller.teacher_model = student, teacher
    distiller.train_dataloader = dataset(*blobs)
    return distiller


def test_unknown_layer_lists_close_names(workspace, blobs):
    distiller = _distiller(workspace, blobs, functional_cnn(seed=0), functional_cnn(seed=1), {
        "IntermediateLayersKnowledgeDistillationLoss": {
            "layer_mappings": [["conv1"], ["cnv", "conv"]]}})
    with pytest.raises(ModelError) as info:
        distiller.fit()
    message = str(info.value)
    assert "student has no layer 'conv1'. Did you mean 'conv'?" in message
    assert "teacher has no layer 'conv1'. Did you mean 'conv'?" in message
    assert "student has no layer 'cnv'. Did you mean 'conv'?" in message
    assert "student layers: reshape, conv, bn, flat, logits" in message


class Hidden(keras.Model):
    """Subclassed: its Dense layers exist, but their outputs live inside call()."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(16, activation="relu", name="hidden")
        self.head = keras.layers.Dense(3, name="head")

    def call(self, x, training=None):
        return self.head(self.hidden(x))


def test_subclassed_model_layer_output_cannot_be_reached(workspace, blobs):
    distiller = _distiller(workspace, blobs, Hidden(), mlp(hidden=16, seed=1), {
        "IntermediateLayersKnowledgeDistillationLoss": {"layer_mappings": [["hidden"]]}})
    with pytest.raises(ModelError) as info:
        distiller.fit()
    message = str(info.value)
    assert "student (Hidden) is a subclassed keras.Model" in message
    assert "output of its layer 'hidden' cannot be reached" in message
    assert "Functional API or keras.Sequential" in message
    assert "map it as ['', 'hidden']" in message


def test_subclassed_model_whole_output_can_be_used(workspace, blobs):
    class WithFeature(Hidden):
        def call(self, x, training=None):
            h = self.hidden(x)
            return {"logits": self.head(h), "hidden": h}

    distiller = _distiller(workspace, blobs, WithFeature(), mlp(hidden=16, seed=1), {
        "IntermediateLayersKnowledgeDistillationLoss": {
            "layer_mappings": [["", "hidden", "hidden", ""]]}})
    distiller.fit()
    assert distiller.history[0]["distillation_loss"] > 0


def test_student_and_teacher_output_shapes_disagree(workspace, blobs):
    keras.utils.set_random_seed(1)
    teacher = keras.Sequential([keras.Input((8,)), keras.layers.Dense(5)])
    distiller = _distiller(workspace, blobs, mlp(seed=0), teacher)
    with pytest.raises(ModelError, match=r"student output shape \(32, 3\) and teacher output "
                                         r"shape \(32, 5\) disagree"):
        distiller.fit()


def test_features_that_cannot_be_matched(workspace, blobs):
    keras.utils.set_random_seed(1)
    x = keras.Input((8,))
    h = keras.layers.Reshape((2, 4), name="grid")(x)
    teacher = keras.Model(x, keras.layers.Dense(3)(keras.layers.Flatten()(h)))
    distiller = _distiller(workspace, blobs, mlp(seed=0), teacher, {
        "IntermediateLayersKnowledgeDistillationLoss": {"layer_mappings": [["hidden", "grid"]]}})
    with pytest.raises(ModelError, match=r"student feature shape \(None, 16\) and teacher "
                                         r"feature shape \(None, 2, 4\) have different ranks"):
        distiller.fit()


def test_pytorch_student_with_tensorflow_teacher(workspace):
    torch = pytest.importorskip("torch")
    from helpers import base_config, tiny_mlp

    config = base_config(workspace)
    del config["model"]["framework"]  # detected from the models
    distiller = Distillation(config)
    distiller.student_model = tiny_mlp(seed=0)
    with pytest.raises(ModelError) as info:
        distiller.teacher_model = mlp(seed=1)
    message = str(info.value)
    assert "tensorflow" in message and "torch" in message
    assert "cache its outputs and pass them as teacher_output" in message

    # The fix named in the message works: the Keras teacher's outputs, cached as arrays.
    x, y = make_blobs(n=16, seed=0)
    cached = mlp(seed=1)(x, training=False).numpy()
    out = distiller.student_model(torch.as_tensor(x))
    loss = distiller.on_after_compute_loss(torch.as_tensor(x), out, None,
                                           teacher_output=cached)
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.requires_grad


def test_tensorflow_student_with_pytorch_teacher(workspace):
    pytest.importorskip("torch")
    from helpers import tiny_mlp

    config = tf_config(workspace)
    del config["model"]["framework"]
    distiller = Distillation(config)
    distiller.student_model = mlp(seed=0)
    with pytest.raises(ModelError, match=r"torch model but the student is a tensorflow model"):
        distiller.teacher_model = tiny_mlp(seed=1)


def test_pytorch_criterion_for_a_keras_student(workspace, blobs):
    pytest.importorskip("torch")
    from neural_distill.criterion import PyTorchKnowledgeDistillationLoss

    distiller = _distiller(workspace, blobs, mlp(seed=0), mlp(seed=1))
    distiller.criterion = PyTorchKnowledgeDistillationLoss()
    with pytest.raises(ModelError, match=r"PyTorch criterion \(PyTorchKnowledgeDistillationLoss"
                                         r"\) but the student is a Keras/TensorFlow model\. Use "
                                         r"the TensorFlow criterion"):
        distiller.fit()


def test_unbuilt_sequential_student_gets_its_graph_from_the_first_batch(workspace, blobs):
    keras.utils.set_random_seed(0)
    student = keras.Sequential([keras.layers.Dense(16, name="hidden"), keras.layers.Dense(3)])
    criterion = TensorflowIntermediateLayersKnowledgeDistillationLoss(
        layer_mappings=[["hidden"]], add_origin_loss=True)
    distiller = _distiller(workspace, blobs, student, mlp(hidden=16, seed=1))
    distiller.criterion = criterion
    distiller.fit()
    assert np.isfinite(distiller.history[0]["loss"])


def test_tensorflow_criterion_given_torch_tensors():
    torch = pytest.importorskip("torch")
    from neural_distill.criterion import TensorflowKnowledgeDistillationLoss

    with pytest.raises(ModelError, match=r"student output: got a PyTorch tensor, but this is a "
                                         r"TensorFlow criterion.*PyTorchKnowledgeDistillationLoss"):
        TensorflowKnowledgeDistillationLoss().distillation_loss(torch.zeros(2, 3),
                                                                tf.zeros((2, 3)))


def test_several_keras_teachers_weighted(workspace, blobs):
    teachers = [mlp(hidden=8, seed=1), mlp(hidden=12, seed=2)]
    distiller = _distiller(workspace, blobs, mlp(seed=0), teachers)
    distiller.teacher_weights = [3.0, 1.0]
    x = tf.constant(blobs[0][:5])
    merged = distiller._adapter.teachers_forward(teachers, x, distiller.teacher_weights)
    want = 0.75 * teachers[0](x, training=False) + 0.25 * teachers[1](x, training=False)
    np.testing.assert_allclose(merged.numpy(), want.numpy(), atol=1e-6)
    distiller.fit()
    assert np.isfinite(distiller.history[0]["loss"])


def test_teacher_checkpoints_by_path(workspace, tmp_path):
    source = mlp(hidden=16, seed=1)
    path = str(tmp_path / "teacher.weights.h5")
    source.save_weights(path)
    distiller = Distillation(tf_config(workspace))
    distiller.student_model = mlp(seed=0)
    fresh = mlp(hidden=16, seed=5)
    distiller.teacher_model = {path: fresh}
    assert all(np.array_equal(a, b) for a, b in zip(source.get_weights(), fresh.get_weights()))
    with pytest.raises(ModelError, match="not found"):
        distiller.teacher_model = {str(tmp_path / "missing.weights.h5"): mlp(seed=1)}
    with pytest.raises(ModelError, match="does not match Sequential"):
        distiller.teacher_model = {path: mlp(hidden=9, seed=1)}


MISSING_TF = """
import sys
sys.modules["tensorflow"] = None  # as if it were not installed
sys.modules["keras"] = None
import neural_distill.integrations
from neural_distill import FrameworkNotInstalledError
from neural_distill import criterion
try:
    criterion.TensorflowKnowledgeDistillationLoss
except FrameworkNotInstalledError as exc:
    print(exc)
"""


def test_missing_tensorflow_names_the_extra(repo_root):
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=repo_root)
    result = subprocess.run([sys.executable, "-c", MISSING_TF], cwd=repo_root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pip install 'neural_distill[tensorflow]'" in result.stdout
