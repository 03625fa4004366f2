"""``save(path)`` on the Keras models we hand back (``neural_distill.run.saving``): Keras models
have their own ``save``, kept with its meaning."""

import os

KERAS_FILE = "best_model.keras"  # what model.save(folder) writes in the folder


def save_model(model, root):
    if root.endswith((".keras", ".h5")):
        model.save(root)
        return root
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, KERAS_FILE)
    model.save(path)
    return path


def bind_save(model):
    return model
