"""Distillation inside Keras' own ``model.fit()``: add a teacher without writing a loop.

::

    from neural_distill.integrations.keras import DistillationModel
    from neural_distill.criterion import TensorflowKnowledgeDistillationLoss

    model = DistillationModel(student, teacher,
                              TensorflowKnowledgeDistillationLoss(temperature=4.0,
                                                                  loss_types=["CE", "KL"]))
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(train_ds, validation_data=val_ds, epochs=10)
    model.student.save("student.keras")      # the trained student, a model of your own class

``DistillationModel`` is a ``keras.Model`` whose forward is the student's, and whose loss is the
criterion's: ``w0 * student_loss + w1 * D(student, teacher)`` with exactly the math of the
built-in loop. Everything Keras offers around ``fit`` (callbacks, metrics, ``evaluate``,
``predict``, ``tf.distribute`` strategies: build the models and this wrapper inside
``strategy.scope()``) works unchanged.
"""

import os

from neural_distill.errors import FrameworkNotInstalledError

try:
    import keras
    import tensorflow as tf
except ImportError as exc:
    raise FrameworkNotInstalledError("TensorFlow with Keras 3", "tensorflow") from exc

from neural_distill.adapters.tensorflow import features
from neural_distill.adapters.tensorflow.adapter import ADAPTER
from neural_distill.config.loader import validate
from neural_distill.config.nodes import OneOf, Section
from neural_distill.criterion.catalog import DEFAULT_CRITERION
from neural_distill.criterion.registry import REGISTRY, needs_teacher
from neural_distill.errors import ModelError
from neural_distill.core.output_check import check_keras_heads
from neural_distill.run.step import DistillationStep
from neural_distill.language.tokens import is_causal_lm

_CRITERION_SECTION = Section({"criterion": OneOf({name: entry.node for name, entry
                                                   in REGISTRY.items()}, "criterion")})


class _Untracked:
    """Keeps the teachers out of Keras' attribute tracking.

    A tracked teacher's variables would become the wrapper's weights: handed to its optimizer
    (Keras warns about missing gradients), saved with it and counted in its summary.
    """

    def __init__(self, value):
        self.value = value


class _LossTrackers:
    """The distillation step's running losses as Keras metrics (Keras resets them)."""

    def __init__(self, student, distillation):
        self.student, self.distillation = student, distillation

    def add(self, loss, student_loss, kd_loss, inputs=None):
        # Keras' Mean metrics average over replicas themselves.
        if student_loss is not None:
            self.student.update_state(student_loss)
        self.distillation.update_state(kd_loss)


def _criterion_from(criterion):
    if criterion is None:
        return ADAPTER.build_criterion(DEFAULT_CRITERION, {})
    if isinstance(criterion, dict):
        checked = validate({"criterion": criterion}, "DistillationModel(criterion=...)",
                           node=_CRITERION_SECTION)
        (name, args), = checked["criterion"].items()
        return ADAPTER.build_criterion(name, dict(args))
    ADAPTER.check_criterion(criterion)
    return criterion


class DistillationModel(keras.Model):
    """A Keras model that trains ``student`` against ``teacher`` inside ``fit()``.

    Args:
        student: the ``keras.Model`` to train (available as ``.student``).
        teacher: a ``keras.Model``, or a list of them (their weighted mean logits teach), or
            None for a criterion that needs no teacher (self-distillation). Never modified:
            called with ``training=False``, outside the gradient, not tracked by this model.
        criterion: a TensorFlow criterion (``neural_distill.criterion.Tensorflow...``), the
            same settings as a config dict (``{"KnowledgeDistillationLoss": {...}}``), or None
            for the default ``KnowledgeDistillationLoss``.
        teacher_weights: one weight per teacher when several are given.

    The student term is the criterion's own (``loss_types[0]`` against the labels), or, when
    ``compile()`` is given a ``loss``, that loss. Unlabeled batches (``x`` only, or labels of
    -100) get the distillation term alone. The student's regularization losses are added as
    Keras adds them. ``student_loss`` and ``distillation_loss`` are reported as metrics.
    """

    def __init__(self, student, teacher=None, criterion=None, teacher_weights=None,
                 name="distillation_model", **kwargs):
        super().__init__(name=name, **kwargs)
        if not isinstance(student, keras.Model):
            raise ModelError(f"DistillationModel: student must be a keras.Model, got "
                             f"{type(student).__module__}.{type(student).__qualname__}")
        teachers = [] if teacher is None else (
            list(teacher) if isinstance(teacher, (list, tuple)) else [teacher])
        for i, model in enumerate(teachers):
            if not isinstance(model, keras.Model):
                raise ModelError(
                    f"DistillationModel: teacher{'' if len(teachers) == 1 else f'[{i}]'} must "
                    f"be a keras.Model, got {type(model).__module__}."
                    f"{type(model).__qualname__}. A teacher of another framework cannot run "
                    f"inside Keras' fit(); cache its outputs and use the hooks instead.")
        self.criterion = _criterion_from(criterion)
        if not teachers and needs_teacher(self.criterion):
            raise ModelError(f"DistillationModel: {type(self.criterion).__name__} needs a "
                             f"teacher; pass teacher=...")
        self.student = student
        self._teachers = _Untracked(teachers)
        self.teacher_weights = list(teacher_weights) if teacher_weights is not None else None
        self.criterion.attach(student, teachers)
        self._track_matchers()
        check_keras_heads(self.criterion, student, teachers)  # softmax head vs from_logits
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        # Keras' own keras.distillation.Distiller reports the combined loss as total_loss.
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self._step = _Untracked(DistillationStep(ADAPTER, self.criterion, teachers,
                                                 self.teacher_weights,
                                                 causal=is_causal_lm(student)))
        self._trackers = _Untracked(_LossTrackers(self.student_loss_tracker,
                                                  self.distillation_loss_tracker))

    @property
    def teachers(self):
        return list(self._teachers.value)

    def _track_matchers(self):
        """Matchers become this model's layers, so Keras' optimizer trains them."""
        self.matchers = [m for m in self.criterion.feature_matchers()
                         if isinstance(m, keras.layers.Layer)]
        # Every variable lives in the student and the matchers: once they exist, so does this
        # model, and Keras' BackupAndRestore (which refuses an unbuilt model) can save it
        # before the first batch.
        if self.student.built and all(m.built for m in self.matchers) and \
                not self.criterion.needs_preparation:
            self.built = True

    def prepare(self, x):
        """Build the criterion's feature matchers from one batch of inputs ``x``.

        Only needed when a feature shape cannot be read from the models' graphs (e.g. the
        output of a subclassed model); do it before ``compile()``.
        """
        if not self.criterion.needs_preparation:
            return
        ADAPTER.dry_run(self.student, self.teachers, (x,), self.criterion)
        self._track_matchers()

    def _ensure_attached(self):
        """Re-attach when another run detached the criterion (it attaches per experiment)."""
        self.criterion.ensure_attached(self.student, self.teachers)

    def call(self, inputs, training=None):
        self._ensure_attached()
        if self.criterion.needs_preparation:
            raise ModelError(
                "DistillationModel: the criterion's feature matchers need one batch to learn "
                "the feature shapes. Call model.prepare(x_batch) before compile()/fit().")
        return features.forward(self.student, inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        compiled = getattr(self, "_compile_loss", None)
        # Under a tf.distribute strategy Keras sums the replicas' gradients, so the loss it
        # gets must be this replica's mean divided by the replicas, as Keras' own losses are
        # (its compiled loss comes scaled that way). The terms are combined and reported as
        # plain means, and only the total handed back is scaled.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if y is None:
            student_loss = None
        elif compiled is not None:
            student_loss = compiled(y, y_pred, sample_weight)
            if student_loss is not None and replicas > 1:
                student_loss = student_loss * replicas
        else:
            student_loss = self.criterion.student_loss(y_pred, y)
        # y: token labels of a sequence model say which tokens the per-token term counts.
        total = self._step.value(x, y_pred, student_loss, running=self._trackers.value,
                                 labels=y)
        if self.losses:
            total = total + tf.add_n(self.losses)
        self.total_loss_tracker.update_state(total)  # regularization losses included
        return total / replicas if replicas > 1 else total

    # The wrapper is a training device; what is worth keeping is the student. Keras' checkpoint
    # callbacks call self.model.save / save_weights / load_weights: save() writes the student;
    # save_weights() writes the student's weights under the given name (loadable into the
    # student) and the whole training state (matchers, optimizer) beside it, which
    # load_weights() reads back when it is there, so BackupAndRestore resumes exactly.
    def save(self, filepath, overwrite=True, **kwargs):
        """Save the student (``keras.models.load_model`` gives the student back)."""
        return self.student.save(filepath, overwrite=overwrite, **kwargs)

    def save_weights(self, filepath, overwrite=True, **kwargs):
        """Save the student's weights (load them with ``student.load_weights``), and the whole
        training state to ``<name>.training.weights.h5`` next to them."""
        self.student.save_weights(filepath, overwrite=overwrite, **kwargs)
        super().save_weights(training_state_path(filepath), overwrite=True)

    def load_weights(self, filepath, **kwargs):
        """Load what :meth:`save_weights` wrote: the whole training state when its file is
        there, otherwise the student's weights alone."""
        state = training_state_path(filepath)
        if os.path.exists(state):
            return super().load_weights(state, **kwargs)
        return self.student.load_weights(filepath, **kwargs)

    def get_config(self):
        raise NotImplementedError(
            "DistillationModel is a training wrapper and is not serialized itself; "
            "model.save(...) saves model.student (model.student.save('student.keras')).")


def training_state_path(filepath):
    """Where :meth:`DistillationModel.save_weights` keeps the whole training state."""
    path = os.fspath(filepath)
    stem = path[:-len(".weights.h5")] if path.endswith(".weights.h5") else path
    return stem + ".training.weights.h5"
