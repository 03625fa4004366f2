"""TensorFlow KD step: our built-in loop vs a hand-written tf.function loop with the same math,
and vs ``keras.distillation.Distiller`` (when the installed Keras has it), side by side.

Every contender trains the same student (same initial weights) against the same teacher on
the same in-memory batches with SGD (momentum 0.9) and, per step,
    0.5 * CE(student, labels) + 0.5 * T^2 * KL(softmax(t/T) || softmax(s/T))   (batch mean)
Contenders:
  hand           a careful user's loop: one tf.function step (teacher outside the tape)
  ours           Distillation.fit() (the built-in loop, hooks and all)
  ours (keras)   neural_distill.integrations.keras.DistillationModel inside Keras' fit()
  keras Distiller  keras.distillation.Distiller + LogitsDistillation inside Keras' fit()
                 (its own KL formulation; same cost class, not bit-identical math)
Each run is two epochs; "step" is the steady-state time per step of the second epoch (tracing
happens in the first), "run" the whole run including tracing and fixed costs (workspace,
best-model copy, checkpoint). Runs alternate so load drift hits all of them; medians.

    python benchmarks/tf_kd_step_overhead.py [--steps 200] [--repeats 5] [--threads 1]
"""

import argparse
import logging
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from neural_distill import Distillation  # noqa: E402
from neural_distill.criterion import TensorflowKnowledgeDistillationLoss  # noqa: E402
from neural_distill.integrations.keras import DistillationModel  # noqa: E402

TEMPERATURE = 4.0
LR = 0.01
IN_FEATURES, CLASSES = 784, 10


def make_models():
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((IN_FEATURES,)),
                                keras.layers.Dense(1024, activation="relu"),
                                keras.layers.Dense(1024, activation="relu"),
                                keras.layers.Dense(CLASSES)])
    student = keras.Sequential([keras.Input((IN_FEATURES,)),
                                keras.layers.Dense(256, activation="relu"),
                                keras.layers.Dense(CLASSES)])
    return teacher, student


def fresh_student(student0):
    student = keras.models.clone_model(student0)
    student.set_weights(student0.get_weights())
    return student


def hand_written(student, teacher, batches, epochs):
    """Returns the seconds of the last epoch."""
    optimizer = keras.optimizers.SGD(LR, momentum=0.9)
    variables = student.trainable_variables

    @tf.function
    def step(x, y):
        t = teacher(x, training=False)
        with tf.GradientTape() as tape:
            s = student(x, training=True)
            ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, s))
            log_p_s = tf.nn.log_softmax(s / TEMPERATURE)
            log_p_t = tf.nn.log_softmax(t / TEMPERATURE)
            kl = tf.reduce_sum(tf.exp(log_p_t) * (log_p_t - log_p_s)) / tf.cast(
                tf.shape(s)[0], tf.float32) * TEMPERATURE ** 2
            loss = 0.5 * ce + 0.5 * kl
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    for _ in range(epochs):
        start = _clock()
        for x, y in batches:
            step(x, y)
        last = _since(start)
    return last


def _clock():
    return time.perf_counter(), time.process_time()


def _since(start):
    """(wall seconds, CPU seconds of this process) since ``start``."""
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def ours(student, teacher, batches, epochs, workspace):
    distiller = Distillation({
        "distillation": {"train": {
            "epoch": epochs, "progress_bar": False,
            "optimizer": {"SGD": {"learning_rate": LR, "momentum": 0.9}},
            "criterion": {"KnowledgeDistillationLoss": {
                "temperature": TEMPERATURE, "loss_types": ["CE", "KL"],
                "loss_weights": [0.5, 0.5]}}}},
        "tuning": {"workspace": {"path": workspace}}})
    distiller.student_model = student
    distiller.teacher_model = teacher
    distiller.train_dataloader = batches
    epoch_times, started = [], []
    begin, end = distiller.on_epoch_begin, distiller.on_epoch_end

    def timed_begin(epoch):
        started.append(_clock())
        begin(epoch)

    def timed_end():
        epoch_times.append(_since(started[-1]))
        end()

    # Epoch hooks only: wrapping the optimizer hooks would split the compiled step in two.
    distiller.on_epoch_begin, distiller.on_epoch_end = timed_begin, timed_end
    best = distiller.fit()
    return epoch_times[-1], best


class _EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = _clock()

    def on_epoch_end(self, epoch, logs=None):
        self.last = _since(self.start)


def keras_fit(model, dataset, epochs):
    timer = _EpochTimer()
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[timer], shuffle=False)
    return timer.last


def ours_keras(student, teacher, dataset, epochs):
    model = DistillationModel(student, teacher, TensorflowKnowledgeDistillationLoss(
        temperature=TEMPERATURE, loss_types=["CE", "KL"], loss_weights=[0.5, 0.5]))
    model.compile(optimizer=keras.optimizers.SGD(LR, momentum=0.9))
    return keras_fit(model, dataset, epochs)


def keras_distiller(student, teacher, dataset, epochs):
    # Distiller sets teacher.trainable = False: give it its own copy of the teacher.
    teacher = fresh_student(teacher)
    model = keras.distillation.Distiller(
        teacher=teacher, student=student,
        distillation_losses=keras.distillation.LogitsDistillation(temperature=TEMPERATURE),
        student_loss_weight=0.5)
    model.compile(optimizer=keras.optimizers.SGD(LR, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return keras_fit(model, dataset, epochs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="TensorFlow intra-op threads (0: TensorFlow's default)")
    args = parser.parse_args()
    logging.getLogger("neural_distill").setLevel(logging.WARNING)
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    teacher, student0 = make_models()
    rng = np.random.default_rng(0)
    n = args.steps * args.batch_size
    x = rng.normal(size=(n, IN_FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=n).astype(np.int64)
    # Batches are pre-built tensors so data loading, identical for all, does not dilute ratios.
    batches = [(tf.constant(x[i:i + args.batch_size]), tf.constant(y[i:i + args.batch_size]))
               for i in range(0, n, args.batch_size)]
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size).cache()
    has_distiller = hasattr(keras, "distillation") and hasattr(keras.distillation, "Distiller")

    # Same math: one step each from the same weights gives the same student.
    a = fresh_student(student0)
    hand_written(a, teacher, batches[:1], 1)
    with tempfile.TemporaryDirectory() as ws:
        _, b = ours(fresh_student(student0), teacher, batches[:1], 1, ws)
    max_diff = max(float(np.abs(p - q).max()) for p, q in zip(a.get_weights(), b.get_weights()))

    with tempfile.TemporaryDirectory() as ws:
        contenders = {
            "hand": lambda s: hand_written(s, teacher, batches, 2),
            "ours": lambda s: ours(s, teacher, batches, 2, ws)[0],
            "ours (keras fit)": lambda s: ours_keras(s, teacher, dataset, 2),
        }
        if has_distiller:
            contenders["keras Distiller"] = lambda s: keras_distiller(s, teacher, dataset, 2)
        wall = {name: [] for name in contenders}
        cpu = {name: [] for name in contenders}
        runs = {name: [] for name in contenders}
        for _ in range(args.repeats):
            for name, run in contenders.items():
                student = fresh_student(student0)
                start = time.perf_counter()
                epoch_wall, epoch_cpu = run(student)
                runs[name].append(time.perf_counter() - start)
                wall[name].append(epoch_wall / args.steps)
                cpu[name].append(epoch_cpu / args.steps)

    def med(values):
        return {k: statistics.median(v) for k, v in values.items()}

    wall, cpu, runs = med(wall), med(cpu), med(runs)
    threads = args.threads or "default"
    print(f"TF KD step, MLP teacher 784-1024-1024-10 -> student 784-256-10, batch "
          f"{args.batch_size}, {args.steps} steps x 2 epochs, {threads} thread(s), TensorFlow "
          f"{tf.__version__}, Keras {keras.__version__}, median of {args.repeats}")
    print(f"  same math check (hand vs ours, one step): max |weight diff| = {max_diff:.2e}")
    if not has_distiller:
        print(f"  keras.distillation.Distiller: not in the installed Keras {keras.__version__}; "
              f"skipped")
    print("  steady state = second epoch; run = whole fit incl. tracing and fixed costs")
    print(f"  {'contender':<18}{'ms/step':>9}{'cpu ms/step':>13}{'run s':>8}"
          f"{'ratio':>8}{'cpu ratio':>11}{'run ratio':>11}")
    for name in contenders:
        print(f"  {name:<18}{wall[name] * 1e3:>9.3f}{cpu[name] * 1e3:>13.3f}{runs[name]:>8.2f}"
              f"{wall[name] / wall['hand']:>8.3f}{cpu[name] / cpu['hand']:>11.3f}"
              f"{runs[name] / runs['hand']:>11.3f}")
    if has_distiller:
        k, d = "ours (keras fit)", "keras Distiller"
        print(f"  inside Keras fit, ours / keras Distiller: ratio {wall[k] / wall[d]:.3f}, "
              f"cpu ratio {cpu[k] / cpu[d]:.3f}")


if __name__ == "__main__":
    main()
