"""Exceptions raised for bad user input.

Every error says what was expected, what was received and, where possible, how to fix it.
User input is never checked with ``assert`` (asserts vanish under ``python -O``).
"""


class NeuralDistillError(Exception):
    """Base class of every error neural_distill raises on purpose."""


class ConfigError(NeuralDistillError, ValueError):
    """A configuration file, dict or config object is invalid.

    ``problems`` lists every problem found, so one run reports all of them at once.
    """

    def __init__(self, message, problems=None):
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


class ModelError(NeuralDistillError, TypeError):
    """A model is missing, of the wrong kind, or produced output we cannot use."""


class DataError(NeuralDistillError, ValueError):
    """A dataloader is missing or yields batches we cannot interpret."""


class FrameworkNotInstalledError(NeuralDistillError, ImportError):
    """The deep-learning framework a model or criterion needs is not installed."""

    def __init__(self, framework, extra=None):
        # extra=None: a dependency of the core package itself (installing it alone is the fix)
        package = f"'neural_distill[{extra}]'" if extra else framework
        super().__init__(
            f"{framework} is required for this but is not installed. "
            f"Install it with: pip install {package}"
        )
        self.framework = framework
        self.extra = extra
