"""INC's methods on a logit criterion, for loops that drive the criterion themselves::

    criterion = PyTorchKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", "KL"],
                                                 loss_weights=[0.5, 0.5], teacher_model=teacher)
    teacher_output = criterion.teacher_model_forward(inputs)        # no gradient, eval mode
    output = student(inputs)
    student_loss = criterion.loss_cal(output, labels)                # w/o the teacher
    loss = criterion.loss_cal_sloss(output, teacher_output, student_loss)

Every method computes what the criterion's own ``__call__`` and the hooks compute (one
definition of each term, docs/criteria.md); the differences from INC's numbers are in
docs/migrating.md. ``teacher_model`` / ``student_model`` are kept as plain references: a
PyTorch criterion does not register the teacher as its submodule, so ``criterion.parameters()``
never hands the teacher's weights to an optimizer.
"""

from neural_distill.adapters import adapter_for_model
from neural_distill.core.wrapped_model import unwrap
from neural_distill.errors import ModelError

_MODEL_SLOTS = ("teacher_model", "student_model")


class IncCriterionMethods:
    """``teacher_model_forward``, ``teacher_student_loss_cal``, ``student_targets_loss_cal``,
    ``loss_cal``, ``loss_cal_sloss``, and the ``teacher_model`` / ``student_model`` slots."""

    teacher_outputs = None

    def _set_inc_models(self, student_model=None, teacher_model=None):
        self.student_model = student_model
        self.teacher_model = teacher_model

    def __setattr__(self, name, value):
        if name in _MODEL_SLOTS:
            # Past nn.Module's / Keras' attribute tracking, which would adopt the model.
            self.__dict__["_inc_" + name] = unwrap(value)
        else:
            super().__setattr__(name, value)

    def __getattr__(self, name):
        if name in _MODEL_SLOTS:
            return self.__dict__.get("_inc_" + name)
        getter = getattr(super(), "__getattr__", None)
        if getter is None:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        return getter(name)

    def _inc_tensor(self, value):
        """Model outputs and targets as the criterion's tensors (the Keras one takes lists)."""
        return value

    def _inc_skips_teacher(self):
        """INC ran no teacher when the distillation weight was 0 (logit criteria only)."""
        return False

    def teacher_model_forward(self, input, teacher_model=None, device=None):
        """The teacher's output for ``input`` (no gradient, inference mode), also kept as
        ``self.teacher_outputs``; None for ``input=None`` or a zero distillation weight."""
        if input is None or self._inc_skips_teacher():
            return None
        model = unwrap(teacher_model) if teacher_model is not None else self.teacher_model
        if model is None:
            raise ModelError(
                f"{type(self).__name__}.teacher_model_forward: no teacher. Pass "
                f"teacher_model= to the criterion (or to this call).")
        adapter = adapter_for_model(model, "teacher_model")
        if device is not None:
            adapter.move_to_device(model, adapter.resolve_device(str(device), "device"))
        # The teacher's train/eval flags are put back afterwards: the caller's model is
        # never left changed.
        with adapter.evaluation_mode(model):
            outputs = adapter.inference_forward(model, input)
        self.teacher_outputs = outputs
        return outputs

    def teacher_student_loss_cal(self, student_outputs, teacher_outputs):
        """The distillation term alone, unweighted (temperature and T^2 included)."""
        return self.distillation_loss(self._inc_tensor(student_outputs),
                                      self._inc_tensor(teacher_outputs))

    def student_targets_loss_cal(self, student_outputs, targets):
        """The student's own loss against ``targets``, unweighted."""
        return self.student_loss(self._inc_tensor(student_outputs), self._inc_tensor(targets))

    def loss_cal(self, student_outputs, targets):
        return self.student_targets_loss_cal(student_outputs, targets)

    def loss_cal_sloss(self, student_outputs, teacher_outputs, student_loss):
        """``w0 * student_loss + w1 * distillation term``: the loss the hooks return."""
        return self.combine(student_loss, self.teacher_student_loss_cal(student_outputs,
                                                                        teacher_outputs))


class IncLogitCriterionMethods(IncCriterionMethods):
    """The logit criteria's INC methods (``KnowledgeDistillationLoss``)."""

    def _inc_skips_teacher(self):
        return self.loss_weights[1] <= 0


class IncFeatureCriterionMethods(IncCriterionMethods):
    """INC's ``IntermediateLayersKnowledgeDistillationLoss`` used directly: built with both
    models it hooks their mapped layers at once (INC did it in its constructor), so the
    teacher's and the student's forwards record the features that ``loss_cal()`` compares.

    Feature matchers are built at the first ``loss_cal()`` when shapes differ: add
    ``criterion.parameters()`` to the optimizer after that call (a warning says so).
    """

    def _set_inc_models(self, student_model=None, teacher_model=None):
        super()._set_inc_models(student_model, teacher_model)
        if self.student_model is not None and self.teacher_model is not None:
            self.attach(self.student_model, [self.teacher_model])

    def loss_cal(self, *unused):
        """The weighted feature terms of the forwards since the last call."""
        return self.distillation_loss()

    def loss_cal_sloss(self, student_outputs, teacher_outputs, student_loss):
        """The feature terms, plus ``student_loss`` when ``add_origin_loss``."""
        return self.combine(student_loss, self.distillation_loss())

    def remove_all_hooks(self):
        self.detach()


__all__ = ["IncCriterionMethods", "IncLogitCriterionMethods", "IncFeatureCriterionMethods"]
