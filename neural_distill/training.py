"""``prepare_compression``: distillation and quantization-aware training in your own loop.

::

    from neural_distill.config import (DistillationConfig, KnowledgeDistillationLossConfig,
                                       QuantizationAwareTrainingConfig)
    from neural_distill.training import prepare_compression

    manager = prepare_compression(model, [
        QuantizationAwareTrainingConfig(example_inputs=x_batch),
        DistillationConfig(criterion=KnowledgeDistillationLossConfig(temperature=2.0)),
    ])
    model = manager.model                      # the model to train (prepared for QAT)
    manager.callbacks.on_train_begin()         # ... the hooks of neural_distill.events
    loss = manager.on_after_compute_loss(x, model(x), loss)   # one scalar tensor
    ...
    manager.on_train_end()
    manager.export("model_int8.pt2")           # a real int8 model

Several configs make one manager. The model is prepared first (QAT, whatever its position in the
list, because distillation has to see the model that is trained); then every hook calls each
config's part in list order, and ``on_after_compute_loss`` passes the loss from one part to the
next and returns one scalar tensor.

The distillation part is a :class:`neural_distill.Distillation` driven through its own hooks, so
it behaves exactly like ``Distillation`` in a user loop (workspace, history, ``best_model``).
This module imports no framework.
"""

import contextlib
import os

from neural_distill.adapters import adapter_for_model, detect_framework
from neural_distill.core.backends import BACKENDS, backend_module
from neural_distill.common import unwrap
from neural_distill.config.layer_mappings import parse_layer_mappings
from neural_distill.config.python_api import (DistillationConfig,
                                IntermediateLayersKnowledgeDistillationLossConfig,
                                QuantizationAwareTrainingConfig,
                                SelfKnowledgeDistillationLossConfig)
from neural_distill.config.pruning_configs import WeightPruningConfig, pruning_groups
from neural_distill.run.checks import scalar_loss
# INC 1.13/1.14's prepare(conf, model, teacher_model) / fit(model, callbacks, ...), by that path.
from neural_distill.compat.inc_training import TrainingCallbacks, fit, prepare  # noqa: F401
from neural_distill.criterion.registry import needs_teacher
from neural_distill.distillation import Distillation
from neural_distill.errors import ConfigError, ModelError
from neural_distill.events import Dispatcher, Event, Hooks
from neural_distill.core.run_record import config_yaml
from neural_distill.run.saving import with_save

def _backend(framework):
    if framework not in BACKENDS:
        return None
    return backend_module(framework, "compression")


_CONFIGS = (DistillationConfig, QuantizationAwareTrainingConfig, WeightPruningConfig)


def prepare_compression(model, confs=None, configs=None):
    """A :class:`CompressionManager` for ``model`` and one config or a list of them (``confs``,
    the reference API's keyword; ``configs=`` is accepted too)."""
    if confs is not None and configs is not None:
        raise ConfigError("prepare_compression: give the configs once, as confs= (or configs=)")
    configs = confs if confs is not None else configs
    if isinstance(configs, _CONFIGS):
        configs = [configs]
    if not isinstance(configs, (list, tuple)) or not configs:
        raise ConfigError(f"prepare_compression: configs: expected a DistillationConfig, a "
                          f"QuantizationAwareTrainingConfig or a non-empty list of them, got "
                          f"{configs!r}")
    for index, config in enumerate(configs):
        if not isinstance(config, _CONFIGS):
            raise ConfigError(f"prepare_compression: configs[{index}]: expected a "
                              f"DistillationConfig, a QuantizationAwareTrainingConfig or a "
                              f"WeightPruningConfig, got "
                              f"{type(config).__name__}. Build configs with "
                              f"neural_distill.config.")
    model = unwrap(model)  # a neural_distill.common.Model
    qat_count = sum(isinstance(c, QuantizationAwareTrainingConfig) for c in configs)
    if qat_count > 1:
        raise ConfigError(f"prepare_compression: configs: expected at most one "
                          f"QuantizationAwareTrainingConfig (a model is prepared for QAT once), "
                          f"got {qat_count}")
    if detect_framework(model) is None:
        raise ModelError(f"prepare_compression: model: expected a torch.nn.Module or a "
                         f"keras.Model, got {type(model).__module__}.{type(model).__qualname__}."
                         f" Pass the model object itself (not a path or a state dict).")
    return CompressionManager(model, list(configs))


class Callbacks(Dispatcher):
    """The hooks of a CompressionManager (``manager.callbacks.on_train_begin()``)."""

    def __init__(self, manager):
        self._manager = manager

    def hook_targets(self):
        return (self._manager,)

    @property
    def callbacks_list(self):
        """The manager's parts, in order (INC's name; they print as "Distillation Callbacks",
        "Pruning Callbacks", ...)."""
        return self._manager.parts


class _Part(Hooks):
    """One config's behaviour in the manager: every hook, doing nothing by default."""

    config = None


class _QuantizationPart(_Part):
    def __init__(self, config, qat):
        self.config = config
        self.qat = qat

    def on_epoch_begin(self, epoch):
        freeze_at = self.config.freeze_observers_epoch
        if freeze_at is not None and epoch >= freeze_at:
            self.qat.freeze_observers()

    def __repr__(self):
        return "Quantization Callbacks"


class _PruningPart(Dispatcher):
    """Sparsity during training (docs/pruning.md): the framework's pruner, driven by the hooks.
    With QAT it prunes the user's model, whose parameters the prepared graph shares, so the
    weights are sparse first and quantized from their sparse values."""

    def __init__(self, config, groups, model, backend, framework):
        if backend is None:
            raise ModelError(f"prepare_compression: pruning during training is implemented "
                             f"for PyTorch models, got a {framework} model (docs/pruning.md)")
        self.config = config
        self.pruner = backend.build_pruner(model, groups, type(config).__name__)

    def hook_targets(self):
        return (self.pruner,)

    def __repr__(self):
        return "Pruning Callbacks"


class _DistillationPart(Dispatcher):
    """Drives one ``Distillation`` object with the manager's model as its student: every hook
    is the distiller's, with the set-up below around on_train_begin and on_train_end."""

    def __init__(self, config, model, qat, backend):
        self.config = config
        self.qat = qat
        self.backend = backend
        teachers = config.teacher_model
        if teachers is None and needs_teacher(config.criterion) and qat is not None:
            teachers = qat.float_model  # QAT: the float model teaches its quantized copy
        criterion = self._criterion(config.criterion, model, teachers, qat, backend)
        train = {"criterion": criterion.to_dict(), "progress_bar": False}
        if config.optimizer is not None:
            train["optimizer"] = config.optimizer
        if config.teacher_cache is not None:
            train["teacher_cache"] = config.teacher_cache
        if getattr(config, "on_policy", None) is not None:
            train["on_policy"] = config.on_policy
        document = {"distillation": {"train": train}}
        if isinstance(config.metrics, dict):
            document["evaluation"] = {"accuracy": {"metric": config.metrics}}
        if config.framework is not None:
            # Distillation checks the student and every teacher against it.
            document["model"] = {"framework": config.framework}
        self.criterion_config = criterion
        self.distiller = Distillation(document)
        if config.metrics is not None and not isinstance(config.metrics, dict):
            self.distiller.metric = config.metrics
        self.distiller.student_model = model
        self.distiller.teacher_model = teachers

    @staticmethod
    def _criterion(criterion, model, teachers, qat, backend):
        """The criterion config with generated mappings filled in, checked against a QAT model."""
        if isinstance(criterion, IntermediateLayersKnowledgeDistillationLossConfig):
            if criterion.automatic_mappings:
                if backend is None:
                    raise ModelError("IntermediateLayersKnowledgeDistillationLossConfig: "
                                     "generating layer_mappings is implemented for PyTorch "
                                     "models; give layer_mappings explicitly")
                listed = teachers if isinstance(teachers, (list, tuple)) else \
                    list(teachers.values()) if isinstance(teachers, dict) else \
                    [teachers] if teachers is not None else []
                args = criterion.arguments()
                args["layer_mappings"] = backend.auto_layer_mappings(model, listed, qat)
                criterion = IntermediateLayersKnowledgeDistillationLossConfig(**args)
            if qat is not None:
                names = [pair.student.layer for pair in parse_layer_mappings(
                    criterion.layer_mappings)]
                qat.check_layers(names, "IntermediateLayersKnowledgeDistillationLossConfig")
        elif isinstance(criterion, SelfKnowledgeDistillationLossConfig) and qat is not None:
            # Keys that are module paths of the float model must still be observable; other
            # keys name entries of the model's dict output.
            keys = [key for group in criterion.layer_mappings for pair in group for key in pair]
            paths = backend.module_paths(qat.float_model)
            qat.check_layers([k for k in keys if k in paths],
                             "SelfKnowledgeDistillationLossConfig")
        return criterion

    def on_train_begin(self, dataloader=None):
        if dataloader is None and self.qat is not None:
            # One dry run on the example inputs builds the feature matchers before the first
            # optimizer step (Distillation does it for a dataloader's first batch).
            args, kwargs = self.qat.example_args, self.qat.example_kwargs
            inputs = kwargs if kwargs else (args[0] if len(args) == 1 else args)
            dataloader = [(inputs, None)]
        self.distiller.on_train_begin(dataloader)

    def hook_targets(self):
        return (self.distiller,)

    def __repr__(self):
        return "Distillation Callbacks"

    def on_train_end(self):
        # Builds best_model, a deep copy of the (possibly exported) student.
        with self.backend.quiet_copies() if self.backend is not None else \
                contextlib.nullcontext():
            self.distiller.on_train_end()


class CompressionManager(Dispatcher):
    """The model being trained, the hooks that compress it, and ``save`` / ``export``.

    Attributes:
        model: the model to train: the user's model, or its QAT-prepared graph.
        callbacks: the hooks (also available directly on the manager).
        configs: the configs, in the order given.
        distillers: the ``Distillation`` object of each DistillationConfig.
        qat: the QAT preparation (``neural_distill.adapters.torch.quantization.QATModel``) or
            None: its ``float_model``, ``observable`` layers, ``convert()``.
    """

    def __init__(self, model, configs):
        self.configs = configs
        self.framework = detect_framework(model)
        self._backend = _backend(self.framework)
        self.qat = None
        qat_config = next((c for c in configs if isinstance(c, QuantizationAwareTrainingConfig)),
                          None)
        if qat_config is not None:
            self.qat = self._backend.prepare_qat(model, qat_config)
        self.model = self.qat.model if self.qat is not None else model
        self._adapter = adapter_for_model(self.model, "model")
        with_save(self.model)  # manager.model.save('./saved'), see docs/saving.md
        self._parts = self._build_parts()
        self.callbacks = Callbacks(self)

    def _build_parts(self):
        if self.qat is not None and not getattr(self.qat, "captured", True):
            # No example inputs: the model is captured on its first batch, and the parts,
            # which need the captured graph, are built then (adapters/torch/quantization).
            return [self._backend.pending_parts(self.qat, self._build_parts)]
        parts = []
        for config in self.configs:
            if isinstance(config, QuantizationAwareTrainingConfig):
                parts.append(_QuantizationPart(config, self.qat))
            elif isinstance(config, WeightPruningConfig):
                parts.append(self._pruning_part(config, config.groups()))
            else:
                parts.append(_DistillationPart(config, self.model, self.qat, self._backend))
                if config.pruner_config is not None:
                    parts.append(self._pruning_part(config, pruning_groups(
                        config.pruner_config, "DistillationConfig: pruner_config")))
        return parts

    def _pruning_part(self, config, groups):
        # The user's model: with QAT the prepared graph shares its parameters.
        model = self.qat.source_model if self.qat is not None else self.model
        return _PruningPart(config, groups, model, self._backend, self.framework)

    @property
    def pruners(self):
        """The pruner of each pruning config (``.sparsity()``: zeros per pruned layer)."""
        return [p.pruner for p in self.parts if isinstance(p, _PruningPart)]

    @property
    def parts(self):
        """One part per config, in the configs' order; each has every hook."""
        return [p for part in self._parts for p in getattr(part, "parts", [part])]

    @property
    def distillers(self):
        return [p.distiller for p in self.parts if isinstance(p, _DistillationPart)]

    def _quiet(self):
        """Observers paused while set-up runs the model (a dry run is not training data)."""
        return self.qat.observers_paused() if self.qat is not None else \
            contextlib.nullcontext()

    # ------------------------------------------------------------------ hooks
    def hook_targets(self):
        return self._parts

    def dispatch(self, event, *args):
        """Every hook calls each part's in list order; set-up runs with the observers paused,
        and the loss that went through every part comes back as one scalar tensor."""
        if event is Event.TRAIN_BEGIN:
            with self._quiet():
                return super().dispatch(event, *args)
        if event is Event.AFTER_COMPUTE_LOSS:
            student_loss = args[event.chain_index]
            if isinstance(student_loss, (list, tuple)):
                scalar_loss(student_loss, self._adapter)  # raises: a list of losses is ambiguous
            return scalar_loss(super().dispatch(event, *args), self._adapter)
        return super().dispatch(event, *args)

    # ------------------------------------------------------------------ results
    def to_dict(self):
        """The YAML form of every config, merged into one document."""
        document = {}
        for config in self.configs:
            for key, value in config.to_dict().items():
                if key in document:
                    raise ConfigError(f"CompressionManager.to_dict: two configs write '{key}'; "
                                      f"save them separately with config.to_yaml()")
                document[key] = value
        return document

    def save(self, path):
        """Write ``path/model<suffix>`` (the trained model's weights, fake-quantization state
        included) and ``path/compression.yaml`` (the configs). Returns ``path``."""
        os.makedirs(path, exist_ok=True)
        for pruner in self.pruners:
            pruner.apply()  # masks folded into the weights that are written
        adapter = self._adapter
        adapter.save_weights(self.model, os.path.join(path, "model" + adapter.checkpoint_suffix))
        try:
            document = self.to_dict()
        except ConfigError:
            document = [config.to_dict() for config in self.configs]
        with open(os.path.join(path, "compression.yaml"), "w", encoding="utf-8") as handle:
            handle.write(config_yaml(document))  # never fails on a callable layer process
        return path

    def export(self, path, example_inputs=None):
        """The deployable model: with QAT, a real int8 program; otherwise the float model.

        PyTorch writes a ``torch.export`` program (``.pt2``; load it with
        ``neural_distill.adapters.torch.quantization.load_int8``). Returns an ExportInfo with the
        file size and the bytes of the tensors it stores.
        """
        path = os.fspath(path)
        for pruner in self.pruners:
            pruner.apply()
        if self.qat is not None:
            return self.qat.export(path)
        if self._backend is None:
            raise ModelError(f"export: exporting a {self.framework} model is not implemented; "
                             f"save its weights with manager.save(path)")
        return self._backend.export_float(self.model, path, example_inputs)

