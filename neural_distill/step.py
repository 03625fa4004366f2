"""The distillation step: the one place where the teacher's term is added to a loss.

``Distillation.on_after_compute_loss``, the TensorFlow built-in loop (through that hook), the
Keras ``DistillationModel`` and the Hugging Face mixin (through the compression manager) all
compute the loss here::

    teacher_output = teachers' (weighted) output      # unless the caller gives it
    kd_loss = criterion.distillation_loss(student_output, teacher_output)
    loss = criterion.combine(student_loss, kd_loss)
    running.add(loss, student_loss, kd_loss)            # the epoch's running losses
"""

from .criterion.registry import needs_teacher
from .errors import ModelError


class DistillationStep:
    """Args: the backend adapter, the criterion, the teacher models (a list) and their
    weights (None: equal)."""

    def __init__(self, adapter, criterion, teachers, teacher_weights=None):
        self.adapter = adapter
        self.criterion = criterion
        self.teachers = list(teachers)
        self.teacher_weights = teacher_weights
        self.needs_teacher = needs_teacher(criterion)

    def teacher_output(self, inputs):
        """The teachers' output for ``inputs``; None when the criterion needs no teacher."""
        if not self.needs_teacher:
            return None
        if not self.teachers:
            raise ModelError("on_after_compute_loss: no teacher_model is set and no "
                             "teacher_output was given. Set distiller.teacher_model or "
                             "pass the teacher's output.")
        return self.adapter.teachers_forward(self.teachers, inputs, self.teacher_weights)

    def __call__(self, inputs, student_output, student_loss, teacher_output=None, running=None):
        """The combined loss (one scalar tensor); ``running`` (if given) records the terms."""
        if teacher_output is None:
            teacher_output = self.teacher_output(inputs)
        else:
            teacher_output = self.adapter.as_teacher_output(teacher_output, student_output)
        kd_loss = self.criterion.distillation_loss(student_output, teacher_output)
        loss = self.criterion.combine(student_loss, kd_loss)
        if running is not None:
            running.add(loss, student_loss, kd_loss)
        return loss
