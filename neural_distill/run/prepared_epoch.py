"""The first epoch's iterator, opened once: its first batch serves the first-batch checks and is
then trained on, so the user's loader is iterated exactly once per epoch.

A shuffling loader draws its order when it is iterated, a loader with workers starts them, and
a stream (an ``IterableDataset``, a generator of epochs) moves on: an extra ``iter()`` to peek
at one batch would do each of these once more than the user's own loop. The built-in loop
takes the batches of its first epoch from :meth:`PreparedEpoch.batches` instead of
``iter(loader)``; the generators' state from before the ``iter()`` is kept for the epoch's
checkpoints (their data order is replayed from it on resume).

:func:`defers_checks` says when the checks of the student's and teacher's outputs can wait for
the first training step (no extra forward of either model): a logits criterion with at most
one teacher, in a PyTorch built-in loop, without a teacher cache.
"""

import itertools

from neural_distill.core import rng
from neural_distill.errors import DataError


class PreparedEpoch:
    def __init__(self, adapter, loader):
        self.loader = loader
        # Before iter(): the data order this epoch draws (checkpoints replay it on resume).
        self.epoch_rng = {"rng": rng.capture(adapter), "data": adapter.data_order_state(loader)}
        self.iterator = iter(loader)
        try:
            self.first = next(self.iterator)
        except StopIteration:
            raise DataError("train_dataloader is empty: it yields no batch, so nothing would "
                            "be trained.") from None

    def batches(self):
        """The first epoch's batches, the first one included (once)."""
        first, self.first = self.first, None
        return itertools.chain([first], self.iterator)


def defers_checks(adapter, criterion, teachers, cached):
    """Whether the output checks can run on the first training step's own outputs."""
    return (adapter.checks_first_step_outputs and len(teachers) <= 1 and not cached
            and not criterion.needs_preparation and not criterion.reads_features)
