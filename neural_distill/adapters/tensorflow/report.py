"""What the run report needs from a Keras model: outputs over the evaluation data, its size
and its latency. The figures themselves are computed on NumPy (``neural_distill.report``)."""

import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from neural_distill.core import batches
from neural_distill.adapters.tensorflow.adapter import ADAPTER
from neural_distill.adapters.tensorflow.outputs import logits_of, model_input, to_tensor


def outputs_and_labels(model, dataloader, what):
    """The model's logits over every batch, and the labels, as NumPy arrays."""
    def logits_of_inputs(inputs):
        output = model(model_input(to_tensor(inputs)), training=False)
        return np.asarray(ADAPTER.to_numpy(logits_of(output, f"{what} output")),
                          dtype=np.float32)

    return batches.logits_and_labels(ADAPTER, dataloader, logits_of_inputs)


def batch_outputs(model, dataloader, what):
    """Per batch: (logits, labels, attention_mask, input_ids) as NumPy arrays (None where the
    batch has none); a sequence model's logits keep their [batch, seq, vocab] shape."""
    results = []
    for batch in dataloader:
        inputs, labels = ADAPTER.split_batch(batch, "eval_dataloader")
        output = model(model_input(to_tensor(inputs)), training=False)
        logits = np.asarray(ADAPTER.to_numpy(logits_of(output, f"{what} output")),
                            dtype=np.float32)
        extra = [inputs.get(key) if isinstance(inputs, dict) else None
                 for key in ("attention_mask", "input_ids")]
        results.append((logits, *[None if v is None else np.asarray(ADAPTER.to_numpy(v))
                                  for v in (labels, *extra)]))
    return results


def first_inputs(dataloader):
    return batches.first_inputs(ADAPTER, dataloader)


def take(inputs, n):
    """The first ``n`` samples of a batch (repeated when the batch is smaller)."""
    def rows(tensor):
        tensor = to_tensor(tensor)
        count = int(tensor.shape[0])
        if count < n:
            tensor = tf.concat([tensor] * (-(-n // count)), axis=0)
        return tensor[:n]

    return batches.map_inputs(rows, inputs)


def latency(model, inputs, repeats):
    """Seconds per forward pass (inference mode), one per repeat, after two warm-up calls.

    The model is called directly (eager), the way a user calls it; ``model.predict`` would
    add its own per-call overhead.
    """
    inputs = model_input(to_tensor(inputs) if not isinstance(inputs, (dict, tuple, list))
                         else inputs)
    timings = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        output = model(inputs, training=False)
        np.asarray(ADAPTER.to_numpy(logits_of(output, "output")))  # waits for the result
        if i >= 2:
            timings.append(time.perf_counter() - start)
    return timings


def parameter_count(model):
    return int(sum(int(np.prod(w.shape)) for w in model.weights))


def bytes_on_disk(model):
    """Size of the weights as Keras saves them (what best_student.weights.h5 holds)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.weights.h5")
        ADAPTER.save_weights(model, path)
        return os.path.getsize(path)
