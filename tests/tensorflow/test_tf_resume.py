"""The Keras built-in loop resumes from a checkpoint (issue 12): shuffled tf.data, Dropout (its
layer's own seed generator), BatchNorm, a trained feature matcher, SGD with momentum and a
cosine schedule end bit-identical to a run never interrupted."""

import glob
import os

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from helpers import make_blobs  # noqa: E402
from neural_distill import Distillation  # noqa: E402
from tf_helpers import dataset, functional_cnn, mlp, tf_config, weights_of  # noqa: E402


def _distiller(workspace, resume=None):
    x, y = make_blobs(n=64)
    conf = tf_config(workspace, distillation={"train": {
        "epoch": 3, "optimizer": {"SGD": {"learning_rate": 0.05, "momentum": 0.9}},
        "lr_schedule": {"cosine": {"warmup_epochs": 1}},
        "criterion": {"IntermediateLayersKnowledgeDistillationLoss": {
            "layer_mappings": [["hidden", "hidden"], ["logits", "logits"]],
            "add_origin_loss": True}}}},
        tuning={"workspace": {"path": workspace, "resume": resume,
                              "checkpoint_every_steps": 3, "keep_checkpoints": 20}})
    distiller = Distillation(conf)
    distiller.student_model = mlp(hidden=16, seed=0, batchnorm=True, dropout=0.3)
    distiller.teacher_model = mlp(hidden=24, seed=1, batchnorm=True)
    distiller.train_dataloader = dataset(x, y, batch_size=16, shuffle=True, seed=5)
    distiller.eval_dataloader = dataset(x, y, batch_size=64)
    return distiller


def test_keras_built_in_loop_resumes_bit_for_bit(tmp_path):
    reference = _distiller(str(tmp_path / "a"))
    reference.fit()
    folder = glob.glob(str(tmp_path / "a" / "run-*"))[0]
    checkpoints = sorted(glob.glob(os.path.join(folder, "checkpoint-*.ckpt")))
    mid_epoch = [p for p in checkpoints if p.endswith("-s000000006.ckpt")
                 and "-e0001-" in p][0]
    resumed = _distiller(str(tmp_path / "b"), resume=mid_epoch)
    resumed.fit()
    assert resumed.workspace.path == folder
    for a, b in zip(weights_of(reference.student_model), weights_of(resumed.student_model)):
        assert np.array_equal(a, b)
    for a, b in zip(reference.criterion.trainable_variables,
                    resumed.criterion.trainable_variables):
        assert np.array_equal(a.numpy(), b.numpy())
    strip = lambda h: [{k: v for k, v in r.items() if k != "time_s"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(reference.history)


def test_distillation_model_resumes_with_keras_backup_and_restore(tmp_path):
    import keras

    from neural_distill.criterion import TensorflowIntermediateLayersKnowledgeDistillationLoss
    from neural_distill.integrations.keras import DistillationModel

    x, y = make_blobs(n=64)

    def model():
        keras.utils.set_random_seed(0)
        criterion = TensorflowIntermediateLayersKnowledgeDistillationLoss(
            layer_mappings=[["hidden", "hidden"]], add_origin_loss=True)
        wrapper = DistillationModel(mlp(hidden=16, seed=0), mlp(hidden=24, seed=1), criterion)
        wrapper.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
        return wrapper

    class Preempted(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("preempted")

    reference = model()
    reference.fit(dataset(x, y, 16), epochs=4, verbose=0)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="preempted"):
        model().fit(dataset(x, y, 16), epochs=4, verbose=0, callbacks=[backup, Preempted()])
    resumed = model()
    history = resumed.fit(dataset(x, y, 16), epochs=4, verbose=0,
                          callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    assert len(history.history["loss"]) == 2  # epochs 3 and 4 only
    for a, b in zip(weights_of(reference.student), weights_of(resumed.student)):
        assert np.array_equal(a, b)
