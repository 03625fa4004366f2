"""The TensorFlow / Keras 3 adapter. Importing any module below imports tensorflow and keras."""


def _exclude_from_autograph():
    """Let a user's ``tf.function`` call our hooks and criteria as plain Python.

    Nothing in neural_distill branches on tensor values, so AutoGraph has nothing to convert,
    but converting every function it reaches costs seconds on each first trace. Keras is
    excluded the same way. Private API: if it moves, functions are converted as before
    (slower to trace, same result).
    """
    try:
        from tensorflow.python.autograph.core import config
    except ImportError:  # pragma: no cover - depends on the TensorFlow version
        return
    rules = getattr(config, "CONVERSION_RULES", None)
    if rules is None or any(getattr(r, "_prefix", None) == "neural_distill" for r in rules):
        return
    config.CONVERSION_RULES = (config.DoNotConvert("neural_distill"),) + tuple(rules)


_exclude_from_autograph()
