"""PyTorch distillation criteria (modules, so that trainable parts join optimizers)."""

import difflib
import warnings

import torch

from neural_distill.adapters.inc_criterion import (IncFeatureCriterionMethods,
                                                  IncLogitCriterionMethods)
from neural_distill.core.shapes import same_but_leading_ones, warn_reshaped
from neural_distill.criterion.base import IntermediateLayersSpec, SelfDistillationSpec
from neural_distill.criterion.logit_specs import (
    DecoupledKDSpec, KnowledgeDistillationSpec, WeightedLogitCriterion)
from neural_distill.errors import ModelError
from neural_distill.language.vocab import mismatch_error
from neural_distill.adapters.torch import checks as torch_checks
from neural_distill.adapters.torch import losses
from neural_distill.adapters.torch.features import FeatureCapture, build_matcher, select
from neural_distill.adapters.torch.outputs import logits_of
from neural_distill.adapters.torch.tokens import counted_student_rows, valid_rows
from neural_distill.teacher_cache.token_records import TokenRows, TokenTargets


def _student_term(loss_fn, student_output, labels, from_logits):
    """``loss_fn(logits, labels)``, or None for a batch without labels."""
    if labels is None:
        return None
    logits = logits_of(student_output, "student output")
    if not labels.is_floating_point() and labels.dtype != torch.long:
        labels = labels.long()  # cross_entropy wants int64 class indices
    return torch_checks.student_loss(loss_fn, logits, labels, from_logits)


class PyTorchKnowledgeDistillationLoss(IncLogitCriterionMethods, KnowledgeDistillationSpec,
                                       torch.nn.Module):
    """Logit distillation for PyTorch models; the arguments and the math are
    :class:`~neural_distill.criterion.logit_specs.KnowledgeDistillationSpec`'s (docs/criteria.md).
    ``student_model`` / ``teacher_model`` and INC's methods: ``adapters/inc_criterion.py``.
    """

    def __init__(self, temperature=None, loss_types=None, loss_weights=None,
                 from_logits=None, logit_standardization=None, beta=None,
                 vocab_mismatch=None, student_model=None, teacher_model=None):
        torch.nn.Module.__init__(self)
        self._configure(temperature, loss_types, loss_weights, from_logits,
                        logit_standardization, beta, vocab_mismatch)
        self._set_inc_models(student_model, teacher_model)
        self._student_fn = losses.STUDENT_LOSSES[self.loss_types[0]]
        self._kd_fn = self._kd_function(losses.KD_LOSSES)

    def student_loss(self, student_output, labels):
        """The student's own loss against ``labels``; None when the batch has no labels."""
        return _student_term(self._student_fn, student_output, labels, self.from_logits)

    def distillation_loss(self, student_output, teacher_output, tokens=None):
        """D(z_s, z_t); over a sequence axis, over the valid tokens of ``tokens`` (a
        ``language.tokens.TokenBatch``) only, averaged over the batch's valid tokens."""
        if isinstance(teacher_output, TokenTargets):
            return self._top_k_loss(student_output, teacher_output, tokens)
        student = logits_of(student_output, "student output")
        if isinstance(teacher_output, TokenRows):  # a dense per-token cache's rows
            student, teacher = self._cached_rows(student, teacher_output, tokens)
            return self._rows_loss(student, teacher)
        teacher = logits_of(teacher_output, "teacher output")
        if same_but_leading_ones(student.shape, teacher.shape):
            warn_reshaped(self, student.shape, teacher.shape)
            teacher = teacher.reshape(student.shape)
        teacher = teacher.detach()
        if student.shape[:-1] != teacher.shape[:-1]:
            # INC's criterion(output, target) gave the student loss; here the second
            # argument is the teacher's output.
            labels_hint = "" if teacher.is_floating_point() else (
                " The second argument holds integers, like labels: the call is "
                "criterion(student_output, teacher_output, labels=...); INC's "
                "criterion(output, target) is criterion.loss_cal(output, target) here.")
            raise ModelError(
                f"student output shape {tuple(student.shape)} and teacher output shape "
                f"{tuple(teacher.shape)} disagree: logit distillation needs both models to "
                f"predict the same classes. Check the models' last layers (or pass the right "
                f"teacher_output to on_after_compute_loss).{labels_hint}")
        if student.shape[-1] != teacher.shape[-1]:
            shapes = (tuple(student.shape), tuple(teacher.shape))
            student, teacher = valid_rows(student, teacher, tokens)
            student, teacher = self._common_ids(student, teacher, *shapes)
        else:
            student, teacher = valid_rows(student, teacher, tokens)
        return self._rows_loss(student, teacher)

    def _rows_loss(self, student, teacher):
        if student.numel() == 0:  # no valid token in the batch: nothing to teach
            return student.float().sum()
        if self.logit_standardization:
            student, teacher = (losses.standardize_logits(student),
                                losses.standardize_logits(teacher))
        return self._kd_fn(student, teacher, self.temperature, self.from_logits)

    def _cached_rows(self, student, cached, tokens):
        """The student's counted rows and a dense per-token cache's (the same tokens, in
        order), the common ids only under ``vocab_mismatch: truncate``."""
        teacher = torch.as_tensor(cached.rows, device=student.device)
        student = counted_student_rows(student, tokens, len(cached))
        if student.shape[-1] != teacher.shape[-1]:
            return self._common_ids(student, teacher, tuple(student.shape), tuple(teacher.shape))
        return student, teacher

    def _top_k_loss(self, student_output, targets, tokens):
        """D over the k + 1 buckets of a top-k teacher cache (``adapters/torch/topk_losses.py``)
        at the counted tokens; the targets hold one row per counted token, in order."""
        from neural_distill.adapters.torch.topk_losses import topk_divergence

        student = logits_of(student_output, "student output")
        if student.shape[-1] != targets.vocab_size:
            if self.vocab_mismatch == "truncate":
                raise ModelError(
                    f"{self.yaml_name}: vocab_mismatch: truncate compares the first "
                    f"{min(student.shape[-1], targets.vocab_size)} ids, but the top-k teacher "
                    f"cache keeps the teacher's distribution over all its {targets.vocab_size}"
                    f" ids. Use teacher_cache compression: none (or float16) with truncate.")
            raise mismatch_error(self.yaml_name, tuple(student.shape),
                                 tuple(student.shape[:-1]) + (targets.vocab_size,))
        rows = counted_student_rows(student, tokens, len(targets))
        if targets.temperature != self.temperature:
            raise ModelError(f"teacher_cache: the top-k targets were kept at temperature "
                             f"{targets.temperature}, the criterion's is {self.temperature}")
        device = rows.device
        return topk_divergence(rows, torch.as_tensor(targets.indices, device=device),
                               torch.as_tensor(targets.log_probs, device=device),
                               torch.as_tensor(targets.log_tail, device=device),
                               self.loss_types[1], self.temperature, beta=self.beta)

    def _common_ids(self, student, teacher, student_shape, teacher_shape):
        common = min(student.shape[-1], teacher.shape[-1])

        def outside_mass():
            scores = losses.as_log_space(teacher, self.from_logits).float() / self.temperature
            probs = torch.softmax(scores.reshape(-1, scores.shape[-1]), dim=-1)
            return float(probs[:, common:].sum(-1).mean()) if probs.shape[0] else 0.0

        self._vocabulary_sizes(student_shape, teacher_shape, outside_mass)
        return student[..., :common], teacher[..., :common]

    def forward(self, student_output, teacher_output, labels=None):
        return self.combine(self.student_loss(student_output, labels),
                            self.distillation_loss(student_output, teacher_output))

    def extra_repr(self):
        return self._settings()


def _same_logits(student_output, teacher_output):
    student = logits_of(student_output, "student output")
    teacher = logits_of(teacher_output, "teacher output")
    if student.shape != teacher.shape:
        raise ModelError(
            f"student output shape {tuple(student.shape)} and teacher output shape "
            f"{tuple(teacher.shape)} disagree: this criterion compares class probabilities, "
            f"so both models must predict the same classes. Check the models' last layers.")
    return student, teacher.detach()


class _WeightedLogitLoss:
    """``student_loss`` (cross-entropy against the labels), ``forward`` and the repr of the
    logit criteria of ``criterion.logit_specs``."""

    def student_loss(self, student_output, labels):
        return _student_term(losses.label_cross_entropy, student_output, labels, True)

    def forward(self, student_output, teacher_output, labels=None):
        if self.wants_labels:
            distill = self.distillation_loss(student_output, teacher_output, labels)
        else:
            distill = self.distillation_loss(student_output, teacher_output)
        return self.combine(self.student_loss(student_output, labels), distill)

    def extra_repr(self):
        return self._settings()


class PyTorchDecoupledKnowledgeDistillationLoss(_WeightedLogitLoss, DecoupledKDSpec,
                                                torch.nn.Module):
    """DKD for PyTorch models: ``w0 * CE + w1 * (alpha * TCKD + beta * NCKD)``
    (docs/criteria.md); the target class comes from ``labels``."""

    def __init__(self, alpha=None, beta=None, temperature=None, loss_weights=None,
                 logit_standardization=None):
        torch.nn.Module.__init__(self)
        self._configure_from_spec(alpha=alpha, beta=beta, temperature=temperature,
                                  loss_weights=loss_weights,
                                  logit_standardization=logit_standardization)

    def distillation_loss(self, student_output, teacher_output, labels=None):
        student, teacher = _same_logits(student_output, teacher_output)
        if self.logit_standardization:
            student, teacher = (losses.standardize_logits(student),
                                losses.standardize_logits(teacher))
        top1 = teacher.reshape(-1, teacher.shape[-1]).argmax(dim=-1)
        target = _target_classes(labels, teacher)
        if target is None:
            self._warn_no_labels_once()
            target = top1
        else:  # unlabeled samples (-100, e.g. a transfer set) take the teacher's top-1 class
            target = torch.where(target == losses.IGNORE_INDEX, top1, target)
        return losses.decoupled_kd(student, teacher, target, self.alpha, self.beta,
                                   self.temperature)


def _target_classes(labels, logits):
    """One class id per row of ``logits``: integer labels as they are, soft (float) labels by
    their largest entry; None without labels."""
    if labels is None:
        return None
    labels = torch.as_tensor(labels, device=logits.device)
    if labels.is_floating_point() and labels.shape[-1] == logits.shape[-1]:
        return labels.reshape(-1, labels.shape[-1]).argmax(dim=-1)
    return labels.reshape(-1).long()


class PyTorchDISTLoss(_WeightedLogitLoss, WeightedLogitCriterion, torch.nn.Module):
    """DIST for PyTorch models: ``w0 * CE + w1 * T^2 * (beta * inter + gamma * intra)``
    (docs/criteria.md)."""

    yaml_name = "DISTLoss"

    def __init__(self, beta=None, gamma=None, temperature=None, loss_weights=None):
        torch.nn.Module.__init__(self)
        self._configure_from_spec(beta=beta, gamma=gamma, temperature=temperature,
                                  loss_weights=loss_weights)

    def distillation_loss(self, student_output, teacher_output):
        student, teacher = _same_logits(student_output, teacher_output)
        return losses.dist_loss(student, teacher, self.beta, self.gamma, self.temperature)


class _FeatureStudentLoss:
    """The origin loss of the feature criteria: cross-entropy of the student's logits."""

    def student_loss(self, student_output, labels):
        return _student_term(losses.label_cross_entropy, student_output, labels, True)


class PyTorchIntermediateLayersKnowledgeDistillationLoss(IncFeatureCriterionMethods,
                                                         _FeatureStudentLoss,
                                                         IntermediateLayersSpec,
                                                         torch.nn.Module):
    """Intermediate-layer distillation: ``sum_i w_i * D_i(M_i(F_s_i), F_t_i)``.

    ``M_i`` are feature matchers, created on the first batch (identity, Linear or 1x1 conv)
    and trained with the student; they are this criterion's parameters, not the student's.
    See ``neural_distill.config.layer_mappings`` for the mapping forms. Built with
    ``student_model`` and ``teacher_model``, it is ready for INC's direct use
    (``adapters/inc_criterion.py``).
    """

    capture_class = FeatureCapture
    select = staticmethod(select)

    def __init__(self, layer_mappings=(), loss_types=None, loss_weights=None,
                 add_origin_loss=None, rkd_weights=None, student_model=None,
                 teacher_model=None):
        torch.nn.Module.__init__(self)
        self._configure(layer_mappings, loss_types, loss_weights, add_origin_loss, rkd_weights)
        self._loss_fns = [self._feature_function(losses.FEATURE_LOSSES, t)
                          for t in self.loss_types]
        self.matchers = torch.nn.ModuleList()
        self._set_inc_models(student_model, teacher_model)

    def attach(self, student, teachers, teacher_keys=None):
        """Hook the mapped layers; raises one ModelError listing every unknown layer."""
        self._capture_mapped_layers(student, teachers, teacher_keys)

    def prepare(self):
        """Build the matchers from the features captured by one forward of every model.

        Called after a dry run on the first batch (under no_grad); raises one ModelError
        listing every pair that cannot be selected or matched.
        """
        try:
            self._build_matchers()
        finally:
            self.clear_features()

    def _build_matchers(self):
        def shapes_of(i, pair):
            s, t = self._pair_features(i, pair)
            return s.shape, t.shape, s.device

        def build(i, s_shape, t_shape, device, where):
            return build_matcher(s_shape, t_shape, where).to(device)

        self.matchers = torch.nn.ModuleList(self._matchers_for(shapes_of, build))

    def distillation_loss(self, student_output=None, teacher_output=None):
        if self.needs_preparation:
            # A user loop that gave on_train_begin no dataloader: build matchers now.
            self._build_matchers()
            warnings.warn("feature matchers were created at the first training step, after "
                          "your optimizer was built: add criterion.parameters() to it, or pass "
                          "a dataloader to on_train_begin() so they exist before", stacklevel=3)
        total = 0.0
        for i, pair in enumerate(self.mappings):
            s, t = self._pair_features(i, pair)
            total = total + self.loss_weights[i] * self._loss_fns[i](self.matchers[i](s),
                                                                     t.detach())
        self.clear_features()
        return total

    def forward(self, student_output=None, teacher_output=None, labels=None):
        return self.combine(self.student_loss(student_output, labels),
                            self.distillation_loss(student_output, teacher_output))


class PyTorchSelfKnowledgeDistillationLoss(_FeatureStudentLoss, SelfDistillationSpec,
                                           torch.nn.Module):
    """Self-distillation: the student's deepest head teaches its shallower heads.

    ``layer_mappings`` is a list of groups; each group a list of ``[student_key, teacher_key]``
    pairs naming outputs of the student itself: keys of its dict output, or module paths.
    Group g uses ``loss_types[g]`` (KL/CE on logits with temperature and T^2, L2/MSE on
    features) and ``loss_weights[g]``. The teacher side is detached: the deep head is not
    pulled towards the shallow ones.
    """

    def __init__(self, layer_mappings=(), temperature=None, loss_types=None, loss_weights=None,
                 add_origin_loss=None):
        torch.nn.Module.__init__(self)
        self._configure(layer_mappings, temperature, loss_types, loss_weights, add_origin_loss)
        self._student_capture = None

    def attach(self, student, teachers=(), teacher_keys=None):
        """Hook the keys that are module paths of the student (others are output keys)."""
        self.detach()
        modules = dict(student.named_modules())
        names = [k for k in self._keys() if k in modules]
        self._student_capture = FeatureCapture(student, names, "student") if names else None

    def detach(self):
        if self._student_capture is not None:
            self._student_capture.remove()
        self._student_capture = None

    def _fetch(self, student_output, key):
        if isinstance(student_output, dict) and key in student_output:
            value = student_output[key]
        elif self._student_capture is not None and key in self._student_capture.outputs:
            value = self._student_capture.outputs[key]
        else:
            keys = sorted(student_output) if isinstance(student_output, dict) else []
            raise ModelError(f"SelfKnowledgeDistillationLoss: '{key}' is neither a key of the "
                             f"student's output {keys} nor a module of the student."
                             + (f" Did you mean '{difflib.get_close_matches(key, keys, 1)[0]}'?"
                                if difflib.get_close_matches(key, keys, 1) else ""))
        return logits_of(value, f"student output '{key}'")

    @staticmethod
    def _constant(tensor):
        return tensor.detach()

    self_losses = losses.SELF_LOSSES

    def forward(self, student_output, teacher_output=None, labels=None):
        return self.combine(self.student_loss(student_output, labels),
                            self.distillation_loss(student_output))
