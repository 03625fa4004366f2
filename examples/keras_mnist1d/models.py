"""Keras teacher and student for the MNIST-1D distillation example.

The same architectures as the PyTorch example (`examples/mnist1d/models.py`): both take a
float tensor of shape (batch, 40) and return logits (batch, 10).
"""

import keras
from keras import layers

# Imported now, while the config loader has this folder on sys.path (the factory runs later).
from datasets import labeled_arrays


def build_teacher(channels=32):
    """A small 1-D CNN. Convolutions suit MNIST-1D because its digit templates are randomly
    shifted and sheared: weight sharing along the series gives translation tolerance an MLP
    has to learn from data."""
    x = keras.Input((40,), name="series")
    h = layers.Reshape((40, 1))(x)
    # Full resolution first, then two stride-2 layers (40 -> 20 -> 10).
    h = layers.Conv1D(channels, 5, padding="same", activation="relu", name="conv1")(h)
    h = layers.Conv1D(channels, 3, strides=2, padding="same", activation="relu", name="conv2")(h)
    h = layers.Conv1D(channels, 3, strides=2, padding="same", activation="relu", name="conv3")(h)
    # Flatten rather than pool: where a feature occurs still carries class information.
    return keras.Model(x, layers.Dense(10, name="logits")(layers.Flatten()(h)),
                       name="cnn_teacher")


def build_student():
    """The 40-100-100-10 ReLU MLP used as the student throughout."""
    return keras.Sequential([
        keras.Input((40,), name="series"),
        layers.Dense(100, activation="relu", name="hidden1"),
        layers.Dense(100, activation="relu", name="hidden2"),
        layers.Dense(10, name="logits"),
    ], name="mlp_student")


def trained_teacher(seed=0, epochs=60, batch_size=100, lr=1e-2):
    """Supervised training with Keras' own fit (Adam, cosine decay); ~93-96% test accuracy."""
    keras.utils.set_random_seed(seed)
    teacher = build_teacher()
    x, y = labeled_arrays()
    steps = epochs * -(-len(x) // batch_size)
    teacher.compile(optimizer=keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(lr, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    return teacher
