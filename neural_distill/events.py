"""The training events a distillation experiment reacts to.

Each value is the name of a hook method on :class:`neural_distill.Distillation` (and on the
compression manager of :func:`neural_distill.training.prepare_compression`). The built-in loop
fires them in this order; a user's own loop should do the same::

    on_train_begin(dataloader)
    for epoch in epochs:
        on_epoch_begin(epoch)
        for batch_id, (inputs, labels) in enumerate(dataloader):
            on_step_begin(batch_id)
            outputs = student(inputs)
            loss = student_loss(outputs, labels)
            loss = on_after_compute_loss(inputs, outputs, loss)   # adds the teacher's term
            loss.backward()
            on_before_optimizer_step()
            optimizer.step()
            on_after_optimizer_step()
            on_step_end()
        on_epoch_end()        # evaluates the student every `frequency` epochs, keeps the best
    on_train_end()
"""

from enum import Enum


class Event(str, Enum):
    TRAIN_BEGIN = "on_train_begin"
    EPOCH_BEGIN = "on_epoch_begin"
    STEP_BEGIN = "on_step_begin"
    AFTER_COMPUTE_LOSS = "on_after_compute_loss"
    BEFORE_OPTIMIZER_STEP = "on_before_optimizer_step"
    AFTER_OPTIMIZER_STEP = "on_after_optimizer_step"
    STEP_END = "on_step_end"
    EPOCH_END = "on_epoch_end"
    TRAIN_END = "on_train_end"


HOOK_NAMES = tuple(event.value for event in Event)
