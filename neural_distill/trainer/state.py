"""The training state algorithms see, and reading ``max_duration``-style durations."""

import re

from neural_distill.errors import ConfigError

UNITS = {"ep": "epochs", "ba": "batches"}
_DURATION = re.compile(r"^\s*(\d+)\s*([a-zA-Z]+)\s*$")


def parse_duration(value, where):
    """``(count, unit)`` of ``'3ep'``, ``'100ba'`` or an int (epochs); unit is 'ep' or 'ba'."""
    if isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        if value > 0:
            return value, "ep"
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            count, unit = int(match.group(1)), match.group(2).lower()
            if unit not in UNITS:
                raise ConfigError(
                    f"{where}: unknown unit '{match.group(2)}' in {value!r}. Expected one of "
                    f"{{'ep' (epochs), 'ba' (batches)}}, e.g. '1ep' or '100ba', or an int "
                    f"(epochs).")
            if count > 0:
                return count, unit
    raise ConfigError(f"{where}: expected a positive duration such as '1ep', '100ba' or an int "
                      f"number of epochs. Received: {value!r}")


class State:
    """Where training is; what algorithms read and change.

    Attributes:
        model, optimizers (list), schedulers (list), device, seed
        train_dataloader, eval_dataloader
        max_duration: ``(count, unit)`` as parsed from the trainer's ``max_duration``
        epoch: epochs completed; batch_in_epoch: index of the current batch in its epoch
        step: batches completed in the whole run (the current one not included)
        max_steps: batches the run will train in all (None if the loader has no length and
            the duration is in epochs)
        batch: the current batch (on ``device``); inputs: what the model was called with
        outputs: the model's output; loss: its loss, which algorithms may replace at
            ``Event.AFTER_COMPUTE_LOSS`` (it must stay a scalar tensor)
    """

    def __init__(self, model, optimizers, schedulers, device, seed, train_dataloader,
                 eval_dataloader, max_duration, steps_per_epoch):
        self.model = model
        self.optimizers = optimizers
        self.schedulers = schedulers
        self.device = device
        self.seed = seed
        self.train_dataloader = train_dataloader
        self.eval_dataloader = eval_dataloader
        self.max_duration = max_duration
        self.steps_per_epoch = steps_per_epoch
        count, unit = max_duration
        if unit == "ba":
            self.max_steps = count
        else:
            self.max_steps = None if steps_per_epoch is None else count * steps_per_epoch
        self.epoch = 0
        self.batch_in_epoch = 0
        self.step = 0
        self.batch = self.inputs = self.outputs = self.loss = None

    @property
    def elapsed(self):
        """Fraction of ``max_duration`` done before the current batch, in [0, 1].

        Counted in batches whenever the total is known; otherwise (an iterable loader without
        a length and a duration in epochs) in whole epochs.
        """
        if self.max_steps:
            return min(self.step / self.max_steps, 1.0)
        return min(self.epoch / self.max_duration[0], 1.0)
