"""Distillation inside Hugging Face ``transformers.Trainer``'s own training loop.

::

    from neural_distill import Criterion, DistillationConfig, metrics
    from neural_distill.integrations.transformers import NLPTrainer

    # Replace transformers.Trainer with NLPTrainer: same arguments.
    trainer = NLPTrainer(model=student, args=args, train_dataset=train_set,
                         eval_dataset=dev_set, compute_metrics=compute_metrics)
    metric = metrics.Metric(name="eval_accuracy")          # a key of trainer.evaluate()
    criterion = Criterion(name="KnowledgeLoss", temperature=2.0, loss_types=["CE", "KL"])
    d_conf = DistillationConfig(metrics=metric, criterion=criterion)
    model = trainer.distill(distillation_config=d_conf, teacher_model=teacher)

``distill()`` runs ``trainer.train()``: the Trainer's optimizer, scheduler, gradient accumulation,
mixed precision, logging and checkpoints all stay its own. What changes is the training loss:
the student's ``outputs.loss`` (its labels, with -100 ignored) goes through the distillation
hooks of :func:`neural_distill.training.prepare_compression`, which run the teacher (eval mode,
no gradient, never modified) and add its term with the math of ``docs/criteria.md``. The
hooks' other events are driven by :class:`DistillationCallback`. Evaluation is untouched: the
Trainer's ``eval_loss`` is the student's own loss.

With a metric, the student is evaluated at the end of every epoch (reusing the Trainer's own
evaluation when it evaluates at that step anyway) and ``distill()`` returns the best one;
without, the final one (or the one the Trainer itself loaded with ``load_best_model_at_end``).
The returned model is ``trainer.model`` itself, so ``trainer.save_model()`` saves it.

``DistillationConfig(teacher_cache={"enabled": True, ...})`` keeps the teacher's logits per
training sample (docs/teacher_cache.md): later epochs skip the teacher. The key is the sample's
inputs without its labels, and with an ``attention_mask`` only its real tokens, so a sentence
padded differently in another batch still hits. Per-token teacher outputs are not cached.

A trainer class of your own (``Seq2SeqTrainer``, a subclass of your own) gets ``distill()`` from
:class:`DistillationMixin`: ``class MyTrainer(DistillationMixin, Seq2SeqTrainer)``. A callback
alone cannot do it: ``transformers`` gives callbacks no way to change the loss, and its
``compute_loss_func`` never sees the inputs the teacher needs.
"""

import logging
import os

from neural_distill.errors import FrameworkNotInstalledError

try:
    import torch
    import transformers
    from transformers import TrainerCallback

    # Trainer needs accelerate but only says so when one is built; the extra installs it.
    import accelerate  # noqa: F401
    from transformers.trainer_utils import get_last_checkpoint
except ImportError as exc:  # pragma: no cover - exercised only without transformers installed
    raise FrameworkNotInstalledError("Hugging Face transformers (with PyTorch)",
                                     "transformers") from exc

from neural_distill.adapters import framework_of_config_name
from neural_distill.compat.itrex import check_provider, checked_function, run_train_func
from neural_distill.adapters.torch.on_policy import OnPolicy
from neural_distill.config.python_api import DistillationConfig
from neural_distill.language.tokens import GeneratedBatch
from neural_distill.teacher_cache.options import TeacherCacheOptions, teacher_runs
from neural_distill.run.durable import restore_run
from neural_distill.errors import ConfigError, DataError, ModelError
from neural_distill.run.evaluation import resolve_metric
from neural_distill.metrics import Metric
from neural_distill.training import prepare_compression
from neural_distill.integrations.hf_callback import DistillationCallback, part_folder

logger = logging.getLogger("neural_distill")

IGNORE_INDEX = -100


class _FirstBatch:
    """The first batch of the trainer's training data, fetched only if a criterion asks.

    Feature criteria build their matchers from one dry run before the optimizer exists. The
    batch is drawn with the global RNG forked, so the training run shuffles exactly as it
    would have without the dry run.
    """

    def __init__(self, trainer):
        self.trainer = trainer

    def __iter__(self):
        with torch.random.fork_rng(devices=[]):
            loader = self.trainer.get_train_dataloader()
            try:
                batch = next(iter(loader))
            except StopIteration:
                raise DataError("NLPTrainer.distill: the training dataset is empty") from None
        return iter([batch])


class _Run:
    """What one ``distill()`` call set up on the trainer."""

    def __init__(self, manager, callback, metric, on_policy=None, seed=0):
        self.manager = manager
        self.callback = callback
        self.metric = metric
        self._on_policy_settings = on_policy
        self._on_policy = None
        self._seed = seed

    def on_policy(self, student):
        """The on-policy sampler (``DistillationConfig(on_policy=...)``), or None."""
        if self._on_policy is None and self._on_policy_settings is not None:
            distiller = self.manager.distillers[0]
            self._on_policy = OnPolicy(self._on_policy_settings, student,
                                       list(distiller.teachers), self._seed)
        return self._on_policy


class DistillationMixin:
    """Adds ``distill()`` to a ``transformers.Trainer`` class (put it first in the bases)."""

    # The reference documents set the metric on the trainer (``trainer.metrics = metric``);
    # DistillationConfig(metrics=...) takes precedence.
    metrics = None

    _nd_run = None

    # ------------------------------------------------------------------ public
    def distill(self, distillation_config, teacher_model=None, provider="inc", eval_func=None,
                train_func=None, resume_from_checkpoint=None):
        """Train ``self.model`` with the teacher's knowledge; returns the trained student.

        Args:
            distillation_config: a :class:`neural_distill.DistillationConfig`: the criterion
                (a criterion config or a ``neural_distill.Criterion``), the metric that picks
                the best student (``metrics``, or ``trainer.metrics``), optionally the teacher.
            teacher_model: the teacher, unless the config holds it: a ``torch.nn.Module``
                (a list of them: their mean logits teach) taking the same inputs as the student.
            provider: ITREX's choice of back end; ``"inc"``, the only one, is this package.
            eval_func: ``eval_func(model) -> score`` (higher is better) picks the best student
                at each epoch's end, in place of the metric.
            train_func: ``train_func(model)`` trains in place of ``self.train()``; while it runs,
                the trainer's ``compute_loss`` distills (so it may call ``self.train()``).
            resume_from_checkpoint: passed to ``train()``.

        Returns:
            ``trainer.model``, holding the best student by the metric (final one without).
        """
        check_provider(type(self).__name__, provider)
        config = self._nd_checked_config(distillation_config, teacher_model)
        metric = None if eval_func is not None else config.metrics
        if metric is not None and self.eval_dataset is None:
            raise DataError(
                "NLPTrainer.distill: a metric was given to pick the best student, but the "
                "trainer has no eval_dataset to evaluate it on. Pass eval_dataset= to the "
                "trainer, or leave the metric out to keep the final student.")
        manager = prepare_compression(self.model, config)
        distiller = manager.distillers[0]
        # The run's records (config, per-epoch losses and scores, best student) go with the
        # trainer's own outputs instead of the current directory.
        distiller.conf.tuning.workspace.path = os.path.join(
            self.args.output_dir or ".", "nd_workspace")
        if metric is not None:
            metric = resolve_metric(distiller.metric, distiller.conf)
            distiller.eval_func = self._nd_evaluator(metric)
        elif eval_func is not None:
            distiller.eval_func = checked_function("eval_func", eval_func)
        callback = DistillationCallback(manager, uses_metric=metric is not None)
        saved = {name: getattr(self, name, None)
                 for name in ("model_accepts_loss_kwargs", "loss_is_scaled_for_ga")}
        self._nd_run = _Run(manager, callback, metric, config.on_policy, self.args.seed)
        # Both loss terms are per-batch means, so the Trainer must divide by the number of
        # accumulation steps itself (the model is not told num_items_in_batch).
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        self.add_callback(callback)
        try:
            callback.begin(_FirstBatch(self))
            self._nd_restore(manager, resume_from_checkpoint)
            if train_func is None:
                self.train(resume_from_checkpoint=resume_from_checkpoint)
            else:
                run_train_func(manager, distiller, train_func, self.model)
        except BaseException:
            # A failed or interrupted run leaves neither the teacher in eval mode nor our
            # forward hooks on either model.
            distiller.run.abort()
            raise
        finally:
            self.remove_callback(callback)
            self._nd_run = None
            for name, value in saved.items():
                setattr(self, name, value)
        self.distillation_history = distiller.history
        self.distiller = distiller
        if (metric is not None or eval_func is not None) and distiller.best_model is not None:
            self.model.load_state_dict(distiller.best_model.state_dict())
        self.model.eval()
        return self.model

    @property
    def compression_manager(self):
        """The hooks of the running ``distill()`` (a CompressionManager); None outside it.

        For a trainer whose own ``compute_loss`` hides the mixin's: call
        ``self.compression_manager.on_after_compute_loss(inputs_without_labels, outputs, loss,
        labels=labels)`` from it.
        """
        run = self._nd_run
        return None if run is None else run.manager

    # ------------------------------------------------------------------ Trainer overrides
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        run = self._nd_run
        if run is None or not model.training:
            # Not distilling, or evaluating: the student's own loss, exactly as the Trainer.
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        label_names = list(self.label_names or ["labels"])
        on_policy = run.on_policy(self.model)
        generated = False
        if on_policy is not None:
            # Completions by the student (GKD) or the teacher (seq_kd) replace the data's.
            batch, labels, generated = on_policy.maybe_generate(
                {k: v for k, v in inputs.items() if k not in label_names},
                inputs.get(label_names[0]))
            if generated:
                inputs = {**batch, label_names[0]: labels}
        labeled = [name for name in label_names if inputs.get(name) is not None]
        teacher_inputs = {k: v for k, v in inputs.items() if k not in label_names}
        if generated:  # never looked up nor stored by the teacher cache
            teacher_inputs = GeneratedBatch(teacher_inputs)
        # The token labels say which positions the per-token term counts.
        token_labels = inputs.get(labeled[0]) if labeled else None
        if generated and not on_policy.seq_kd:
            # The labels are the student's own samples: only the teacher's term teaches.
            outputs = model(**teacher_inputs)
            student_loss = None
        elif labeled:
            # A copy: the Trainer pops the labels when a label smoother or compute_loss_func
            # is set, and the teacher inputs above must not depend on that.
            student_loss, outputs = super().compute_loss(model, dict(inputs),
                                                         return_outputs=True)
            if isinstance(outputs, (tuple, list)):
                outputs = outputs[1:]  # (loss, logits, ...) of a return_dict=False model
            if self._nd_all_ignored(inputs, labeled):
                # Every label is -100: the model's mean is 0/0. The batch still teaches.
                student_loss = None
        else:
            outputs = model(**inputs)
            student_loss = None
        loss = run.manager.on_after_compute_loss(teacher_inputs, outputs, student_loss, None,
                                                 token_labels)
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, *args, **kwargs):
        optimizer = super().create_optimizer(*args, **kwargs)
        run = self._nd_run
        if run is not None:
            self._nd_add_criterion_parameters(run.manager)
        return optimizer

    # ------------------------------------------------------------------ helpers
    def _nd_checked_config(self, config, teacher_model):
        """A DistillationConfig with the teacher and metric this run uses, checked."""
        if not isinstance(config, DistillationConfig):
            raise ConfigError(
                f"{type(self).__name__}.distill: distillation_config: expected a "
                f"neural_distill.DistillationConfig, got {type(config).__name__}. Build one with "
                f"DistillationConfig(criterion=..., metrics=...).")
        if config.framework is not None and framework_of_config_name(config.framework) != "torch":
            raise ConfigError(
                f"{type(self).__name__}.distill: DistillationConfig.framework is "
                f"'{config.framework}', but a transformers Trainer trains PyTorch models. Use "
                f"framework='pytorch' (or leave it out); for Keras models see "
                f"neural_distill.integrations.keras.")
        teacher = config.teacher_model
        if teacher_model is not None:
            if teacher is not None and teacher is not teacher_model:
                raise ConfigError(
                    f"{type(self).__name__}.distill: got a teacher both in teacher_model= and "
                    f"in DistillationConfig(teacher_model=...), and they differ. Give it once.")
            teacher = teacher_model
        # A written offline cache (teacher_cache.path) stands in for the teacher.
        cache = TeacherCacheOptions.from_section(config.teacher_cache, os.getcwd())
        if teacher is None and teacher_runs(config.criterion, cache):
            raise ModelError(
                f"{type(self).__name__}.distill: no teacher model. Pass "
                f"distill(distillation_config, teacher_model=teacher) or "
                f"DistillationConfig(teacher_model=teacher, ...), or an offline cache written "
                f"by `neural-distill cache-teacher` in teacher_cache.path.")
        if teacher is self.model:
            raise ModelError(f"{type(self).__name__}.distill: the teacher is the student itself "
                             f"(trainer.model). Pass a separate teacher model.")
        if config.optimizer is not None:
            logger.warning("DistillationConfig.optimizer is not used by %s: the Trainer's "
                           "TrainingArguments choose the optimizer", type(self).__name__)
        metric = config.metrics if config.metrics is not None else self.metrics
        if metric is not None and not isinstance(metric, (Metric, str, dict)):
            raise ConfigError(
                f"{type(self).__name__}.metrics: expected a neural_distill.metrics.Metric "
                f"(e.g. metrics.Metric(name='eval_accuracy')), a metric name or a "
                f"{{name: params}} dict, got {type(metric).__name__}")
        # A new config: the user's is not modified, and everything in it is validated again.
        return DistillationConfig(teacher_model=teacher, criterion=config.criterion,
                                  metrics=metric, framework=config.framework,
                                  teacher_cache=config.teacher_cache,
                                  pruner_config=config.pruner_config,
                                  on_policy=config.on_policy)

    def _nd_evaluator(self, metric):
        """The distiller's eval_func: the student's score by ``metric`` on eval_dataset."""

        def evaluate(_model):
            if metric.reads_results:
                results = self._nd_run.callback.fresh_results(self.state.global_step)
                results = results or self.evaluate()
                return metric.value_from(results, f"{type(self).__name__}.evaluate() results")
            # A metric that computes itself (Accuracy, topk, F1, ...) gets the predictions.
            prediction = self.predict(self.eval_dataset)
            predictions = prediction.predictions
            if isinstance(predictions, (tuple, list)):
                predictions = predictions[0]
            if prediction.label_ids is None:
                raise DataError(f"metric {metric.name}: eval_dataset has no labels; give it "
                                f"labels, or use Metric(name=...) on a compute_metrics value")
            metric.reset()
            metric.update(predictions, prediction.label_ids)
            return metric.result()

        return evaluate

    def _nd_restore(self, manager, resume_from_checkpoint):
        """Our run state from the checkpoint the Trainer resumes from (see on_save)."""
        if not resume_from_checkpoint:
            return
        folder = resume_from_checkpoint
        if folder is True:
            folder = get_last_checkpoint(self.args.output_dir)
            if folder is None:
                return  # the Trainer itself raises the error that says so
        for index, distiller in enumerate(manager.distillers):
            restore_run(distiller.run, os.path.join(folder, part_folder(index)))

    @staticmethod
    def _nd_all_ignored(inputs, labeled):
        if len(labeled) != 1:
            return False
        labels = inputs[labeled[0]]
        if not isinstance(labels, torch.Tensor) or labels.is_floating_point():
            return False
        return not bool((labels != IGNORE_INDEX).any())

    def _nd_add_criterion_parameters(self, manager):
        """Trained feature matchers join the Trainer's optimizer (they are not the model's)."""
        present = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        extra = []
        for distiller in manager.distillers:
            criterion = distiller.criterion
            if isinstance(criterion, torch.nn.Module):
                extra += [p for p in criterion.parameters()
                          if p.requires_grad and id(p) not in present]
        if extra:
            self.optimizer.add_param_group({"params": extra,
                                            "weight_decay": self.args.weight_decay})


class NLPTrainer(DistillationMixin, transformers.Trainer):
    """``transformers.Trainer`` with :meth:`distill` (the reference documents' name).

    Every argument and method of ``Trainer`` works unchanged; ``train()`` without ``distill()``
    trains exactly as ``Trainer`` does.
    """


__all__ = ["NLPTrainer", "DistillationMixin", "DistillationCallback"]
