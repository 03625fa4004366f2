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
import os

import yaml

from ..errors import ConfigError, ModelError
from .compression_schema import (CRITERION, EXPERIMENT, FRAMEWORK, METRIC, OPTIMIZER,
                                 PYTHON_CRITERIA, QUANTIZATION_AWARE_TRAINING,
                                 QUANTIZATION_DOCUMENT)
from .loader import read_yaml, to_plain, validate
from .nodes import OneOf, Section, describe


def _read_yaml_source(source, who):
    """A YAML document from a file path or from YAML text."""
    if isinstance(source, os.PathLike) or (
            isinstance(source, str) and "\n" not in source
            and (os.path.isfile(source) or source.endswith((".yaml", ".yml")))):
        return read_yaml(source), os.fspath(source)
    if isinstance(source, str):
        try:
            document = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{who}: not valid YAML: {getattr(exc, 'problem', None) or exc}") \
                from None
        return ({} if document is None else document), who
    raise ConfigError(f"{who}: expected a path to a YAML file or YAML text, got "
                      f"{type(source).__name__}")


def _dump(document, who):
    try:
        return yaml.safe_dump(document, sort_keys=False)
    except yaml.representer.RepresenterError as exc:
        raise ConfigError(
            f"{who}: cannot be written as YAML: it holds a Python object "
            f"({describe(exc.args[1] if len(exc.args) > 1 else exc)}), e.g. a callable layer "
            f"process. Use an index or a key as the process to make it YAML-able.") from None


class _YamlConfig:
    """Shared behaviour of the configs: validated attributes, YAML round trip, equality.

    Subclasses set ``_FIELDS`` (the YAML-backed constructor arguments, in order) and implement
    ``_validated(values)`` (returns the cleaned values or raises ConfigError) and ``to_dict``.
    Assigning a field re-validates the whole config, so a config object is never invalid.
    """

    _FIELDS = ()
    _RUNTIME = ()

    def _store(self, values):
        cleaned = self._validated(values)
        for name in self._FIELDS:
            object.__setattr__(self, name, cleaned.get(name))

    def __setattr__(self, name, value):
        if name in self._FIELDS:
            values = {field: getattr(self, field) for field in self._FIELDS}
            values[name] = value
            self._store(values)
        else:
            object.__setattr__(self, name, value)

    def to_yaml(self):
        return _dump(self.to_dict(), type(self).__name__)

    @classmethod
    def from_yaml(cls, source, **runtime):
        """From a YAML file path or YAML text (runtime objects as keyword arguments)."""
        document, name = _read_yaml_source(source, f"{cls.__name__}.from_yaml")
        return cls._from_document(document, name, **runtime)

    @classmethod
    def from_dict(cls, document, **runtime):
        return cls._from_document(copy.deepcopy(document), f"{cls.__name__}.from_dict",
                                  **runtime)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self.to_dict() == other.to_dict() and all(
            getattr(self, name) is getattr(other, name) for name in self._RUNTIME)

    __hash__ = None  # mutable

    def __repr__(self):
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS
                          if getattr(self, name) is not None)
        return f"{type(self).__name__}({shown})"


# ----------------------------------------------------------------------------------- criteria
class _CriterionConfig(_YamlConfig):
    """A criterion section: ``{<yaml name>: {arguments}}`` in the YAML."""

    yaml_name = None

    def _init_criterion(self, values, loss_weight_ratio):
        if loss_weight_ratio is not None:
            # The reference documents call loss_weights "loss_weight_ratio"; both are accepted,
            # but two different values cannot both be meant.
            given = values.get("loss_weights")
            if given is not None and to_plain(given) != to_plain(self._DEFAULT_WEIGHTS) \
                    and to_plain(given) != to_plain(loss_weight_ratio):
                raise ConfigError(
                    f"{type(self).__name__}: loss_weight_ratio: is another name for loss_weights;"
                    f" got loss_weights={to_plain(given)!r} and loss_weight_ratio="
                    f"{to_plain(loss_weight_ratio)!r}. Give only one of them.")
            values["loss_weights"] = loss_weight_ratio
        self._store(values)

    _DEFAULT_WEIGHTS = None

    def _validated(self, values):
        given = {k: to_plain(v) for k, v in values.items() if v is not None}
        return dict(validate(given, type(self).__name__, PYTHON_CRITERIA[self.yaml_name]))

    @property
    def loss_weight_ratio(self):
        """The reference documents' name for ``loss_weights``."""
        return self.loss_weights

    @loss_weight_ratio.setter
    def loss_weight_ratio(self, value):
        self.loss_weights = value

    def arguments(self):
        """The criterion's arguments, defaults filled in (what the YAML section holds)."""
        return {name: copy.deepcopy(getattr(self, name)) for name in self._FIELDS
                if getattr(self, name) is not None}

    def to_dict(self):
        return {self.yaml_name: to_plain(self.arguments())}

    @classmethod
    def _from_document(cls, document, source):
        if isinstance(document, dict) and set(document) != {cls.yaml_name}:
            document = {cls.yaml_name: document}  # the arguments alone are accepted too
        node = OneOf({cls.yaml_name: PYTHON_CRITERIA[cls.yaml_name]}, "criterion")
        (_, args), = validate(document, source, node).items()
        return cls(**dict(args))


class KnowledgeDistillationLossConfig(_CriterionConfig):
    """Logit distillation: ``w0 * student_loss + w1 * D(z_s, z_t)`` (docs/criteria.md).

    Args:
        temperature: > 0.
        loss_types: ``[student_type, kd_type]``, student in {CE, MSE}, kd in {CE, KL, MSE}.
        loss_weights: ``[w0, w1]`` (``loss_weight_ratio`` is accepted as another name).
        from_logits: False when the models output probabilities.
    """

    yaml_name = "KnowledgeDistillationLoss"
    _FIELDS = ("temperature", "loss_types", "loss_weights", "from_logits")
    _DEFAULT_WEIGHTS = (0.5, 0.5)

    def __init__(self, temperature=1.0, loss_types=("CE", "CE"), loss_weights=(0.5, 0.5),
                 from_logits=True, loss_weight_ratio=None):
        self._init_criterion({"temperature": temperature, "loss_types": loss_types,
                              "loss_weights": loss_weights, "from_logits": from_logits},
                             loss_weight_ratio)


class IntermediateLayersKnowledgeDistillationLossConfig(_CriterionConfig):
    """Intermediate-layer distillation: ``sum_i w_i * D_i(M_i(F_s_i), F_t_i)``.

    Args:
        layer_mappings: which student layer learns from which teacher layer (the forms of
            ``neural_distill.config.layer_mappings``). Empty: generated for the layers that
            exist in both models (for a QAT model: every layer of the float teacher that its
            quantized copy still has), e.g. ``[["features.0"], ["head"]]``.
        loss_types: one of {MSE, L1, KL, cosine} per mapping, or one for all (default MSE).
            The reference documents' default ``['CE', 'CE']`` is not a feature loss; it is
            rejected with the same message as in the YAML.
        loss_weights: one weight per mapping, or one for all (default: 1 / number of mappings).
        add_origin_loss: also add the student's own loss.
    """

    yaml_name = "IntermediateLayersKnowledgeDistillationLoss"
    _FIELDS = ("layer_mappings", "loss_types", "loss_weights", "add_origin_loss")

    def __init__(self, layer_mappings=(), loss_types=None, loss_weights=None,
                 add_origin_loss=False, loss_weight_ratio=None):
        self._init_criterion({"layer_mappings": layer_mappings, "loss_types": loss_types,
                              "loss_weights": loss_weights, "add_origin_loss": add_origin_loss},
                             loss_weight_ratio)

    def _validated(self, values):
        values = dict(values)
        if values.get("layer_mappings") is not None and len(values["layer_mappings"]) == 0:
            del values["layer_mappings"]  # empty: generated when the models are known
        cleaned = super()._validated(values)
        cleaned.setdefault("layer_mappings", [])
        return cleaned

    @property
    def automatic_mappings(self):
        return not self.layer_mappings

    def arguments(self):
        args = super().arguments()
        if not args.get("layer_mappings"):
            args.pop("layer_mappings", None)  # the YAML form of "generate them"
        return args


class SelfKnowledgeDistillationLossConfig(_CriterionConfig):
    """Self-distillation: the student's deepest head teaches its shallower heads.

    Args:
        layer_mappings: groups of ``[student_key, teacher_key]`` pairs naming outputs of the
            student itself (keys of its dict output, or module paths). Required: there is no
            second model to generate them from.
        temperature: > 0, for the KL / CE groups.
        loss_types: one of {CE, KL, L2, MSE} per group (default KL).
        loss_weights: one weight per group (default: 1 / number of groups).
        add_origin_loss: also add the student's own loss.
    """

    yaml_name = "SelfKnowledgeDistillationLoss"
    _FIELDS = ("layer_mappings", "temperature", "loss_types", "loss_weights", "add_origin_loss")

    def __init__(self, layer_mappings=(), temperature=1.0, loss_types=None, loss_weights=None,
                 add_origin_loss=False, loss_weight_ratio=None):
        self._init_criterion({"layer_mappings": layer_mappings, "temperature": temperature,
                              "loss_types": loss_types, "loss_weights": loss_weights,
                              "add_origin_loss": add_origin_loss}, loss_weight_ratio)


CRITERION_CONFIGS = {cls.yaml_name: cls for cls in (
    KnowledgeDistillationLossConfig, IntermediateLayersKnowledgeDistillationLossConfig,
    SelfKnowledgeDistillationLossConfig)}


def criterion_config_from_section(section, source, path="criterion"):
    """A criterion config from a YAML criterion section ``{name: {arguments}}``."""
    checked = validate({path: section}, source, Section({path: CRITERION}, required=(path,)))
    (name, args), = checked[path].items()
    return CRITERION_CONFIGS[name](**dict(args))


# ------------------------------------------------------------------------------ distillation
def _is_model(value):
    from ..adapters import detect_framework

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

    ``criterion`` may also be a ``neural_distill.Criterion`` (the reference documents'
    ``Criterion(name="KnowledgeLoss", ...)``); it is stored as the criterion config it stands for.

    YAML form: the experiment file's ``distillation.train.criterion`` / ``optimizer``,
    ``evaluation.accuracy.metric`` and ``model.framework``. ``teacher_model`` and Metric objects
    are runtime objects.
    """

    _FIELDS = ("criterion", "optimizer", "metrics", "framework")
    _RUNTIME = ("teacher_model",)

    def __init__(self, teacher_model=None, criterion=None, optimizer=None, metrics=None,
                 framework=None):
        object.__setattr__(self, "teacher_model", _check_teacher(teacher_model))
        self._store({"criterion": criterion, "optimizer": optimizer, "metrics": metrics,
                     "framework": framework})

    def __setattr__(self, name, value):
        if name == "teacher_model":
            value = _check_teacher(value)
        super().__setattr__(name, value)

    def _validated(self, values):
        from ..metrics import Metric

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
        if metrics is None and "metric" in raw_accuracy:
            metrics = to_plain(checked["evaluation"]["accuracy"]["metric"])
        framework = checked["model"].get("framework")
        return cls(teacher_model=teacher_model, criterion=criterion, optimizer=optimizer,
                   metrics=metrics, framework=framework)


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


COMPRESSION_CONFIGS = (DistillationConfig, QuantizationAwareTrainingConfig)

__all__ = ["DistillationConfig", "KnowledgeDistillationLossConfig",
           "IntermediateLayersKnowledgeDistillationLossConfig",
           "SelfKnowledgeDistillationLossConfig", "QuantizationAwareTrainingConfig",
           "criterion_config_from_section"]
