"""Capturing intermediate outputs of PyTorch models, and matching their shapes.

Forward hooks are owned by one ``FeatureCapture`` (one per model per criterion: no module-level
state), only record what the layer returned (the forward itself is unchanged), and are removed
by ``remove()`` when training ends.
"""


import torch
from torch import nn

from neural_distill.criterion.base import missing_layer_problems, select_output
from neural_distill.errors import ModelError


class FeatureCapture:
    """Records the outputs of named submodules of ``model`` on every forward."""

    def __init__(self, model, layer_names, role):
        self.role = role
        self.outputs = {}
        self._handles = []
        modules = dict(model.named_modules())
        self.missing = [name for name in dict.fromkeys(layer_names) if name not in modules]
        self.available = [name for name in modules if name]
        if self.missing:
            return
        for name in dict.fromkeys(layer_names):
            self._handles.append(modules[name].register_forward_hook(self._recorder(name)))

    def _recorder(self, name):
        def record(module, inputs, output):
            self.outputs[name] = output  # returning None keeps the module's output as it is
        return record

    def missing_problems(self):
        problems = missing_layer_problems(self.role, self.missing, self.available)
        return problems

    def get(self, name):
        if name not in self.outputs:
            raise ModelError(f"{self.role} layer '{name}' produced no output in this step: the "
                             f"{self.role} was not run on this batch, or that layer is not used "
                             f"by its forward")
        return self.outputs[name]

    def clear(self):
        self.outputs.clear()

    def remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.outputs.clear()


def select(output, process, where):
    """Apply a mapping's output process; the result must be a tensor."""
    return select_output(output, process, where, lambda value: isinstance(value, torch.Tensor))


def build_matcher(student_shape, teacher_shape, where):
    """A module mapping student features to the teacher's shape (not part of the student).

    Identity when the shapes agree; a 1x1 convolution when only the channel dimension (dim 1)
    of conv features differs; a Linear when only the last dimension differs. Anything else
    (different batch, length or spatial size) cannot be matched by a pointwise map and is an
    error that says so.
    """
    s, t = tuple(student_shape), tuple(teacher_shape)
    if s == t:
        return nn.Identity()
    if len(s) != len(t):
        raise ModelError(f"{where}: student feature shape {s} and teacher feature shape {t} have "
                         f"different ranks; select or reshape with a process")
    differing = [i for i, (a, b) in enumerate(zip(s, t)) if a != b]
    if len(differing) == 1 and differing[0] == 1 and len(s) in (3, 4):
        conv = nn.Conv1d if len(s) == 3 else nn.Conv2d
        return conv(s[1], t[1], kernel_size=1)
    if len(differing) == 1 and differing[0] == len(s) - 1 and len(s) >= 2:
        return nn.Linear(s[-1], t[-1])
    raise ModelError(f"{where}: student feature shape {s} cannot be matched to teacher feature "
                     f"shape {t}: only the channel dimension (1) of conv features or the last "
                     f"dimension may differ. Pool or reshape with a process callable.")
