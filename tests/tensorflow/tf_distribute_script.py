"""Trains the same students on one device and under MirroredStrategy on two logical CPUs, and
prints what differs as JSON (run by ``test_tf_distribute.py``; ``tf_multi_worker_script.py``
reuses its cases).

A separate process because the CPU must be split into logical devices before TensorFlow
starts, which a pytest process that already ran TensorFlow cannot do. Every case trains from
the same initial weights on the same batches: global batch ``b`` on one device, and the same
``b`` split in two under the strategy.
"""

import json
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras  # noqa: E402

from neural_distill import Distillation  # noqa: E402
from neural_distill.errors import DataError, ModelError  # noqa: E402
from neural_distill.integrations.keras import DistillationModel  # noqa: E402

logging.getLogger("neural_distill").setLevel(logging.WARNING)
FEATURES, CLASSES = 6, 4
KD = {"KnowledgeDistillationLoss": {"temperature": 2.0, "loss_types": ["CE", "KL"],
                                    "loss_weights": [0.5, 0.5]}}


def data(samples, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, FEATURES)).astype("float32")
    y = np.argmax(x @ rng.normal(size=(FEATURES, CLASSES)), -1).astype("int64")
    return x, y


def batches(x, y, batch_size):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def mlp(hidden, seed, regularized=False):
    keras.utils.set_random_seed(seed)
    reg = keras.regularizers.L2(0.01) if regularized else None
    return keras.Sequential([keras.Input((FEATURES,)),
                             keras.layers.Dense(hidden, activation="relu", name="hidden",
                                                kernel_regularizer=reg),
                             keras.layers.Dense(CLASSES, name="logits")])


def models(regularized=False):
    return mlp(8, seed=1, regularized=regularized), mlp(16, seed=2)


LOOP_CASES = {
    # 32 samples in batches of 8: every replica gets 4 samples per step; evaluated each epoch.
    "loop_kd": dict(samples=32, batch=8, criterion=KD, optimizer={"SGD": {"learning_rate": 0.5}},
                    evaluate=True),
    # 25 samples: the last global batch has 1 sample, so one replica gets none. Clipping,
    # coupled weight decay, a cosine schedule and an overridden optimizer hook (the step split
    # in two) on top.
    "loop_uneven_clip_decay_hooks": dict(
        samples=25, batch=8, criterion=KD, split_step=True,
        optimizer={"SGD": {"learning_rate": 0.5, "weight_decay": 0.01}},
        extra={"max_grad_norm": 0.3, "lr_schedule": {"cosine": {"warmup_epochs": 1}}}),
    # Feature distillation: a Dense matcher (8 -> 16) is created and trained with the student.
    "loop_features": dict(
        samples=32, batch=8, optimizer={"Adam": {"learning_rate": 0.05}},
        criterion={"IntermediateLayersKnowledgeDistillationLoss": {
            "layer_mappings": [["hidden"], ["logits"]], "loss_types": ["MSE", "KL"],
            "loss_weights": [0.5, 0.5], "add_origin_loss": True}}),
}


def run_loop(case, strategy, workspace, workspace_settings=None):
    """Student and matcher weights after fit(), and the epoch losses."""
    x, y = data(case["samples"])
    scope = strategy.scope() if strategy else tf.device("/CPU:0")
    with scope:
        student, teacher = models()
    train = {"epoch": 2, "optimizer": case["optimizer"], "criterion": case["criterion"],
             "progress_bar": False, **case.get("extra", {})}
    config = {"model": {"name": "tfdist", "framework": "tensorflow"},
              "distillation": {"train": train},
              "tuning": {"random_seed": 0,
                         "workspace": {"path": workspace, **(workspace_settings or {})}}}
    if case.get("evaluate"):
        config["evaluation"] = {"accuracy": {"metric": "Accuracy"}}
    distiller = Distillation(config)
    if case.get("split_step"):
        distiller.on_before_optimizer_step = lambda: None
    distiller.student_model, distiller.teacher_model = student, teacher
    distiller.train_dataloader = batches(x, y, case["batch"])
    if case.get("evaluate"):
        distiller.eval_dataloader = batches(*data(16, seed=1), 8)
    if strategy:
        with strategy.scope():
            distiller.fit()
    else:
        distiller.fit()
    matchers = [v.numpy() for v in getattr(distiller.criterion, "trainable_variables", [])]
    return student.get_weights() + matchers, [h["loss"] for h in distiller.history]


def resume_difference(strategy, workdir):
    """Max weight difference between a run under the strategy and the same run resumed (also
    under it) from one of its checkpoints taken in the middle of an epoch, and whether the
    resumed run continued in the first run's folder."""
    case = dict(LOOP_CASES["loop_features"], samples=40,
                optimizer={"SGD": {"learning_rate": 0.1, "momentum": 0.9}},
                extra={"epoch": 3})

    def run(name, resume=None):
        workspace = os.path.join(workdir, name)
        settings = {"resume": resume, "checkpoint_every_steps": 3, "keep_checkpoints": 20}
        return run_loop(case, strategy, workspace, settings)[0], workspace

    reference, workspace = run("resume_reference")
    folder = os.path.join(workspace, os.listdir(workspace)[0])
    middle = os.path.join(folder, "checkpoint-e0001-s000000006.ckpt")  # 5 steps an epoch
    resumed, fresh_workspace = run("resume_resumed", middle)
    # A resumed run continues in the checkpoint's run folder; a fresh start would make one.
    return (max(float(np.max(np.abs(a - b))) for a, b in zip(reference, resumed)),
            not os.path.exists(fresh_workspace))


def run_keras(compiled_loss, strategy, criterion=KD):
    """Student and matcher weights after Keras' fit() of DistillationModel, and its losses."""
    x, y = data(32)
    with strategy.scope() if strategy else tf.device("/CPU:0"):
        student, teacher = models(regularized=True)
        model = DistillationModel(student, teacher, criterion)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True) \
            if compiled_loss else None
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
    history = model.fit(batches(x, y, 8), epochs=2, verbose=0).history
    matchers = [v.numpy() for v in model.criterion.trainable_variables]
    return student.get_weights() + matchers, history["loss"]


def replicated(strategy, fn):
    """Runs ``fn(strategy)`` and checks the student really was replicated."""
    assert strategy.num_replicas_in_sync == 2
    return fn(strategy)


def main(workdir):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    runs = {name: (lambda s, c=case, n=name: run_loop(c, s, os.path.join(workdir, n)))
            for name, case in LOOP_CASES.items()}
    runs["keras_criterion_loss"] = lambda s: run_keras(False, s)
    runs["keras_compiled_loss"] = lambda s: run_keras(True, s)
    features = LOOP_CASES["loop_features"]["criterion"]
    runs["keras_features"] = lambda s: run_keras(False, s, features)
    report = {}
    for name, run in runs.items():
        single_weights, single_losses = run(None)
        dist_weights, dist_losses = replicated(strategy, run)
        report[name] = {
            "weights": len(single_weights),
            "max_weight_diff": max(float(np.max(np.abs(a - b)))
                                   for a, b in zip(single_weights, dist_weights)),
            "max_loss_diff": max(abs(a - b) for a, b in zip(single_losses, dist_losses)),
            "moved": max(float(np.max(np.abs(a - b))) for a, b in
                         zip(single_weights, models()[0].get_weights())),
            "finite": bool(np.all(np.isfinite(dist_losses))),
        }
    report["resume_difference"] = resume_difference(strategy, workdir)
    student, teacher = models()  # outside the scope: not replicated
    distiller = Distillation({"model": {"name": "tfdist"}, "distillation": {"train": {
        "progress_bar": False}}, "tuning": {"workspace": {"path": workdir}}})
    distiller.student_model, distiller.teacher_model = student, teacher
    distiller.train_dataloader = batches(*data(16), 8)
    try:
        with strategy.scope():
            distiller.fit()
        report["outside_scope_error"] = None
    except ModelError as exc:
        report["outside_scope_error"] = str(exc)
    with strategy.scope():
        student, teacher = models()
    distiller.student_model, distiller.teacher_model = student, teacher
    x, y = data(16)
    distiller.train_dataloader = [(x[:8], y[:8]), (x[8:], y[8:])]  # not a tf.data.Dataset
    try:
        with strategy.scope():
            distiller.fit()
        report["list_loader_error"] = None
    except DataError as exc:
        report["list_loader_error"] = str(exc)
    print("RESULT " + json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
