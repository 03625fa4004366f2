"""TensorFlow distillation criteria, with the protocol of the PyTorch ones.

Every criterion has ``student_loss(output, labels)``, ``distillation_loss(student_output,
teacher_output)``, ``combine(student_loss, kd_loss)``, ``__call__(student_output,
teacher_output, labels=None)`` and ``trainable_variables`` (its feature matchers: a user's
own loop adds them to what its optimizer updates; the built-in loop and the Keras wrapper do
it themselves). Feature criteria also have ``attach`` / ``detach`` / ``prepare`` /
``needs_preparation`` like their PyTorch twins.

They are plain Python objects (not Keras layers) so that calling one never goes through Keras'
layer machinery; the matchers inside are Keras layers.
"""

import difflib
import warnings

import tensorflow as tf

from neural_distill.adapters.inc_criterion import IncLogitCriterionMethods
from neural_distill.core.shapes import same_but_leading_ones, warn_reshaped
from neural_distill.criterion.base import (
    FeatureCriterionSpec, IntermediateLayersSpec, SelfDistillationSpec)
from neural_distill.criterion.logit_specs import KnowledgeDistillationSpec
from neural_distill.errors import ModelError
from neural_distill.adapters.tensorflow import checks as tf_checks
from neural_distill.adapters.tensorflow import losses
from neural_distill.adapters.tensorflow.criterion_parts import (
    CriterionBase, check_same_shape, label_cross_entropy)
# DKD and DIST live in their own module; the registry looks them up here by name.
from neural_distill.adapters.tensorflow.logit_criteria import (  # noqa: F401
    TensorflowDecoupledKnowledgeDistillationLoss, TensorflowDISTLoss)
from neural_distill.adapters.tensorflow.features import (
    FeatureCapture, build_matcher, model_kind, select, symbolic_shape)
from neural_distill.adapters.tensorflow.outputs import logits_of, static_shape
from neural_distill.adapters.tensorflow.tokens import valid_rows


class TensorflowKnowledgeDistillationLoss(IncLogitCriterionMethods, KnowledgeDistillationSpec,
                                          CriterionBase):
    """Logit distillation for Keras models; the arguments and the math are
    :class:`~neural_distill.criterion.logit_specs.KnowledgeDistillationSpec`'s (docs/criteria.md).
    ``student_model`` / ``teacher_model`` and INC's methods: ``adapters/inc_criterion.py``.
    """

    def __init__(self, temperature=None, loss_types=None, loss_weights=None,
                 from_logits=None, logit_standardization=None, beta=None,
                 vocab_mismatch=None, student_model=None, teacher_model=None):
        self._configure(temperature, loss_types, loss_weights, from_logits,
                        logit_standardization, beta, vocab_mismatch)
        self._set_inc_models(student_model, teacher_model)
        self._student_fn = losses.STUDENT_LOSSES[self.loss_types[0]]
        self._kd_fn = self._kd_function(losses.KD_LOSSES)

    def student_loss(self, student_output, labels):
        """The student's own loss against ``labels``; None when the batch has no labels."""
        if labels is None:
            return None
        logits, labels = logits_of(student_output, "student output"), tf.convert_to_tensor(labels)
        tf_checks.check_student_labels(logits, labels, self.loss_types[0])
        return self._student_fn(logits, labels, from_logits=self.from_logits)

    def distillation_loss(self, student_output, teacher_output, tokens=None):
        """D(z_s, z_t); over a sequence axis, over the valid tokens of ``tokens`` (a
        ``language.tokens.TokenBatch``) only, averaged over the batch's valid tokens."""
        student = logits_of(student_output, "student output")
        teacher = logits_of(teacher_output, "teacher output")
        if same_but_leading_ones(static_shape(student), static_shape(teacher)):
            warn_reshaped(self, static_shape(student), static_shape(teacher))
            teacher = tf.reshape(teacher, tf.shape(student))
        teacher = tf.stop_gradient(teacher)
        s_size, t_size = student.shape[-1], teacher.shape[-1]
        mismatch = s_size is not None and t_size is not None and s_size != t_size
        if mismatch:
            check_same_shape(student[..., :1], teacher[..., :1])
        else:
            check_same_shape(student, teacher)
        shapes = (static_shape(student), static_shape(teacher))
        student, teacher, selected = valid_rows(student, teacher, tokens)
        if mismatch:
            student, teacher = self._common_ids(student, teacher, *shapes)
        if self.logit_standardization:
            student, teacher = (losses.standardize_logits(student),
                                losses.standardize_logits(teacher))
        if not selected:
            return self._kd_fn(student, teacher, self.temperature, self.from_logits)
        # No valid token in the batch: nothing to teach (and no 0/0).
        return tf.cond(tf.shape(student)[0] > 0,
                       lambda: self._kd_fn(student, teacher, self.temperature,
                                           self.from_logits),
                       lambda: 0.0 * tf.reduce_sum(tf.cast(student, tf.float32)))

    def _common_ids(self, student, teacher, student_shape, teacher_shape):
        s_size, t_size = student_shape[-1], teacher_shape[-1]
        common = min(s_size, t_size)

        def outside_mass():
            scores = losses.as_log_space(teacher, self.from_logits) / self.temperature
            probs = tf.nn.softmax(tf.reshape(scores, [-1, t_size]), axis=-1)
            if not tf.executing_eagerly() or int(tf.shape(probs)[0]) == 0:
                return float("nan")  # inside a compiled step: no value to report
            return float(tf.reduce_mean(tf.reduce_sum(probs[:, common:], axis=-1)))

        self._vocabulary_sizes(student_shape, teacher_shape, outside_mass)
        return student[..., :common], teacher[..., :common]

    def __call__(self, student_output, teacher_output, labels=None):
        return self.combine(self.student_loss(student_output, labels),
                            self.distillation_loss(student_output, teacher_output))

    def __repr__(self):
        return f"{type(self).__name__}({self._settings()})"


class _FeatureCriterionBase(FeatureCriterionSpec, CriterionBase):
    """Shared parts of the criteria that read intermediate features (not logits alone)."""

    def student_loss(self, student_output, labels):
        """Cross-entropy of the student's logits with the labels (used by add_origin_loss)."""
        return label_cross_entropy(student_output, labels)

    def _student_features_now(self, capture, inputs, what):
        """Run the student through its capture when this step's forward did not record.

        A user's loop calls ``student(x)`` itself, which records nothing (Keras has no forward
        hooks). The student's layers are then run once more on the step's inputs, inside the
        user's gradient tape, so the feature terms still train the student.
        """
        if inputs is None:
            raise ModelError(
                f"{type(self).__name__}: the student's layer outputs were not recorded in this "
                f"step ({what}). In your own loop, get the student's output with "
                f"`distiller.criterion.student_forward(x, training=True)` instead of "
                f"`student(x)`: it returns the same output and records the features.")
        if not self._warned_rerun:
            self._warned_rerun = True
            warnings.warn(
                f"{type(self).__name__}: the student's features were not recorded by its forward "
                f"pass, so its layers run a second time on the inputs. Use "
                f"`out = distiller.criterion.student_forward(x, training=True)` instead of "
                f"`out = student(x)` in your loop to do it in one pass.", stacklevel=4)
        capture.forward(inputs, training=True)

    def student_forward(self, inputs, training=True):
        """The student's output for ``inputs``, recording the features this criterion needs.

        Use it in place of ``student(inputs, training=...)`` inside your own loop.
        """
        if self._student_capture is None:
            raise ModelError(f"{type(self).__name__}: not attached to the models; call "
                             f"distiller.on_train_begin() first")
        return self._student_capture.forward(inputs, training)

    def ensure_attached(self, student, teachers):
        """Attach to the models, or re-register the captures that another run's ``detach()``
        unregistered (a ``DistillationModel`` keeps its criterion across fits)."""
        if self._student_capture is None:
            self.attach(student, teachers)
            return
        for capture in [self._student_capture, *getattr(self, "_teacher_captures", {}).values()]:
            capture.register()


class TensorflowIntermediateLayersKnowledgeDistillationLoss(IntermediateLayersSpec,
                                                             _FeatureCriterionBase):
    """Intermediate-layer distillation: ``sum_i w_i * D_i(M_i(F_s_i), F_t_i)``.

    Layers are Keras layer names of Functional or Sequential models (``""`` is the whole
    model's output, for any model). ``M_i`` are feature matchers: identity for equal shapes,
    else a Dense / 1x1 Conv2D built from the models' graphs (or from the first batch) and
    trained with the student; they are this criterion's ``trainable_variables``, not the
    student's.
    """

    capture_class = FeatureCapture
    select = staticmethod(select)

    def __init__(self, layer_mappings=(), loss_types=None, loss_weights=None,
                 add_origin_loss=None, rkd_weights=None):
        self._configure(layer_mappings, loss_types, loss_weights, add_origin_loss, rkd_weights)
        self._loss_fns = [self._feature_function(losses.FEATURE_LOSSES, t)
                          for t in self.loss_types]
        self.matchers = []
        self._warned_rerun = False

    @property
    def trainable_variables(self):
        return [v for matcher in self.matchers for v in matcher.trainable_variables]

    # -- lifecycle, called by the Distillation hooks
    def attach(self, student, teachers, teacher_keys=None):
        """Reach the mapped layers; raises one ModelError listing every unusable layer."""
        self._capture_mapped_layers(student, teachers, teacher_keys)
        for capture in self._captures():
            capture.register()
        if self.needs_preparation:
            self._build_matchers_from_graphs()

    def prepare(self):
        """Build the matchers from the features recorded by one forward of every model.

        Called after a dry run on the first batch; raises one ModelError listing every pair
        that cannot be selected or matched.
        """
        try:
            self._build_matchers(self._pair_shapes_from_data)
        finally:
            self.clear_features()

    def _build_matchers_from_graphs(self):
        """Matchers from the models' static graphs, when every pair's shapes are known."""
        shapes = []
        for i, pair in enumerate(self.mappings):
            s = self._symbolic_shape(self._student_capture, pair.student)
            t = self._symbolic_shape(self._teacher_captures[self._teacher_index[i]],
                                     pair.teacher)
            if s is None or t is None:
                return  # learned from the first batch instead (prepare)
            shapes.append((s, t))
        self._build_matchers(lambda i, pair: shapes[i])

    @staticmethod
    def _symbolic_shape(capture, ref):
        feature = capture.symbolic_feature(ref.layer)
        return None if feature is None else symbolic_shape(feature, ref.process)

    def _build_matchers(self, shapes_of):
        def build(i, s_shape, t_shape, where):
            # Eager variables even when this runs while a user's tf.function is traced (only
            # static shapes are needed).
            with tf.init_scope():
                return build_matcher(s_shape, t_shape, where, name=f"nd_matcher_{i}")

        self.matchers = self._matchers_for(shapes_of, build)

    def _pair_shapes_from_data(self, i, pair):
        s, t = self._pair_features(i, pair)
        return static_shape(s), static_shape(t)

    def distillation_loss(self, student_output=None, teacher_output=None):
        student = self._student_capture
        if student is not None and student.layer_names and not student.outputs:
            inputs = next((c.last_inputs for c in self._teacher_captures.values()
                           if c.last_inputs is not None), None)
            self._student_features_now(student, inputs, "the student was called directly")
        if student is not None and "" not in student.outputs and student_output is not None:
            student.outputs[""] = student_output
        if self.needs_preparation:
            # A user loop that gave on_train_begin no dataloader: build matchers now.
            self._build_matchers(self._pair_shapes_from_data)
            warnings.warn("feature matchers were created at the first training step, after "
                          "your optimizer was built: add criterion.trainable_variables to "
                          "what it updates, or pass a dataloader to on_train_begin() so they "
                          "exist before", stacklevel=3)
        total = 0.0
        try:
            for i, pair in enumerate(self.mappings):
                s, t = self._pair_features(i, pair)
                term = self._loss_fns[i](self.matchers[i](s), tf.stop_gradient(t))
                total = total + self.loss_weights[i] * term
        finally:
            self.clear_features()
        return total

    def __call__(self, student_output=None, teacher_output=None, labels=None):
        return self.combine(self.student_loss(student_output, labels),
                            self.distillation_loss(student_output, teacher_output))


class TensorflowSelfKnowledgeDistillationLoss(SelfDistillationSpec, _FeatureCriterionBase):
    """Self-distillation: the student's deepest head teaches its shallower heads.

    ``layer_mappings`` is a list of groups; each group a list of ``[student_key, teacher_key]``
    pairs naming outputs of the student itself: keys of its dict output, or layer names (of a
    Functional or Sequential student). Group g uses ``loss_types[g]`` (KL/CE on logits with
    temperature and T^2, L2/MSE on features) and ``loss_weights[g]``. The teacher side is
    held constant (stop_gradient): the deep head is not pulled towards the shallow ones.
    """

    def __init__(self, layer_mappings=(), temperature=None, loss_types=None, loss_weights=None,
                 add_origin_loss=None):
        self._configure(layer_mappings, temperature, loss_types, loss_weights, add_origin_loss)
        self._student_capture = None
        self._warned_rerun = False

    def attach(self, student, teachers=(), teacher_keys=None):
        """Reach the keys that are layer names of the student (others are output keys)."""
        self.detach()
        names = []
        kind = model_kind(student)
        if kind != "subclassed":  # a subclassed model's keys can only be keys of its output
            output_keys = set()
            if kind == "functional" and isinstance(student.output, dict):
                output_keys = set(student.output)
            layers = {layer.name for layer in student.layers}
            names = [k for k in self._keys() if k in layers and k not in output_keys]
        self._student_capture = FeatureCapture(student, names, "student")
        problems = self._student_capture.missing_problems()
        if problems:
            self._student_capture = None
            raise ModelError("SelfKnowledgeDistillationLoss: " + "\n  ".join(problems))
        if names:
            self._student_capture.register()

    def detach(self):
        if self._student_capture is not None:
            self._student_capture.remove()
        self._student_capture = None

    def _fetch(self, student_output, key):
        capture = self._student_capture
        if isinstance(student_output, dict) and key in student_output:
            value = student_output[key]
        elif capture is not None and key in capture.layer_names:
            if key not in capture.outputs:
                self._student_features_now(capture, capture.last_inputs,
                                           "the student was called directly")
            value = capture.outputs[key]
        else:
            keys = sorted(student_output) if isinstance(student_output, dict) else []
            close = difflib.get_close_matches(key, keys, 1)
            hint = (f" Did you mean '{close[0]}'?" if close else
                    " A subclassed model's layer outputs cannot be reached: return the tensor "
                    "from call() under that key." if capture is None
                    or capture.kind == "subclassed" else "")
            raise ModelError(f"SelfKnowledgeDistillationLoss: '{key}' is neither a key of the "
                             f"student's output {keys} nor a layer of the student.{hint}")
        return logits_of(value, f"student output '{key}'")

    @staticmethod
    def _constant(tensor):
        return tf.stop_gradient(tensor)

    self_losses = losses.SELF_LOSSES

    def __call__(self, student_output, teacher_output=None, labels=None):
        return self.combine(self.student_loss(student_output, labels),
                            self.distillation_loss(student_output))
