"""The teacher models of an experiment: how they are assigned, checked, frozen and restored."""

import os

from neural_distill.adapters import adapter_for_model, detect_framework, framework_of_config_name
from neural_distill.errors import ModelError


def check_model(model, role, wanted_framework, conf_source, others, other_role):
    """``model`` if it is a model of the configured framework and of the same framework as
    ``others`` (the models of the other role); a ModelError naming both otherwise."""
    if model is None:
        return None
    framework = detect_framework(model)
    if framework is None:
        adapter_for_model(model, role)  # raises a ModelError naming what was received
    if wanted_framework and framework_of_config_name(wanted_framework) != framework:
        raise ModelError(
            f"{conf_source}: model.framework says '{wanted_framework}' but the {role} model is a "
            f"{framework} model ({type(model).__qualname__}). Fix model.framework or assign "
            f"a {wanted_framework} model.")
    other = next((m for m in others if m is not None), None)
    if other is not None and detect_framework(other) != framework:
        raise ModelError(
            f"{role} model is a {framework} model but the {other_role} is a "
            f"{detect_framework(other)} model. Student and teacher must use the same "
            f"framework; to use a teacher of another framework, cache its outputs and pass "
            f"them as teacher_output to on_after_compute_loss.")
    return model


class Teachers:
    """What ``distiller.teacher_model`` was set to, as a list of models and their keys.

    Keys are list indices, or the checkpoint paths of a ``{path: model}`` dict (feature
    mappings may name a teacher by either).
    """

    def __init__(self):
        self.assigned = None
        self.models, self.keys = [], []
        self._states = []
        self._aside = None  # (models, keys) set aside for a run that runs no teacher

    def assign(self, model, check):
        """One model, a list of models, or a dict {checkpoint path: model}; ``check(model,
        role)`` validates each. A dict's checkpoints are loaded now (tensors only), so a wrong
        path or a mismatching checkpoint is reported at assignment."""
        if isinstance(model, dict):
            if model and all(detect_framework(m) is None for m in model.values()):
                # Not {path: model}: most likely a state_dict; say how to use it.
                adapter_for_model(model, "teacher_model")
            models, keys = [], []
            for path, teacher in model.items():
                if not isinstance(path, (str, os.PathLike)):
                    raise ModelError(
                        f"teacher_model: a dict must map checkpoint paths to models, got a key "
                        f"of type {type(path).__name__}")
                check(teacher, f"teacher_model[{path!r}]")
                adapter_for_model(teacher, "teacher_model").load_weights(
                    teacher, str(path), f"teacher_model[{path!r}]")
                models.append(teacher)
                keys.append(path)
        elif isinstance(model, (list, tuple)):
            if not model:
                raise ModelError("teacher_model: got an empty list; give at least one model")
            models = [check(t, f"teacher_model[{i}]") for i, t in enumerate(model)]
            keys = list(range(len(models)))
        elif model is None:
            models, keys = [], []
        else:
            models, keys = [check(model, "teacher_model")], [0]
        self.assigned, self.models, self.keys = model, models, keys

    def set_aside(self):
        """No teacher for this run (its criterion runs none); :meth:`bring_back` after it."""
        if self._aside is None:
            self._aside = (self.models, self.keys)
            self.models, self.keys = [], []

    def bring_back(self):
        if self._aside is not None:
            self.models, self.keys = self._aside
            self._aside = None

    def enter(self, adapter, device):
        """Teachers in inference mode on ``device``; idempotent (entering twice would record
        the already-frozen mode as the one to restore)."""
        if not self._states:
            self._states = [adapter.enter_teacher_mode(t, device) for t in self.models]

    def release(self, adapter):
        """Teachers back to their own mode and device."""
        for teacher, state in zip(self.models, self._states):
            adapter.exit_teacher_mode(teacher, state)
        self._states = []
