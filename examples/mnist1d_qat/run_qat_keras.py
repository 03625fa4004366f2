"""Distillation for quantization on MNIST-1D with Keras 3: float CNN vs three int8 versions.

    python examples/mnist1d_qat/run_qat_keras.py                  # seed 0, both models
    python examples/mnist1d_qat/run_qat_keras.py --seeds 0 1 2    # the table of the docs

The Keras counterpart of run_qat.py (same data, same training recipe, same four rows):

1. float: a CNN trained as usual (model.fit);
2. int8 PTQ: Keras' own ``model.quantize("int8")`` on a copy, no training;
3. int8 QAT: fine-tuned with fake quantization of Keras' int8 scheme, cross-entropy only;
4. int8 QAT + KD: the same fine-tuning with the float CNN as the teacher of its quantized copy.

Keras 3 quantizes Dense, EinsumDense and Embedding layers to int8, not convolutions, so two models
are measured (``--arch``):

- ``conv``: the CNN of examples/mnist1d written with Conv1D (three convolutions + a Dense head).
  Only the head can become int8;
- ``patch``: the same shape of network with the two strided convolutions written as
  "cut the sequence into non-overlapping patches, then a Dense on each patch" (kernel = stride =
  2: a Reshape and a Dense), which Keras does quantize. Only the first, full-resolution Conv1D
  (192 parameters) stays float.

Every int8 model is exported with ``manager.export()`` (a ``.keras`` file), loaded back with
``keras.saving.load_model`` and measured as loaded: accuracy, variable bytes, file size, latency.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# One thread: latencies comparable between rows on a shared machine.
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "mnist1d"), os.path.join(HERE, "..", "..")]

from data import load_mnist1d  # noqa: E402

from neural_distill.adapters.tensorflow.compression import export_float  # noqa: E402
from neural_distill.adapters.tensorflow.quantization import (  # noqa: E402
    int8_layers, quantize_int8, save_keras)
from neural_distill.config import (  # noqa: E402
    DistillationConfig, KnowledgeDistillationLossConfig, QuantizationAwareTrainingConfig)
from neural_distill.training import prepare_compression  # noqa: E402

CHANNELS = 32


def build_cnn(arch):
    x = keras.Input((40,))
    h = keras.layers.Reshape((40, 1), name="unsqueeze")(x)
    h = keras.layers.Conv1D(CHANNELS, 5, padding="same", activation="relu", name="conv1")(h)
    if arch == "conv":
        for name in ("conv2", "conv3"):
            h = keras.layers.Conv1D(CHANNELS, 3, strides=2, padding="same", activation="relu",
                                    name=name)(h)
    else:
        for name, length in (("patch2", 20), ("patch3", 10)):
            # Two neighbouring positions side by side, then one Dense per position: a
            # convolution with kernel 2 and stride 2, as layers Keras' int8 export covers.
            h = keras.layers.Reshape((length, 2 * CHANNELS), name=f"{name}_cut")(h)
            h = keras.layers.Dense(CHANNELS, activation="relu", name=name)(h)
    h = keras.layers.Flatten(name="flatten")(h)
    return keras.Model(x, keras.layers.Dense(10, name="head")(h), name=f"mnist1d_{arch}")


def ce(labels, logits):
    return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                                       from_logits=True))


def train_float(arch, x, y, seed, epochs, lr=1e-2, batch=100):
    keras.utils.set_random_seed(seed)
    model = build_cnn(arch)
    steps = epochs * -(-len(x) // batch)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
        lr, steps)), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=batch, shuffle=True, verbose=0)
    return model


def finetune(compression_manager, x, y, epochs, lr, seed, batch=100):
    """The reference documents' user loop, every compression_manager hook included; the
    forward, loss and gradient run in one tf.function (the hooks are traced into it)."""
    model = compression_manager.model
    steps = epochs * -(-len(x) // batch)
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps))

    @tf.function
    def compute(batch_x, batch_y):
        with tf.GradientTape() as tape:
            output = model(batch_x, training=True)
            loss = compression_manager.on_after_compute_loss(batch_x, output,
                                                             ce(batch_y, output))
        return loss, tape.gradient(loss, model.trainable_variables)

    rng = np.random.default_rng(seed)
    compression_manager.on_train_begin()
    for epoch in range(epochs):
        compression_manager.on_epoch_begin(epoch)
        order = rng.permutation(len(x))
        for i, start in enumerate(range(0, len(x), batch)):
            index = order[start:start + batch]
            compression_manager.on_step_begin(i)
            loss, grads = compute(tf.constant(x[index]), tf.constant(y[index]))
            compression_manager.on_before_optimizer_step()
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            compression_manager.on_after_optimizer_step()
            compression_manager.on_step_end()
        compression_manager.on_epoch_end()
    compression_manager.on_train_end()
    return compression_manager


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model(x, training=False).numpy(), -1) == y)) * 100


def measure(name, model, info, x_test, y_test):
    return {"model": name, "module": model, "accuracy": accuracy(model, x_test, y_test),
            "weights_kb": info.weight_bytes / 1024, "file_kb": info.file_bytes / 1024,
            "int8": int8_layers(model)}


def add_latencies(rows, inputs, rounds=7, calls=10):
    """Each model as a tf.function (how it would be served), timed in alternation, best round
    kept: other work on a shared machine slows some rounds, alternating spreads that over all."""
    functions = [tf.function(lambda v, m=row["module"]: m(v, training=False)) for row in rows]
    inputs = tf.constant(inputs)
    for function in functions:
        function(inputs)  # trace
    best = [float("inf")] * len(rows)
    for _ in range(rounds):
        for index, function in enumerate(functions):
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                function(inputs)
                times.append(time.perf_counter() - start)
            best[index] = min(best[index], float(np.median(times)) * 1e3)
    for row, latency in zip(rows, best):
        row["latency_ms"] = latency


def run(arch, seed, args, out, data):
    x, y, x_test, y_test = data
    rows = []
    print(f"[{arch}, seed {seed}] training the float CNN ({args.teacher_epochs} epochs) ...",
          flush=True)
    float_model = train_float(arch, x, y, seed, args.teacher_epochs)
    info = export_float(float_model, os.path.join(out, f"{arch}_{seed}_float.keras"))
    rows.append(measure("float CNN (fp32)", float_model, info, x_test, y_test))

    ptq = quantize_int8(float_model)  # Keras PTQ: dynamic input scales, nothing to calibrate
    info = save_keras(ptq, os.path.join(out, f"{arch}_{seed}_ptq_int8.keras"), "ptq",
                      float_model=float_model, int8=True)
    rows.append(measure("int8 PTQ", keras.saving.load_model(info.path), info, x_test, y_test))

    for name, configs in [
            ("int8 QAT", []),
            ("int8 QAT + KD", [DistillationConfig(criterion=KnowledgeDistillationLossConfig(
                temperature=args.temperature, loss_types=["CE", "KL"],
                loss_weights=[0.5, 0.5]))])]:
        print(f"[{arch}, seed {seed}] {name}: {args.qat_epochs} epochs of fine-tuning ...",
              flush=True)
        keras.utils.set_random_seed(seed)
        student = keras.models.clone_model(float_model)  # the float CNN stays as it is
        student.set_weights(float_model.get_weights())
        manager = finetune(prepare_compression(student, [QuantizationAwareTrainingConfig(
            example_inputs=x[:100])] + configs), x, y, args.qat_epochs, args.lr, seed)
        path = os.path.join(out, f"{arch}_{seed}_" + name.replace(" ", "_").replace("+", "")
                            + ".keras")
        info = manager.export(path)
        rows.append(measure(name, keras.saving.load_model(info.path), info, x_test, y_test))

    add_latencies(rows, x_test)
    return rows


def print_table(arch, seed, rows, samples):
    base = rows[0]
    print(f"\n{arch} CNN, seed {seed}: MNIST-1D test set ({samples} samples); latency: one "
          f"batch of {samples}, 1 thread, tf.function, best of 7 alternating rounds of the "
          f"median of 10 calls\n")
    header = (f"| {'model':<16} | accuracy % | vs float | weights KB | smaller | .keras KB "
              f"| latency ms | speed-up |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for row in rows:
        print(f"| {row['model']:<16} | {row['accuracy']:10.1f} | "
              f"{row['accuracy'] - base['accuracy']:+8.1f} | {row['weights_kb']:10.1f} | "
              f"{base['weights_kb'] / row['weights_kb']:6.2f}x | {row['file_kb']:9.1f} | "
              f"{row['latency_ms']:10.2f} | {base['latency_ms'] / row['latency_ms']:7.2f}x |")
    print("int8 layers: " + "; ".join(f"{r['model']}: {', '.join(r['int8']) or 'none'}"
                                      for r in rows[1:]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["conv", "patch", "both"], default="both")
    parser.add_argument("--teacher-epochs", type=int, default=60)
    parser.add_argument("--qat-epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default=None, help="folder for the exported models")
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="mnist1d_qat_keras_")
    os.makedirs(out, exist_ok=True)
    data = load_mnist1d()
    archs = ["conv", "patch"] if args.arch == "both" else [args.arch]
    results = {}
    for arch in archs:
        for seed in args.seeds:
            results[arch, seed] = rows = run(arch, seed, args, out, data)
            print_table(arch, seed, rows, len(data[3]))
    if len(args.seeds) > 1:
        print(f"\naccuracy % per seed ({', '.join(map(str, args.seeds))}) and mean:")
        for arch in archs:
            for index, row in enumerate(results[arch, args.seeds[0]]):
                values = [results[arch, s][index]["accuracy"] for s in args.seeds]
                print(f"  {arch:<5} {row['model']:<16} "
                      f"{' / '.join(f'{v:.1f}' for v in values)}   mean {np.mean(values):.1f}")
    print(f"\nexported models in {out}")
    return results


if __name__ == "__main__":
    main()
