"""The Python config API: ``DistillationConfig``, the criterion configs and
``QuantizationAwareTrainingConfig``, for :func:`neural_distill.training.prepare_compression`.

Each config is validated by the same schema nodes as the YAML (``schema.py``, and
``compression_schema.py`` for what only exists here), so the same mistake gets the same message,
prefixed with the class name instead of the file name::

    KnowledgeDistillationLossConfig(temperature=-1)
    # ConfigError: KnowledgeDistillationLossConfig: temperature: expected a number > 0, got -1

Every config converts to and from the YAML that means the same (``to_dict``/``to_yaml``,
``from_dict``/``from_yaml``). Objects that have no YAML form (a teacher model, a ``Metric``
instance, example inputs) are runtime arguments: they are left out of the YAML and passed again
to ``from_dict``/``from_yaml`` as keyword arguments.

Nothing here imports a deep-learning framework.
"""

import copy

from neural_distill.errors import ConfigError, ModelError
from neural_distill.config.compression_schema import (EXPERIMENT, FRAMEWORK, METRIC, OPTIMIZER,
                                 QUANTIZATION_AWARE_TRAINING, QUANTIZATION_DOCUMENT,
                                 ON_POLICY, TEACHER_CACHE)
# The criterion configs live in their own module; their public names stay importable here.
from neural_distill.config.criterion_configs import (  # noqa: F401 - re-exported
    CRITERION_CONFIGS, IntermediateLayersKnowledgeDistillationLossConfig,
    KnowledgeDistillationLossConfig, SelfKnowledgeDistillationLossConfig, _CriterionConfig,
    criterion_config_from_section)
from neural_distill.config.loader import to_plain, validate
from neural_distill.config.nodes import Section
from neural_distill.config.pruning_configs import pruning_groups
from neural_distill.config.yaml_config import YamlConfig as _YamlConfig


# ------------------------------------------------------------------------------ distillation
def _is_model(value):
    from neural_distill.core.backends import detect_framework

    return detect_framework(value) is not None


def _check_teacher(teacher):
    if teacher is None:
        return None
    if isinstance(teacher, dict):
        items = list(teacher.values())
    elif isinstance(teacher, (list, tuple)):
        items = list(teacher)
    else:
        items = [teacher]
    bad = [t for t in items if not _is_model(t)]
    if bad or not items:
        got = type(bad[0]).__name__ if bad else "an empty collection"
        raise ModelError(f"DistillationConfig: teacher_model: expected a torch.nn.Module or a "
                         f"keras.Model (or a list of them), got {got}. Pass the model object "
                         f"itself, or None to let a QAT student learn from its float copy.")
    return teacher


class DistillationConfig(_YamlConfig):
    """What distillation does inside :func:`neural_distill.training.prepare_compression`.

    Args:
        teacher_model: the teacher (a model, a list of models or a ``{checkpoint: model}`` dict,
            as for ``Distillation.teacher_model``). None: with a QuantizationAwareTrainingConfig
            in the same ``prepare_compression`` call, a frozen float copy of the model itself;
            with SelfKnowledgeDistillationLossConfig, none is needed.
        criterion: a criterion config (default ``KnowledgeDistillationLossConfig()``) or its
            YAML section ``{"KnowledgeDistillationLoss": {...}}``.
        optimizer: an optimizer section ``{"SGD": {"learning_rate": 0.01}}`` (used by
            ``Distillation.fit``; a loop of your own keeps its own optimizer).
        metrics: a ``neural_distill.metrics.Metric`` (``Metric(name="eval_accuracy")`` names a
            value of a trainer's evaluation results), a metric name or ``{name: params}``.
        framework: the models' framework as the experiment file names it ("pytorch",
            "tensorflow", ...); None: whichever framework the models are. Given, a model of
            another framework is an error.
        teacher_cache: the teacher-output cache section, e.g. ``{"enabled": True,
            "compression": "topk", "top_k": 1}`` (docs/teacher_cache.md); None: no cache.
        pruner_config: prune while distilling (docs/pruning.md): a ``PrunerConfig`` (ITREX's
            arguments), a ``WeightPruningConfig`` (INC's) or a list of them. A runtime
            argument: it is not part of the YAML form (give a WeightPruningConfig to
            ``prepare_compression`` for that).
        on_policy: causal LMs: ``{"fraction": 0.5, "max_new_tokens": 64, "temperature": 1.0,
            "seq_kd": False}`` (docs/language_models.md); None: the data's completions only.

    ``criterion`` may also be a ``neural_distill.Criterion`` (the reference documents'
    ``Criterion(name="KnowledgeLoss", ...)``); it is stored as the criterion config it stands for.

    YAML form: the experiment file's ``distillation.train.criterion`` / ``optimizer``,
    ``evaluation.accuracy.metric``, ``model.framework`` and
    ``distillation.train.teacher_cache`` / ``on_policy``. ``teacher_model`` and Metric objects
    are runtime objects.
    """

    _FIELDS = ("criterion", "optimizer", "metrics", "framework", "teacher_cache", "on_policy")
    _RUNTIME = ("teacher_model", "pruner_config")

    def __init__(self, teacher_model=None, criterion=None, optimizer=None, metrics=None,
                 framework=None, teacher_cache=None, on_policy=None, pruner_config=None):
        object.__setattr__(self, "teacher_model", _check_teacher(teacher_model))
        if pruner_config is not None:
            pruning_groups(pruner_config, "DistillationConfig: pruner_config")  # checks it
        object.__setattr__(self, "pruner_config", pruner_config)
        self._store({"criterion": criterion, "optimizer": optimizer, "metrics": metrics,
                     "framework": framework, "teacher_cache": teacher_cache,
                     "on_policy": on_policy})

    def __setattr__(self, name, value):
        if name == "teacher_model":
            value = _check_teacher(value)
        super().__setattr__(name, value)

    def _validated(self, values):
        from neural_distill.metrics import Metric

        cleaned = {}
        criterion = values.get("criterion")
        if criterion is None:
            criterion = KnowledgeDistillationLossConfig()
        elif isinstance(criterion, dict):
            criterion = criterion_config_from_section(criterion, "DistillationConfig")
        elif callable(getattr(criterion, "to_loss_config", None)):
            criterion = criterion.to_loss_config()  # a neural_distill.Criterion
        if not isinstance(criterion, _CriterionConfig):
            raise ConfigError(
                f"DistillationConfig: criterion: expected one of "
                f"{{{', '.join(cls.__name__ for cls in CRITERION_CONFIGS.values())}}} or a "
                f"{{name: arguments}} section, got {type(criterion).__name__}. Build it with "
                f"e.g. KnowledgeDistillationLossConfig(temperature=2.0) or "
                f"neural_distill.Criterion(name='KnowledgeLoss', temperature=2.0).")
        cleaned["criterion"] = criterion
        checks = {}
        if values.get("optimizer") is not None:
            checks["optimizer"] = (to_plain(values["optimizer"]), OPTIMIZER)
        metric = values.get("metrics")
        if metric is not None and not isinstance(metric, Metric):
            checks["metrics"] = (to_plain(metric), METRIC)
        elif metric is not None:
            cleaned["metrics"] = metric
        if values.get("framework") is not None:
            checks["framework"] = (values["framework"], FRAMEWORK)
        if values.get("teacher_cache") is not None:
            checks["teacher_cache"] = (to_plain(values["teacher_cache"]), TEACHER_CACHE)
        if values.get("on_policy") is not None:
            checks["on_policy"] = (to_plain(values["on_policy"]), ON_POLICY)
        if checks:
            node = Section({key: node for key, (_, node) in checks.items()})
            result = validate({key: value for key, (value, _) in checks.items()},
                              "DistillationConfig", node)
            cleaned.update(to_plain(result))
        return cleaned

    def to_dict(self):
        """The experiment-file sections this config stands for."""
        train = {"criterion": self.criterion.to_dict()}
        if self.optimizer is not None:
            train["optimizer"] = copy.deepcopy(self.optimizer)
        if self.teacher_cache is not None:
            train["teacher_cache"] = copy.deepcopy(self.teacher_cache)
        if self.on_policy is not None:
            train["on_policy"] = copy.deepcopy(self.on_policy)
        document = {"distillation": {"train": train}}
        if isinstance(self.metrics, dict):
            document["evaluation"] = {"accuracy": {"metric": copy.deepcopy(self.metrics)}}
        if self.framework is not None:
            document["model"] = {"framework": self.framework}
        return document

    @classmethod
    def _from_document(cls, document, source, teacher_model=None, metrics=None):
        """From an experiment file (any valid one: keys the Python config has no use for, such
        as epochs or dataloaders, are validated and not carried)."""
        checked = validate(document, source, EXPERIMENT)
        raw_train = (document.get("distillation") or {}).get("train") or {} \
            if isinstance(document, dict) else {}
        raw_accuracy = (document.get("evaluation") or {}).get("accuracy") or {}
        train = checked["distillation"]["train"]
        (name, args), = train["criterion"].items()
        criterion = CRITERION_CONFIGS[name](**dict(args))
        # Defaults filled in by validation are not the user's choice: only keys present in the
        # document are carried, so to_dict() gives back what was read.
        optimizer = to_plain(train["optimizer"]) if "optimizer" in raw_train else None
        teacher_cache = (to_plain(train["teacher_cache"]) if "teacher_cache" in raw_train
                         else None)
        on_policy = to_plain(train["on_policy"]) if "on_policy" in raw_train else None
        if metrics is None and "metric" in raw_accuracy:
            metrics = to_plain(checked["evaluation"]["accuracy"]["metric"])
        framework = checked["model"].get("framework")
        return cls(teacher_model=teacher_model, criterion=criterion, optimizer=optimizer,
                   metrics=metrics, framework=framework, teacher_cache=teacher_cache,
                   on_policy=on_policy)


# ------------------------------------------------------------------------------ quantization
class QuantizationAwareTrainingConfig(_YamlConfig):
    """Quantization-aware training (int8, fake quantization during training).

    Args:
        example_inputs: one batch of inputs the model can be called with (a tensor, a tuple of
            positional tensors, or a dict of keyword tensors): the model is captured with
            ``torch.export`` on them. Optional: without them the model is captured on its first
            batch (docs/quantization.md). The batch dimension (0) is kept dynamic.
        backend: ``"x86"``: torchao's X86InductorQuantizer (see docs/quantization.md).
        reduce_range: 7-bit activations, for CPUs without VNNI.
        excluded_layers: module paths kept in float (e.g. a sensitive first or last layer).
        freeze_observers_epoch: from this epoch on (as passed to ``on_epoch_begin``) the scales
            and zero points stop moving.
        approach: ``"quant_aware_training"`` (the reference documents' YAML key).
        dynamic_shapes: passed to ``torch.export`` instead of "dimension 0 is dynamic".

    YAML form: ``{"quantization": {approach, backend, reduce_range, excluded_layers,
    freeze_observers_epoch}}``; ``example_inputs`` and ``dynamic_shapes`` are runtime objects.
    """

    _FIELDS = ("approach", "backend", "reduce_range", "excluded_layers",
               "freeze_observers_epoch")
    _RUNTIME = ("example_inputs", "dynamic_shapes")

    def __init__(self, example_inputs=None, backend="x86", reduce_range=False,
                 excluded_layers=(), freeze_observers_epoch=None,
                 approach="quant_aware_training", dynamic_shapes=None):
        object.__setattr__(self, "example_inputs", example_inputs)
        object.__setattr__(self, "dynamic_shapes", dynamic_shapes)
        self._store({"approach": approach, "backend": backend, "reduce_range": reduce_range,
                     "excluded_layers": excluded_layers,
                     "freeze_observers_epoch": freeze_observers_epoch})

    def _validated(self, values):
        given = {k: to_plain(v) for k, v in values.items()}
        return to_plain(validate(given, "QuantizationAwareTrainingConfig",
                                 QUANTIZATION_AWARE_TRAINING))

    def to_dict(self):
        return {"quantization": {name: copy.deepcopy(getattr(self, name))
                                 for name in self._FIELDS}}

    @classmethod
    def _from_document(cls, document, source, example_inputs=None, dynamic_shapes=None):
        checked = validate(document, source, QUANTIZATION_DOCUMENT)
        return cls(example_inputs=example_inputs, dynamic_shapes=dynamic_shapes,
                   **to_plain(checked["quantization"]))


__all__ = ["DistillationConfig", "KnowledgeDistillationLossConfig",
           "IntermediateLayersKnowledgeDistillationLossConfig",
           "SelfKnowledgeDistillationLossConfig", "QuantizationAwareTrainingConfig",
           "criterion_config_from_section"]
