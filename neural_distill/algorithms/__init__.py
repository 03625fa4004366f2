"""Algorithms: pieces of training behaviour that plug into :class:`neural_distill.trainer.Trainer`.

An algorithm is any object with two methods (see :class:`Algorithm`)::

    match(event, state) -> bool          # does it act at this Event?
    apply(event, state, logger) -> None  # act: read or change `state` (e.g. `state.loss`)

``event`` is a member of :class:`neural_distill.events.Event`, the same enum whose values are the
hook names of ``Distillation``, so an algorithm sees exactly the events of the documented loop.
Importing this package loads no framework; ``neural_distill.algorithms.distillation`` needs
PyTorch.
"""

from neural_distill.algorithms.base import Algorithm, MetricsLogger, fire

__all__ = ["Algorithm", "MetricsLogger", "fire"]
