"""MNIST-1D with Keras: does distillation make the 40-100-100-10 MLP student better?

Trains the Keras CNN teacher, then the same Keras student (same initial weights, same optimizer,
about the same number of optimizer steps) with neural_distill, from the shipped `distill.yaml`:

  scratch            the student alone: loss_weights [1, 0] (the teacher's term weighs nothing)
  kd + transfer      0.5 * CE + 0.5 * T^2 * KL, plus 20,000 unlabeled samples that get the
                     distillation term only (built-in loop, best epoch on validation data)
  keras fit          the same experiment through Keras' own fit() with DistillationModel
                     (last epoch, no model selection)

and prints test accuracy and time. The test set is only used for the table.

    python examples/keras_mnist1d/compare.py [--seed 0] [--quick]
"""

import argparse
import copy
import logging
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from neural_distill import Distillation, DistillationConf  # noqa: E402
from neural_distill.criterion import TensorflowKnowledgeDistillationLoss  # noqa: E402
from neural_distill.integrations.keras import DistillationModel  # noqa: E402

import datasets  # noqa: E402
from models import build_student, trained_teacher  # noqa: E402

LABELED_EPOCHS = 100     # 100 x 125 steps = 12,500 optimizer steps
TRANSFER_EPOCHS = 17     # 17 x 750 steps = 12,750 optimizer steps


def accuracy(model, arrays):
    x, y = arrays
    return float((np.argmax(model.predict(x, batch_size=1000, verbose=0), -1) == y).mean())


def batches(arrays, batch_size, seed, shuffle=True):
    ds = tf.data.Dataset.from_tensor_slices(arrays)
    if shuffle:
        ds = ds.shuffle(len(arrays[0]), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def student_like(initial):
    student = build_student()
    student.set_weights(initial)
    return student


def run_builtin(base, overrides, initial, teacher, train, validation, seed):
    config = copy.deepcopy(base)
    config["distillation"]["train"].update(overrides.get("train", {}))
    config["distillation"]["train"]["criterion"]["KnowledgeDistillationLoss"].update(
        overrides.get("criterion", {}))
    distiller = Distillation(config)
    distiller.student_model = student_like(initial)
    distiller.teacher_model = teacher
    distiller.train_dataloader = batches(train, 32, seed)
    distiller.eval_dataloader = batches(validation, 1000, seed, shuffle=False)
    start = time.perf_counter()
    best = distiller.fit()
    return best, time.perf_counter() - start


def run_keras_fit(initial, teacher, train, epochs, seed):
    steps = epochs * -(-len(train[0]) // 32)
    model = DistillationModel(student_like(initial), teacher, TensorflowKnowledgeDistillationLoss(
        temperature=16.0, loss_types=["CE", "KL"], loss_weights=[0.5, 0.5]))
    model.compile(optimizer=keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(0.01, steps)))
    start = time.perf_counter()
    model.fit(batches(train, 32, seed), epochs=epochs, verbose=0, shuffle=False)
    return model.student, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=os.path.join(HERE, "distill.yaml"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of the training budget (a smoke run, not the result)")
    args = parser.parse_args()
    logging.getLogger("neural_distill").setLevel(logging.WARNING)

    base = DistillationConf(args.config).to_dict()
    base["tuning"]["random_seed"] = args.seed
    base["distillation"]["train"]["progress_bar"] = sys.stderr.isatty()
    scale = 10 if args.quick else 1

    start = time.perf_counter()
    teacher = trained_teacher(seed=args.seed, epochs=60 // scale)
    teacher_time = time.perf_counter() - start
    test_set, validation_set = datasets.test(), datasets.validation()
    labeled = datasets.labeled()
    transfer = datasets.labeled_plus_transfer(seed=1000 + args.seed)
    keras.utils.set_random_seed(args.seed)
    initial = build_student().get_weights()  # the same initial student for every variant

    rows = [("teacher (CNN)", accuracy(teacher, test_set), teacher_time)]
    transfer_epochs = max(1, TRANSFER_EPOCHS // scale)
    variants = [
        ("student, scratch", lambda: run_builtin(
            base, {"train": {"epoch": LABELED_EPOCHS // scale},
                   "criterion": {"loss_weights": [1.0, 0.0]}},
            initial, teacher, labeled, validation_set, args.seed)),
        ("student, kd + 20k transfer", lambda: run_builtin(
            base, {"train": {"epoch": transfer_epochs}}, initial, teacher, transfer,
            validation_set, args.seed)),
        ("  same, inside keras fit", lambda: run_keras_fit(
            initial, teacher, transfer, transfer_epochs, args.seed)),
    ]
    for name, run in variants:
        model, seconds = run()
        rows.append((name, accuracy(model, test_set), seconds))
        print(f"{name:<28} test accuracy {rows[-1][1]:.1%}  ({seconds:.1f} s)", flush=True)

    print(f"\nMNIST-1D with Keras, seed {args.seed}{' (quick run)' if args.quick else ''}")
    print(f"{'run':<28}{'test acc':>10}{'time (s)':>10}")
    for name, acc, seconds in rows:
        print(f"{name:<28}{acc:>10.1%}{seconds:>10.1f}")


if __name__ == "__main__":
    main()
