"""The package logger: INFO lines (epoch summaries) visible by default, once."""

import logging
import warnings

from neural_distill.core.process import is_main_process

_LOGGER_NAME = "neural_distill"


def get_logger():
    logger = logging.getLogger(_LOGGER_NAME)
    # Only add our own handler when the application configured none, so we never print twice.
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [neural_distill] %(message)s",
                                               "%H:%M:%S"))
        logger.addHandler(handler)
        if logger.level == logging.NOTSET:  # keep a level the application chose
            # Under torchrun every process runs the same loop: the main process tells the
            # story once; the others speak up only for warnings and errors.
            logger.setLevel(logging.INFO if is_main_process() else logging.WARNING)
    return logger


def warn_once(owner, key, message, category=UserWarning):
    """``message`` once per ``owner`` (a run's object, a metric) and ``key``: a loop must not
    flood the log."""
    seen = owner.__dict__.setdefault("_warned_once", set())
    if key not in seen:
        seen.add(key)
        warnings.warn(message, category, stacklevel=3)


# Messages other packages log on import that say nothing about a user's run: torchao's optional
# CUDA kernels that do not load on a machine without them (it works without), and torch's
# notice that torchao still registers Enum types with pytree (a deprecation for torchao's
# authors). Everything else those loggers say still shows.
_IMPORT_NOISE = {
    "torchao": ("Failed to load",),
    "torch.utils._pytree": ("is an Enum subclass and is now natively supported",),
}


class _DropImportNoise(logging.Filter):
    def __init__(self, starts):
        super().__init__()
        self.starts = starts

    def filter(self, record):
        message = record.getMessage()
        return not any(text in message for text in self.starts)


def quiet_third_party_import_noise():
    """Drop the known import-time notices of :data:`_IMPORT_NOISE` (idempotent; imports
    nothing: the filters wait on the loggers' names)."""
    for name, starts in _IMPORT_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropImportNoise) for f in logger.filters):
            logger.addFilter(_DropImportNoise(starts))
