"""The algorithm protocol and the logger an algorithm writes its metrics to."""


class Algorithm:
    """Base class (optional: any object with these two methods is an algorithm).

    ``match(event, state)`` is asked at every event of the training loop
    (``neural_distill.events.Event``) and should be cheap; when it returns True,
    ``apply(event, state, logger)`` runs. ``state`` is the trainer's
    :class:`neural_distill.trainer.State`; ``logger`` a :class:`MetricsLogger`. Algorithms
    run in the order they were given, each after the trainer has updated ``state`` for the
    event and before the trainer's own work for it (evaluation, checkpoints).
    """

    def match(self, event, state):
        return False

    def apply(self, event, state, logger):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


def fire(algorithms, event, state, logger):
    """Run every algorithm that matches ``event``, in order."""
    for algorithm in algorithms:
        if algorithm.match(event, state):
            algorithm.apply(event, state, logger)


class MetricsLogger:
    """Per-epoch means of the values algorithms (and the trainer) log at each step.

    Values may be device tensors: they are summed as they are and read back (one device sync)
    only when the epoch's record is written.
    """

    def __init__(self):
        self._sums, self._counts = {}, {}

    def log_metrics(self, metrics):
        """Add one value per name, e.g. ``logger.log_metrics({"distillation_loss": kd})``."""
        for name, value in metrics.items():
            if hasattr(value, "detach"):
                value = value.detach()
            self._sums[name] = self._sums.get(name, 0.0) + value
            self._counts[name] = self._counts.get(name, 0) + 1

    def means(self):
        return {name: float(total) / self._counts[name] for name, total in self._sums.items()}

    def reset(self):
        self._sums, self._counts = {}, {}
