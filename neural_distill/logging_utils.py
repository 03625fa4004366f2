"""The package logger: INFO lines (epoch summaries) visible by default, once."""

import logging

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
            logger.setLevel(logging.INFO)
    return logger
