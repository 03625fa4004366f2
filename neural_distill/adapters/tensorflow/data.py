"""Building ``tf.data`` pipelines from the ``dataloader`` section of a config.

The datasets are the ones the PyTorch adapter builds (``dummy``, ``npz``, ``factory``), with
the same batching settings, so one experiment file serves both frameworks.
"""


import numpy as np
import tensorflow as tf

from neural_distill.errors import ConfigError
from neural_distill.run.loop_common import check_dataloader_section, dataset_from_factory, read_npz


def _dummy(params, where, base_dir):
    rng = np.random.default_rng(params["seed"])
    shape = params["shape"]
    inputs = rng.random(shape, dtype=np.float64) * (params["high"] - params["low"]) + params["low"]
    inputs = inputs.astype(params["dtype"])
    if not params["label"]:
        return inputs
    return inputs, rng.integers(0, params["num_classes"], size=shape[0]).astype(np.int64)


DATASETS = {"dummy": _dummy, "npz": read_npz, "factory": dataset_from_factory}


def _as_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor from a dataset shared with PyTorch
        value = value.detach().cpu()
    return np.asarray(value)


def as_dataset(source, where):
    """A ``tf.data.Dataset`` of samples from what a dataset builder or factory returned.

    Accepted: a ``tf.data.Dataset`` of samples, NumPy arrays (inputs only), a tuple/list or
    dict of arrays sliced along the first axis, or a map-style dataset (``__len__`` and
    ``__getitem__`` returning samples, e.g. one written for PyTorch).
    """
    if isinstance(source, tf.data.Dataset):
        return source
    if isinstance(source, np.ndarray) or hasattr(source, "detach"):
        return tf.data.Dataset.from_tensor_slices(_as_numpy(source))
    if isinstance(source, (tuple, list)) and source and all(
            isinstance(a, np.ndarray) or hasattr(a, "detach") for a in source):
        return tf.data.Dataset.from_tensor_slices(tuple(_as_numpy(a) for a in source))
    if isinstance(source, dict):
        return tf.data.Dataset.from_tensor_slices({k: _as_numpy(v) for k, v in source.items()})
    if hasattr(source, "__len__") and hasattr(source, "__getitem__"):
        samples = [source[i] for i in range(len(source))]
        if not samples:
            raise ConfigError(f"{where}.dataset: the dataset is empty")
        first = samples[0]
        if isinstance(first, dict):
            return tf.data.Dataset.from_tensor_slices(
                {k: np.stack([_as_numpy(s[k]) for s in samples]) for k in first})
        if isinstance(first, (tuple, list)):
            return tf.data.Dataset.from_tensor_slices(tuple(
                np.stack([_as_numpy(s[j]) for s in samples]) for j in range(len(first))))
        return tf.data.Dataset.from_tensor_slices(np.stack([_as_numpy(s) for s in samples]))
    raise ConfigError(f"{where}.dataset: cannot make a tf.data.Dataset from "
                      f"{type(source).__name__}; return a tf.data.Dataset of samples, NumPy "
                      f"arrays (x, y), or a dataset with __len__ and __getitem__")


def build_dataloader(config, where, seed, base_dir):
    """A batched ``tf.data.Dataset`` from a validated ``dataloader`` section.

    Shuffling is seeded and reshuffles every epoch, like a seeded PyTorch DataLoader.
    """
    name, params = check_dataloader_section(config, where, DATASETS)
    dataset = as_dataset(DATASETS[name](params, where, base_dir), where)
    if config["shuffle"]:
        size = int(dataset.cardinality())
        dataset = dataset.shuffle(size if size > 0 else 10_000, seed=seed,
                                  reshuffle_each_iteration=True)
    dataset = dataset.batch(config["batch_size"],
                            drop_remainder=config["last_batch"] == "no_rollover")
    return dataset.prefetch(tf.data.AUTOTUNE)
