"""Tiny Keras models and tf.data pipelines for the TensorFlow tests (same problems as
``tests/helpers.py`` uses for PyTorch)."""

import numpy as np
import keras
import tensorflow as tf

from helpers import NUM_CLASSES, NUM_FEATURES


def dataset(x, y=None, batch_size=32, shuffle=False, seed=0):
    tensors = x if y is None else (x, y)
    ds = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size)


def mlp(hidden=16, seed=0, dropout=0.0, batchnorm=False, name=None):
    """A Sequential MLP with named layers: 'hidden', ('bn'), ('drop'), 'logits'."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((NUM_FEATURES,)),
              keras.layers.Dense(hidden, activation="relu", name="hidden")]
    if batchnorm:
        layers.append(keras.layers.BatchNormalization(name="bn"))
    if dropout:
        layers.append(keras.layers.Dropout(dropout, name="drop"))
    layers.append(keras.layers.Dense(NUM_CLASSES, name="logits"))
    return keras.Sequential(layers, name=name)


def functional_cnn(channels=4, seed=0, classes=NUM_CLASSES):
    """A Functional 1-D CNN over (batch, NUM_FEATURES): channels-last conv features."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((NUM_FEATURES,))
    h = keras.layers.Reshape((NUM_FEATURES, 1), name="reshape")(x)
    h = keras.layers.Conv1D(channels, 3, padding="same", activation="relu", name="conv")(h)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Flatten(name="flat")(h)
    return keras.Model(x, keras.layers.Dense(classes, name="logits")(h))


def train_plain(model, x, y, epochs=30, lr=0.05):
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def accuracy(model, x, y):
    return float((np.argmax(model(x, training=False).numpy(), -1) == y).mean())


def weights_of(model):
    return [np.array(w, copy=True) for w in model.get_weights()]


def assert_same_weights(before, after):
    assert len(before) == len(after)
    for a, b in zip(before, after):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def tf_config(workspace, **overrides):
    """``helpers.base_config`` for Keras models (model.framework: tensorflow)."""
    from helpers import base_config

    config = base_config(workspace, **overrides)
    config["model"]["framework"] = "tensorflow"
    return config
