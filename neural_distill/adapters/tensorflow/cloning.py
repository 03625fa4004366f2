"""Copying a Keras model of the user's own class (for ``best_model``)."""

import keras


def _layer_configs(model):
    flatten = getattr(model, "_flatten_layers", None)
    layers = list(flatten(include_self=False)) if flatten is not None else list(model.layers)
    configs = []
    for layer in layers:
        config = dict(layer.get_config())
        config.pop("name", None)
        configs.append((type(layer), config))
    return configs


def clone_model(model):
    """A faithful copy of ``model``'s architecture (fresh variables), or None."""
    if isinstance(model, keras.Sequential) or getattr(model, "inputs", None) is not None:
        try:
            return keras.models.clone_model(model)
        except Exception:  # noqa: BLE001 - e.g. a custom layer without get_config
            return None
    try:
        clone = type(model).from_config(model.get_config())
        build_config = model.get_build_config()
        if build_config:
            clone.build_from_config(build_config)
    except Exception:  # noqa: BLE001 - the class cannot be rebuilt from its config
        return None
    if _layer_configs(clone) != _layer_configs(model) or [
            tuple(w.shape) for w in clone.weights] != [tuple(w.shape) for w in model.weights]:
        return None
    # build_from_config creates every variable of a subclassed model (checked just above) but
    # leaves it marked unbuilt, which Keras' saving refuses.
    clone.built = True
    return clone
