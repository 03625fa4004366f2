"""Knowledge distillation as an algorithm for :class:`neural_distill.trainer.Trainer` (PyTorch).

::

    from neural_distill.algorithms.distillation import Distillation, KLDivergence
    from neural_distill.trainer import Trainer

    distillation = Distillation(teachers=teacher_model, kd_loss_fn=KLDivergence(temperature=4.0),
                                org_loss_weight=0.1, kd_loss_weight=0.9)
    Trainer(model=student_model, train_dataloader=train_loader, max_duration="1ep",
            algorithms=[distillation]).fit()

At ``Event.AFTER_COMPUTE_LOSS`` the student's loss becomes
``org_loss_weight * loss + kd_loss_weight * kd_loss_fn(student_logits, teacher_logits)``.
"""

import math
import os
import random

import torch

from neural_distill.criterion.base import DistillationCriterion
from neural_distill.adapters.torch.adapter import ADAPTER
from neural_distill.adapters.torch.losses import kl_divergence
from neural_distill.adapters.torch.outputs import call_model, logits_of
from neural_distill.config.criterion_args import temperature as temperature_node
from neural_distill.config.loader import validate
from neural_distill.config.nodes import Section
from neural_distill.criterion.balancer import LossBalancer
from neural_distill.errors import ConfigError, ModelError
from neural_distill.events import Event
from neural_distill.run.step import DistillationStep
from neural_distill.trainer.checkpoint import load_weights
from neural_distill.algorithms.base import Algorithm

# The catalog's temperature rule (criterion_args.temperature), so KLDivergence(1e9) gets the
# same message as KnowledgeDistillationLossConfig(temperature=1e9).
_TEMPERATURE = Section({"temperature": temperature_node()})


class KLDivergence(torch.nn.Module):
    """``T² · mean over samples of Σ_c p_t (log p_t − log p_s)``, ``p = softmax(logits / T)``.

    Called as ``kd(student_logits, teacher_logits)``; returns a scalar. The T² factor keeps the
    gradient scale of the soft targets independent of T (Hinton et al., 2015), so
    ``kd_loss_weight`` means the same at every temperature. Logits of any rank are flattened to
    (positions, classes). Same math as the ``KL`` kd type of ``docs/criteria.md``, and the same
    temperatures (0.01 to 1000).
    """

    def __init__(self, temperature=1.0):
        super().__init__()
        checked = validate({"temperature": temperature}, "KLDivergence", _TEMPERATURE)
        self.temperature = float(checked["temperature"])

    def forward(self, student_logits, teacher_logits):
        return kl_divergence(student_logits, teacher_logits, self.temperature)

    def extra_repr(self):
        return f"temperature={self.temperature}"


def _weight(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value >= 0):
        raise ConfigError(f"Distillation: expected {name} to be a number >= 0, got {value!r}")
    return float(value)


def _teacher_list(teachers):
    """``[(name, model)]`` from a model, a list of models or ``{checkpoint path: model}``."""
    if isinstance(teachers, torch.nn.Module):
        return [("teachers", teachers)]
    if isinstance(teachers, dict):
        if not teachers:
            raise ModelError("Distillation: teachers is an empty dict; give {checkpoint path: "
                             "model}")
        if all(isinstance(v, torch.Tensor) for v in teachers.values()):
            raise ModelError("Distillation: teachers looks like a state dict. Load it into its "
                             "model (model.load_state_dict(...)) and pass the model, or save it "
                             "and pass {path: model}.")
        result = []
        for path, model in teachers.items():
            where = f"Distillation: teachers[{path!r}]"
            if not isinstance(path, (str, os.PathLike)):
                raise ModelError(f"Distillation: teachers dict keys must be checkpoint paths, "
                                 f"got a {type(path).__name__}")
            if not isinstance(model, torch.nn.Module):
                raise ModelError(f"{where}: expected a torch.nn.Module to load the checkpoint "
                                 f"into, got {type(model).__name__}")
            load_weights(model, path, where)
            result.append((f"teachers[{path!r}]", model))
        return result
    if isinstance(teachers, (list, tuple)) and teachers:
        for i, model in enumerate(teachers):
            if not isinstance(model, torch.nn.Module):
                raise ModelError(f"Distillation: teachers[{i}]: expected a torch.nn.Module, got "
                                 f"{type(model).__name__}")
        return [(f"teachers[{i}]", m) for i, m in enumerate(teachers)]
    raise ModelError(f"Distillation: expected teachers to be a torch.nn.Module, a non-empty list "
                     f"of them or {{checkpoint path: model}}, got {type(teachers).__name__}")


class Distillation(Algorithm):
    """Adds a teacher's term to the student's loss at every step inside ``[start_dur, end_dur)``.

    Args:
        teachers: a model, a list of models, or ``{checkpoint path: model}`` whose weights are
            loaded now (tensors only; a Trainer checkpoint or a plain state dict).
        kd_loss_fn: ``(student_logits, teacher_logits) -> scalar tensor``, e.g.
            :class:`KLDivergence` or ``torch.nn.MSELoss()``.
        kd_loss_weight, org_loss_weight: the loss is
            ``org_loss_weight * loss + kd_loss_weight * kd_loss_fn(...)``.
        start_dur, end_dur: the fractions of ``max_duration`` between which the term is on.
            Outside, the loss is left as it is and no teacher runs.
        n_teachers_to_sample: with several teachers, this many are drawn at random at every
            step (from the trainer's seed); by default all are used. The term is the mean of
            ``kd_loss_fn`` over the teachers used.

    Teachers run in eval mode under ``torch.no_grad`` on the trainer's device: they are never
    trained, and their weights and buffers are bit-identical after ``fit()``; their own
    train/eval flags and device are restored when training ends.
    """

    def __init__(self, teachers, kd_loss_fn, kd_loss_weight=0.9, org_loss_weight=0.1,
                 start_dur=0.0, end_dur=1.0, n_teachers_to_sample=None):
        if not callable(kd_loss_fn):
            raise ConfigError(f"Distillation: kd_loss_fn must be a callable (student_logits, "
                              f"teacher_logits) -> scalar, got {type(kd_loss_fn).__name__}")
        self.kd_loss_fn = kd_loss_fn
        self.balancer = LossBalancer(_weight(org_loss_weight, "org_loss_weight"),
                                     _weight(kd_loss_weight, "kd_loss_weight"),
                                     owner="Distillation")
        for name, value in (("start_dur", start_dur), ("end_dur", end_dur)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    0.0 <= value <= 1.0):
                raise ConfigError(f"Distillation: expected {name} to be a fraction of "
                                  f"max_duration in [0, 1], got {value!r}")
        if end_dur <= start_dur:
            raise ConfigError(f"Distillation: end_dur ({end_dur}) must be greater than start_dur "
                              f"({start_dur}); the term is on for start_dur <= elapsed < end_dur")
        self.start_dur, self.end_dur = float(start_dur), float(end_dur)
        self._named_teachers = _teacher_list(teachers)
        self.teachers = [model for _, model in self._named_teachers]
        count = len(self.teachers)
        if n_teachers_to_sample is not None and (
                isinstance(n_teachers_to_sample, bool) or not isinstance(n_teachers_to_sample, int)
                or not 1 <= n_teachers_to_sample <= count):
            raise ConfigError(f"Distillation: n_teachers_to_sample must be an int from 1 to the "
                              f"number of teachers ({count}), got {n_teachers_to_sample!r}")
        self.n_teachers_to_sample = n_teachers_to_sample
        self._names = {id(model): name for name, model in self._named_teachers}
        # The loss is made where every loss of the package is: teacher forward, one term per
        # teacher (their mean), weighting by the balancer.
        self.step = DistillationStep(ADAPTER, _Term(kd_loss_fn), self.teachers,
                                     balancer=self.balancer, teacher_forward=self._teacher_logits,
                                     reduce_student_loss=False)
        self._saved_modes = []
        self._rng = None

    @property
    def kd_loss_weight(self):
        return self.balancer.distillation_weight

    @property
    def org_loss_weight(self):
        return self.balancer.student_weight

    def match(self, event, state):
        return event in (Event.AFTER_COMPUTE_LOSS, Event.TRAIN_BEGIN, Event.TRAIN_END)

    def apply(self, event, state, logger):
        if event == Event.AFTER_COMPUTE_LOSS:
            self._add_term(state, logger)
        elif event == Event.TRAIN_BEGIN:
            self._release()  # a previous fit that died before TRAIN_END
            self._saved_modes = [ADAPTER.enter_teacher_mode(t, state.device)
                                 for t in self.teachers]
            seed = state.seed if state.seed is not None else random.getrandbits(63)
            self._rng = random.Random(seed)
        elif event == Event.TRAIN_END:
            self._release()

    def _release(self):
        for teacher, saved in zip(self.teachers, self._saved_modes):
            ADAPTER.exit_teacher_mode(teacher, saved)
        self._saved_modes = []

    def _chosen_teachers(self):
        if self.n_teachers_to_sample is None or self.n_teachers_to_sample == len(self.teachers):
            return self.teachers
        rng = self._rng or random.Random()
        picked = sorted(rng.sample(range(len(self.teachers)), self.n_teachers_to_sample))
        return [self.teachers[i] for i in picked]

    def _teacher_logits(self, teacher, state):
        """One teacher's logits for the step ``DistillationStep`` makes with ``state`` as its
        inputs: a model with its own ``loss`` (a Trainer-style model) takes the whole batch."""
        if teacher.training:  # someone called .train() on it since TRAIN_BEGIN
            teacher.eval()
        with torch.no_grad():
            output = (teacher(state.batch) if callable(getattr(teacher, "loss", None))
                      else call_model(teacher, state.inputs))
        return logits_of(output, f"{self._names[id(teacher)]} output")

    def _add_term(self, state, logger):
        if not self.start_dur <= state.elapsed < self.end_dur:
            return
        teachers = self._chosen_teachers() if self.balancer.needs_distillation else None
        state.loss = self.step(state, state.outputs, state.loss, running=_TermLog(logger),
                               teachers=teachers)

    def __repr__(self):
        return (f"Distillation(teachers={len(self.teachers)}, kd_loss_fn={self.kd_loss_fn!r}, "
                f"kd_loss_weight={self.kd_loss_weight}, org_loss_weight={self.org_loss_weight}, "
                f"start_dur={self.start_dur}, end_dur={self.end_dur}, "
                f"n_teachers_to_sample={self.n_teachers_to_sample})")


class _Term(DistillationCriterion):
    """``kd_loss_fn`` as the step's criterion: the term only, on logits; no weighting.

    The student's logits are read here, when a term is made: with ``kd_loss_weight=0`` the
    student's output is never read."""

    def __init__(self, kd_loss_fn):
        self.kd_loss_fn = kd_loss_fn

    def distillation_loss(self, student_output, teacher_logits):
        term = self.kd_loss_fn(logits_of(student_output, "student output"), teacher_logits)
        if not isinstance(term, torch.Tensor) or term.dim() != 0:
            shape = tuple(term.shape) if isinstance(term, torch.Tensor) else type(term).__name__
            raise ModelError(
                f"Distillation: kd_loss_fn must return a scalar tensor, got {shape}. Reduce "
                f"it (e.g. reduction='mean' or 'batchmean') or wrap it: lambda s, t: "
                f"fn(s, t).mean()")
        return term


class _TermLog:
    """The step's ``running`` for the Trainer: the term goes to the trainer's metrics."""

    __slots__ = ("logger",)

    def __init__(self, logger):
        self.logger = logger

    def add(self, loss, student_loss, kd_loss, inputs=None):
        if kd_loss is not None:
            self.logger.log_metrics({"distillation_loss": kd_loss})
